//! A failed fsync poisons the database; locks and close are enforced.
//!
//! - After a WAL sync fails (`FaultKind::SyncFailure` on `MemFs`, `WalMode::Fsync`), the failing
//!   commit returns the I/O error and every later write (put, delete, batch, sync, flush) returns
//!   `Error::Poisoned` naming the original failure, without touching the file system (the
//!   operation counter does not move: an fsync is never retried). Reads keep working. After a
//!   simulated power loss and a reopen, every commit acknowledged before the failure is there
//!   and the failed one is there entirely or not at all.
//! - The same with concurrent committers (group commit): when the disk fails under them, every
//!   commit that returned `Ok` survives the crash.
//! - A failed dump poisons the database the same way.
//! - A poisoned database also refuses metadata writes (creating or dropping a keyspace), and
//!   `Db::close` of a poisoned database reports the poison instead of `Ok` (without a WAL, the
//!   skipped final dump loses acknowledged writes).
//! - A second `Db::open` of an open directory is `Error::Locked` (on `MemFs` and on the real
//!   file system, also through another spelling of the path).
//! - After `Db::close`, clones of the handle and keyspace handles fail writes with
//!   `Error::Closed`, the directory can be reopened while they live, and dropping them later does
//!   not disturb the new instance.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use strata::fs::{FaultKind, MemFs};
use strata::{Db, Error, Keyspace, KeyspaceOptions, Options, WalMode};

const DIR: &str = "/db";

fn options(fs: &MemFs) -> Options {
    Options {
        wal_mode: WalMode::Fsync,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

fn key(i: usize) -> String {
    format!("key{i:05}")
}

fn value(i: usize) -> String {
    format!("value-{i}")
}

fn open_ks(db: &Db, name: &str) -> Keyspace {
    db.keyspace(name, KeyspaceOptions::default())
        .expect("open keyspace")
}

fn assert_poisoned(result: strata::Result<()>, original: &str, what: &str) {
    match result {
        Err(Error::Poisoned { reason }) => assert!(
            reason.contains(original),
            "{what}: the poison reason {reason:?} does not mention {original:?}"
        ),
        other => panic!("{what}: expected Error::Poisoned, got {other:?}"),
    }
}

/// Checks after a crash and reopen that every acknowledged key is present and that each
/// unacknowledged one is present with its value or absent.
fn check_after_crash(fs: &MemFs, acked: &[usize], maybe: &[usize]) {
    let db = Db::open(DIR, options(fs)).unwrap_or_else(|e| panic!("reopen after crash: {e}"));
    let ks = open_ks(&db, "t");
    for &i in acked {
        assert_eq!(
            ks.get(key(i)).expect("get").as_deref(),
            Some(value(i).as_bytes()),
            "acknowledged {} lost",
            key(i)
        );
    }
    for &i in maybe {
        let got = ks.get(key(i)).expect("get");
        assert!(
            got.is_none() || got.as_deref() == Some(value(i).as_bytes()),
            "unacknowledged {} has a wrong value {got:?}",
            key(i)
        );
    }
    // A reopened database is no longer poisoned.
    ks.put("after-reopen", "ok")
        .expect("write after reopening a poisoned database");
    db.sync().expect("sync after reopening a poisoned database");
}

#[test]
fn failed_wal_sync_poisons_writes_but_not_reads() {
    let fs = MemFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    let ks = open_ks(&db, "t");
    let mut acked = Vec::new();
    let mut i = 0;
    while i < 20 {
        ks.put(key(i), value(i)).unwrap();
        acked.push(i);
        i += 1;
    }
    // A sync failure at the next op(s), one position further each time, until a commit fails.
    // (Op +0 of a commit is its WAL write; the sync comes right after.)
    let mut failure = None;
    for k in 1..10 {
        fs.fail_at(fs.op_count() + k, FaultKind::SyncFailure, false);
        match ks.put(key(i), value(i)) {
            Ok(()) => acked.push(i),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        fs.clear_faults();
        i += 1;
    }
    let failed = i;
    let failure = failure.expect("no commit failed");
    fs.clear_faults();
    match &failure {
        Error::Io { source, .. } => assert!(
            source.to_string().contains("injected sync failure"),
            "the failing commit should report the sync failure: {failure}"
        ),
        other => panic!("expected the sync's Error::Io, got {other:?}"),
    }

    // Every later write is refused, without any file-system operation.
    let ops = fs.op_count();
    let original = "injected sync failure";
    assert_poisoned(ks.put("new", "x"), original, "put");
    assert_poisoned(ks.delete(key(0)), original, "delete");
    let mut batch = db.batch();
    batch.put(&ks, "b1", "x").put(&ks, "b2", "y");
    assert_poisoned(batch.commit(), original, "batch");
    assert_poisoned(db.sync(), original, "sync");
    assert_poisoned(db.flush(), original, "flush");
    assert_eq!(
        fs.op_count(),
        ops,
        "a refused write touched the file system"
    );

    // Reads still work, and do not show the refused writes.
    for &j in &acked {
        assert_eq!(
            ks.get(key(j)).unwrap().as_deref(),
            Some(value(j).as_bytes())
        );
    }
    assert_eq!(ks.get("new").unwrap(), None);
    let scanned: Vec<_> = ks
        .iter()
        .map(|r| r.map(|(k, _)| k.to_vec()))
        .collect::<strata::Result<_>>()
        .unwrap();
    assert!(scanned.len() >= acked.len(), "scan: {}", scanned.len());
    let snapshot = db.snapshot();
    assert!(snapshot.get(&ks, key(0)).unwrap().is_some());
    let _ = db.stats();

    // Power loss, then recovery: everything acknowledged is there.
    fs.crash();
    drop((snapshot, ks, db));
    check_after_crash(&fs, &acked, &[failed]);
}

#[test]
fn group_commit_failure_loses_no_acknowledged_commit() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 10_000;
    let fs = MemFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    let ks = open_ks(&db, "t");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ks, acked, failed) = (ks.clone(), Arc::clone(&acked), Arc::clone(&failed));
            let started = Arc::clone(&started);
            std::thread::spawn(move || {
                for n in 0..PER_THREAD {
                    let i = t * PER_THREAD + n;
                    match ks.put(key(i), value(i)) {
                        Ok(()) => acked.lock().expect("acked list").push(i),
                        Err(e) => {
                            failed.lock().expect("failed list").push((i, e.to_string()));
                            return;
                        }
                    }
                    if n == 20 {
                        started.store(true, Ordering::Release);
                    }
                }
            })
        })
        .collect();
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    // The disk dies: every operation from now on fails.
    fs.fail_at(fs.op_count(), FaultKind::SyncFailure, true);
    for t in threads {
        t.join().expect("writer thread");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    assert_eq!(failed.len(), THREADS, "every writer must see the failure");
    assert!(
        acked.len() < THREADS * PER_THREAD,
        "the failure came too late"
    );
    assert!(matches!(ks.put("x", "y"), Err(Error::Poisoned { .. })));
    // Reads work from memory even though the disk is gone.
    if let Some(&i) = acked.last() {
        assert_eq!(
            ks.get(key(i)).unwrap().as_deref(),
            Some(value(i).as_bytes())
        );
    }
    fs.crash();
    fs.clear_faults();
    drop((ks, db));
    let maybe: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
    check_after_crash(&fs, &acked, &maybe);
}

