//! Tests of the metadata log on the real file system.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::log::test_support::{frame, header, raw_frame};
use super::log::HEADER_LEN;
use super::*;
use crate::error::Error;
use crate::fs::{DirLock, Fs, ReadAt, RealFs, WritableFile};

fn real() -> Arc<dyn Fs> {
    Arc::new(RealFs)
}

fn open(dir: &Path) -> MetaLog {
    MetaLog::open(real(), dir, u64::MAX).unwrap()
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

fn info(n: u64) -> RunInfo {
    RunInfo {
        min_seqno: n * 10,
        max_seqno: n * 10 + 9,
        entries: 10,
        file_size: 1000 + n,
        min_key: format!("key{n:03}").into_bytes(),
        max_key: format!("key{n:03}~").into_bytes(),
    }
}

fn ks(id: u32, name: &str) -> MetaRecord {
    MetaRecord::CreateKeyspace {
        id,
        name: name.into(),
        options: vec![id as u8; 3],
    }
}

/// Groups exercising every kind of record the engine writes today, each valid after the ones
/// before it.
fn sample_groups() -> Vec<Vec<MetaRecord>> {
    vec![
        vec![ks(0, "users"), ks(1, "orders")],
        vec![MetaRecord::PrepareRun {
            keyspace: 0,
            run: 0,
        }],
        // A dump: CreateRun + Dumped.
        vec![
            MetaRecord::CreateRun {
                keyspace: 0,
                run: 0,
                info: info(0),
            },
            MetaRecord::Dumped {
                keyspace: 0,
                seqno: 9,
            },
        ],
        vec![
            MetaRecord::PrepareRun {
                keyspace: 0,
                run: 1,
            },
            MetaRecord::PrepareRun {
                keyspace: 1,
                run: 2,
            },
        ],
        // A compaction: CreateRun + DropRun.
        vec![
            MetaRecord::CreateRun {
                keyspace: 0,
                run: 1,
                info: info(1),
            },
            MetaRecord::DropRun {
                keyspace: 0,
                run: 0,
            },
        ],
        vec![MetaRecord::ForgetRun { run: 0 }],
        vec![MetaRecord::DropKeyspace { id: 1 }, ks(2, "orders")],
    ]
}

/// Commits `groups` and returns the state and the file size after each prefix (index 0: none).
fn write_groups(dir: &Path, groups: &[Vec<MetaRecord>]) -> (Vec<MetaState>, Vec<u64>) {
    let mut log = open(dir);
    let mut states = vec![log.state().clone()];
    let mut ends = vec![log.size_bytes()];
    for group in groups {
        log.commit(group.clone()).unwrap();
        states.push(log.state().clone());
        ends.push(log.size_bytes());
    }
    (states, ends)
}

fn corruption_offset(err: Error) -> u64 {
    match err {
        Error::Corruption { offset, .. } => offset,
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn new_log_is_a_bare_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(log.state(), &MetaState::default());
    assert_eq!(log.size_bytes(), HEADER_LEN as u64);
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), header());
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.state(), &MetaState::default());
}

#[test]
fn replay_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let groups = sample_groups();
    let (states, ends) = write_groups(dir.path(), &groups);
    let last = states.last().unwrap();
    last.check_invariants().unwrap();
    assert_eq!(last.next_keyspace_id, 3);
    assert_eq!(last.next_run_id, 3);
    assert_eq!(last.dropped_runs, [2].into());
    assert_eq!(last.keyspace_by_name("users").unwrap().runs[&1], info(1));
    assert_eq!(last.keyspace_by_name("orders").unwrap().id, 2);

    let log = open(dir.path());
    assert_eq!(log.state(), last);
    assert_eq!(log.size_bytes(), *ends.last().unwrap());
    assert_eq!(log.records_written(), 0);

    let dumped = dump_records(&RealFs, dir.path()).unwrap();
    let offsets: Vec<u64> = dumped.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, ends[..ends.len() - 1]);
    let records: Vec<Vec<MetaRecord>> = dumped.into_iter().map(|(_, r)| r).collect();
    assert_eq!(records, groups);
}

