//! Tests of the segment writer and reader together, on the real file system in a temporary
//! directory.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::format::{encode_segment_header, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::reader::parse_segment;
use super::writer::PREALLOCATION_STEP_BYTES;
use super::*;
use crate::fs::{DirLock, MemFs, ReadAt, RealFs, WritableFile};

fn real() -> Arc<dyn Fs> {
    Arc::new(RealFs)
}

/// The default segment size: preallocation goes a whole step ahead.
const SEGMENT_SIZE: u64 = 64 << 20;

/// Deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Writes `payloads` (seqnos 1, 2, ...) into segment `id` and returns the record offsets and
/// the file's length.
fn write_segment(dir: &Path, id: u64, payloads: &[Vec<u8>]) -> (Vec<u64>, u64) {
    let mut writer = WalWriter::create(real(), dir, id, SEGMENT_SIZE).unwrap();
    let mut offsets = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        offsets.push(writer.len());
        writer.append(&[(payload, i as u64 + 1)]).unwrap();
    }
    writer.sync().unwrap();
    (offsets, writer.len())
}

fn read(path: &Path, id: u64, is_last: bool, mode: WalRecoveryMode) -> Result<SegmentContents> {
    read_segment(&RealFs, path, id, is_last, mode)
}

fn payloads_of(contents: &SegmentContents) -> Vec<Vec<u8>> {
    contents
        .records
        .iter()
        .map(|r| r.payload.to_vec())
        .collect()
}

fn sample_payloads() -> Vec<Vec<u8>> {
    let mut rng = Rng(7);
    [1, 5, 40, 17, 100, 3]
        .iter()
        .map(|&n| rng.bytes(n))
        .collect()
}

