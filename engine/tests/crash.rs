//! Crash consistency: a crash after every N-th I/O of a workload.
//!
//! The workload commits batches across two keyspaces with flushes and full compactions (which
//! split and coalesce its tiny ranges) in between, on the in-memory file system. For every k, a run fails the k-th file-system operation (and everything after it:
//! the disk is gone), then simulates power loss, optionally tearing the last unsynced write, and
//! reopens. The database must open without error and hold the state after some prefix of the
//! commit order that includes every commit acknowledged in `Fsync` mode; a commit that returned
//! an error may or may not be there, but whole or not at all.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata::fs::{FaultKind, MemFs};
use strata::{Db, KeyspaceOptions, Options, WalMode};

type State = [BTreeMap<Vec<u8>, Vec<u8>>; 2];

fn options(fs: &MemFs, mode: WalMode) -> Options {
    Options {
        wal_mode: mode,
        memory_limit_bytes: 64 * 1024,
        range_size_min_bytes: 4 * 1024,
        wal_segment_size_bytes: 8 * 1024,
        meta_rewrite_threshold_bytes: 4 * 1024,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

/// One batch of the workload: (keyspace, key, value or delete).
fn batch(i: usize) -> Vec<(usize, Vec<u8>, Option<Vec<u8>>)> {
    (0..1 + i % 4)
        .map(|j| {
            let ks = (i + j) % 2;
            let key = format!("k{:02}", (i * 7 + j * 3) % 40).into_bytes();
            let value = (!i.is_multiple_of(9))
                .then(|| format!("v{i}-{j}-{}", "x".repeat((i * 13 + j) % 120)).into_bytes());
            (ks, key, value)
        })
        .collect()
}

const BATCHES: usize = 90;

/// Runs the workload until its first error. Returns the state after each commit (index 0: the
/// empty start), how many commits were acknowledged, and how many were made durable by a
/// successful flush.
fn workload(fs: &MemFs, mode: WalMode) -> (Vec<State>, usize, usize) {
    let mut states: Vec<State> = vec![Default::default()];
    let Ok(db) = Db::open(Path::new("/db"), options(fs, mode)) else {
        return (states, 0, 0);
    };
    let keyspaces: Vec<_> = match (0..2)
        .map(|i| {
            db.keyspace(
                &format!("ks{i}"),
                KeyspaceOptions {
                    page_size_bytes: 512,
                    range_size_bytes: Some(256),
                    ..Default::default()
                },
            )
        })
        .collect()
    {
        Ok(k) => k,
        Err(_) => return (states, 0, 0),
    };
    let mut acked = 0;
    let mut flushed = 0;
    for i in 0..BATCHES {
        let writes = batch(i);
        let mut next = states.last().cloned().unwrap_or_default();
        let mut b = db.batch();
        for (ks, key, value) in &writes {
            match value {
                Some(v) => {
                    b.put(&keyspaces[*ks], key, v);
                    next[*ks].insert(key.clone(), v.clone());
                }
                None => {
                    b.delete(&keyspaces[*ks], key);
                    next[*ks].remove(key);
                }
            }
        }
        states.push(next);
        if b.commit().is_err() {
            return (states, acked, flushed);
        }
        acked += 1;
        if i % 30 == 14 {
            // compact() flushes first, so it is a durability point too.
            if keyspaces[i % 2].compact().is_err() {
                return (states, acked, flushed);
            }
            flushed = acked;
        }
        if i % 25 == 24 {
            if db.flush().is_err() {
                return (states, acked, flushed);
            }
            flushed = acked;
        }
    }
    (states, acked, flushed)
}

fn read_state(db: &Db) -> State {
    let mut state: State = Default::default();
    for (i, slot) in state.iter_mut().enumerate() {
        let ks = db
            .keyspace(&format!("ks{i}"), KeyspaceOptions::default())
            .expect("keyspace");
        *slot = ks
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
            .collect();
    }
    state
}

fn crash_at_every_op(mode: WalMode, tear: bool) -> usize {
    let probe = MemFs::new();
    let start = probe.op_count();
    let (_, acked, _) = workload(&probe, mode);
    assert_eq!(acked, BATCHES, "the workload must succeed without faults");
    let meta = strata::inspect::read_meta(&probe, Path::new("/db")).expect("metadata");
    let ranges: usize = meta.state.keyspaces.iter().map(|k| k.ranges.len()).sum();
    assert!(
        ranges > 2,
        "the workload must split ranges (it has {ranges}), so crashes hit splits too"
    );
    let total_ops = probe.op_count() - start;
    assert!(total_ops > 100, "workload too small: {total_ops} ops");
    let mut cases = 0;
    for k in 0..total_ops {
        let fs = MemFs::new();
        fs.fail_at(fs.op_count() + k, FaultKind::Eio, true);
        let (states, acked, flushed) = workload(&fs, mode);
        if tear {
            fs.crash_tearing_last_write(k);
        } else {
            fs.crash();
        }
        fs.clear_faults();
        let db = Db::open(Path::new("/db"), options(&fs, mode))
            .unwrap_or_else(|e| panic!("{mode:?} fault at op {k}: reopen failed: {e}"));
        let actual = read_state(&db);
        let durable_floor = if mode == WalMode::Fsync {
            acked
        } else {
            flushed
        };
        let attempted = (acked + 1).min(states.len() - 1);
        let matches = (durable_floor..=attempted).any(|i| states[i] == actual);
        assert!(
            matches,
            "{mode:?} fault at op {k} (tear={tear}): state matches no commit prefix in {durable_floor}..={attempted}"
        );
        db.close().expect("close");
        cases += 1;
    }
    cases
}

#[test]
fn fsync_mode_survives_a_crash_at_every_io() {
    assert!(crash_at_every_op(WalMode::Fsync, false) > 200);
}

#[test]
fn fsync_mode_survives_torn_writes_at_every_io() {
    assert!(crash_at_every_op(WalMode::Fsync, true) > 200);
}

#[test]
fn write_mode_stays_a_prefix_at_every_io() {
    assert!(crash_at_every_op(WalMode::Write, true) > 100);
}