#[test]
fn counters_and_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let a = log.create_keyspace("a", vec![1]).unwrap();
    let b = log.create_keyspace("b", vec![]).unwrap();
    assert_eq!((a, b), (0, 1));
    assert!(matches!(
        log.create_keyspace("a", vec![]),
        Err(Error::InvalidArgument(_))
    ));
    let r0 = log.prepare_run(a).unwrap();
    let r1 = log.prepare_run(b).unwrap();
    assert_eq!((r0, r1), (0, 1));
    assert_eq!(log.records_written(), 4);
    assert_eq!(
        log.size_bytes(),
        std::fs::metadata(log.path()).unwrap().len()
    );
    log.commit(vec![]).unwrap();
    assert_eq!(log.records_written(), 4);
}

#[test]
fn invalid_group_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.commit(vec![ks(0, "a")]).unwrap();
    let state = log.state().clone();
    let size = log.size_bytes();
    // The first record is fine, the second is not: nothing of the group may stick.
    let err = log
        .commit(vec![
            MetaRecord::PrepareRun {
                keyspace: 0,
                run: 0,
            },
            MetaRecord::CreateRun {
                keyspace: 0,
                run: 7,
                info: info(7),
            },
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("record 1") && m.contains("CreateRun")),
        "{err}"
    );
    assert_eq!(log.state(), &state);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(std::fs::metadata(log.path()).unwrap().len(), size);
    // Not poisoned.
    log.commit(vec![MetaRecord::PrepareRun {
        keyspace: 0,
        run: 0,
    }])
    .unwrap();
    let expected = log.state().clone();
    drop(log);
    assert_eq!(open(dir.path()).state(), &expected);
}

/// A state with every kind of object, including ids only `NextIds` can preserve.
fn rich_state_groups() -> Vec<Vec<MetaRecord>> {
    let mut groups = sample_groups();
    groups.extend([
        vec![
            MetaRecord::PrepareRun {
                keyspace: 0,
                run: 3,
            },
            MetaRecord::CreateRun {
                keyspace: 0,
                run: 3,
                info: info(3),
            },
            MetaRecord::InsertRange {
                keyspace: 0,
                range: 0,
                begin: None,
                end: Some(b"m".to_vec()),
            },
            MetaRecord::InsertRange {
                keyspace: 0,
                range: 1,
                begin: Some(b"m".to_vec()),
                end: None,
            },
            MetaRecord::InsertSlice {
                keyspace: 0,
                range: 0,
                slice: 0,
                run: 3,
                begin: None,
                end: Some(b"m".to_vec()),
            },
            MetaRecord::InsertSlice {
                keyspace: 0,
                range: 1,
                slice: 1,
                run: 3,
                begin: Some(b"m".to_vec()),
                end: None,
            },
        ],
        vec![
            MetaRecord::PrepareRun {
                keyspace: 2,
                run: 4,
            },
            MetaRecord::PrepareRun {
                keyspace: 2,
                run: 5,
            },
            MetaRecord::PrepareRun {
                keyspace: 0,
                run: 6,
            },
        ],
        vec![MetaRecord::ForgetRun { run: 5 }],
        vec![ks(3, "temp")],
        vec![MetaRecord::DropKeyspace { id: 3 }],
        vec![
            MetaRecord::InsertRange {
                keyspace: 2,
                range: 2,
                begin: None,
                end: None,
            },
            MetaRecord::DeleteRange {
                keyspace: 2,
                range: 2,
            },
        ],
        vec![MetaRecord::Dumped {
            keyspace: 2,
            seqno: 77,
        }],
    ]);
    groups
}