fn corruption_offset(result: Result<SegmentContents>, path: &Path) -> u64 {
    match result {
        Err(Error::Corruption {
            path: p, offset, ..
        }) => {
            assert_eq!(p, path);
            offset
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn round_trip_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(1);
    let mut writer = WalWriter::create(real(), dir.path(), 1, 4096).unwrap();
    let mut expected: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut segment_last = Vec::new();
    let mut seqno = 0;
    for _ in 0..300 {
        let group: Vec<(Vec<u8>, u64)> = (0..=rng.below(4))
            .map(|_| {
                seqno += 1 + rng.below(5);
                let len = 1 + rng.below(300) as usize;
                (rng.bytes(len), seqno)
            })
            .collect();
        let refs: Vec<(&[u8], u64)> = group.iter().map(|(p, s)| (p.as_slice(), *s)).collect();
        let before = writer.len();
        let written = writer.append(&refs).unwrap();
        let framed: usize = group.iter().map(|(p, _)| p.len() + RECORD_HEADER_LEN).sum();
        assert_eq!(written, framed as u64);
        assert_eq!(writer.len(), before + written);
        assert_eq!(writer.last_seqno(), seqno);
        expected.extend(group);
        if writer.len() >= 4096 {
            segment_last.push((writer.segment_id(), writer.last_seqno(), writer.len()));
            let next = writer.segment_id() + 1;
            writer = writer.rotate(next).unwrap();
            assert_eq!(writer.len(), SEGMENT_HEADER_LEN as u64);
            assert_eq!(writer.last_seqno(), 0);
        }
    }
    writer.sync().unwrap();
    segment_last.push((writer.segment_id(), writer.last_seqno(), writer.len()));
    drop(writer);
    assert!(segment_last.len() > 5);

    // An unrelated file is ignored.
    std::fs::write(dir.path().join("LOCK"), b"").unwrap();
    let segments = list_segments(&RealFs, dir.path()).unwrap();
    let ids: Vec<u64> = segments.iter().map(|s| s.id).collect();
    let expected_ids: Vec<u64> = (1..=segment_last.len() as u64).collect();
    assert_eq!(ids, expected_ids);

    let mut got = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let contents = read(
            &segment.path,
            segment.id,
            is_last,
            WalRecoveryMode::default(),
        )
        .unwrap();
        let (id, last_seqno, len) = segment_last[i];
        assert_eq!(segment.id, id);
        assert_eq!(contents.last_seqno(), last_seqno);
        assert_eq!(contents.valid_len, len);
        assert_eq!(contents.torn_tail, None);
        assert!(contents.skipped.is_empty());
        let mut offset = SEGMENT_HEADER_LEN as u64;
        for record in &contents.records {
            assert_eq!(record.offset, offset);
            offset += (RECORD_HEADER_LEN + record.payload.len()) as u64;
            got.push((record.payload.to_vec(), record.last_seqno));
        }
        assert_eq!(offset, len);
    }
    assert_eq!(got, expected);
}

#[test]
fn last_seqno_tracking_and_argument_checks() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = WalWriter::create(real(), dir.path(), 3, SEGMENT_SIZE).unwrap();
    assert_eq!(writer.segment_id(), 3);
    assert!(segment_path(dir.path(), 3).exists());
    assert_eq!(writer.last_seqno(), 0);
    assert_eq!(writer.append(&[]).unwrap(), 0);
    writer.append(&[(b"a", 5)]).unwrap();
    assert_eq!(writer.last_seqno(), 5);
    writer.append(&[(b"b", 7), (b"c", 9)]).unwrap();
    assert_eq!(writer.last_seqno(), 9);

    let len = writer.len();
    for bad in [
        vec![(&b""[..], 10)],
        vec![(&b"x"[..], 10), (&b"y"[..], 8)],
        vec![(&b"x"[..], 8)],
    ] {
        assert!(matches!(
            writer.append(&bad),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(writer.len(), len, "a rejected append writes nothing");
        assert_eq!(writer.last_seqno(), 9);
    }

    assert!(matches!(
        WalWriter::create(real(), dir.path(), 4, SEGMENT_SIZE)
            .unwrap()
            .rotate(4),
        Err(Error::InvalidArgument(_))
    ));
    let mut writer = writer.rotate(10).unwrap();
    assert_eq!(writer.segment_id(), 10);
    assert_eq!(writer.last_seqno(), 0);
    // The floor survives rotation; equal seqnos are allowed.
    assert!(matches!(
        writer.append(&[(b"d", 8)]),
        Err(Error::InvalidArgument(_))
    ));
    writer.append(&[(b"d", 9)]).unwrap();
    assert_eq!(writer.last_seqno(), 9);

    // Creating an existing segment fails.
    assert!(matches!(
        WalWriter::create(real(), dir.path(), 10, SEGMENT_SIZE),
        Err(Error::Io { .. })
    ));
}

#[test]
fn truncation_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = sample_payloads();
    let (offsets, len) = write_segment(dir.path(), 2, &payloads);
    let full = std::fs::read(segment_path(dir.path(), 2)).unwrap();
    assert_eq!(full.len() as u64, len);
    let mut ends: Vec<u64> = offsets[1..].to_vec();
    ends.push(len);

    let path = segment_path(dir.path(), 2);
    for cut in 0..=full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let cut = cut as u64;
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        let contents = read(&path, 2, true, WalRecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(payloads_of(&contents), payloads[..whole], "cut at {cut}");
        let at_boundary = cut == SEGMENT_HEADER_LEN as u64 || ends.contains(&cut);
        if cut < SEGMENT_HEADER_LEN as u64 {
            assert_eq!(contents.torn_tail, Some(0), "cut at {cut}");
            assert_eq!(contents.valid_len, 0);
        } else if at_boundary {
            assert_eq!(contents.torn_tail, None, "cut at {cut}");
            assert_eq!(contents.valid_len, cut);
        } else {
            let valid = if whole == 0 {
                SEGMENT_HEADER_LEN as u64
            } else {
                ends[whole - 1]
            };
            assert_eq!(contents.torn_tail, Some(valid), "cut at {cut}");
            assert_eq!(contents.valid_len, valid);
        }
        // SkipCorrupted reads a torn tail the same way.
        assert_eq!(
            read(&path, 2, true, WalRecoveryMode::SkipCorrupted).unwrap(),
            contents
        );
        // The same cut in a segment that is not the last is corruption.
        let not_last = read(&path, 2, false, WalRecoveryMode::TolerateTornTail);
        if at_boundary {
            assert_eq!(not_last.unwrap(), contents);
        } else {
            let expected = if cut < SEGMENT_HEADER_LEN as u64 {
                0
            } else {
                contents.valid_len
            };
            assert_eq!(corruption_offset(not_last, &path), expected, "cut at {cut}");
        }
    }
}

#[test]
fn repair_truncates_a_torn_tail_and_removes_a_torn_header() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = sample_payloads();
    let (offsets, len) = write_segment(dir.path(), 1, &payloads);
    let path = segment_path(dir.path(), 1);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..len as usize - 2]).unwrap();
    let segment = SegmentFile {
        id: 1,
        path: path.clone(),
    };
    let contents = read(&path, 1, true, WalRecoveryMode::default()).unwrap();
    let last = *offsets.last().unwrap();
    assert_eq!(contents.torn_tail, Some(last));
    assert_eq!(
        repair_tail(&RealFs, dir.path(), &segment, &contents).unwrap(),
        TailRepair::Truncated(last)
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), last);
    // Repaired, the segment is valid even as a non-last segment.
    let again = read(&path, 1, false, WalRecoveryMode::default()).unwrap();
    assert_eq!(payloads_of(&again), payloads[..payloads.len() - 1]);
    assert_eq!(
        repair_tail(&RealFs, dir.path(), &segment, &again).unwrap(),
        TailRepair::Clean
    );

    // A header torn during creation: the segment is removed.
    std::fs::write(&path, &full[..10]).unwrap();
    let contents = read(&path, 1, true, WalRecoveryMode::default()).unwrap();
    assert_eq!(contents.torn_tail, Some(0));
    assert_eq!(
        repair_tail(&RealFs, dir.path(), &segment, &contents).unwrap(),
        TailRepair::Removed
    );
    assert!(!path.exists());
    assert!(list_segments(&RealFs, dir.path()).unwrap().is_empty());
}

