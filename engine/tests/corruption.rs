//! Damaged files surface as typed errors naming the file (and offset), never as a panic, a wrong
//! value or a silently missing key. All on `MemFs`, whose `corrupt` flips bits durably.
//!
//! - WAL: a damaged record followed by valid ones makes `Db::open` fail with
//!   `Error::Corruption` naming the segment and the damaged record's offset;
//!   `WalRecovery::SkipCorrupted` opens and loses only that batch (and after a flush the database
//!   opens normally again); a torn tail (the last record cut anywhere, or a crash tearing the last
//!   unsynced write) opens and loses only the torn batch. A sweep flips every byte of a segment
//!   and checks the exact outcome of each flip.
//! - Metadata log: damage in a frame that is not the last is `Error::Corruption` naming
//!   `meta.log` at that frame's offset (a sweep over every byte checks every frame).
//! - Runs: a damaged data page does not stop `Db::open` (pages are verified when read), but a
//!   `get` of a key in that page and any scan through it return `Error::Corruption` naming the
//!   run file; every other key still reads correctly. A sweep flips bytes all over a run file
//!   (every 7th byte; every byte with `STRATA_CORRUPTION_STEP=1`, about 20 s).
//!   A missing or truncated run file is `Error::Corruption` at open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::fs::{Fs, MemFs};
use strata::{Db, Error, KeyspaceOptions, Options, WalMode, WalRecovery};

const DIR: &str = "/db";
const KEYS: usize = 10;

fn options(fs: &MemFs) -> Options {
    Options {
        wal_mode: WalMode::Write,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        page_size_bytes: 512,
        ..KeyspaceOptions::default()
    }
}

fn key(i: usize) -> String {
    format!("key{i:04}")
}

fn value(i: usize) -> String {
    format!("value-{i}-{}", "v".repeat(i % 17))
}

fn open(fs: &MemFs) -> strata::Result<Db> {
    Db::open(DIR, options(fs))
}

/// The one file whose name ends with `suffix`.
fn only_file(fs: &MemFs, suffix: &str) -> PathBuf {
    let files: Vec<_> = fs
        .files()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(files.len(), 1, "expected one {suffix} file: {files:?}");
    files.into_iter().next().expect("one file")
}

/// A database whose WAL holds `KEYS` records, one put each (`key(i)` = `value(i)`), cleanly
/// closed. Returns the segment's path.
fn db_with_wal(fs: &MemFs) -> PathBuf {
    let db = open(fs).expect("open");
    let ks = db.keyspace("t", ks_options()).expect("keyspace");
    for i in 0..KEYS {
        ks.put(key(i), value(i)).expect("put");
    }
    drop(ks);
    db.close().expect("close");
    only_file(fs, ".wal")
}

/// (offset, end) of each record of a WAL segment (format: `engine/WAL.md`).
fn wal_records(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut records = Vec::new();
    let mut offset = 24;
    while offset + 17 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
        let end = offset + 17 + len as usize;
        assert!(end <= bytes.len(), "record at {offset} runs past the end");
        records.push((offset as u64, end as u64));
        offset = end;
    }
    assert_eq!(
        offset,
        bytes.len(),
        "segment does not end at a record boundary"
    );
    records
}

/// (offset, end) of each frame of the metadata log (format: `engine/METADATA.md`).
fn meta_frames(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut frames = Vec::new();
    let mut offset = 16;
    while offset + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
        let end = offset + 8 + len as usize;
        assert!(end <= bytes.len(), "frame at {offset} runs past the end");
        frames.push((offset as u64, end as u64));
        offset = end;
    }
    assert_eq!(offset, bytes.len(), "log does not end at a frame boundary");
    frames
}

/// Reads every key of keyspace `t`: `Some(value)` per key, or the error.
fn read_all(db: &Db) -> Vec<strata::Result<Option<String>>> {
    let ks = db.keyspace("t", ks_options()).expect("keyspace");
    (0..KEYS)
        .map(|i| {
            ks.get(key(i))
                .map(|v| v.map(|v| String::from_utf8(v.to_vec()).expect("UTF-8 value")))
        })
        .collect()
}

/// Asserts that exactly the keys in `lost` are missing and every other key has its value.
fn assert_all_but(db: &Db, lost: &[usize], what: &str) {
    for (i, got) in read_all(db).into_iter().enumerate() {
        let got = got.unwrap_or_else(|e| panic!("{what}: get {}: {e}", key(i)));
        let expected = (!lost.contains(&i)).then(|| value(i));
        assert_eq!(got, expected, "{what}: {}", key(i));
    }
}