#[test]
fn rewrite_preserves_state_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (states, ends) = write_groups(dir.path(), &rich_state_groups());
    let before = states.last().unwrap().clone();
    before.check_invariants().unwrap();
    assert_eq!(before.next_keyspace_id, 4);
    assert_eq!(before.next_run_id, 7);
    assert_eq!(before.next_range_id, 3);
    assert_eq!(before.next_slice_id, 2);
    assert!(!before.prepared_runs.is_empty() && !before.dropped_runs.is_empty());

    let mut log = open(dir.path());
    log.rewrite().unwrap();
    assert_eq!(log.state(), &before);
    assert_eq!(log.rewrites(), 1);
    assert!(log.size_bytes() < *ends.last().unwrap());
    assert_eq!(
        log.size_bytes(),
        std::fs::metadata(log.path()).unwrap().len()
    );
    assert!(!dir.path().join("meta.log.tmp").exists());
    drop(log);

    let mut log = open(dir.path());
    assert_eq!(log.state(), &before);
    assert_eq!(dump_records(&RealFs, dir.path()).unwrap().len(), 1);
    // Appending after a rewrite works and survives another reopen; ids are not reused.
    let id = log.create_keyspace("after", vec![]).unwrap();
    assert_eq!(id, 4);
    let run = log.prepare_run(id).unwrap();
    assert_eq!(run, 7);
    let expected = log.state().clone();
    log.rewrite().unwrap();
    log.rewrite().unwrap();
    drop(log);
    assert_eq!(open(dir.path()).state(), &expected);
}

#[test]
fn automatic_rewrite_keeps_the_log_small() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MetaLog::open(real(), dir.path(), 1024).unwrap();
    let id = log.create_keyspace("k", vec![]).unwrap();
    for seqno in 1..200 {
        log.commit(vec![MetaRecord::Dumped {
            keyspace: id,
            seqno,
        }])
        .unwrap();
        assert!(log.size_bytes() <= 1024 + 64, "{}", log.size_bytes());
    }
    assert!(log.rewrites() > 0);
    let expected = log.state().clone();
    drop(log);
    assert_eq!(open(dir.path()).state(), &expected);
}

#[test]
fn truncation_at_every_offset_yields_a_prefix_of_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (states, ends) = write_groups(dir.path(), &sample_groups());
    let path = log_path(dir.path());
    let full = std::fs::read(&path).unwrap();
    assert_eq!(full.len() as u64, *ends.last().unwrap());
    for cut in HEADER_LEN..=full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let log = MetaLog::open(real(), dir.path(), u64::MAX)
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let k = ends.iter().rposition(|&end| end <= cut as u64).unwrap();
        assert_eq!(log.state(), &states[k], "cut at {cut}");
        assert_eq!(log.size_bytes(), ends[k], "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[k]);
    }
}

#[test]
fn zero_filled_tail_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (states, ends) = write_groups(dir.path(), &sample_groups());
    let path = log_path(dir.path());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&[0u8; 4096]).unwrap();
    drop(file);
    let log = open(dir.path());
    assert_eq!(log.state(), states.last().unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        *ends.last().unwrap()
    );
}

#[test]
fn damaged_middle_frame_is_corruption_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let groups = sample_groups();
    let (_, ends) = write_groups(dir.path(), &groups);
    let path = log_path(dir.path());
    let full = std::fs::read(&path).unwrap();
    let middle = 3;
    let (start, end) = (ends[middle] as usize, ends[middle + 1] as usize);
    for i in start..end {
        for mask in [0x01u8, 0x80] {
            let mut damaged = full.clone();
            damaged[i] ^= mask;
            std::fs::write(&path, &damaged).unwrap();
            let err = MetaLog::open(real(), dir.path(), u64::MAX).unwrap_err();
            assert_eq!(corruption_offset(err), start as u64, "byte {i}");
            // Nothing was modified.
            assert_eq!(std::fs::read(&path).unwrap(), damaged);
            assert!(dump_records(&RealFs, dir.path()).is_err());
        }
    }
}

#[test]
fn damaged_last_frame_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (states, ends) = write_groups(dir.path(), &sample_groups());
    let path = log_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = ends.len() - 2;
    bytes[ends[last] as usize + 10] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    // The dump shows the intact prefix and leaves the file alone.
    let contents = read_log(&RealFs, dir.path()).unwrap();
    assert_eq!(contents.frames.len(), last);
    assert_eq!(contents.valid_len, ends[last]);
    assert_eq!(contents.file_len, bytes.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    let log = open(dir.path());
    assert_eq!(log.state(), &states[last]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[last]);
}

