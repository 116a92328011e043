//! Durability under a real process kill (SIGKILL), on the real file system.
//!
//! The test binary re-executes itself as a child process (the `#[ignore]`d test
//! `kill_child_commits_until_killed`, which does nothing unless `STRATA_KILL_CHILD_DIR` is set).
//! The child opens the database in `WalMode::Fsync` with a small memory limit (so background
//! dumps, WAL rotation and deletion, compaction and metadata-log rewrites happen while it runs)
//! and commits batch after batch: batch `n` writes the value `n` to `a/{n % 50}` in keyspace `a`,
//! to `b/{n % 37}` in keyspace `b` and to its own marker key `m/{n}` in keyspace `a`, then
//! reports `ack {n}` to the parent on stdout. Every 50 batches it calls `Db::flush` (a child
//! commits only some 50-150 fsynced batches before it is killed, so this is what makes a kill
//! land during dumps often).
//!
//! The parent kills the child with SIGKILL after a pseudo-random 20..=300 ms (deterministic per
//! cycle), collects every acknowledgement the child wrote, reopens the database and checks:
//! - the markers present are exactly `0..=N` for some `N` (one writer, fsync per commit: the
//!   durable state is a prefix of the commit order) and `N` is at least the highest
//!   acknowledged batch (nothing acknowledged is lost);
//! - every `a/i` and `b/j` holds the value of the last batch `<= N` that wrote it (batches are
//!   all or nothing, and no later batch leaked in).
//!
//! The same directory is reused across cycles (recovery of a recovered database, the child
//! continuing at `N + 1`), so a kill during recovery itself is exercised too.
//!
//! 20 cycles by default; more with `STRATA_KILL_CYCLES=500`, another schedule with
//! `STRATA_KILL_SEED=<u64>`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strata::{Db, KeyspaceOptions, Options, WalMode};

const CHILD_DIR_ENV: &str = "STRATA_KILL_CHILD_DIR";
const CHILD_START_ENV: &str = "STRATA_KILL_CHILD_START";
const CHILD_TEST: &str = "kill_child_commits_until_killed";
const A_KEYS: u64 = 50;
const B_KEYS: u64 = 37;
/// Values are `{n}|` followed by this many bytes of padding, so memtables fill faster.
const PADDING: usize = 200;
/// The child calls `Db::flush` after every this many batches.
const FLUSH_EVERY: u64 = 50;

fn options() -> Options {
    Options {
        wal_mode: WalMode::Fsync,
        memory_limit_bytes: 256 * 1024,
        wal_segment_size_bytes: 64 * 1024,
        range_size_min_bytes: 4 * 1024,
        meta_rewrite_threshold_bytes: 16 * 1024,
        ..Options::default()
    }
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        page_size_bytes: 1024,
        range_size_bytes: Some(16 * 1024),
        ..KeyspaceOptions::default()
    }
}

fn value(n: u64) -> String {
    format!("{n}|{}", "x".repeat(PADDING))
}

fn marker(n: u64) -> String {
    format!("m/{n:010}")
}

/// SplitMix64, for a deterministic kill schedule.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// The child: commits until killed. Does nothing in a normal test run.
#[test]
#[ignore = "the child process of process_kill_loses_no_acknowledged_batch"]
fn kill_child_commits_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let start = env_u64(CHILD_START_ENV, 0);
    let db = Db::open(&dir, options()).unwrap();
    let a = db.keyspace("a", ks_options()).unwrap();
    let b = db.keyspace("b", ks_options()).unwrap();
    let stdout = std::io::stdout();
    for n in start.. {
        let v = value(n);
        let mut batch = db.batch();
        batch
            .put(&a, format!("a/{}", n % A_KEYS), &v)
            .put(&b, format!("b/{}", n % B_KEYS), &v)
            .put(&a, marker(n), &v);
        batch.commit().unwrap();
        let mut out = stdout.lock();
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
        drop(out);
        if n % FLUSH_EVERY == FLUSH_EVERY - 1 {
            db.flush().unwrap();
        }
    }
}

/// Parses a value written by batch `n` back into `n`.
fn parse_value(v: &[u8]) -> u64 {
    let text = std::str::from_utf8(v).expect("value is UTF-8");
    let (n, pad) = text.split_once('|').expect("value has a separator");
    assert_eq!(pad.len(), PADDING, "value padding of {n}");
    n.parse().expect("value starts with a batch number")
}

/// The last batch `<= last` that wrote the key with residue `key` modulo `modulus`.
fn last_writer(key: u64, modulus: u64, last: Option<u64>) -> Option<u64> {
    let last = last?;
    if last < key {
        return None;
    }
    Some(last - (last - key) % modulus)
}

