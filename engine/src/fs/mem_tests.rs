//! Tests of the in-memory file system: its crash model, fault injection and namespace.

use super::super::write_atomic;
use super::*;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A file system with `/db` and a durable, empty file for each name given.
fn setup(names: &[&str]) -> MemFs {
    let fs = MemFs::new();
    fs.create_dir_all(&p("/db")).unwrap();
    for name in names {
        drop(fs.create_new(&Path::new("/db").join(name)).unwrap());
    }
    fs.sync_dir(&p("/db")).unwrap();
    fs
}

/// Creates `path` with `bytes`, synced, and makes the entry durable.
fn durable_file(fs: &MemFs, path: &str, bytes: &[u8]) {
    let mut f = fs.create_new(&p(path)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(super::super::parent(&p(path))).unwrap();
}

fn inode_count(fs: &MemFs) -> usize {
    fs.lock_state().inodes.len()
}

#[test]
fn unsynced_appends_are_lost_synced_data_stays() {
    let fs = setup(&["wal"]);
    let mut f = fs.open_append(&p("/db/wal")).unwrap();
    f.write_all(b"abc").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"def").unwrap();
    assert_eq!(f.len(), 6);
    assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"abcdef");
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"abc");
    assert_eq!(fs.file_len(&p("/db/wal")).unwrap(), 3);
    // Appending after the crash continues from the durable length.
    let mut g = fs.open_append(&p("/db/wal")).unwrap();
    assert_eq!(g.len(), 3);
    g.write_all(b"xy").unwrap();
    assert_eq!(g.len(), 5);
    assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"abcxy");
}

#[test]
fn create_needs_sync_dir_to_survive_a_crash() {
    let fs = setup(&[]);
    let mut f = fs.create_new(&p("/db/a")).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_data().unwrap();
    drop(f);
    assert!(fs.exists(&p("/db/a")));
    fs.crash();
    assert!(!fs.exists(&p("/db/a")));
    assert_eq!(
        fs.read_file(&p("/db/a")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );

    durable_file(&fs, "/db/b", b"data");
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"data");
    // Dropped inodes are freed.
    assert_eq!(inode_count(&fs), 1);
}

#[test]
fn sync_dir_only_covers_its_own_directory() {
    let fs = MemFs::new();
    fs.create_dir_all(&p("/db/sub")).unwrap();
    durable_file(&fs, "/db/sub/x", b"1");
    drop(fs.create_new(&p("/db/y")).unwrap());
    fs.sync_dir(&p("/db/sub")).unwrap();
    fs.crash();
    assert!(fs.exists(&p("/db/sub/x")));
    assert!(!fs.exists(&p("/db/y")));
}

#[test]
fn rename_without_sync_dir_reverts() {
    let fs = setup(&[]);
    durable_file(&fs, "/db/a", b"new");
    durable_file(&fs, "/db/b", b"old");
    fs.rename(&p("/db/a"), &p("/db/b")).unwrap();
    assert!(!fs.exists(&p("/db/a")));
    assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"new");
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/a")).unwrap(), b"new");
    assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"old");

    // Rename to a fresh name: the new name vanishes.
    fs.rename(&p("/db/a"), &p("/db/c")).unwrap();
    fs.crash();
    assert!(fs.exists(&p("/db/a")));
    assert!(!fs.exists(&p("/db/c")));
}

#[test]
fn rename_with_sync_dir_is_durable_and_replaces_the_target() {
    let fs = setup(&[]);
    durable_file(&fs, "/db/a", b"new");
    durable_file(&fs, "/db/b", b"old");
    fs.rename(&p("/db/a"), &p("/db/b")).unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash();
    assert!(!fs.exists(&p("/db/a")));
    assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"new");
    assert_eq!(fs.files(), vec![p("/db/b")]);
    assert_eq!(inode_count(&fs), 1, "the replaced inode is freed");
}

#[test]
fn rename_moves_the_inode_and_open_handles_follow() {
    let fs = setup(&[]);
    let mut f = fs.create_new(&p("/db/a")).unwrap();
    f.write_all(b"12").unwrap();
    fs.rename(&p("/db/a"), &p("/db/b")).unwrap();
    f.write_all(b"34").unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"1234");
}

