//! Write-ahead log segments: a payload-agnostic, checksummed log split into segment files.
//!
//! `engine/WAL.md` documents the format byte by byte and the recovery rules. In short: the log
//! is a sequence of segment files `{id:020}.wal` in the database directory, each a 24-byte header
//! followed by records (`crc32c | length | type | last seqno | payload`), the crc seeded with the
//! segment id.
//!
//! Division of labour: the engine owns the commit pipeline. It encodes each committed batch into
//! one payload, calls [`WalWriter::append`] under its own lock, decides when to
//! [`WalWriter::sync`] (durability mode, group commit) and when to [`WalWriter::rotate`], and
//! deletes segments with [`remove_segment`] once every keyspace has dumped past their last seqno.
//! At recovery it lists the segments with [`list_segments`], reads each with [`read_segment`]
//! (`is_last` for the newest) and cuts the last one back to its last record with
//! [`repair_tail`] (a torn write, or the zeros of its preallocated tail) before writing
//! anything. The writer preallocates the active segment ahead of its records, so commits
//! overwrite zeros instead of growing the file (see `writer.rs`).

mod chain;
mod format;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

// Part of the API for the engine, which does not use all of it yet.
pub(crate) use chain::SeqnoChain;
#[allow(unused_imports)]
pub(crate) use format::MAX_PAYLOAD_LEN;
#[allow(unused_imports)]
pub(crate) use reader::{read_segment, SegmentContents, WalRecord};
pub(crate) use writer::WalWriter;

use crate::error::{Error, Result};
use crate::fs::Fs;

/// Suffix of segment file names.
const SEGMENT_SUFFIX: &str = ".wal";

/// Digits of the zero-padded id in a segment file name.
const SEGMENT_ID_DIGITS: usize = 20;

/// How [`read_segment`] treats damaged records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum WalRecoveryMode {
    /// Only a torn tail of the last segment is tolerated (and reported for truncation); any other
    /// damage is [`Error::Corruption`]. The default.
    #[default]
    TolerateTornTail,
    /// Damaged records are skipped up to the next valid record and listed in
    /// [`SegmentContents::skipped`]: recovers what can be recovered, losing the damaged records.
    /// A damaged segment header is still an error.
    SkipCorrupted,
}

/// A segment file found by [`list_segments`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentFile {
    /// The segment id, from the file name.
    pub(crate) id: u64,
    /// The file's path (`dir` joined with the name).
    pub(crate) path: PathBuf,
}

/// The path of segment `segment_id` in `dir`: `dir/{segment_id:020}.wal`.
pub(crate) fn segment_path(dir: &Path, segment_id: u64) -> PathBuf {
    dir.join(format!("{segment_id:020}{SEGMENT_SUFFIX}"))
}

/// The segment id a file name encodes: exactly 20 ASCII digits then `.wal`, as written by
/// [`segment_path`]. Other names (temporary files, other extensions, ids above `u64::MAX`) are not
/// segments.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, sorted by id. Files whose names are not segment names are ignored.
///
/// # Errors
/// [`Error::Io`] naming `dir` if it cannot be listed.
pub(crate) fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<SegmentFile>> {
    let names = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut segments: Vec<SegmentFile> = names
        .iter()
        .filter_map(|name| {
            parse_segment_name(name).map(|id| SegmentFile {
                id,
                path: dir.join(name),
            })
        })
        .collect();
    segments.sort();
    Ok(segments)
}

/// Removes segment `segment_id` from `dir` and syncs `dir`, so the removal is durable. A
/// segment that is already gone is not an error (a crash may have interrupted an earlier removal
/// after the file was unlinked); `dir` is synced either way.
///
/// The engine decides when: once every keyspace's dumped seqno is at least the segment's last
/// seqno, and never for the active segment.
///
/// # Errors
/// [`Error::Io`] naming the segment or `dir`.
pub(crate) fn remove_segment(fs: &dyn Fs, dir: &Path, segment_id: u64) -> Result<()> {
    remove_file_durably(fs, dir, &segment_path(dir, segment_id))
}

/// Removes `path` (missing is fine) and syncs `dir`, its directory.
fn remove_file_durably(fs: &dyn Fs, dir: &Path, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Syncs segment `segment` as it is. Recovery calls it for the last segment, whose records may
/// not be durable yet (a `WalMode::Write` commit, or a poisoned writer, that a process crash
/// interrupted): once replayed they are visible, and a later sync of the next segment must not
/// leave them behind, or a power loss would keep newer commits and lose these.
///
/// # Errors
/// [`Error::Io`] naming the segment.
pub(crate) fn sync_segment(fs: &dyn Fs, segment: &SegmentFile) -> Result<()> {
    let io = |e| Error::io(&segment.path, e);
    let mut file = fs.open_append(&segment.path).map_err(io)?;
    file.sync_data().map_err(io)
}

/// What [`repair_tail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailRepair {
    /// The segment ended at its last record; nothing was done.
    Clean,
    /// The segment was cut to this length (durably, data included): it ended in a torn write
    /// or in the zeros of its preallocated tail.
    Truncated(u64),
    /// The segment's header was torn (a crash while it was being created), so it held nothing
    /// and was removed.
    Removed,
}

/// Cuts the last segment `segment` in `dir` back to the end of its last record, as
/// [`read_segment`] found it, so that it stays valid once a later segment exists: a torn tail,
/// and the unwritten zeros the writer preallocated, would read as corruption in a segment that
/// is not the last. The engine must call it before it creates any segment after recovery (it
/// never appends to a recovered segment).
///
/// A segment longer than [`SegmentContents::valid_len`] is cut with [`Fs::truncate`] (durable
/// when it returns, and it syncs the records kept). A segment torn at 0 (its header never
/// completed) is removed with [`remove_segment`] instead: truncated to nothing it would still
/// lack a header, which is corruption in a non-last segment.
///
/// # Errors
/// [`Error::Io`] naming the segment or `dir`.
pub(crate) fn repair_tail(
    fs: &dyn Fs,
    dir: &Path,
    segment: &SegmentFile,
    contents: &SegmentContents,
) -> Result<TailRepair> {
    if contents.torn_tail == Some(0) {
        remove_file_durably(fs, dir, &segment.path)?;
        return Ok(TailRepair::Removed);
    }
    if contents.file_len <= contents.valid_len {
        return Ok(TailRepair::Clean);
    }
    fs.truncate(&segment.path, contents.valid_len)
        .map_err(|e| Error::io(&segment.path, e))?;
    Ok(TailRepair::Truncated(contents.valid_len))
}
