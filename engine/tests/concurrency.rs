//! Concurrent writers, readers, dumps and compactions: read views stay consistent.
//!
//! Four writer threads each write their own keys `w{t}/{i:06}` = `i` in order `i = 0, 1, 2, ...`,
//! some of them as atomic batches of two consecutive indexes; writers 0 and 2 use keyspace
//! `ks0`, writers 1 and 3 `ks1`. Because one thread's commits are ordered and commits become
//! visible in seqno order, every read view must show, for each writer, exactly a prefix
//! `0..k` of its keys (no holes), with `k` never splitting a two-key batch, and a later view
//! never shows a shorter prefix than an earlier one.
//!
//! Two reader threads each repeatedly (a) take a snapshot and check that property both by
//! iterating (forward and backward) and by point lookups, and that reading the same snapshot
//! twice gives the same answer; (b) open an iterator per keyspace, read a little, wait until the
//! database has finished two more dumps (the memory limit is tiny, so dumps and the placeholder compaction with
//! a 4 KiB minimum range size, so ranges split) run constantly, deleting the runs the iterator started on), and
//! check that the rest of the iterator is still a consistent prefix of each writer. A third
//! thread calls `Db::flush` now and then.
//!
//! At the end every key is present with the right value (also after a reopen), and
//! `Db::stats` reports dumps. Runs once on the real file system and once on `MemFs`.
//!
//! Bigger runs: `STRATA_CONCURRENCY_KEYS=20000` (keys per writer, default 5000).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::fs::MemFs;
use strata::{Db, Keyspace, KeyspaceOptions, Options, Snapshot};

const WRITERS: usize = 4;
const READERS: usize = 2;

fn keys_per_writer() -> usize {
    std::env::var("STRATA_CONCURRENCY_KEYS")
        .ok()
        .map(|v| v.parse().expect("STRATA_CONCURRENCY_KEYS is a number"))
        .unwrap_or(5000)
}

fn key(t: usize, i: usize) -> String {
    format!("w{t}/{i:06}")
}

fn keyspace_of(t: usize) -> usize {
    t % 2
}

/// True if writer `t` commits `i` and `i + 1` as one batch (when it reaches `i` on its path).
fn starts_pair(t: usize, i: usize) -> bool {
    (i * 7 + t * 3) % 5 == 1
}

/// For writer `t`: `valid[k]` is true if a view may show exactly the keys `0..k` (a commit ends
/// at `k`).
fn valid_prefixes(t: usize, count: usize) -> Vec<bool> {
    let mut valid = vec![false; count + 1];
    valid[0] = true;
    let mut i = 0;
    while i < count {
        i += if i + 1 < count && starts_pair(t, i) {
            2
        } else {
            1
        };
        valid[i] = true;
    }
    valid
}

fn options(fs: Option<&MemFs>) -> Options {
    let mut options = Options {
        memory_limit_bytes: 64 * 1024,
        range_size_min_bytes: 4 * 1024,
        wal_segment_size_bytes: 32 * 1024,
        meta_rewrite_threshold_bytes: 16 * 1024,
        ..Options::default()
    };
    if let Some(fs) = fs {
        options.fs = Arc::new(fs.clone());
    }
    options
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        page_size_bytes: 1024,
        range_size_bytes: Some(16 * 1024),
        ..KeyspaceOptions::default()
    }
}

fn total_dumps(db: &Db) -> u64 {
    db.stats().keyspaces.iter().map(|k| k.dumps).sum()
}

/// Splits the pairs read from one keyspace into per-writer index lists, checking each value.
fn split_by_writer(
    pairs: impl IntoIterator<Item = (strata::Key, strata::Value)>,
) -> BTreeMap<usize, Vec<usize>> {
    let mut by_writer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, v) in pairs {
        let text = std::str::from_utf8(&k).expect("key is UTF-8");
        let (t, i) = text
            .strip_prefix('w')
            .and_then(|rest| rest.split_once('/'))
            .expect("key shape w{t}/{i}");
        let t: usize = t.parse().expect("writer number");
        let i: usize = i.parse().expect("key index");
        assert_eq!(
            std::str::from_utf8(&v).expect("value is UTF-8"),
            i.to_string(),
            "value of {text}"
        );
        by_writer.entry(t).or_default().push(i);
    }
    by_writer
}

/// Checks that `indexes` (in key order) are exactly `0..k` with `k` a commit boundary of writer
/// `t`; returns `k`.
fn check_prefix(t: usize, indexes: &[usize], valid: &[bool], what: &str) -> usize {
    for (pos, &i) in indexes.iter().enumerate() {
        assert_eq!(
            i,
            pos,
            "{what}: writer {t} has a hole: key {} is visible but {} is not",
            key(t, i),
            key(t, pos)
        );
    }
    let k = indexes.len();
    assert!(
        valid[k],
        "{what}: writer {t} shows keys 0..{k}, which splits its batch of {} and {}",
        k - 1,
        k
    );
    k
}