#[test]
fn bad_headers() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path());
    let good = header();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut bad_crc = good.clone();
    bad_crc[15] ^= 1;
    for (name, bytes) in [
        ("empty", vec![]),
        ("short", good[..HEADER_LEN - 1].to_vec()),
        ("magic", bad_magic),
        ("crc", bad_crc),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = MetaLog::open(real(), dir.path(), u64::MAX).unwrap_err();
        assert_eq!(corruption_offset(err), 0, "{name}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}");
    }
    let mut future = good[..12].to_vec();
    future[8] = 2;
    let crc = crc32c::crc32c(&future);
    future.extend(crc.to_le_bytes());
    std::fs::write(&path, &future).unwrap();
    assert!(matches!(
        MetaLog::open(real(), dir.path(), u64::MAX),
        Err(Error::UnsupportedVersion {
            version: 2,
            supported: 1,
            ..
        })
    ));
}

#[test]
fn intact_frames_that_do_not_decode_or_apply_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path());
    let mut image = header();
    image.extend(frame(&[ks(0, "a")]));
    let offset = image.len() as u64;
    // Valid crc, records that do not apply: the last frame, so not a torn tail either.
    let mut bad_apply = image.clone();
    bad_apply.extend(frame(&[MetaRecord::CreateRun {
        keyspace: 0,
        run: 5,
        info: info(5),
    }]));
    // Valid crc, payload that is not MessagePack records.
    let mut bad_payload = image.clone();
    bad_payload.extend(raw_frame(&[0xc1, 0xc1]));
    // Valid crc, an array claiming 4 billion records.
    let mut huge = image.clone();
    huge.extend(raw_frame(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x90]));
    // Valid crc, trailing bytes after the records.
    let mut trailing = image.clone();
    trailing.extend(raw_frame(&[0x90, 0x90]));
    for (name, bytes) in [
        ("apply", bad_apply),
        ("payload", bad_payload),
        ("huge", huge),
        ("trailing", trailing),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = MetaLog::open(real(), dir.path(), u64::MAX).unwrap_err();
        assert_eq!(corruption_offset(err), offset, "{name}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}");
    }
}

#[test]
fn leftover_temporary_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (states, _) = write_groups(dir.path(), &sample_groups());
    let tmp = dir.path().join("meta.log.tmp");
    // A crash during a rewrite, before the rename: a partial new log.
    let mut partial = header();
    partial.extend(&frame(&states.last().unwrap().snapshot_records())[..20]);
    std::fs::write(&tmp, &partial).unwrap();
    let log = open(dir.path());
    assert!(!tmp.exists());
    assert_eq!(log.state(), states.last().unwrap());
    drop(log);
    // A crash while creating the log: only the temporary file exists.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("meta.log.tmp");
    std::fs::write(&tmp, &header()[..5]).unwrap();
    let log = open(dir.path());
    assert!(!tmp.exists());
    assert_eq!(log.state(), &MetaState::default());
}

#[test]
fn dump_does_not_remove_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), &sample_groups());
    let tmp = dir.path().join("meta.log.tmp");
    std::fs::write(&tmp, b"x").unwrap();
    dump_records(&RealFs, dir.path()).unwrap();
    assert!(tmp.exists());
}

/// `RealFs` with switchable failures of `sync_data` and `rename`.
#[derive(Debug, Default)]
struct FailingFs {
    fail_sync: Arc<AtomicBool>,
    fail_rename: AtomicBool,
}

struct FailingFile {
    inner: Box<dyn WritableFile>,
    fail_sync: Arc<AtomicBool>,
}