#[test]
fn cross_directory_rename_is_durable_per_directory() {
    let fs = MemFs::new();
    fs.create_dir_all(&p("/a")).unwrap();
    fs.create_dir_all(&p("/b")).unwrap();
    durable_file(&fs, "/a/f", b"x");
    fs.rename(&p("/a/f"), &p("/b/f")).unwrap();
    fs.sync_dir(&p("/b")).unwrap();
    fs.crash();
    // Only the target was synced: both names survive (like a hard link).
    assert!(fs.exists(&p("/a/f")));
    assert!(fs.exists(&p("/b/f")));
    fs.remove_file(&p("/a/f")).unwrap();
    fs.sync_dir(&p("/a")).unwrap();
    fs.crash();
    assert_eq!(fs.files(), vec![p("/b/f")]);
}

#[test]
fn remove_without_sync_dir_reverts() {
    let fs = setup(&[]);
    durable_file(&fs, "/db/a", b"keep");
    fs.remove_file(&p("/db/a")).unwrap();
    assert!(!fs.exists(&p("/db/a")));
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/a")).unwrap(), b"keep");

    fs.remove_file(&p("/db/a")).unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash();
    assert!(!fs.exists(&p("/db/a")));
    assert_eq!(inode_count(&fs), 0);
}

#[test]
fn unlinked_file_stays_writable_until_the_handle_drops() {
    let fs = setup(&[]);
    let mut f = fs.create_new(&p("/db/a")).unwrap();
    fs.remove_file(&p("/db/a")).unwrap();
    f.write_all(b"still fine").unwrap();
    f.sync_data().unwrap();
    assert_eq!(inode_count(&fs), 1);
    drop(f);
    assert_eq!(inode_count(&fs), 0);
}

#[test]
fn write_atomic_survives_a_crash() {
    let fs = setup(&[]);
    write_atomic(&fs, &p("/db/meta"), b"v1").unwrap();
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/meta")).unwrap(), b"v1");
    write_atomic(&fs, &p("/db/meta"), b"v2").unwrap();
    fs.crash_tearing_last_write(7);
    assert_eq!(fs.read_file(&p("/db/meta")).unwrap(), b"v2");
    assert_eq!(fs.files(), vec![p("/db/meta")]);
}

#[test]
fn write_atomic_interrupted_at_any_op_leaves_old_or_new() {
    // Fail each operation of write_atomic in turn, crash, and check all-or-nothing.
    for kind in [
        FaultKind::Eio,
        FaultKind::NoSpace,
        FaultKind::ShortWrite,
        FaultKind::SyncFailure,
    ] {
        for i in 0..20 {
            let fs = setup(&[]);
            write_atomic(&fs, &p("/db/meta"), b"old contents").unwrap();
            fs.fail_at(fs.op_count() + i, kind, false);
            let res = write_atomic(&fs, &p("/db/meta"), b"new contents");
            fs.clear_faults();
            fs.crash_tearing_last_write(i);
            let got = fs.read_file(&p("/db/meta")).unwrap();
            if res.is_ok() {
                assert_eq!(got, b"new contents", "{kind:?} at {i}");
            } else {
                assert!(
                    got == b"old contents" || got == b"new contents",
                    "{kind:?} at {i}: {got:?}"
                );
            }
        }
    }
}

#[test]
fn handles_opened_before_a_crash_are_dead() {
    let fs = setup(&["a"]);
    let mut f = fs.open_append(&p("/db/a")).unwrap();
    let mut g = fs.create_new(&p("/db/b")).unwrap();
    fs.crash();
    assert!(f.write_all(b"x").is_err());
    assert!(f.sync_data().is_err());
    assert!(g.write(b"x").is_err());
    assert_eq!(fs.file_len(&p("/db/a")).unwrap(), 0);
    drop(f);
    drop(g);
    // New handles work.
    let mut h = fs.open_append(&p("/db/a")).unwrap();
    h.write_all(b"ok").unwrap();
    h.sync_data().unwrap();
    assert_eq!(fs.read_file(&p("/db/a")).unwrap(), b"ok");
}