struct Shared {
    db: Db,
    keyspaces: Vec<Keyspace>,
    valid: Vec<Vec<bool>>,
    writers_done: AtomicBool,
    count: usize,
    snapshot_checks: AtomicU64,
    long_iter_checks: AtomicU64,
}

impl Shared {
    fn writers_of(ks: usize) -> impl Iterator<Item = usize> {
        (0..WRITERS).filter(move |&t| keyspace_of(t) == ks)
    }

    /// Reads everything through `snapshot` twice (scan forward, scan backward, point lookups)
    /// and checks the prefix property; returns the prefix length of each writer.
    fn check_snapshot(&self, snapshot: &Snapshot) -> Vec<usize> {
        let mut prefix = vec![0; WRITERS];
        for (ks_index, ks) in self.keyspaces.iter().enumerate() {
            let forward: Vec<_> = snapshot
                .iter(ks)
                .collect::<strata::Result<_>>()
                .expect("snapshot scan");
            let mut backward: Vec<_> = snapshot
                .iter(ks)
                .rev()
                .collect::<strata::Result<_>>()
                .expect("snapshot reverse scan");
            backward.reverse();
            assert_eq!(
                forward, backward,
                "a snapshot scanned forward and backward differs"
            );
            let by_writer = split_by_writer(forward.clone());
            for t in Self::writers_of(ks_index) {
                let indexes = by_writer.get(&t).map_or(&[][..], Vec::as_slice);
                let k = check_prefix(t, indexes, &self.valid[t], "snapshot");
                prefix[t] = k;
                // Point lookups agree: the boundary, and a sample inside the prefix.
                let expect = |i: usize| (i < k).then(|| i.to_string().into_bytes());
                for i in [k.saturating_sub(1), k, k + 1]
                    .into_iter()
                    .chain((0..k).step_by(97))
                {
                    let got = snapshot
                        .get(ks, key(t, i))
                        .expect("snapshot get")
                        .map(|v| v.to_vec());
                    assert_eq!(got, expect(i), "snapshot get of {}", key(t, i));
                }
                // A prefix scan of this writer alone agrees too.
                let own: Vec<_> = snapshot
                    .prefix(ks, format!("w{t}/"))
                    .collect::<strata::Result<_>>()
                    .expect("snapshot prefix scan");
                let own = split_by_writer(own);
                assert_eq!(
                    own.get(&t).map_or(0, Vec::len),
                    k,
                    "prefix scan of writer {t}"
                );
            }
            // The same snapshot read again gives the same answer.
            let again: Vec<_> = snapshot
                .iter(ks)
                .collect::<strata::Result<_>>()
                .expect("snapshot rescan");
            assert_eq!(forward, again, "a snapshot read twice differs");
        }
        prefix
    }

    /// Reader loop: alternates (a) snapshot checks and (b) long-lived iterator checks until the
    /// writers are done (and once more after).
    fn reader(&self) {
        let mut last = vec![0; WRITERS];
        loop {
            let done = self.writers_done.load(Ordering::Acquire);
            let snapshot = self.db.snapshot();
            let prefix = self.check_snapshot(&snapshot);
            drop(snapshot);
            for t in 0..WRITERS {
                assert!(
                    prefix[t] >= last[t],
                    "writer {t}: a later snapshot shows {} keys, an earlier one {}",
                    prefix[t],
                    last[t]
                );
            }
            last = prefix;
            self.snapshot_checks.fetch_add(1, Ordering::Relaxed);
            self.check_long_iterators();
            self.long_iter_checks.fetch_add(1, Ordering::Relaxed);
            if done {
                break;
            }
        }
    }

    /// Opens an iterator on each keyspace, reads a few pairs, waits until two more dumps have
    /// finished (or the writers are done, or a second passed), then reads the rest.
    fn check_long_iterators(&self) {
        let mut iters: Vec<_> = self.keyspaces.iter().map(Keyspace::iter).collect();
        let mut pairs: Vec<Vec<_>> = Vec::new();
        for iter in &mut iters {
            let first: Vec<_> = iter
                .by_ref()
                .take(5)
                .collect::<strata::Result<_>>()
                .expect("iterator before dumps");
            pairs.push(first);
        }
        let dumps = total_dumps(&self.db);
        let deadline = Instant::now() + Duration::from_secs(1);
        while total_dumps(&self.db) < dumps + 2
            && !self.writers_done.load(Ordering::Acquire)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        for (ks_index, (iter, mut pairs)) in iters.into_iter().zip(pairs).enumerate() {
            for item in iter {
                pairs.push(item.expect("iterator after dumps"));
            }
            let by_writer = split_by_writer(pairs);
            for t in Self::writers_of(ks_index) {
                let indexes = by_writer.get(&t).map_or(&[][..], Vec::as_slice);
                check_prefix(t, indexes, &self.valid[t], "long-lived iterator");
            }
        }
    }