#[test]
fn flipped_byte_in_a_middle_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = sample_payloads();
    let (offsets, _) = write_segment(dir.path(), 9, &payloads);
    let path = segment_path(dir.path(), 9);
    let full = std::fs::read(&path).unwrap();
    let victim = 2;
    let start = offsets[victim] as usize;
    let end = offsets[victim + 1] as usize;
    for i in start..end {
        for bit in [0x01u8, 0x80] {
            let mut damaged = full.clone();
            damaged[i] ^= bit;
            std::fs::write(&path, &damaged).unwrap();
            for is_last in [true, false] {
                let result = read(&path, 9, is_last, WalRecoveryMode::TolerateTornTail);
                assert_eq!(
                    corruption_offset(result, &path),
                    start as u64,
                    "byte {i} bit {bit:#x}"
                );
                let contents = read(&path, 9, is_last, WalRecoveryMode::SkipCorrupted).unwrap();
                let mut expected = payloads.clone();
                expected.remove(victim);
                assert_eq!(payloads_of(&contents), expected, "byte {i} bit {bit:#x}");
                assert_eq!(contents.skipped.len(), 1);
                assert_eq!(contents.skipped[0].0, start as u64);
                assert_eq!(contents.torn_tail, None);
                assert_eq!(contents.valid_len, full.len() as u64);
            }
        }
    }
}