impl Write for FailingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl WritableFile for FailingFile {
    fn sync_data(&mut self) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl FailingFs {
    fn wrap(&self, inner: Box<dyn WritableFile>) -> Box<dyn WritableFile> {
        Box::new(FailingFile {
            inner,
            fail_sync: Arc::clone(&self.fail_sync),
        })
    }
}

impl Fs for FailingFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(self.wrap(RealFs.create_new(path)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(self.wrap(RealFs.open_append(path)?))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        RealFs.open_read(path)
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read_file(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        RealFs.truncate(path, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.fail_rename.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected rename failure"));
        }
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        RealFs.file_len(path)
    }
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        RealFs.lock(path)
    }
}

#[test]
fn failed_sync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FailingFs::default());
    let mut log = MetaLog::open(fs.clone(), dir.path(), u64::MAX).unwrap();
    log.commit(vec![ks(0, "a")]).unwrap();
    let state = log.state().clone();
    fs.fail_sync.store(true, Ordering::SeqCst);
    let err = log
        .commit(vec![MetaRecord::PrepareRun {
            keyspace: 0,
            run: 0,
        }])
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(log.state(), &state);
    assert!(log.poisoned().is_some());
    // Never retried, even once the file system works again.
    fs.fail_sync.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        assert!(matches!(
            log.commit(vec![ks(1, "b")]),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(log.rewrite(), Err(Error::Poisoned { .. })));
    }
    assert_eq!(log.state(), &state);
    drop(log);
    // Reopening recovers whatever was durable (here the unsynced group did reach the file).
    let log = MetaLog::open(fs, dir.path(), u64::MAX).unwrap();
    assert!(log.state().keyspaces.contains_key(&0));
    assert!(log.poisoned().is_none());
}

#[test]
fn failed_rewrite_before_rename_keeps_the_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FailingFs::default());
    let mut log = MetaLog::open(fs.clone(), dir.path(), u64::MAX).unwrap();
    log.commit(vec![ks(0, "a")]).unwrap();
    fs.fail_sync.store(true, Ordering::SeqCst);
    assert!(matches!(log.rewrite(), Err(Error::Io { .. })));
    fs.fail_sync.store(false, Ordering::SeqCst);
    assert!(log.poisoned().is_none());
    assert!(!dir.path().join("meta.log.tmp").exists());
    log.commit(vec![ks(1, "b")]).unwrap();
    let expected = log.state().clone();
    drop(log);
    assert_eq!(open(dir.path()).state(), &expected);
}

#[test]
fn failed_rename_poisons_but_the_old_log_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FailingFs::default());
    let mut log = MetaLog::open(fs.clone(), dir.path(), 100).unwrap();
    fs.fail_rename.store(true, Ordering::SeqCst);
    // The commit itself is durable; its automatic rewrite fails at the rename.
    log.commit(vec![
        ks(0, "a"),
        ks(
            1,
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ),
    ])
    .unwrap();
    assert!(log.poisoned().is_some());
    assert!(matches!(
        log.commit(vec![ks(2, "c")]),
        Err(Error::Poisoned { .. })
    ));
    let expected = log.state().clone();
    drop(log);
    assert_eq!(open(dir.path()).state(), &expected);
}

/// One step of the model test; indices pick among what exists at that moment.
#[derive(Clone, Debug)]
enum Op {
    CreateKeyspace,
    DropKeyspace(usize),
    Prepare(usize),
    /// CreateRun of a prepared run plus Dumped, as a dump logs them.
    Dump(usize, u64),
    /// CreateRun of a prepared run plus DropRun of up to two live runs of its keyspace (and
    /// DeleteSlice of their slices first), as a compaction logs them.
    Compact(usize, usize),
    DropRun(usize),
    Forget(usize),
    InsertRange(usize, bool),
    DeleteRange(usize),
    InsertSlice(usize, usize),
    DeleteSlice(usize),
    Invalid(usize),
    Reopen,
    Rewrite,
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0usize..8;
    prop_oneof![
        2 => Just(Op::CreateKeyspace),
        1 => i().prop_map(Op::DropKeyspace),
        4 => i().prop_map(Op::Prepare),
        3 => (i(), 0u64..5).prop_map(|(a, b)| Op::Dump(a, b)),
        2 => (i(), 0usize..3).prop_map(|(a, b)| Op::Compact(a, b)),
        2 => i().prop_map(Op::DropRun),
        2 => i().prop_map(Op::Forget),
        2 => (i(), any::<bool>()).prop_map(|(a, b)| Op::InsertRange(a, b)),
        1 => i().prop_map(Op::DeleteRange),
        4 => (i(), i()).prop_map(|(a, b)| Op::InsertSlice(a, b)),
        1 => i().prop_map(Op::DeleteSlice),
        1 => i().prop_map(Op::Invalid),
        1 => Just(Op::Reopen),
        1 => Just(Op::Rewrite),
    ]
}