    fn writer(&self, t: usize) {
        let ks = &self.keyspaces[keyspace_of(t)];
        let mut i = 0;
        while i < self.count {
            if i + 1 < self.count && starts_pair(t, i) {
                let mut batch = self.db.batch();
                batch
                    .put(ks, key(t, i), i.to_string())
                    .put(ks, key(t, i + 1), (i + 1).to_string());
                batch.commit().expect("batch commit");
                i += 2;
            } else {
                ks.put(key(t, i), i.to_string()).expect("put");
                i += 1;
            }
        }
    }

    fn flusher(&self) {
        while !self.writers_done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(40));
            self.db.flush().expect("flush");
        }
    }
}

fn check_final(db: &Db, count: usize, what: &str) {
    for t in 0..WRITERS {
        let ks = db
            .keyspace(&format!("ks{}", keyspace_of(t)), ks_options())
            .expect("keyspace");
        for i in 0..count {
            let got = ks.get(key(t, i)).expect("get");
            assert_eq!(
                got.as_deref(),
                Some(i.to_string().as_bytes()),
                "{what}: {}",
                key(t, i)
            );
        }
        let scanned: Vec<_> = ks
            .prefix(format!("w{t}/"))
            .collect::<strata::Result<_>>()
            .expect("scan");
        let by_writer = split_by_writer(scanned);
        let indexes = by_writer.get(&t).map_or(&[][..], Vec::as_slice);
        let valid = vec![true; count + 1];
        assert_eq!(check_prefix(t, indexes, &valid, what), count, "{what}");
    }
}

fn run(dir: &Path, fs: Option<&MemFs>) {
    let count = keys_per_writer();
    let started = Instant::now();
    let db = Db::open(dir, options(fs)).expect("open");
    let keyspaces = (0..2)
        .map(|i| db.keyspace(&format!("ks{i}"), ks_options()))
        .collect::<strata::Result<Vec<_>>>()
        .expect("create keyspaces");
    let shared = Arc::new(Shared {
        db: db.clone(),
        keyspaces,
        valid: (0..WRITERS).map(|t| valid_prefixes(t, count)).collect(),
        writers_done: AtomicBool::new(false),
        count,
        snapshot_checks: AtomicU64::new(0),
        long_iter_checks: AtomicU64::new(0),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || shared.writer(t))
        })
        .collect();
    let mut others = Vec::new();
    for _ in 0..READERS {
        let shared = Arc::clone(&shared);
        others.push(std::thread::spawn(move || shared.reader()));
    }
    {
        let shared = Arc::clone(&shared);
        others.push(std::thread::spawn(move || shared.flusher()));
    }
    for w in writers {
        w.join().expect("writer thread");
    }
    shared.writers_done.store(true, Ordering::Release);
    for o in others {
        o.join().expect("reader or flusher thread");
    }
    let snapshot_checks = shared.snapshot_checks.load(Ordering::Relaxed);
    let long_checks = shared.long_iter_checks.load(Ordering::Relaxed);
    assert!(
        snapshot_checks >= 2,
        "only {snapshot_checks} snapshot checks"
    );
    assert!(long_checks >= 1, "only {long_checks} long-iterator checks");

    check_final(&db, count, "after the run");
    let stats = db.stats();
    let dumps: u64 = stats.keyspaces.iter().map(|k| k.dumps).sum();
    let compactions: u64 = stats.keyspaces.iter().map(|k| k.compactions).sum();
    assert!(dumps > 0, "no dumps happened: {stats:?}");
    println!(
        "{}: {count} keys x {WRITERS} writers in {:.1} s; {snapshot_checks} snapshot checks, \
         {long_checks} long-iterator checks, {dumps} dumps, {compactions} compactions",
        if fs.is_some() { "MemFs" } else { "real fs" },
        started.elapsed().as_secs_f64()
    );
    drop(shared);
    db.close().expect("close");
    let db = Db::open(dir, options(fs)).expect("reopen");
    check_final(&db, count, "after reopen");
    db.close().expect("close");
}

#[test]
fn concurrent_readers_see_prefixes_on_the_real_fs() {
    let tmp = tempfile::tempdir().unwrap();
    run(&tmp.path().join("db"), None);
}

#[test]
fn concurrent_readers_see_prefixes_on_memfs() {
    let fs = MemFs::new();
    run(Path::new("/db"), Some(&fs));
}

#[test]
fn valid_prefixes_follow_the_writer_path() {
    let valid = valid_prefixes(0, 10);
    assert!(valid[0] && valid[10]);
    // Writer 0 pairs i where 7i % 5 == 1, i.e. i = 3, 8 (when reached).
    assert!(!valid[4], "3 and 4 are one batch");
    assert!(valid[3] && valid[5]);
    assert_eq!(valid.iter().filter(|v| **v).count(), 9);
}