#[test]
fn damage_in_a_non_last_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = sample_payloads();
    let (offsets, len) = write_segment(dir.path(), 1, &payloads);
    let path = segment_path(dir.path(), 1);
    let full = std::fs::read(&path).unwrap();
    let last = *offsets.last().unwrap();

    // A damaged last record: a torn tail if this is the last segment, corruption otherwise.
    let mut damaged = full.clone();
    damaged[len as usize - 1] ^= 0xff;
    std::fs::write(&path, &damaged).unwrap();
    assert_eq!(
        read(&path, 1, true, WalRecoveryMode::default())
            .unwrap()
            .torn_tail,
        Some(last)
    );
    assert_eq!(
        corruption_offset(read(&path, 1, false, WalRecoveryMode::default()), &path),
        last
    );
    let skipped = read(&path, 1, false, WalRecoveryMode::SkipCorrupted).unwrap();
    assert_eq!(skipped.records.len(), payloads.len() - 1);
    assert_eq!(skipped.skipped.len(), 1);
    assert_eq!(skipped.skipped[0].0, last);
    assert_eq!(skipped.torn_tail, None);

    // A zero-filled tail: end of log in the last segment, corruption in another.
    let mut zeroed = full.clone();
    zeroed.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&path, &zeroed).unwrap();
    let contents = read(&path, 1, true, WalRecoveryMode::default()).unwrap();
    assert_eq!(payloads_of(&contents), payloads);
    assert_eq!(contents.torn_tail, None);
    assert_eq!(contents.valid_len, len);
    assert_eq!(contents.file_len, len + 4096);
    assert_eq!(
        corruption_offset(read(&path, 1, false, WalRecoveryMode::default()), &path),
        len
    );

    // A damaged header is an error in every mode and position.
    for i in [0, 9, 13, 22] {
        let mut damaged = full.clone();
        damaged[i] ^= 0x04;
        std::fs::write(&path, &damaged).unwrap();
        for is_last in [true, false] {
            for mode in [
                WalRecoveryMode::TolerateTornTail,
                WalRecoveryMode::SkipCorrupted,
            ] {
                let err = read(&path, 1, is_last, mode).unwrap_err();
                assert!(err.is_corruption(), "byte {i}: {err}");
            }
        }
    }
}

#[test]
fn zero_filled_tail_is_end_of_log() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = sample_payloads();
    let (_, len) = write_segment(dir.path(), 4, &payloads);
    let path = segment_path(dir.path(), 4);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&vec![0u8; 1 << 16]).unwrap();
    drop(file);
    let contents = read(&path, 4, true, WalRecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(payloads_of(&contents), payloads);
    assert_eq!(contents.valid_len, len);
    assert_eq!(
        contents.torn_tail, None,
        "the unwritten end, not a torn write"
    );
    assert!(contents.skipped.is_empty());
    // Recovery cuts it, durably, so the segment is valid as a non-last one.
    let segment = SegmentFile {
        id: 4,
        path: path.clone(),
    };
    assert_eq!(
        repair_tail(&RealFs, dir.path(), &segment, &contents).unwrap(),
        TailRepair::Truncated(len)
    );
    let again = read(&path, 4, false, WalRecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(payloads_of(&again), payloads);
    assert_eq!(again.file_len, len);

    // A torn write followed by zeros is a torn tail.
    let mut torn = std::fs::read(&path).unwrap();
    torn.extend_from_slice(&[0x5a; 9]);
    torn.extend_from_slice(&[0; 1000]);
    std::fs::write(&path, &torn).unwrap();
    let contents = read(&path, 4, true, WalRecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(contents.torn_tail, Some(len));

    // A last segment that is all zeros was torn while being created.
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let contents = read(&path, 4, true, WalRecoveryMode::TolerateTornTail).unwrap();
    assert!(contents.records.is_empty());
    assert_eq!(contents.torn_tail, Some(0));
    assert!(read(&path, 4, false, WalRecoveryMode::TolerateTornTail)
        .unwrap_err()
        .is_corruption());
}

#[test]
fn renamed_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_segment(dir.path(), 1, &sample_payloads());
    std::fs::rename(segment_path(dir.path(), 1), segment_path(dir.path(), 5)).unwrap();
    let segments = list_segments(&RealFs, dir.path()).unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].id, 5);
    for mode in [
        WalRecoveryMode::TolerateTornTail,
        WalRecoveryMode::SkipCorrupted,
    ] {
        let result = read(&segments[0].path, 5, true, mode);
        assert_eq!(corruption_offset(result, &segments[0].path), 12);
    }
}