fn expect_corruption(result: strata::Result<Db>, what: &str) -> (PathBuf, u64) {
    match result {
        Err(Error::Corruption { path, offset, .. }) => (path, offset),
        Err(other) => panic!("{what}: expected Error::Corruption, got {other:?}"),
        Ok(_) => panic!("{what}: expected Error::Corruption, but the database opened"),
    }
}

#[test]
fn damaged_wal_record_followed_by_valid_ones_is_corruption_at_its_offset() {
    let middle = KEYS / 2;
    // Damage the middle record in its crc, length, type, seqno and payload bytes.
    for pos in [0, 1, 5, 8, 9, 16, 17, 20] {
        let fs = MemFs::new();
        let segment = db_with_wal(&fs);
        let records = wal_records(&fs.read_file(&segment).unwrap());
        assert_eq!(records.len(), KEYS);
        let (offset, end) = records[middle];
        assert!(offset + pos < end);
        fs.corrupt(&segment, offset + pos, 0x10).unwrap();
        let what = format!("byte {pos} of record {middle}");
        let (path, at) = expect_corruption(open(&fs), &what);
        assert_eq!(path, segment, "{what}");
        assert_eq!(at, offset, "{what}: offset of the damaged record");
        // Refusing to open changed nothing: it refuses again, the same way.
        assert_eq!(
            expect_corruption(open(&fs), &what),
            (segment.clone(), offset)
        );
    }
}

#[test]
fn skip_corrupted_loses_only_the_damaged_batch() {
    let middle = KEYS / 2;
    let fs = MemFs::new();
    let segment = db_with_wal(&fs);
    let records = wal_records(&fs.read_file(&segment).unwrap());
    fs.corrupt(&segment, records[middle].0 + 20, 0x01).unwrap();
    let salvage = Options {
        wal_recovery: WalRecovery::SkipCorrupted,
        ..options(&fs)
    };
    let db = Db::open(DIR, salvage).unwrap();
    assert_all_but(&db, &[middle], "salvaged");
    // The salvaged database works, and once its memtables are dumped the damaged segment is
    // no longer needed: it opens in the default mode again.
    let ks = db.keyspace("t", ks_options()).unwrap();
    ks.put("after", "salvage").unwrap();
    db.flush().unwrap();
    drop(ks);
    db.close().unwrap();
    let db = open(&fs).unwrap_or_else(|e| panic!("reopen after salvage and flush: {e}"));
    assert_all_but(&db, &[middle], "reopened after salvage");
    let ks = db.keyspace("t", ks_options()).unwrap();
    assert_eq!(ks.get("after").unwrap().as_deref(), Some(&b"salvage"[..]));
}

#[test]
fn torn_wal_tail_loses_only_the_torn_batch() {
    let probe = MemFs::new();
    let segment = db_with_wal(&probe);
    let records = wal_records(&probe.read_file(&segment).unwrap());
    let (start, end) = records[KEYS - 1];
    for cut in start + 1..end {
        let fs = MemFs::new();
        assert_eq!(db_with_wal(&fs), segment);
        fs.truncate(&segment, cut).unwrap();
        let what = format!("segment cut at {cut} (last record {start}..{end})");
        let db = open(&fs).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        assert_all_but(&db, &[KEYS - 1], &what);
        // The repaired database takes writes and reopens cleanly.
        let ks = db.keyspace("t", ks_options()).unwrap();
        ks.put(key(KEYS - 1), value(KEYS - 1)).unwrap();
        drop(ks);
        db.close().unwrap();
        let db = open(&fs).unwrap_or_else(|e| panic!("{what}: second open failed: {e}"));
        assert_all_but(&db, &[], &what);
    }
}

#[test]
fn crash_tearing_unsynced_wal_writes_keeps_a_prefix() {
    for seed in 0..40 {
        let fs = MemFs::new();
        let db = open(&fs).unwrap();
        let ks = db.keyspace("t", ks_options()).unwrap();
        // `WalMode::Write`: nothing below is synced, a crash keeps a random prefix of it.
        for i in 0..KEYS {
            ks.put(key(i), value(i)).unwrap();
        }
        fs.crash_tearing_last_write(seed);
        drop(ks);
        drop(db);
        let db = open(&fs).unwrap_or_else(|e| panic!("seed {seed}: open after crash: {e}"));
        let got = read_all(&db);
        let present = got.iter().take_while(|r| matches!(r, Ok(Some(_)))).count();
        for (i, r) in got.into_iter().enumerate() {
            let r = r.unwrap_or_else(|e| panic!("seed {seed}: get {}: {e}", key(i)));
            let expected = (i < present).then(|| value(i));
            assert_eq!(r, expected, "seed {seed}: not a prefix ({present} present)");
        }
    }
}

