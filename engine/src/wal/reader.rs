//! Reading a segment back at recovery, with the torn-tail and corruption rules of
//! `engine/WAL.md` §6.

use std::path::Path;

use bytes::Bytes;

use super::format::{check_segment_header, decode_record, record_seed, Resync, SEGMENT_HEADER_LEN};
use super::WalRecoveryMode;
use crate::error::{Error, Result};
use crate::fs::Fs;

/// One record read from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalRecord {
    /// Offset of the record's header in the segment file.
    pub(crate) offset: u64,
    /// The last seqno of the payload, as given to [`super::WalWriter::append`].
    pub(crate) last_seqno: u64,
    /// The payload (a slice of the segment's buffer; no copy).
    pub(crate) payload: Bytes,
}

/// What [`read_segment`] found in a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentContents {
    /// The valid records, in file order.
    pub(crate) records: Vec<WalRecord>,
    /// The end of the last valid record: the segment header's length if there are none, 0 if the
    /// header itself is missing (torn). Everything before it is the log; everything from it on
    /// (a torn tail, or the zeros of a preallocated tail) must be cut off before a later segment
    /// is written (see [`super::repair_tail`]).
    pub(crate) valid_len: u64,
    /// The segment file's length: more than `valid_len` when it ends in a torn tail or in
    /// zeros.
    pub(crate) file_len: u64,
    /// Set (to `valid_len`) when the last segment ends in bytes that are neither records nor
    /// zeros and that no valid record follows: a write torn by a crash (or a segment whose
    /// header was torn, at 0). A tail of zeros from `valid_len` to the end is not torn: it is
    /// the unwritten, preallocated end of the active segment, the normal end of the log.
    pub(crate) torn_tail: Option<u64>,
    /// Damaged ranges passed over in [`WalRecoveryMode::SkipCorrupted`]: the offset where each
    /// damaged range starts and what was wrong there. Always empty in
    /// [`WalRecoveryMode::TolerateTornTail`] (such damage is an error there).
    pub(crate) skipped: Vec<(u64, String)>,
}

impl SegmentContents {
    /// The highest last seqno among the records, 0 if there are none.
    pub(crate) fn last_seqno(&self) -> u64 {
        self.records.iter().map(|r| r.last_seqno).max().unwrap_or(0)
    }
}

/// Reads segment `segment_id` from `path` and applies the recovery rules.
///
/// `is_last` says whether this is the newest segment: only there can a crash have torn a write.
///
/// - A damaged record (bad crc, length 0 or above the limit, running past the end, unknown type)
///   after which no valid record exists anywhere later in the *last* segment is a torn tail:
///   reading stops there and [`SegmentContents::torn_tail`] is set.
/// - Zeros from a record boundary to the end of the *last* segment are its unwritten,
///   preallocated part: the end of the log, reading stops there without a torn tail (zero
///   length is never valid, so zeros never decode as a record).
/// - A damaged record followed by a valid record, or any damage in a non-last segment, is
///   corruption, unless `mode` is [`WalRecoveryMode::SkipCorrupted`]: then reading resumes at the
///   next valid record and the damaged range is listed in [`SegmentContents::skipped`].
/// - A last segment shorter than a segment header, or whose bytes are all zero, was torn while
///   being created: it reads as empty with `torn_tail == Some(0)`.
/// - Any other bad header is an error in every mode.
///
/// Reads the whole file into memory once; allocates nothing beyond it but the record list.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read. [`Error::Corruption`] naming `path` and the offset
/// of the damaged record (or 0 / 12 for the header, 12 meaning the header names another segment
/// id). [`Error::UnsupportedVersion`] for a segment of another format version.
pub(crate) fn read_segment(
    fs: &dyn Fs,
    path: &Path,
    segment_id: u64,
    is_last: bool,
    mode: WalRecoveryMode,
) -> Result<SegmentContents> {
    let data = Bytes::from(fs.read_file(path).map_err(|e| Error::io(path, e))?);
    parse_segment(path, data, segment_id, is_last, mode)
}

/// [`read_segment`] on bytes already in memory.
pub(crate) fn parse_segment(
    path: &Path,
    data: Bytes,
    segment_id: u64,
    is_last: bool,
    mode: WalRecoveryMode,
) -> Result<SegmentContents> {
    let mut contents = SegmentContents {
        file_len: data.len() as u64,
        ..SegmentContents::default()
    };
    if is_last && (data.len() < SEGMENT_HEADER_LEN || data.iter().all(|&b| b == 0)) {
        // Torn while being created: the header is written and synced before any record.
        contents.torn_tail = Some(0);
        return Ok(contents);
    }
    check_segment_header(path, &data, segment_id)?;

    let seed = record_seed(segment_id);
    // Built on the first damage only: a clean segment is read in one pass.
    let mut resync: Option<Resync<'_>> = None;
    // Offset of the last non-zero byte, for the zero-filled-tail check.
    let last_nonzero = data.iter().rposition(|&b| b != 0);
    let mut offset = SEGMENT_HEADER_LEN;
    contents.valid_len = offset as u64;
    while offset < data.len() {
        let what = match decode_record(&data, offset, seed) {
            Ok(record) => {
                contents.records.push(WalRecord {
                    offset: offset as u64,
                    last_seqno: record.last_seqno,
                    payload: data.slice(record.payload_start..record.end),
                });
                offset = record.end;
                contents.valid_len = offset as u64;
                continue;
            }
            Err(what) => what,
        };
        // Damage at `offset`. Is there a valid record anywhere after it?
        let zero_tail = last_nonzero.is_none_or(|last| last < offset);
        let next = if zero_tail {
            None
        } else {
            resync
                .get_or_insert_with(|| Resync::new(&data, seed))
                .next_valid(offset + 1)
        };
        let what = if zero_tail {
            format!("zero-filled tail of {} bytes", data.len() - offset)
        } else {
            what
        };
        match next {
            None if is_last => {
                if !zero_tail {
                    contents.torn_tail = Some(offset as u64);
                }
                break;
            }
            None => {
                let what = format!("{what}, in a non-last segment (only the last can be torn)");
                if mode == WalRecoveryMode::SkipCorrupted {
                    contents.skipped.push((offset as u64, what));
                    break;
                }
                return Err(Error::corruption(path, offset as u64, what));
            }
            Some(next) => {
                let what = format!(
                    "{what}; {} bytes up to a valid record at offset {next} (so not a torn tail)",
                    next - offset
                );
                if mode == WalRecoveryMode::SkipCorrupted {
                    contents.skipped.push((offset as u64, what));
                    offset = next;
                    continue;
                }
                return Err(Error::corruption(path, offset as u64, what));
            }
        }
    }
    Ok(contents)
}