#[test]
fn records_from_another_segment_never_validate() {
    // Bytes left over from another segment (recycled, or copied by mistake) behind the valid
    // records of this one read as a torn tail, not as records.
    let dir = tempfile::tempdir().unwrap();
    let payloads = sample_payloads();
    write_segment(dir.path(), 1, &payloads);
    let (_, len2) = write_segment(dir.path(), 2, &payloads[..2]);
    let one = std::fs::read(segment_path(dir.path(), 1)).unwrap();
    let path2 = segment_path(dir.path(), 2);
    let mut two = std::fs::read(&path2).unwrap();
    two.extend_from_slice(&one[SEGMENT_HEADER_LEN..]);
    std::fs::write(&path2, &two).unwrap();
    let contents = read(&path2, 2, true, WalRecoveryMode::SkipCorrupted).unwrap();
    assert_eq!(payloads_of(&contents), payloads[..2]);
    assert_eq!(contents.torn_tail, Some(len2));
    // Even followed by zeros, as in a preallocated file that held another segment.
    two.extend_from_slice(&[0; 512]);
    std::fs::write(&path2, &two).unwrap();
    let contents = read(&path2, 2, true, WalRecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(payloads_of(&contents), payloads[..2]);
    assert_eq!(contents.torn_tail, Some(len2));
}

#[test]
fn resync_is_linear_on_a_torn_record_full_of_header_lookalikes() {
    // Every fourth byte of this payload starts something that looks like a record header of a
    // 1 MiB record: a naive resync would compute ~1 MiB of crc at each of them.
    let pattern = [1u8, 0, 0x10, 0];
    let payload: Vec<u8> = pattern.iter().copied().cycle().take(3 << 20).collect();
    let seed = super::format::record_seed(1);
    let mut data = encode_segment_header(1).to_vec();
    super::format::encode_record(&mut data, seed, b"first", 1);
    let first_end = data.len() as u64;
    super::format::encode_record(&mut data, seed, &payload, 2);
    let path = Path::new("00000000000000000001.wal");
    let torn = Bytes::from(data[..data.len() - 1000].to_vec());
    let contents = parse_segment(path, torn, 1, true, WalRecoveryMode::default()).unwrap();
    assert_eq!(contents.records.len(), 1);
    assert_eq!(contents.torn_tail, Some(first_end));

    // Damage the big record and put a valid record after it: found, so corruption.
    let mut damaged = data.clone();
    damaged[first_end as usize + 100] ^= 1;
    super::format::encode_record(&mut damaged, seed, b"last", 3);
    let result = parse_segment(
        path,
        Bytes::from(damaged.clone()),
        1,
        true,
        WalRecoveryMode::default(),
    );
    assert_eq!(corruption_offset(result, path), first_end);
    let contents = parse_segment(
        path,
        Bytes::from(damaged),
        1,
        true,
        WalRecoveryMode::SkipCorrupted,
    )
    .unwrap();
    let got: Vec<&[u8]> = contents.records.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(got, [&b"first"[..], &b"last"[..]]);
}

#[test]
fn list_segments_ignores_other_names() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "00000000000000000007.wal",
        "00000000000000000002.wal",
        "00000000000000000003.wal.tmp",
        "3.wal",
        "0000000000000000000x.wal",
        "99999999999999999999.wal",
        "00000000000000000004.run",
        "000000000000000000005.wal",
    ] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    let segments = list_segments(&RealFs, dir.path()).unwrap();
    assert_eq!(
        segments,
        vec![
            SegmentFile {
                id: 2,
                path: dir.path().join("00000000000000000002.wal"),
            },
            SegmentFile {
                id: 7,
                path: dir.path().join("00000000000000000007.wal"),
            },
        ]
    );
    assert_eq!(
        parse_segment_name("18446744073709551615.wal"),
        Some(u64::MAX)
    );
    assert!(list_segments(&RealFs, &dir.path().join("missing")).is_err());
}

#[test]
fn remove_segment_is_durable_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    write_segment(dir.path(), 1, &sample_payloads());
    write_segment(dir.path(), 2, &sample_payloads());
    remove_segment(&RealFs, dir.path(), 1).unwrap();
    remove_segment(&RealFs, dir.path(), 1).unwrap();
    let ids: Vec<u64> = list_segments(&RealFs, dir.path())
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, [2]);
}