/// Flips each byte of a small segment and checks the exact outcome: header damage and damage
/// followed by a valid record refuse to open with the right offset; damage in the last record is
/// a torn tail that loses only that record.
#[test]
fn every_byte_flip_in_a_wal_segment_has_the_documented_outcome() {
    let probe = MemFs::new();
    let segment = db_with_wal(&probe);
    let len = probe.file_len(&segment).unwrap();
    let records = wal_records(&probe.read_file(&segment).unwrap());
    for offset in 0..len {
        for mask in [0x01, 0x80] {
            let fs = MemFs::new();
            db_with_wal(&fs);
            fs.corrupt(&segment, offset, mask).unwrap();
            let what = format!("flip {mask:#04x} at byte {offset} of {len}");
            let result = open(&fs);
            let record = records.iter().position(|&(s, e)| s <= offset && offset < e);
            match record {
                None => match result {
                    // Header: bad magic or crc (offset 0), or another format version.
                    Err(Error::Corruption {
                        path, offset: 0, ..
                    }) => assert_eq!(path, segment),
                    Err(Error::UnsupportedVersion { path, .. }) => assert_eq!(path, segment),
                    other => panic!("{what}: header damage gave {other:?}"),
                },
                Some(r) if r == KEYS - 1 => {
                    let db = result.unwrap_or_else(|e| panic!("{what}: torn tail: {e}"));
                    assert_all_but(&db, &[r], &what);
                }
                Some(r) => {
                    let (path, at) = expect_corruption(result, &what);
                    assert_eq!((path, at), (segment.clone(), records[r].0), "{what}");
                }
            }
        }
    }
}

/// A database with keyspaces `a`, `b`, `c` (one metadata frame each), cleanly closed.
fn db_with_meta(fs: &MemFs) -> PathBuf {
    let db = open(fs).expect("open");
    for name in ["a", "b", "c"] {
        db.keyspace(name, ks_options()).expect("create keyspace");
    }
    db.close().expect("close");
    only_file(fs, "meta.log")
}

#[test]
fn damaged_metadata_frame_is_corruption_naming_meta_log() {
    let probe = MemFs::new();
    let log = db_with_meta(&probe);
    assert_eq!(log, Path::new(DIR).join("meta.log"));
    let frames = meta_frames(&probe.read_file(&log).unwrap());
    assert!(frames.len() >= 3, "frames: {frames:?}");
    for (f, &(start, end)) in frames.iter().enumerate().take(frames.len() - 1) {
        for pos in [0, 4, 8, (end - start) / 2, end - start - 1] {
            let fs = MemFs::new();
            db_with_meta(&fs);
            fs.corrupt(&log, start + pos, 0x04).unwrap();
            let what = format!("byte {pos} of frame {f} ({start}..{end})");
            let (path, at) = expect_corruption(open(&fs), &what);
            assert_eq!(path, log, "{what}");
            assert_eq!(at, start, "{what}: offset of the damaged frame");
        }
    }
}

#[test]
fn every_byte_flip_in_the_metadata_log_has_the_documented_outcome() {
    let probe = MemFs::new();
    let log = db_with_meta(&probe);
    let bytes = probe.read_file(&log).unwrap();
    let frames = meta_frames(&bytes);
    for offset in 0..bytes.len() as u64 {
        let fs = MemFs::new();
        db_with_meta(&fs);
        fs.corrupt(&log, offset, 0x20).unwrap();
        let what = format!("flip at byte {offset} of meta.log");
        let result = open(&fs);
        match frames.iter().position(|&(s, e)| s <= offset && offset < e) {
            None => match result {
                Err(Error::Corruption {
                    path, offset: 0, ..
                }) => assert_eq!(path, log),
                Err(Error::UnsupportedVersion { path, .. }) => assert_eq!(path, log),
                other => panic!("{what}: header damage gave {other:?}"),
            },
            // Damage in the last frame is indistinguishable from a torn append: the frame (the
            // creation of keyspace `c`) is dropped and the database opens.
            Some(f) if f == frames.len() - 1 => {
                let db = result.unwrap_or_else(|e| panic!("{what}: torn last frame: {e}"));
                assert_eq!(db.keyspace_names(), vec!["a", "b"], "{what}");
            }
            Some(f) => {
                let (path, at) = expect_corruption(result, &what);
                assert_eq!((path, at), (log.clone(), frames[f].0), "{what}");
            }
        }
    }
}