fn pick<T: Copy>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()])
}

/// The group `op` stands for in state `s`, or `None` if nothing fits.
fn group_for(s: &MetaState, op: &Op, counter: u64) -> Option<Vec<MetaRecord>> {
    let keyspaces: Vec<u32> = s.keyspaces.keys().copied().collect();
    let prepared: Vec<(u64, u32)> = s.prepared_runs.iter().map(|(r, k)| (*r, *k)).collect();
    let live: Vec<(u64, u32)> = s
        .keyspaces
        .values()
        .flat_map(|k| k.runs.keys().map(move |r| (*r, k.id)))
        .collect();
    let ranges: Vec<(u64, u32)> = s
        .keyspaces
        .values()
        .flat_map(|k| k.ranges.keys().map(move |r| (*r, k.id)))
        .collect();
    let slices: Vec<(u64, u64, u32)> = s
        .keyspaces
        .values()
        .flat_map(|k| {
            k.ranges
                .values()
                .flat_map(move |r| r.slices.keys().map(move |sl| (*sl, r.id, k.id)))
        })
        .collect();
    let drop_run = |run: u64, keyspace: u32| {
        let mut group: Vec<MetaRecord> = slices
            .iter()
            .filter(|(sl, _, k)| {
                *k == keyspace
                    && s.keyspaces[k]
                        .ranges
                        .values()
                        .any(|r| r.slices.get(sl).is_some_and(|x| x.run == run))
            })
            .map(|&(slice, range, keyspace)| MetaRecord::DeleteSlice {
                keyspace,
                range,
                slice,
            })
            .collect();
        group.push(MetaRecord::DropRun { keyspace, run });
        group
    };
    let group = match *op {
        Op::CreateKeyspace => vec![ks(s.next_keyspace_id, &format!("ks{counter}"))],
        Op::DropKeyspace(i) => vec![MetaRecord::DropKeyspace {
            id: pick(&keyspaces, i)?,
        }],
        Op::Prepare(i) => vec![MetaRecord::PrepareRun {
            keyspace: pick(&keyspaces, i)?,
            run: s.next_run_id,
        }],
        Op::Dump(i, step) => {
            let (run, keyspace) = pick(&prepared, i)?;
            vec![
                MetaRecord::CreateRun {
                    keyspace,
                    run,
                    info: info(run),
                },
                MetaRecord::Dumped {
                    keyspace,
                    seqno: s.keyspaces[&keyspace].dumped_seqno + step,
                },
            ]
        }
        Op::Compact(i, n) => {
            let (run, keyspace) = pick(&prepared, i)?;
            let mut group = vec![MetaRecord::CreateRun {
                keyspace,
                run,
                info: info(run),
            }];
            for (old, _) in live.iter().filter(|(_, k)| *k == keyspace).take(n) {
                group.extend(drop_run(*old, keyspace));
            }
            group
        }
        Op::DropRun(i) => {
            let (run, keyspace) = pick(&live, i)?;
            drop_run(run, keyspace)
        }
        Op::Forget(i) => {
            let garbage: Vec<u64> = s.garbage_runs().into_iter().collect();
            vec![MetaRecord::ForgetRun {
                run: pick(&garbage, i)?,
            }]
        }
        Op::InsertRange(i, bounded) => vec![MetaRecord::InsertRange {
            keyspace: pick(&keyspaces, i)?,
            range: s.next_range_id,
            begin: bounded.then(|| counter.to_be_bytes().to_vec()),
            end: None,
        }],
        Op::DeleteRange(i) => {
            let (range, keyspace) = pick(&ranges, i)?;
            let mut group: Vec<MetaRecord> = s.keyspaces[&keyspace].ranges[&range]
                .slices
                .keys()
                .map(|&slice| MetaRecord::DeleteSlice {
                    keyspace,
                    range,
                    slice,
                })
                .collect();
            group.push(MetaRecord::DeleteRange { keyspace, range });
            group
        }
        Op::InsertSlice(i, j) => {
            let (range, keyspace) = pick(&ranges, i)?;
            let runs: Vec<u64> = s.keyspaces[&keyspace].runs.keys().copied().collect();
            vec![MetaRecord::InsertSlice {
                keyspace,
                range,
                slice: s.next_slice_id,
                run: pick(&runs, j)?,
                begin: None,
                end: None,
            }]
        }
        Op::DeleteSlice(i) => {
            let (slice, range, keyspace) = pick(&slices, i)?;
            vec![MetaRecord::DeleteSlice {
                keyspace,
                range,
                slice,
            }]
        }
        // A valid record followed by one that is never valid.
        Op::Invalid(i) => vec![
            ks(s.next_keyspace_id, &format!("never{counter}")),
            MetaRecord::ForgetRun {
                run: s.next_run_id + i as u64,
            },
        ],
        Op::Reopen | Op::Rewrite => return None,
    };
    Some(group)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(
        ops in proptest::collection::vec(op(), 1..100),
        small_threshold in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let threshold = if small_threshold { 400 } else { u64::MAX };
        let mut log = MetaLog::open(real(), dir.path(), threshold).unwrap();
        let mut model = MetaState::default();
        for (counter, op) in ops.iter().enumerate() {
            match op {
                Op::Reopen => {
                    drop(log);
                    log = MetaLog::open(real(), dir.path(), threshold).unwrap();
                }
                Op::Rewrite => log.rewrite().unwrap(),
                op => {
                    if let Some(group) = group_for(&model, op, counter as u64) {
                        let result = log.commit(group.clone());
                        if matches!(op, Op::Invalid(_)) {
                            prop_assert!(matches!(result, Err(Error::InvalidArgument(_))));
                        } else {
                            result.unwrap();
                            model.apply_group(&group).unwrap();
                        }
                    }
                }
            }
            prop_assert_eq!(log.state(), &model);
            model.check_invariants().unwrap();
        }
        drop(log);
        let log = MetaLog::open(real(), dir.path(), threshold).unwrap();
        prop_assert_eq!(log.state(), &model);
        let mut rebuilt = MetaState::default();
        rebuilt.apply_group(&model.snapshot_records()).unwrap();
        prop_assert_eq!(&rebuilt, &model);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        framed in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut image = header();
        if framed {
            // Valid crc around arbitrary payload: exercises the decoder.
            image.extend(raw_frame(&body));
        } else {
            image.extend(&body);
        }
        std::fs::write(log_path(dir.path()), &image).unwrap();
        let _ = read_log(&RealFs, dir.path());
        if let Ok(log) = MetaLog::open(real(), dir.path(), u64::MAX) {
            log.state().check_invariants().unwrap();
        }
    }
}

#[test]
fn format_is_pinned() {
    assert_eq!(
        header(),
        [
            0x53, 0x54, 0x52, 0x41, 0x54, 0x4d, 0x45, 0x54, 0x01, 0x00, 0x00, 0x00, 0x53, 0x3b,
            0xfb, 0xeb
        ]
    );
    let bytes = frame(&[MetaRecord::DropKeyspace { id: 7 }]);
    let payload = b"\x91\x81\xacDropKeyspace\x81\xa2id\x07";
    assert_eq!(&bytes[8..], payload);
    assert_eq!(&bytes[4..8], (payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[4..]);
    assert_eq!(&bytes[..4], crc.to_le_bytes());
}