/// A file system whose writable files fail every write once `fail` is set, and every
/// preallocation once `fail_preallocate` is.
#[derive(Debug, Default)]
struct FailingFs {
    fail: Arc<AtomicBool>,
    fail_preallocate: Arc<AtomicBool>,
}

struct FailingFile {
    inner: Box<dyn WritableFile>,
    fail: Arc<AtomicBool>,
    fail_preallocate: Arc<AtomicBool>,
}

impl Write for FailingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.fail.load(Ordering::SeqCst) {
            // Write part of the buffer, then fail, like a full disk.
            let n = self.inner.write(&buf[..buf.len() / 2])?;
            if n == 0 {
                return Err(io::Error::other("injected write failure"));
            }
            return Ok(n);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl WritableFile for FailingFile {
    fn sync_data(&mut self) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected sync failure"));
        }
        self.inner.sync_data()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        if self.fail_preallocate.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected ENOSPC",
            ));
        }
        self.inner.preallocate(len)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Fs for FailingFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(FailingFile {
            inner: RealFs.create_new(path)?,
            fail: self.fail.clone(),
            fail_preallocate: self.fail_preallocate.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        RealFs.open_append(path)
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
fn a_failed_write_poisons_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FailingFs::default());
    let mut writer = WalWriter::create(fs.clone(), dir.path(), 1, SEGMENT_SIZE).unwrap();
    writer.append(&[(b"before", 1)]).unwrap();
    let good_len = writer.len();
    fs.fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        writer.append(&[(&[7u8; 100][..], 2)]),
        Err(Error::Io { .. })
    ));
    fs.fail.store(false, Ordering::SeqCst);
    assert!(matches!(
        writer.append(&[(b"after", 3)]),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(writer.sync(), Err(Error::Poisoned { .. })));
    assert!(matches!(writer.rotate(2), Err(Error::Poisoned { .. })));
    // The partial record reads as a torn tail.
    let path: PathBuf = segment_path(dir.path(), 1);
    let contents = read(&path, 1, true, WalRecoveryMode::default()).unwrap();
    assert_eq!(payloads_of(&contents), [b"before".to_vec()]);
    assert_eq!(contents.torn_tail, Some(good_len));

    let mut writer = WalWriter::create(fs.clone(), dir.path(), 3, SEGMENT_SIZE).unwrap();
    fs.fail.store(true, Ordering::SeqCst);
    assert!(matches!(writer.sync(), Err(Error::Io { .. })));
    fs.fail.store(false, Ordering::SeqCst);
    assert!(matches!(writer.sync(), Err(Error::Poisoned { .. })));
}

/// A valid segment with a few records, for mutation.
fn valid_segment(id: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let seed = super::format::record_seed(id);
    let mut data = encode_segment_header(id).to_vec();
    for (i, payload) in payloads.iter().enumerate() {
        super::format::encode_record(&mut data, seed, payload, i as u64 + 1);
    }
    data
}