#[test]
fn failed_dump_poisons_and_loses_nothing() {
    let fs = MemFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    let ks = open_ks(&db, "t");
    let acked: Vec<usize> = (0..50).collect();
    for &i in &acked {
        ks.put(key(i), value(i)).unwrap();
    }
    // The dump's first file-system operation fails with EIO.
    fs.fail_at(fs.op_count(), FaultKind::Eio, true);
    let flushed = db.flush();
    fs.clear_faults();
    assert!(
        matches!(flushed, Err(Error::Poisoned { ref reason }) if reason.contains("injected EIO")),
        "flush with a failing dump: {flushed:?}"
    );
    assert_poisoned(
        ks.put("new", "x"),
        "injected EIO",
        "put after a failed dump",
    );
    for &i in &acked {
        assert_eq!(
            ks.get(key(i)).unwrap().as_deref(),
            Some(value(i).as_bytes())
        );
    }
    fs.crash();
    drop((ks, db));
    check_after_crash(&fs, &acked, &[]);
}

/// A poisoned database is documented to refuse writes until reopened; creating and dropping
/// keyspaces are writes (to the metadata log) too.
#[test]
fn poisoned_database_refuses_metadata_writes() {
    let fs = MemFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    let ks = open_ks(&db, "t");
    ks.put(key(0), value(0)).unwrap();
    fs.fail_at(fs.op_count() + 1, FaultKind::SyncFailure, false);
    assert!(
        ks.put(key(1), value(1)).is_err(),
        "the sync failure must fail the commit"
    );
    fs.clear_faults();
    assert_poisoned(ks.put(key(2), value(2)), "sync failure", "put");
    // Opening an existing keyspace is not a write.
    assert_eq!(
        open_ks(&db, "t").get(key(0)).unwrap().as_deref(),
        Some(value(0).as_bytes())
    );
    let ops = fs.op_count();
    let created = db
        .keyspace("created-after-poison", KeyspaceOptions::default())
        .map(drop);
    let create_ops = fs.op_count() - ops;
    let dropped = db.drop_keyspace("t");
    let drop_ops = fs.op_count() - ops - create_ops;
    let outcome = format!(
        "create keyspace: {created:?} ({create_ops} fs ops); drop keyspace: {dropped:?} \
         ({drop_ops} fs ops)"
    );
    assert!(
        matches!(created, Err(Error::Poisoned { .. }))
            && matches!(dropped, Err(Error::Poisoned { .. }))
            && create_ops + drop_ops == 0,
        "a poisoned database accepted a metadata write: {outcome}"
    );
    assert_eq!(
        ks.get(key(0)).unwrap().as_deref(),
        Some(value(0).as_bytes())
    );
}