const RUN_KEYS: usize = 300;

fn run_value(i: usize) -> String {
    format!("run-value-{i}-{}", "r".repeat(i % 23))
}

/// A database whose keyspace `t` holds `RUN_KEYS` keys in one run (and nothing in memory),
/// cleanly closed. Returns the run file's path.
fn db_with_run(fs: &MemFs) -> PathBuf {
    let db = open(fs).expect("open");
    let ks = db.keyspace("t", ks_options()).expect("keyspace");
    let mut batch = db.batch();
    for i in 0..RUN_KEYS {
        batch.put(&ks, key(i), run_value(i));
    }
    batch.commit().expect("commit");
    db.flush().expect("flush");
    drop(ks);
    db.close().expect("close");
    only_file(fs, ".run")
}

/// Where a run's data pages end (the index block's offset, from the footer).
fn data_end(fs: &MemFs, run: &Path) -> u64 {
    let bytes = fs.read_file(run).expect("read file");
    let footer = &bytes[bytes.len() - 64..];
    u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"))
}

/// Reads every key of a run-backed keyspace by point lookups and by scans in both directions.
/// Every answer must be the right value or `Error::Corruption` naming `run`; never a wrong value
/// and never "not found". Returns the keys whose lookup failed and whether each scan failed.
fn read_damaged_run(db: &Db, run: &Path, what: &str) -> (Vec<usize>, bool, bool) {
    let ks = db.keyspace("t", ks_options()).expect("keyspace");
    let check_err = |e: &Error, op: &str| match e {
        Error::Corruption { path, .. } => assert_eq!(path, run, "{what}: {op}"),
        other => panic!("{what}: {op}: expected Error::Corruption, got {other:?}"),
    };
    let mut failed = Vec::new();
    for i in 0..RUN_KEYS {
        match ks.get(key(i)) {
            Ok(Some(v)) => assert_eq!(&v[..], run_value(i).as_bytes(), "{what}: {}", key(i)),
            Ok(None) => panic!("{what}: {} reads as not found", key(i)),
            Err(e) => {
                check_err(&e, "get");
                failed.push(i);
            }
        }
    }
    let mut scan_failed = [false, false];
    for (reverse, failed_flag) in [false, true].into_iter().zip(scan_failed.iter_mut()) {
        let iter: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(ks.iter().rev())
        } else {
            Box::new(ks.iter())
        };
        let mut expected: Box<dyn Iterator<Item = usize>> = if reverse {
            Box::new((0..RUN_KEYS).rev())
        } else {
            Box::new(0..RUN_KEYS)
        };
        let mut seen = 0;
        for item in iter {
            match item {
                Ok((k, v)) => {
                    let i = expected.next().expect("scan yields too many keys");
                    assert_eq!(
                        (&k[..], &v[..]),
                        (key(i).as_bytes(), run_value(i).as_bytes()),
                        "{what}: scan (reverse={reverse}) item {seen}"
                    );
                    seen += 1;
                }
                Err(e) => {
                    check_err(&e, "scan");
                    *failed_flag = true;
                }
            }
        }
        assert!(
            *failed_flag || seen == RUN_KEYS,
            "{what}: scan (reverse={reverse}) ended after {seen} keys without an error"
        );
    }
    (failed, scan_failed[0], scan_failed[1])
}

#[test]
fn damaged_run_page_is_corruption_on_read_not_a_wrong_answer() {
    let probe = MemFs::new();
    let run = db_with_run(&probe);
    let end = data_end(&probe, &run);
    assert!(
        end > 4096,
        "the run should span several pages ({end} bytes of data)"
    );
    for (offset, first_key_fails) in [(10, true), (end / 2, false), (end - 3, false)] {
        let fs = MemFs::new();
        assert_eq!(db_with_run(&fs), run);
        fs.corrupt(&run, offset, 0x40).unwrap();
        let what = format!("run byte {offset} of {end} data bytes");
        let db = open(&fs).unwrap_or_else(|e| panic!("{what}: open must not read pages: {e}"));
        let (failed, forward, backward) = read_damaged_run(&db, &run, &what);
        assert!(!failed.is_empty(), "{what}: no lookup noticed the damage");
        assert!(forward && backward, "{what}: a full scan missed the damage");
        assert!(
            failed.len() < RUN_KEYS / 2,
            "{what}: one damaged page failed {} lookups",
            failed.len()
        );
        assert_eq!(failed.contains(&0), first_key_fails, "{what}: {failed:?}");
        // The failed keys form one contiguous page.
        let (lo, hi) = (failed[0], failed[failed.len() - 1]);
        assert_eq!(hi - lo + 1, failed.len(), "{what}: {failed:?}");
    }
}

