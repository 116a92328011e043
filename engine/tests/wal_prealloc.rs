//! The preallocated WAL (`engine/WAL.md` §5 and §10) through the public API.
//!
//! The writer keeps the active segment a step of zeros ahead of its records, so a commit
//! overwrites zeros instead of growing the file; a closed segment is cut back to its last
//! record. These tests check what that must not break: after a power loss into the zero tail
//! (torn or not) every acknowledged commit is back; a crash after any commit of a workload that
//! rotates segments loses nothing acknowledged and leaves every non-last segment ending exactly
//! at its last record; a reopened database writes after the logical end of the log, and the
//! next reopen sees both sessions; a cleanly closed database has no zero tail at all.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata::fs::{Fs, MemFs, RealFs};
use strata::inspect::{self, WalSegmentView};
use strata::{Db, Keyspace, KeyspaceOptions, Options, WalMode};

const DIR: &str = "/db";
/// The writer's preallocation step (`wal::writer::PREALLOCATION_STEP_BYTES`).
const STEP: u64 = 1 << 20;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(fs: Arc<dyn Fs>, mode: WalMode, segment_size: u64) -> Options {
    Options {
        wal_mode: mode,
        wal_segment_size_bytes: segment_size,
        fs,
        ..Options::default()
    }
}

fn open(fs: &MemFs, mode: WalMode, segment_size: u64) -> (Db, Keyspace) {
    let db = Db::open(DIR, options(Arc::new(fs.clone()), mode, segment_size)).expect("open");
    let ks = db
        .keyspace("ks", KeyspaceOptions::default())
        .expect("keyspace");
    (db, ks)
}

fn key(i: usize) -> Vec<u8> {
    format!("key{:05}", i % 700).into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}-{}", "v".repeat(i * 37 % 150)).into_bytes()
}

/// Puts `n` keys starting at `from` (one commit each), recording each acknowledged one.
fn put_range(ks: &Keyspace, model: &mut Model, from: usize, n: usize) {
    for i in from..from + n {
        ks.put(key(i), value(i)).expect("put");
        model.insert(key(i), value(i));
    }
}