#[test]
fn second_open_is_locked_on_memfs() {
    let fs = MemFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    for spelling in [DIR, "/db/", "/db/."] {
        match Db::open(spelling, options(&fs)) {
            Err(Error::Locked { path }) => {
                assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("LOCK"));
            }
            other => panic!("second open of {spelling}: expected Error::Locked, got {other:?}"),
        }
    }
    db.close().unwrap();
    Db::open(DIR, options(&fs)).unwrap();
}

#[test]
fn second_open_is_locked_on_the_real_fs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir, Options::default()).unwrap();
    let other_spelling: PathBuf = dir.join(".");
    for spelling in [&dir, &other_spelling] {
        match Db::open(spelling, Options::default()) {
            Err(Error::Locked { path }) => {
                assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("LOCK"));
            }
            other => panic!("second open of {spelling:?}: expected Error::Locked, got {other:?}"),
        }
    }
    let ks = open_ks(&db, "t");
    ks.put("k", "v").unwrap();
    drop(ks);
    db.close().unwrap();
    let db = Db::open(&dir, Options::default()).unwrap();
    assert_eq!(
        open_ks(&db, "t").get("k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[test]
fn writes_through_clones_fail_after_close() {
    let fs = MemFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    let clone = db.clone();
    let ks = open_ks(&db, "t");
    ks.put("k", "v").unwrap();
    db.close().unwrap();

    let closed = |r: strata::Result<()>, what: &str| {
        assert!(
            matches!(r, Err(Error::Closed)),
            "{what} after close: expected Error::Closed, got {r:?}"
        );
    };
    closed(ks.put("k2", "v2"), "put");
    closed(ks.delete("k"), "delete");
    let mut batch = clone.batch();
    batch.put(&ks, "k3", "v3");
    closed(batch.commit(), "batch");
    closed(clone.sync(), "sync");
    closed(clone.flush(), "flush");
    closed(
        clone
            .keyspace("other", KeyspaceOptions::default())
            .map(drop),
        "create keyspace",
    );
    closed(clone.drop_keyspace("t"), "drop keyspace");
    // Reads after close must not panic (they may work or report Closed).
    match ks.get("k") {
        Ok(v) => assert_eq!(v.as_deref(), Some(&b"v"[..])),
        Err(e) => assert!(matches!(e, Error::Closed), "get after close: {e:?}"),
    }

    // The directory is free again although handles of the closed instance live on.
    let reopened = Db::open(DIR, options(&fs)).unwrap();
    let ks2 = open_ks(&reopened, "t");
    assert_eq!(ks2.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    // Dropping the old handles must not close, unlock or otherwise disturb the new instance.
    drop((ks, clone));
    ks2.put("k4", "v4").unwrap();
    assert!(matches!(
        Db::open(DIR, options(&fs)),
        Err(Error::Locked { .. })
    ));
    drop(ks2);
    reopened.close().unwrap();
    fs.crash();
    let db = Db::open(DIR, options(&fs)).unwrap();
    assert_eq!(
        open_ks(&db, "t").get("k4").unwrap().as_deref(),
        Some(&b"v4"[..])
    );
}

/// `Db::close` documents that nothing acknowledged is lost by a clean close and that it returns
/// the final sync's error; on a poisoned database it skips the final sync (and, without a WAL,
/// the final dump), so it must not report success. Without a WAL this is data loss behind an
/// `Ok`: the acknowledged write is gone after a clean close and reopen, with no crash.
#[test]
fn close_of_a_poisoned_database_reports_the_poison() {
    let mut problems = Vec::new();
    for mode in [WalMode::Fsync, WalMode::Write, WalMode::None] {
        let fs = MemFs::new();
        let options = Options {
            wal_mode: mode,
            ..options(&fs)
        };
        let db = Db::open(DIR, options.clone()).unwrap();
        let ks = open_ks(&db, "t");
        ks.put(key(0), value(0)).unwrap();
        // A failing dump poisons the database in every mode.
        fs.fail_at(fs.op_count(), FaultKind::Eio, true);
        assert!(db.flush().is_err(), "{mode:?}: flush with a failing disk");
        fs.clear_faults();
        assert!(ks.get(key(0)).unwrap().is_some());
        drop(ks);
        let closed = db.close();
        if !matches!(closed, Err(Error::Poisoned { .. })) {
            // No crash: reopen and see whether the acknowledged write survived.
            let db = Db::open(DIR, options).unwrap();
            let survived = open_ks(&db, "t").get(key(0)).unwrap().is_some();
            problems.push(format!(
                "{mode:?}: close returned {closed:?}; the acknowledged write {} the reopen",
                if survived {
                    "survived"
                } else {
                    "did NOT survive"
                }
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