/// Flips bytes all over a run file (pages, index, bloom filter, properties, footer): `Db::open`
/// either fails with `Error::Corruption` naming the run, or opens and every read is right or
/// such an error.
#[test]
fn byte_flips_anywhere_in_a_run_are_typed_errors() {
    let probe = MemFs::new();
    let run = db_with_run(&probe);
    let len = probe.file_len(&run).unwrap();
    let step = std::env::var("STRATA_CORRUPTION_STEP").ok().map_or(7, |s| {
        s.parse().expect("STRATA_CORRUPTION_STEP is a number")
    });
    let (mut refused, mut opened) = (0, 0);
    for offset in (0..len).step_by(step).chain([len - 1]) {
        let fs = MemFs::new();
        db_with_run(&fs);
        fs.corrupt(&run, offset, 0x08).unwrap();
        let what = format!("flip at byte {offset} of {len}");
        match open(&fs) {
            Err(Error::Corruption { path, .. }) => {
                assert_eq!(path, run, "{what}");
                refused += 1;
            }
            Err(other) => panic!("{what}: expected Error::Corruption, got {other:?}"),
            Ok(db) => {
                read_damaged_run(&db, &run, &what);
                opened += 1;
            }
        }
    }
    assert!(
        refused > 0 && opened > 0,
        "refused {refused}, opened {opened}"
    );
}

#[test]
fn missing_or_truncated_run_file_is_corruption() {
    let fs = MemFs::new();
    let run = db_with_run(&fs);
    fs.remove_file(&run).unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    let (path, _) = expect_corruption(open(&fs), "missing run");
    assert_eq!(path, run);

    let fs = MemFs::new();
    let run = db_with_run(&fs);
    let len = fs.file_len(&run).unwrap();
    fs.truncate(&run, len - 1).unwrap();
    let (path, _) = expect_corruption(open(&fs), "truncated run");
    assert_eq!(path, run);
}

/// Damaged data met by a compaction is reported to whoever asked for the compaction and does
/// not poison the database: writes and reads of undamaged keys go on.
#[test]
fn compacting_a_damaged_run_fails_without_poisoning() {
    let fs = MemFs::new();
    let run = db_with_run(&fs);
    // A byte in the middle of the first data page.
    fs.corrupt(&run, 40, 0x55).expect("corrupt");
    let db = open(&fs).expect("open");
    let ks = db.keyspace("t", ks_options()).expect("keyspace");
    // A second run, so the compaction has something to merge.
    ks.put("zzz", "new").expect("put");
    db.flush().expect("flush");
    match ks.compact() {
        Err(e) => assert!(e.is_corruption(), "expected corruption, got {e:?}"),
        Ok(()) => panic!("compacting a damaged run succeeded"),
    }
    ks.put("after", "compaction").expect("writes go on");
    assert_eq!(
        ks.get("after").expect("get").as_deref(),
        Some(&b"compaction"[..])
    );
    assert_eq!(
        ks.get(key(RUN_KEYS - 1))
            .expect("an undamaged page")
            .as_deref(),
        Some(run_value(RUN_KEYS - 1).as_bytes())
    );
    drop(ks);
    db.close().expect("a clean close: nothing was poisoned");
}

/// A WAL segment whose id is near `u64::MAX` (a damaged or foreign file name) is refused instead
/// of overflowing the ids of the segments after it.
#[test]
fn a_segment_id_near_the_limit_is_corruption() {
    let fs = MemFs::new();
    let segment = db_with_wal(&fs);
    let bytes = fs.read_file(&segment).expect("read segment");
    let huge = Path::new(DIR).join(format!("{:020}.wal", u64::MAX - 1));
    strata::fs::write_atomic(&fs, &huge, &bytes).expect("write");
    match open(&fs) {
        Err(Error::Corruption { path, what, .. }) => {
            assert_eq!(path, huge);
            assert!(what.contains("beyond"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}