/// Reads `data` in every mode and position; checks the result's invariants when it is `Ok`.
fn check_any_input(data: &[u8], id: u64) {
    let path = Path::new("seg.wal");
    for is_last in [true, false] {
        for mode in [
            WalRecoveryMode::TolerateTornTail,
            WalRecoveryMode::SkipCorrupted,
        ] {
            let Ok(contents) = parse_segment(path, Bytes::copy_from_slice(data), id, is_last, mode)
            else {
                continue;
            };
            assert!(contents.valid_len <= data.len() as u64);
            if let Some(torn) = contents.torn_tail {
                assert!(is_last);
                assert_eq!(torn, contents.valid_len);
            }
            if mode == WalRecoveryMode::TolerateTornTail {
                assert!(contents.skipped.is_empty());
            }
            let mut prev_end = 0;
            for record in &contents.records {
                assert!(record.offset >= prev_end);
                prev_end = record.offset + (RECORD_HEADER_LEN + record.payload.len()) as u64;
                assert!(prev_end <= contents.valid_len);
                assert!(!record.payload.is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_any_input(&data, 1);
    }

    #[test]
    fn random_records_after_a_valid_header_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = encode_segment_header(1).to_vec();
        data.extend_from_slice(&tail);
        check_any_input(&data, 1);
    }

    #[test]
    fn mutated_segments_never_panic(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = valid_segment(1, &payloads);
        for (at, value) in edits {
            let i = at.index(data.len());
            data[i] = value;
        }
        let keep = cut.index(data.len() + 1);
        data.truncate(keep.max(data.len() / 2));
        check_any_input(&data, 1);
    }

    #[test]
    fn valid_segments_read_back(
        payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..200),
            0..10,
        ),
    ) {
        let data = valid_segment(6, &payloads);
        let contents = parse_segment(
            Path::new("seg.wal"),
            Bytes::from(data.clone()),
            6,
            false,
            WalRecoveryMode::default(),
        )
        .unwrap();
        prop_assert_eq!(payloads_of(&contents), payloads);
        prop_assert_eq!(contents.valid_len, data.len() as u64);
    }
}

#[test]
fn the_active_segment_is_preallocated_and_cut_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 1);
    let file_len = || std::fs::metadata(&path).unwrap().len();
    let mut writer = WalWriter::create(real(), dir.path(), 1, SEGMENT_SIZE).unwrap();
    assert_eq!(writer.len(), SEGMENT_HEADER_LEN as u64);
    assert_eq!(file_len(), PREALLOCATION_STEP_BYTES);
    let mut payloads = Vec::new();
    for i in 0..50u64 {
        let payload = vec![i as u8 + 1; 150];
        writer.append(&[(&payload, i + 1)]).unwrap();
        writer.sync().unwrap();
        payloads.push(payload);
        assert_eq!(
            file_len(),
            PREALLOCATION_STEP_BYTES,
            "commits do not grow the file"
        );
    }
    // While it is open, the segment reads as its records then the end of the log.
    let contents = read(&path, 1, true, WalRecoveryMode::default()).unwrap();
    assert_eq!(payloads_of(&contents), payloads);
    assert_eq!(contents.valid_len, writer.len());
    assert_eq!(contents.torn_tail, None);
    // A write past the preallocated end grows the preallocation by whole steps.
    let big = vec![9u8; PREALLOCATION_STEP_BYTES as usize + 10];
    writer.append(&[(&big, 60)]).unwrap();
    assert!(writer.len() > PREALLOCATION_STEP_BYTES);
    assert_eq!(file_len(), 2 * PREALLOCATION_STEP_BYTES);
    let len = writer.len();
    drop(writer);
    assert_eq!(file_len(), len, "closing cuts the unwritten tail");
    payloads.push(big);
    let contents = read(&path, 1, false, WalRecoveryMode::default()).unwrap();
    assert_eq!(payloads_of(&contents), payloads);
}

#[test]
fn rotation_cuts_the_closed_segment_to_its_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 3 * PREALLOCATION_STEP_BYTES / 2;
    let mut writer = WalWriter::create(real(), dir.path(), 1, segment_size).unwrap();
    let payload = vec![7u8; 100 << 10];
    let mut seqno = 0;
    while writer.len() < segment_size {
        seqno += 1;
        writer.append(&[(&payload, seqno)]).unwrap();
        // Never preallocated past the segment size.
        let len = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len();
        assert!(len <= segment_size.max(writer.len()), "{len}");
    }
    let closed_len = writer.len();
    let mut writer = writer.rotate(2).unwrap();
    let first = read(
        &segment_path(dir.path(), 1),
        1,
        false,
        WalRecoveryMode::default(),
    )
    .unwrap();
    assert_eq!(first.records.len() as u64, seqno);
    assert_eq!((first.valid_len, first.file_len), (closed_len, closed_len));
    // The new segment is preallocated with the same limit.
    assert_eq!(
        std::fs::metadata(segment_path(dir.path(), 2))
            .unwrap()
            .len(),
        PREALLOCATION_STEP_BYTES
    );
    // Rotated early (the engine rotates when full, but the contract holds at any length), the
    // preallocated tail is cut too.
    writer.append(&[(b"early", seqno + 1)]).unwrap();
    let early_len = writer.len();
    let writer = writer.rotate(5).unwrap();
    let second = read(
        &segment_path(dir.path(), 2),
        2,
        false,
        WalRecoveryMode::default(),
    )
    .unwrap();
    assert_eq!((second.valid_len, second.file_len), (early_len, early_len));
    assert_eq!(payloads_of(&second), [b"early".to_vec()]);
    drop(writer);
    // A tiny segment size caps the preallocation.
    let writer = WalWriter::create(real(), dir.path(), 3, 4096).unwrap();
    assert_eq!(
        std::fs::metadata(segment_path(dir.path(), 3))
            .unwrap()
            .len(),
        4096
    );
    drop(writer);
}