#[test]
fn torn_crash_keeps_a_prefix_of_the_unsynced_tail() {
    let run = |seed: u64| {
        let fs = setup(&["wal"]);
        let mut f = fs.open_append(&p("/db/wal")).unwrap();
        f.write_all(b"synced|").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"0123456789abcdefghijklmnopqrstuvwxyz")
            .unwrap();
        fs.crash_tearing_last_write(seed);
        fs.read_file(&p("/db/wal")).unwrap()
    };
    let full = b"synced|0123456789abcdefghijklmnopqrstuvwxyz";
    let mut lens = BTreeSet::new();
    for seed in 0..64 {
        let got = run(seed);
        assert!(got.len() >= 7 && full.starts_with(&got), "{got:?}");
        assert_eq!(got, run(seed), "deterministic for seed {seed}");
        lens.insert(got.len());
    }
    assert!(
        lens.len() > 5,
        "seeds should tear at various points: {lens:?}"
    );
    assert!(lens.iter().any(|&l| l > 7 && l < full.len()));
}

#[test]
fn torn_crash_makes_the_kept_prefix_durable() {
    let fs = setup(&["wal"]);
    let mut f = fs.open_append(&p("/db/wal")).unwrap();
    f.write_all(&[1; 100]).unwrap();
    fs.crash_tearing_last_write(3);
    let len = fs.file_len(&p("/db/wal")).unwrap();
    fs.crash();
    assert_eq!(fs.file_len(&p("/db/wal")).unwrap(), len);
}

#[test]
fn truncate_cuts_and_is_durable() {
    let fs = setup(&["wal"]);
    let mut f = fs.open_append(&p("/db/wal")).unwrap();
    f.write_all(b"good|torn").unwrap();
    drop(f);
    fs.truncate(&p("/db/wal"), 4).unwrap();
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"good");
    fs.truncate(&p("/db/wal"), 6).unwrap();
    assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"good\0\0");
}

/// Runs `op` with a fault at the next operation and checks it fails with `expect`.
fn assert_fault<T>(
    fs: &MemFs,
    kind: FaultKind,
    expect: io::ErrorKind,
    op: impl FnOnce() -> io::Result<T>,
) {
    fs.fail_at(fs.op_count(), kind, false);
    let Err(err) = op() else {
        panic!("{kind:?} did not fire")
    };
    assert_eq!(err.kind(), expect, "{kind:?}: {err}");
    fs.clear_faults();
}

#[test]
fn each_fault_fires_at_exactly_the_chosen_op() {
    for kind in [
        FaultKind::Eio,
        FaultKind::NoSpace,
        FaultKind::ShortWrite,
        FaultKind::SyncFailure,
    ] {
        let fs = setup(&[]);
        let start = fs.op_count();
        fs.fail_at(start + 2, kind, false);
        let mut f = fs.create_new(&p("/db/f")).unwrap(); // op start
        f.write_all(b"ab").unwrap(); // op start + 1
        assert!(fs.file_len(&p("/db/f")).is_err()); // op start + 2
        assert_eq!(fs.op_count(), start + 3);
        f.write_all(b"cd").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/db")).unwrap();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"abcd");
    }
}

#[test]
fn fault_kinds_produce_their_errors() {
    let fs = setup(&["f"]);
    let msg = |e: io::Error| e.to_string();
    fs.fail_at(fs.op_count(), FaultKind::Eio, false);
    let e = fs.read_file(&p("/db/f")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Other);
    assert_eq!(msg(e), "injected EIO");
    assert_fault(&fs, FaultKind::NoSpace, io::ErrorKind::StorageFull, || {
        fs.create_new(&p("/db/g"))
    });
    assert!(!fs.exists(&p("/db/g")), "a failed create applies nothing");
    // ShortWrite and SyncFailure on unrelated ops behave like EIO.
    for kind in [FaultKind::ShortWrite, FaultKind::SyncFailure] {
        fs.fail_at(fs.op_count(), kind, false);
        let e = fs.rename(&p("/db/f"), &p("/db/h")).unwrap_err();
        assert_eq!(msg(e), "injected EIO");
        assert!(fs.exists(&p("/db/f")) && !fs.exists(&p("/db/h")));
    }
    fs.fail_at(fs.op_count(), FaultKind::SyncFailure, false);
    let e = fs.sync_dir(&p("/db")).unwrap_err();
    assert_eq!(msg(e), "injected sync failure");
    // exists turns a fault into `false`, like Path::exists.
    fs.fail_at(fs.op_count(), FaultKind::Eio, false);
    assert!(!fs.exists(&p("/db/f")));
    assert!(fs.exists(&p("/db/f")));
}