fn read_all(ks: &Keyspace) -> Model {
    ks.range::<&[u8], _>(..)
        .map(|r| {
            let (k, v) = r.expect("scan");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn wal(fs: &dyn Fs) -> Vec<WalSegmentView> {
    inspect::read_wal(fs, Path::new(DIR)).expect("the WAL reads without corruption")
}

#[test]
fn a_zero_tail_after_power_loss_keeps_every_acknowledged_commit() {
    for (mode, torn) in [
        (WalMode::Fsync, None),
        (WalMode::Fsync, Some(1)),
        (WalMode::Fsync, Some(2)),
        (WalMode::Fsync, Some(3)),
        (WalMode::Write, None),
        (WalMode::Write, Some(4)),
    ] {
        let what = format!("{mode:?}, torn {torn:?}");
        let fs = MemFs::new();
        let (db, ks) = open(&fs, mode, 64 << 20);
        let mut model = Model::new();
        put_range(&ks, &mut model, 0, 300);
        if mode == WalMode::Write {
            db.sync().expect("sync");
        }
        let durable = model.clone();
        // Commits after the last sync in `Write` mode may or may not survive.
        put_range(&ks, &mut model, 300, 40);

        // The active segment is preallocated: its file is a whole step, its records far less.
        let segments = wal(&fs);
        let last = segments.last().expect("a segment");
        assert_eq!(last.size, STEP, "{what}");
        assert!(last.batches.len() >= 300, "{what}");
        match torn {
            None => fs.crash(),
            Some(seed) => fs.crash_tearing_last_write(seed),
        }
        drop((ks, db));

        // The crashed log reads as records then the end of the log (a torn write at most).
        let segments = wal(&fs);
        let last = segments.last().expect("a segment");
        assert_eq!(last.size, STEP, "{what}: the preallocated size was synced");
        if torn.is_none() {
            assert_eq!(last.torn_tail, None, "{what}: zeros are not a torn tail");
        }

        let (db, ks) = open(&fs, mode, 64 << 20);
        let got = read_all(&ks);
        if mode == WalMode::Fsync && torn.is_none() {
            assert_eq!(got, model, "{what}");
        } else {
            // Some prefix of the commits after the durable ones.
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| durable.get(*k) != Some(v))
                .collect();
            assert!(
                (300..=340).any(|n| {
                    let mut prefix = durable.clone();
                    for i in 300..n {
                        prefix.insert(key(i), value(i));
                    }
                    prefix == got
                }),
                "{what}: not a prefix ({} changed keys)",
                extra.len()
            );
            if mode == WalMode::Fsync {
                assert_eq!(
                    got, model,
                    "{what}: every commit was acknowledged after a sync"
                );
            }
        }
        db.close().expect("close");
    }
}

#[test]
fn a_crash_after_any_commit_loses_nothing_acknowledged() {
    const SEGMENT: u64 = 4 << 10;
    const COMMITS: usize = 120;
    for torn in [false, true] {
        let fs = MemFs::new();
        let (db, ks) = open(&fs, WalMode::Fsync, SEGMENT);
        let mut crashed = Vec::new();
        let mut model = Model::new();
        let mut rotations = 0;
        let mut segments_before = wal(&fs).len();
        for i in 0..COMMITS {
            put_range(&ks, &mut model, i * 3, 1 + i % 3);
            let copy = fs.fork();
            if torn {
                copy.crash_tearing_last_write(i as u64);
            } else {
                copy.crash();
            }
            let segments = wal(&copy).len();
            if segments > segments_before {
                rotations += 1;
                segments_before = segments;
            }
            crashed.push((copy, model.clone()));
        }
        db.close().expect("close");
        assert!(rotations >= 4, "the workload must rotate: {rotations}");
        for (i, (copy, model)) in crashed.into_iter().enumerate() {
            // Every segment but the last ends at its last record: a zero tail there would be
            // corruption, and `wal` insists on none.
            let segments = wal(&copy);
            for s in &segments[..segments.len() - 1] {
                // At most one commit past the segment size, never a preallocated step.
                assert!(
                    s.size < SEGMENT + 1024,
                    "commit {i}: segment {} is {}",
                    s.id,
                    s.size
                );
                assert_eq!(s.torn_tail, None);
            }
            let (db, ks) = open(&copy, WalMode::Fsync, SEGMENT);
            assert_eq!(read_all(&ks), model, "torn {torn}: crash after commit {i}");
            // The recovered segment is no longer the last one once the next session writes.
            let mut model = model;
            put_range(&ks, &mut model, 100_000, 1);
            db.close().expect("close");
            let (db, ks) = open(&copy, WalMode::Fsync, SEGMENT);
            assert_eq!(read_all(&ks), model, "torn {torn}: reopen after commit {i}");
            db.close().expect("close");
        }
    }
}

#[test]
fn a_reopened_database_writes_after_the_logical_end_and_the_next_reopen_sees_both() {
    let fs = MemFs::new();
    let mut model = Model::new();
    // Session 1 leaves its segment with a zero tail (power loss, everything synced).
    let (db, ks) = open(&fs, WalMode::Fsync, 64 << 20);
    put_range(&ks, &mut model, 0, 50);
    fs.crash();
    drop((ks, db));
    assert_eq!(wal(&fs).len(), 1);

    // Session 2 cuts it at its last record and goes on in a new segment.
    let (db, ks) = open(&fs, WalMode::Fsync, 64 << 20);
    assert_eq!(read_all(&ks), model);
    put_range(&ks, &mut model, 1000, 50);
    let segments = wal(&fs);
    assert_eq!(segments.len(), 2);
    assert!(
        segments[0].size < 50 * 300 && segments[0].batches.len() == 50,
        "session 1's segment ends at its last record: {} bytes",
        segments[0].size
    );
    assert_eq!(
        segments[1].size, STEP,
        "session 2's segment is preallocated"
    );
    fs.crash_tearing_last_write(7);
    drop((ks, db));

    // Session 3 sees both sessions' commits (all acknowledged in Fsync mode).
    let (db, ks) = open(&fs, WalMode::Fsync, 64 << 20);
    assert_eq!(read_all(&ks), model);
    put_range(&ks, &mut model, 2000, 10);
    db.close().expect("close");
    let (db, ks) = open(&fs, WalMode::Write, 64 << 20);
    assert_eq!(read_all(&ks), model);
    db.close().expect("close");
}

#[test]
fn on_disk_the_active_segment_is_preallocated_and_a_closed_one_is_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let segment_files = || {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        files.sort();
        files
    };
    let mut model = Model::new();
    for session in 0..3 {
        let db = Db::open(&dir, options(Arc::clone(&fs), WalMode::Fsync, 64 << 20)).expect("open");
        let ks = db
            .keyspace("ks", KeyspaceOptions::default())
            .expect("keyspace");
        assert_eq!(read_all(&ks), model, "session {session}");
        put_range(&ks, &mut model, session * 100, 100);
        let active = segment_files().pop().expect("a segment");
        assert_eq!(std::fs::metadata(&active).expect("stat").len(), STEP);
        db.close().expect("close");
        let segments = inspect::read_wal(&RealFs, &dir).expect("read the WAL");
        for (file, view) in segment_files().iter().zip(&segments) {
            let len = std::fs::metadata(file).expect("stat").len();
            assert!(len < STEP, "{} is {len} bytes after close", file.display());
            let bytes = std::fs::read(file).expect("read");
            assert_ne!(bytes.last(), Some(&0), "ends at a record, not in zeros");
            assert_eq!(view.size, len);
            assert_eq!(view.torn_tail, None);
        }
    }
}