#[test]
fn a_failed_preallocation_is_absorbed_and_the_segment_appends() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FailingFs::default());
    fs.fail_preallocate.store(true, Ordering::SeqCst);
    let mut writer = WalWriter::create(fs.clone(), dir.path(), 1, SEGMENT_SIZE).unwrap();
    let path = segment_path(dir.path(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    writer.append(&[(b"one", 1)]).unwrap();
    writer.sync().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), writer.len());
    // Preallocation works again later; nothing was poisoned.
    fs.fail_preallocate.store(false, Ordering::SeqCst);
    writer.append(&[(b"two", 2)]).unwrap();
    writer.sync().unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        PREALLOCATION_STEP_BYTES
    );
    let writer = writer.rotate(2).unwrap();
    let contents = read(&path, 1, false, WalRecoveryMode::default()).unwrap();
    assert_eq!(payloads_of(&contents), [b"one".to_vec(), b"two".to_vec()]);
    drop(writer);
}

/// Power loss (torn or not) at any point of a preallocated segment's life on `MemFs`: every
/// synced record is read back, the tail is the end of the log or a torn write, and once cut the
/// segment reads the same as a non-last one.
#[test]
fn synced_records_survive_a_crash_into_the_preallocated_tail() {
    let dir = Path::new("/db");
    for seed in 0..40u64 {
        let fs = MemFs::new();
        fs.create_dir_all(dir).unwrap();
        let mut rng = Rng(seed + 1);
        let mut writer =
            WalWriter::create(Arc::new(fs.clone()), dir, 1, 8 * PREALLOCATION_STEP_BYTES).unwrap();
        let mut synced = 0;
        let mut written = Vec::new();
        for i in 0..(20 + rng.below(200)) {
            let len = 1 + rng.below(if i % 17 == 0 { 200_000 } else { 300 }) as usize;
            let payload = rng.bytes(len);
            writer.append(&[(&payload, i + 1)]).unwrap();
            written.push(payload);
            if rng.below(3) == 0 {
                writer.sync().unwrap();
                synced = written.len();
            }
        }
        if seed % 2 == 0 {
            fs.crash();
        } else {
            fs.crash_tearing_last_write(seed);
        }
        drop(writer);
        let path = segment_path(dir, 1);
        let contents = read_segment(&fs, &path, 1, true, WalRecoveryMode::default()).unwrap();
        let got = payloads_of(&contents);
        assert!(got.len() >= synced, "seed {seed}: {} < {synced}", got.len());
        assert_eq!(got, written[..got.len()], "seed {seed}");
        if seed % 2 == 0 {
            assert_eq!(got.len(), synced, "seed {seed}: nothing unsynced survives");
            assert_eq!(contents.torn_tail, None, "seed {seed}");
        }
        let segment = SegmentFile { id: 1, path };
        repair_tail(&fs, dir, &segment, &contents).unwrap();
        fs.crash();
        let again = read_segment(&fs, &segment.path, 1, false, WalRecoveryMode::default()).unwrap();
        assert_eq!(payloads_of(&again), got, "seed {seed}");
        assert_eq!(again.file_len, again.valid_len);
    }
}