#[test]
fn failed_ops_apply_nothing() {
    let fs = setup(&["f", "g"]);
    durable_file(&fs, "/db/d", b"data");
    let eio = io::ErrorKind::Other;
    assert_fault(&fs, FaultKind::Eio, eio, || {
        fs.rename(&p("/db/f"), &p("/db/g"))
    });
    assert_fault(&fs, FaultKind::Eio, eio, || fs.remove_file(&p("/db/f")));
    assert_fault(&fs, FaultKind::Eio, eio, || fs.truncate(&p("/db/d"), 1));
    assert_fault(&fs, FaultKind::Eio, eio, || fs.create_dir_all(&p("/x")));
    assert_fault(&fs, FaultKind::Eio, eio, || fs.lock(&p("/db/LOCK")));
    assert_eq!(fs.files(), vec![p("/db/d"), p("/db/f"), p("/db/g")]);
    assert_eq!(fs.read_file(&p("/db/d")).unwrap(), b"data");
    assert!(!fs.exists(&p("/x")));
    let mut w = fs.open_append(&p("/db/d")).unwrap();
    assert_fault(&fs, FaultKind::NoSpace, io::ErrorKind::StorageFull, || {
        w.write(b"more")
    });
    assert_eq!(w.len(), 4);
    assert_eq!(fs.read_file(&p("/db/d")).unwrap(), b"data");
    drop(w);
    assert!(
        fs.lock(&p("/db/LOCK")).is_ok(),
        "the failed lock held nothing"
    );
}

#[test]
fn short_write_stores_half_the_buffer() {
    let fs = setup(&["f"]);
    let mut f = fs.open_append(&p("/db/f")).unwrap();
    fs.fail_at(fs.op_count(), FaultKind::ShortWrite, false);
    let e = f.write_all(b"0123456789").unwrap_err();
    assert_eq!(e.to_string(), "injected short write");
    assert_eq!(f.len(), 5);
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"01234");
    f.write_all(b"!").unwrap();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"01234!");
}

#[test]
fn sync_failure_makes_nothing_durable() {
    let fs = setup(&["f"]);
    let mut f = fs.open_append(&p("/db/f")).unwrap();
    f.write_all(b"unsynced").unwrap();
    fs.fail_at(fs.op_count(), FaultKind::SyncFailure, false);
    let e = f.sync_data().unwrap_err();
    assert_eq!(e.to_string(), "injected sync failure");
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"");

    // A failed sync_dir leaves the entry non-durable.
    drop(fs.create_new(&p("/db/g")).unwrap());
    assert_fault(&fs, FaultKind::SyncFailure, io::ErrorKind::Other, || {
        fs.sync_dir(&p("/db"))
    });
    fs.crash();
    assert!(!fs.exists(&p("/db/g")));

    // A failed truncate neither cuts nor syncs.
    let mut f = fs.open_append(&p("/db/f")).unwrap();
    f.write_all(b"abcdef").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"gh").unwrap();
    drop(f);
    assert_fault(&fs, FaultKind::SyncFailure, io::ErrorKind::Other, || {
        fs.truncate(&p("/db/f"), 7)
    });
    assert_eq!(fs.file_len(&p("/db/f")).unwrap(), 8);
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"abcdef");
}