/// Reopens the database and checks it; returns the highest batch present.
fn check(dir: &Path, acked: Option<u64>, cycle: u64) -> Option<u64> {
    let db = Db::open(dir, options())
        .unwrap_or_else(|e| panic!("cycle {cycle}: reopen after kill failed: {e}"));
    let names = db.keyspace_names();
    if names.is_empty() {
        assert_eq!(
            acked, None,
            "cycle {cycle}: acknowledged batches but no keyspaces"
        );
        db.close().expect("close");
        return None;
    }
    let a = db.keyspace("a", ks_options()).expect("keyspace a");
    let b = db.keyspace("b", ks_options()).expect("keyspace b");
    let mut markers = BTreeSet::new();
    for item in a.prefix("m/") {
        let (k, v) = item.unwrap_or_else(|e| panic!("cycle {cycle}: scan: {e}"));
        let n: u64 = std::str::from_utf8(&k[2..])
            .expect("marker key")
            .parse()
            .expect("marker number");
        assert_eq!(parse_value(&v), n, "cycle {cycle}: value of marker {n}");
        markers.insert(n);
    }
    let highest = markers.last().copied();
    if let Some(highest) = highest {
        assert_eq!(
            markers.len() as u64,
            highest + 1,
            "cycle {cycle}: markers are not a prefix 0..={highest}: {} present",
            markers.len()
        );
    }
    assert!(
        highest >= acked,
        "cycle {cycle}: batch {acked:?} was acknowledged but only {highest:?} survived the kill"
    );
    for (ks, prefix, modulus) in [(&a, "a", A_KEYS), (&b, "b", B_KEYS)] {
        for key in 0..modulus {
            let name = format!("{prefix}/{key}");
            let got = ks
                .get(&name)
                .unwrap_or_else(|e| panic!("cycle {cycle}: get {name}: {e}"))
                .map(|v| parse_value(&v));
            assert_eq!(
                got,
                last_writer(key, modulus, highest),
                "cycle {cycle}: {name} (highest batch {highest:?})"
            );
        }
    }
    // Every marker is reachable by a point lookup too (runs, bloom filters, memtables).
    for n in markers.iter().rev().take(300) {
        assert!(
            a.get(marker(*n)).expect("get marker").is_some(),
            "cycle {cycle}: marker {n} seen by the scan but not by get"
        );
    }
    db.close().expect("close");
    highest
}

/// Runs one child until it is killed after `delay`; returns the highest acknowledged batch.
fn run_child(dir: &Path, start: u64, delay: Duration, cycle: u64) -> Option<u64> {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--ignored"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_START_ENV, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints its own lines ("running 1 test", ...): only acks count.
            if let Some(n) = line.strip_prefix("ack ") {
                let n: u64 = n.trim().parse().expect("ack number");
                if tx.send(n).is_err() {
                    break;
                }
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::sleep(delay);
    let early_exit = child.try_wait().expect("try_wait");
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for the child");
    reader.join().expect("stdout reader");
    let stderr_text = err_reader.join().expect("stderr reader");
    if let Some(status) = early_exit {
        panic!(
            "cycle {cycle}: the child exited by itself ({status}) before the kill:\n{stderr_text}"
        );
    }
    assert!(!status.success(), "cycle {cycle}: child was not killed");
    let mut highest = None;
    for (expected, n) in (start..).zip(rx.try_iter()) {
        assert_eq!(n, expected, "cycle {cycle}: acks out of order");
        highest = Some(n);
    }
    highest
}

#[test]
fn process_kill_loses_no_acknowledged_batch() {
    let cycles = env_u64("STRATA_KILL_CYCLES", 20);
    let seed = env_u64("STRATA_KILL_SEED", 0x5EED_C1D5);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let started = Instant::now();
    let mut highest: Option<u64> = None;
    let mut total_acked = 0u64;
    // Run and WAL segment files seen after kills: evidence that dumps and rotations happened.
    let mut files_seen = BTreeSet::new();
    for cycle in 0..cycles {
        let delay = Duration::from_millis(20 + splitmix64(seed ^ cycle) % 281);
        let start = highest.map_or(0, |h| h + 1);
        let acked = run_child(&dir, start, delay, cycle);
        for entry in std::fs::read_dir(&dir).expect("list the database directory") {
            let name = entry.expect("directory entry").file_name();
            let name = name.to_string_lossy().into_owned();
            if name.ends_with(".run") || name.ends_with(".wal") {
                files_seen.insert(name);
            }
        }
        if let Some(acked) = acked {
            total_acked += acked + 1 - start;
        }
        // An acknowledgement of this cycle, or else everything from earlier cycles.
        let floor = acked.or(highest);
        highest = check(&dir, floor, cycle);
    }
    let secs = started.elapsed().as_secs_f64();
    let runs = files_seen.iter().filter(|n| n.ends_with(".run")).count();
    let segments = files_seen.len() - runs;
    println!(
        "kill test: {cycles} cycles in {secs:.1} s ({:.2} cycles/s), {total_acked} batches \
         acknowledged, highest batch {highest:?}, {runs} run files and {segments} WAL segments \
         seen",
        cycles as f64 / secs
    );
    assert!(total_acked > 0, "no child ever acknowledged a batch");
    if total_acked > 2 * FLUSH_EVERY {
        assert!(
            runs > 0,
            "no run file was ever written: the test exercised no dump"
        );
    }
}

#[test]
fn last_writer_is_the_last_batch_with_that_residue() {
    assert_eq!(last_writer(3, 50, None), None);
    assert_eq!(last_writer(3, 50, Some(2)), None);
    assert_eq!(last_writer(3, 50, Some(3)), Some(3));
    assert_eq!(last_writer(3, 50, Some(52)), Some(3));
    assert_eq!(last_writer(3, 50, Some(53)), Some(53));
    assert_eq!(last_writer(3, 50, Some(120)), Some(103));
}