#[test]
fn persistent_faults_keep_failing_until_cleared() {
    let fs = setup(&["f"]);
    let at = fs.op_count() + 1;
    fs.fail_at(at, FaultKind::NoSpace, true);
    fs.file_len(&p("/db/f")).unwrap();
    for _ in 0..5 {
        assert_eq!(
            fs.file_len(&p("/db/f")).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
    }
    let mut f = fs.open_append(&p("/db/f"));
    assert!(f.is_err());
    // Faults survive a crash.
    fs.crash();
    assert!(fs.read_file(&p("/db/f")).is_err());
    fs.clear_faults();
    f = fs.open_append(&p("/db/f"));
    f.unwrap().write_all(b"ok").unwrap();
    // A persistent fault scheduled in the past fails everything from now on.
    fs.fail_at(0, FaultKind::Eio, true);
    assert!(fs.read_file(&p("/db/f")).is_err());
    fs.clear_faults();
    // A one-shot fault in the past never fires.
    fs.fail_at(0, FaultKind::Eio, false);
    assert!(fs.read_file(&p("/db/f")).is_ok());
}

#[test]
fn every_call_counts_as_one_op() {
    let fs = MemFs::new();
    assert_eq!(fs.op_count(), 0);
    fs.create_dir_all(&p("d")).unwrap();
    let mut f = fs.create_new(&p("d/f")).unwrap();
    f.write_all(b"x").unwrap();
    f.flush().unwrap();
    let _ = f.len();
    f.sync_data().unwrap();
    assert!(fs.exists(&p("d/f")));
    assert!(fs.read_file(&p("d/nope")).is_err());
    assert_eq!(fs.op_count(), 6);
    fs.crash();
    fs.corrupt(&p("d/f"), 0, 1).unwrap_or(());
    let _ = fs.files();
    assert_eq!(fs.op_count(), 6);
}

#[test]
fn lock_is_exclusive_and_released_on_drop_and_crash() {
    let fs = setup(&[]);
    let other = fs.clone();
    let lock = fs.lock(&p("/db/LOCK")).unwrap();
    assert_eq!(
        other.lock(&p("/db/LOCK")).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(
        other.lock(&p("/db/./LOCK")).unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "same path spelled differently"
    );
    // Another path is another lock.
    let _second = other.lock(&p("/db/LOCK2")).unwrap();
    drop(lock);
    let lock = other.lock(&p("/db/LOCK")).unwrap();
    fs.crash();
    let after = fs.lock(&p("/db/LOCK")).unwrap();
    // Dropping the pre-crash lock must not release the new holder.
    drop(lock);
    assert_eq!(
        fs.lock(&p("/db/LOCK")).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    drop(after);
    fs.lock(&p("/db/LOCK")).unwrap();
    // A separate MemFs is a separate file system.
    let fresh = MemFs::new();
    fresh.create_dir_all(&p("/db")).unwrap();
    let _l = fresh.lock(&p("/db/LOCK")).unwrap();
    assert!(format!("{_l:?}").contains("LOCK"));
}

#[test]
fn lock_creates_the_file_and_needs_the_parent() {
    let fs = MemFs::new();
    assert_eq!(
        fs.lock(&p("/nope/LOCK")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    fs.create_dir_all(&p("/db")).unwrap();
    let _l = fs.lock(&p("/db/LOCK")).unwrap();
    assert!(fs.exists(&p("/db/LOCK")));
    assert_eq!(fs.list_dir(&p("/db")).unwrap(), vec!["LOCK".to_string()]);
}

#[test]
fn open_read_is_a_snapshot() {
    let fs = setup(&["run"]);
    let mut f = fs.open_append(&p("/db/run")).unwrap();
    f.write_all(b"hello").unwrap();
    let r = fs.open_read(&p("/db/run")).unwrap();
    f.write_all(b" world").unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(&*r.read_at(1, 3).unwrap(), b"ell");
    assert_eq!(
        r.read_at(3, 5).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    fs.crash();
    assert_eq!(&*r.read_at(0, 5).unwrap(), b"hello");
    let empty = fs.open_read(&p("/db/run")).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn errors_mimic_the_os() {
    let fs = setup(&["f"]);
    let kind = |r: io::Result<()>| r.unwrap_err().kind();
    use io::ErrorKind::*;
    assert_eq!(kind(fs.create_new(&p("/db/f")).map(drop)), AlreadyExists);
    assert_eq!(kind(fs.create_new(&p("/db")).map(drop)), AlreadyExists);
    assert_eq!(kind(fs.create_new(&p("/nope/f")).map(drop)), NotFound);
    assert_eq!(kind(fs.create_new(&p("/db/f/x")).map(drop)), NotADirectory);
    assert_eq!(kind(fs.open_append(&p("/db/g")).map(drop)), NotFound);
    assert_eq!(kind(fs.open_read(&p("/db/g")).map(drop)), NotFound);
    assert_eq!(kind(fs.read_file(&p("/db")).map(drop)), IsADirectory);
    assert_eq!(kind(fs.file_len(&p("/db/g")).map(drop)), NotFound);
    assert_eq!(kind(fs.truncate(&p("/db/g"), 0)), NotFound);
    assert_eq!(kind(fs.remove_file(&p("/db/g"))), NotFound);
    assert_eq!(kind(fs.remove_file(&p("/db"))), IsADirectory);
    assert_eq!(kind(fs.rename(&p("/db/g"), &p("/db/h"))), NotFound);
    assert_eq!(kind(fs.rename(&p("/db/f"), &p("/nope/h"))), NotFound);
    assert_eq!(kind(fs.rename(&p("/db/f"), &p("/db"))), IsADirectory);
    assert_eq!(kind(fs.list_dir(&p("/nope")).map(drop)), NotFound);
    assert_eq!(kind(fs.list_dir(&p("/db/f")).map(drop)), NotADirectory);
    assert_eq!(kind(fs.sync_dir(&p("/nope"))), NotFound);
    assert_eq!(kind(fs.create_dir_all(&p("/db/f"))), AlreadyExists);
    assert_eq!(kind(fs.create_dir_all(&p("/db/f/sub"))), NotADirectory);
    assert!(!fs.exists(&p("/db/g")));
    fs.rename(&p("/db/f"), &p("/db/f")).unwrap();
    assert!(fs.exists(&p("/db/f")));
}

#[test]
fn directories_list_and_paths_normalize() {
    let fs = MemFs::new();
    fs.create_dir_all(&p("db/runs")).unwrap();
    drop(fs.create_new(&p("./db/a")).unwrap());
    drop(fs.create_new(&p("db//b")).unwrap());
    drop(fs.create_new(&p("top")).unwrap());
    assert_eq!(fs.list_dir(&p("db")).unwrap(), vec!["a", "b", "runs"]);
    assert_eq!(fs.list_dir(&p("./db/")).unwrap(), vec!["a", "b", "runs"]);
    assert_eq!(fs.list_dir(&p(".")).unwrap(), vec!["db", "top"]);
    assert!(fs.list_dir(&p("db/runs")).unwrap().is_empty());
    assert!(fs.exists(&p("db/runs")) && fs.exists(&p("/")) && fs.exists(&p(".")));
    // The relative root syncs as `.`, which is what `parent("top")` gives.
    fs.sync_dir(super::super::parent(&p("top"))).unwrap();
    fs.crash();
    assert!(fs.exists(&p("top")));
    assert!(!fs.exists(&p("db/a")));
    assert!(fs.exists(&p("db/runs")), "directories survive crashes");
    assert_eq!(fs.files(), vec![p("top")]);
}

#[test]
fn zero_range_wipes_durably_and_stops_at_the_end() {
    let fs = setup(&[]);
    durable_file(&fs, "/db/f", b"abcdef");
    fs.zero_range(&p("/db/f"), 1, 2).unwrap();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"a\0\0def");
    fs.zero_range(&p("/db/f"), 4, 4096).unwrap();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"a\0\0d\0\0");
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"a\0\0d\0\0");
    fs.zero_range(&p("/db/f"), 6, 1).unwrap();
    assert_eq!(
        fs.zero_range(&p("/db/f"), 7, 1).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        fs.zero_range(&p("/db/g"), 0, 1).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn trace_names_each_operation_and_its_fault() {
    let fs = setup(&[]);
    let start = fs.op_count();
    fs.start_trace();
    let mut f = fs.create_new(&p("/db/./f")).unwrap();
    fs.fail_at(fs.op_count() + 1, FaultKind::SyncFailure, false);
    f.write_all(b"x").unwrap();
    assert!(f.sync_data().is_err());
    fs.rename(&p("/db/f"), &p("/db/g")).unwrap();
    assert!(fs.exists(&p("/db/g")));
    let trace = fs.trace();
    let got: Vec<_> = trace
        .iter()
        .map(|t| (t.index - start, t.name, t.path.to_str().unwrap(), t.fault))
        .collect();
    let thread = std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string();
    assert!(trace.iter().all(|t| t.thread == thread));
    assert_eq!(
        got,
        vec![
            (0, "create_new", "/db/f", None),
            (1, "write", "/db/f", None),
            (2, "sync_data", "/db/f", Some(FaultKind::SyncFailure)),
            (3, "rename", "/db/f", None),
            (4, "exists", "/db/g", None),
        ]
    );
    fs.file_len(&p("/db/g")).unwrap();
    assert_eq!(fs.trace().len(), 6, "recording goes on");
    fs.stop_trace();
    fs.file_len(&p("/db/g")).unwrap();
    assert!(fs.trace().is_empty());
}

#[test]
fn fork_is_an_independent_copy() {
    let fs = setup(&[]);
    durable_file(&fs, "/db/synced", b"durable");
    let mut open = fs.create_new(&p("/db/open")).unwrap();
    open.write_all(b"unsynced").unwrap();
    let _lock = fs.lock(&p("/db/LOCK")).unwrap();
    fs.fail_at(fs.op_count() + 3, FaultKind::Eio, true);
    let ops = fs.op_count();

    let copy = fs.fork();
    assert_eq!(copy.op_count(), ops);
    assert_eq!(copy.files(), fs.files());
    // No lock and no fault carried over; crash semantics did.
    let _copy_lock = copy.lock(&p("/db/LOCK")).unwrap();
    for _ in 0..5 {
        assert_eq!(copy.read_file(&p("/db/synced")).unwrap(), b"durable");
    }
    // Writes through a handle of the original do not show in the copy, and back.
    open.write_all(b"+more").unwrap();
    assert_eq!(copy.read_file(&p("/db/open")).unwrap(), b"unsynced");
    copy.corrupt(&p("/db/synced"), 0, 0xff).unwrap();
    fs.clear_faults();
    assert_eq!(fs.read_file(&p("/db/synced")).unwrap(), b"durable");
    copy.crash();
    assert!(
        !copy.exists(&p("/db/open")),
        "the copy keeps durability state"
    );
    assert!(fs.exists(&p("/db/open")));
    assert!(copy.exists(&p("/db")), "directories are copied");
}

#[test]
fn corrupt_flips_bits_durably() {
    let fs = setup(&[]);
    durable_file(&fs, "/db/f", b"\x00\x0f");
    fs.corrupt(&p("/db/f"), 1, 0xff).unwrap();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"\x00\xf0");
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"\x00\xf0");
    assert_eq!(
        fs.corrupt(&p("/db/f"), 2, 1).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        fs.corrupt(&p("/db/g"), 0, 1).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn clones_share_state_and_work_as_dyn_fs() {
    let fs = MemFs::new();
    let db: Arc<dyn Fs> = Arc::new(fs.clone());
    db.create_dir_all(&p("/db")).unwrap();
    write_atomic(&*db, &p("/db/x"), b"1").unwrap();
    assert_eq!(fs.read_file(&p("/db/x")).unwrap(), b"1");
    // create_dir_all, six ops in write_atomic, read_file: one counter for both handles.
    assert_eq!(db.list_dir(&p("/db")).unwrap(), vec!["x"]);
    assert_eq!(fs.op_count(), 9);
    let dbg = format!("{db:?}");
    assert!(dbg.contains("MemFs") && dbg.contains("files: 1"), "{dbg}");
}

#[test]
fn concurrent_use_is_safe() {
    let fs = setup(&[]);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let path = PathBuf::from(format!("/db/{t}"));
                let mut f = fs.create_new(&path).unwrap();
                for _ in 0..100 {
                    f.write_all(&[t as u8; 3]).unwrap();
                }
                f.sync_data().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash();
    for t in 0..4u8 {
        let data = fs.read_file(&PathBuf::from(format!("/db/{t}"))).unwrap();
        assert_eq!(data, vec![t; 300]);
    }
}

#[test]
fn preallocated_range_reads_as_zeros_after_a_crash_unless_synced() {
    let fs = setup(&[]);
    let mut f = fs.create_new(&p("/db/seg")).unwrap();
    f.write_all(b"head").unwrap();
    f.preallocate(16).unwrap();
    assert_eq!(f.len(), 4, "preallocation does not move the position");
    f.sync_data().unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    // Writes overwrite the zeros instead of growing the file.
    f.write_all(b"abc").unwrap();
    assert_eq!(fs.file_len(&p("/db/seg")).unwrap(), 16);
    assert_eq!(&fs.read_file(&p("/db/seg")).unwrap()[..8], b"headabc\0");
    f.sync_data().unwrap();
    f.write_all(b"xyz").unwrap();
    fs.crash();
    let mut expected = b"headabc".to_vec();
    expected.resize(16, 0);
    assert_eq!(fs.read_file(&p("/db/seg")).unwrap(), expected);
}

#[test]
fn unsynced_preallocation_is_lost_by_a_crash() {
    let fs = setup(&["seg"]);
    let mut f = fs.create_new(&p("/db/other")).unwrap();
    f.preallocate(100).unwrap();
    f.write_all(b"x").unwrap();
    drop(f);
    fs.sync_dir(&p("/db")).unwrap();
    assert_eq!(fs.file_len(&p("/db/other")).unwrap(), 100);
    fs.crash();
    assert_eq!(fs.file_len(&p("/db/other")).unwrap(), 0);
}

#[test]
fn torn_crash_keeps_a_prefix_of_overwrites_and_maybe_the_preallocation() {
    let run = |seed: u64| {
        let fs = setup(&[]);
        let mut f = fs.create_new(&p("/db/seg")).unwrap();
        f.write_all(b"synced|").unwrap();
        f.preallocate(32).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/db")).unwrap();
        f.write_all(b"0123456789").unwrap();
        f.preallocate(64).unwrap();
        f.write_all(b"abcdefghij").unwrap();
        fs.crash_tearing_last_write(seed);
        fs.read_file(&p("/db/seg")).unwrap()
    };
    let written = b"synced|0123456789abcdefghij";
    let mut kept_lens = BTreeSet::new();
    let mut file_lens = BTreeSet::new();
    for seed in 0..64 {
        let got = run(seed);
        assert_eq!(got, run(seed), "deterministic for seed {seed}");
        assert!(got.len() == 32 || got.len() == 64, "{}", got.len());
        // A prefix of the writes, then zeros.
        let kept = got
            .iter()
            .zip(written.iter())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(kept >= 7);
        assert!(got[kept..].iter().all(|&b| b == 0), "seed {seed}: {got:?}");
        kept_lens.insert(kept);
        file_lens.insert(got.len());
    }
    assert!(kept_lens.len() > 5, "{kept_lens:?}");
    assert_eq!(file_lens.len(), 2, "the preallocation survives sometimes");
}

#[test]
fn set_len_cuts_durably_and_append_handles_refuse_it() {
    let fs = setup(&[]);
    let mut f = fs.create_new(&p("/db/seg")).unwrap();
    f.write_all(b"data").unwrap();
    f.preallocate(4096).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    f.write_all(b"+more").unwrap();
    f.set_len(f.len()).unwrap();
    assert_eq!(fs.read_file(&p("/db/seg")).unwrap(), b"data+more");
    // The cut is durable; the unsynced bytes before it are not.
    fs.crash();
    assert_eq!(fs.read_file(&p("/db/seg")).unwrap(), b"data\0\0\0\0\0");

    let mut a = fs.open_append(&p("/db/seg")).unwrap();
    let unsupported = io::ErrorKind::Unsupported;
    assert_eq!(a.preallocate(1 << 20).unwrap_err().kind(), unsupported);
    assert_eq!(a.set_len(0).unwrap_err().kind(), unsupported);
    a.write_all(b"!").unwrap();
    assert_eq!(fs.read_file(&p("/db/seg")).unwrap(), b"data\0\0\0\0\0!");
    // Neither is an operation.
    let ops = fs.op_count();
    let mut g = fs.create_new(&p("/db/g")).unwrap();
    g.preallocate(10).unwrap();
    g.set_len(5).unwrap();
    assert_eq!(fs.op_count(), ops + 1);
    fs.crash();
    assert!(g.preallocate(20).is_err(), "dead after a crash");
}

#[test]
fn damage_reaches_durable_bytes_under_unsynced_overwrites() {
    let fs = setup(&[]);
    let mut f = fs.create_new(&p("/db/seg")).unwrap();
    f.preallocate(8).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    f.write_all(b"abcd").unwrap();
    fs.corrupt(&p("/db/seg"), 1, 0x01).unwrap();
    fs.zero_range(&p("/db/seg"), 3, 1).unwrap();
    assert_eq!(fs.read_file(&p("/db/seg")).unwrap(), b"acc\0\0\0\0\0");
    fs.crash();
    // The durable byte under the write was flipped too.
    assert_eq!(fs.read_file(&p("/db/seg")).unwrap(), b"\0\x01\0\0\0\0\0\0");
}
