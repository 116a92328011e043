//! Appending records to the active segment, syncing it and rotating to the next one.
//!
//! **Preallocation.** A write that grows a file makes the following `fdatasync` commit the new
//! size to the file system's journal as well as the data: on this machine class a ~150-byte
//! write plus `fdatasync` costs about 0.14-0.16 ms when it appends and 0.09-0.10 ms when it
//! lands inside the file (`engine/WAL.md` §10). So the writer keeps the segment file
//! [`PREALLOCATION_STEP_BYTES`] ahead of its write position with
//! [`WritableFile::preallocate`] (zeros, which read as the end of the log) and writes at its
//! own offset; most commits then overwrite zeros and sync only data. The segment is cut back to
//! its last record when it is closed (rotation, drop), so only the active, last segment ever
//! has a zero tail, and recovery cuts that one (see [`super::repair_tail`]). On the real file
//! system the preallocated range is `fallocate`d and mapped, so writes into it are memory copies
//! rather than system calls (`crate::fs::RealFs`; `engine/WAL.md` §10).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    encode_record, encode_segment_header, record_seed, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN,
};
use super::segment_path;
use crate::error::{Error, Result};
use crate::fs::{Fs, WritableFile};

/// The framing buffer is kept between appends unless it grew beyond this.
const MAX_RETAINED_BUFFER: usize = 4 << 20;

/// How far ahead the segment file is preallocated: the file is grown to the next multiple of
/// this past the write position whenever a write would pass its end (capped at the segment
/// size). One step costs one size change (one `fdatasync` that commits metadata) per MiB of log,
/// about one in 6,000 commits of 150 bytes; a database that writes little holds at most this
/// much of zeros, sparse on disk; and recovery reads at most this much past the last record.
pub(crate) const PREALLOCATION_STEP_BYTES: u64 = 1 << 20;

/// Writes records to one segment file, the *active* segment.
///
/// The engine owns the commit pipeline: it encodes batches into payloads, calls [`Self::append`]
/// under its own lock, decides when to [`Self::sync`] (group commit) and when to
/// [`Self::rotate`]. This type only frames, writes and syncs.
///
/// After any failed write or sync the writer refuses further appends, syncs and rotations with
/// [`Error::Poisoned`]: a partial write leaves damaged bytes that later records must not follow,
/// and a failed fsync must not be retried.
///
/// Dropping the writer closes the file without syncing.
pub(crate) struct WalWriter {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    path: PathBuf,
    file: Box<dyn WritableFile>,
    segment_id: u64,
    seed: u32,
    /// Highest last seqno appended to this segment, 0 if none.
    last_seqno: u64,
    /// Highest last seqno appended through this writer or the ones it was rotated from: appends
    /// must not go below it.
    seqno_floor: u64,
    /// Reused framing buffer.
    buf: Vec<u8>,
    /// Why the writer refuses work, after a failed write or sync.
    failed: Option<String>,
    /// The engine rotates once the segment reaches this size; preallocation stops there.
    segment_size_bytes: u64,
    /// The file's length as this writer made it: `len()`, or more when preallocated.
    allocated: u64,
}

impl fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalWriter")
            .field("path", &self.path)
            .field("segment_id", &self.segment_id)
            .field("len", &self.file.len())
            .field("allocated", &self.allocated)
            .field("last_seqno", &self.last_seqno)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl WalWriter {
    /// Creates segment `segment_id` in `dir` (named `{segment_id:020}.wal`) and makes it durable:
    /// the header is written, the file preallocated (see the module documentation) and synced,
    /// then `dir` is synced, so the segment exists with a valid header after a crash once this
    /// returns. `segment_size_bytes` is the size at which the engine rotates: preallocation never
    /// goes past it (nor past [`PREALLOCATION_STEP_BYTES`] ahead of the last record).
    ///
    /// The engine picks ids: each new segment's id must be greater than every existing one's.
    ///
    /// # Errors
    /// [`Error::Io`] naming the segment (or `dir` for the directory sync); an existing file with
    /// that name fails with `AlreadyExists`. A failure may leave a partial segment behind, which
    /// reads as torn at 0 while it is the last one (see [`super::repair_tail`]). A failed
    /// preallocation is not an error: the segment is then written by appending.
    pub(crate) fn create(
        fs: Arc<dyn Fs>,
        dir: &Path,
        segment_id: u64,
        segment_size_bytes: u64,
    ) -> Result<WalWriter> {
        Self::create_with_floor(fs, dir, segment_id, segment_size_bytes, 0)
    }

    fn create_with_floor(
        fs: Arc<dyn Fs>,
        dir: &Path,
        segment_id: u64,
        segment_size_bytes: u64,
        seqno_floor: u64,
    ) -> Result<WalWriter> {
        let path = segment_path(dir, segment_id);
        let io = |e| Error::io(&path, e);
        let file = fs.create_new(&path).map_err(io)?;
        let mut writer = WalWriter {
            fs,
            dir: dir.to_path_buf(),
            path,
            file,
            segment_id,
            seed: record_seed(segment_id),
            last_seqno: 0,
            seqno_floor,
            buf: Vec::new(),
            failed: None,
            segment_size_bytes,
            allocated: 0,
        };
        let path = writer.path.clone();
        let io = |e| Error::io(&path, e);
        let header = encode_segment_header(segment_id);
        writer.file.write_all(&header).map_err(io)?;
        writer.file.flush().map_err(io)?;
        writer.allocated = header.len() as u64;
        // The first commits then find the size already durable.
        writer.preallocate_for(writer.allocated + 1);
        writer.file.sync_data().map_err(io)?;
        writer.fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(writer)
    }

    /// Grows the file (see the module documentation) so that a write ending at `end` stays
    /// inside it, unless that write reaches the segment size: the segment is rotated right
    /// after it, and the bytes past it would only be cut again. A failure is logged and
    /// otherwise ignored: the write then grows the file as an append would.
    fn preallocate_for(&mut self, end: u64) {
        if end <= self.allocated || end > self.segment_size_bytes {
            return;
        }
        let target = end
            .div_ceil(PREALLOCATION_STEP_BYTES)
            .saturating_mul(PREALLOCATION_STEP_BYTES)
            .min(self.segment_size_bytes);
        match self.file.preallocate(target) {
            Ok(()) => self.allocated = target,
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(e) => log::warn!(
                "strata: preallocating WAL segment {} to {target} bytes failed, appending \
                 instead: {e}",
                self.path.display()
            ),
        }
    }

    /// Frames each `(payload, last_seqno)` as one record and hands them all to the operating
    /// system with a single write, without syncing. Returns the bytes written (headers included);
    /// an empty `payloads` writes nothing.
    ///
    /// `last_seqno` is the highest seqno in the payload. Seqnos must not decrease, within the call
    /// and across calls and rotations.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (nothing written) for an empty payload, a payload longer than
    /// 1 GiB or a decreasing seqno. [`Error::Io`] if the write fails: the segment may then hold
    /// part of the records, and the writer is poisoned. [`Error::Poisoned`] after an earlier
    /// failure.
    pub(crate) fn append(&mut self, payloads: &[(&[u8], u64)]) -> Result<u64> {
        self.check_usable()?;
        let mut floor = self.seqno_floor;
        let mut total = 0usize;
        for &(payload, last_seqno) in payloads {
            if payload.is_empty() {
                return Err(Error::InvalidArgument(
                    "a WAL record payload must not be empty".to_string(),
                ));
            }
            if payload.len() > MAX_PAYLOAD_LEN {
                return Err(Error::InvalidArgument(format!(
                    "WAL record payload of {} bytes exceeds the limit of {MAX_PAYLOAD_LEN} bytes",
                    payload.len()
                )));
            }
            if last_seqno < floor {
                return Err(Error::InvalidArgument(format!(
                    "WAL record seqno {last_seqno} is below the previous record's {floor}"
                )));
            }
            floor = last_seqno;
            total = total.saturating_add(RECORD_HEADER_LEN + payload.len());
        }
        if payloads.is_empty() {
            return Ok(0);
        }
        self.buf.clear();
        if self.buf.capacity() > MAX_RETAINED_BUFFER && total <= MAX_RETAINED_BUFFER {
            self.buf = Vec::new();
        }
        self.buf.reserve(total);
        for &(payload, last_seqno) in payloads {
            encode_record(&mut self.buf, self.seed, payload, last_seqno);
        }
        self.preallocate_for(self.file.len() + self.buf.len() as u64);
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.flush());
        self.allocated = self.allocated.max(self.file.len());
        if let Err(e) = result {
            self.failed = Some(format!("WAL write to {} failed: {e}", self.path.display()));
            return Err(Error::io(&self.path, e));
        }
        self.seqno_floor = floor;
        self.last_seqno = floor;
        Ok(self.buf.len() as u64)
    }

    /// Makes everything appended so far durable (`sync_data`).
    ///
    /// # Errors
    /// [`Error::Io`] if the sync fails; the writer is then poisoned (a failed fsync is never
    /// retried). [`Error::Poisoned`] after an earlier failure.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        if let Err(e) = self.file.sync_data() {
            self.failed = Some(format!("WAL sync of {} failed: {e}", self.path.display()));
            return Err(Error::io(&self.path, e));
        }
        Ok(())
    }

    /// Syncs this segment, cut to its last record, closes it and creates segment
    /// `next_segment_id` (as [`Self::create`], with the same segment size).
    ///
    /// The old segment is made durable first whatever the durability mode, and its
    /// preallocated tail is cut off ([`Fs::truncate`], which syncs the data too): a segment that
    /// is not the last must end exactly at its last record, because recovery reads damage
    /// (zeros included) there as corruption, not as a torn tail or the end of the log. Call
    /// [`Self::last_seqno`] first to learn the closed segment's seqno range.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `next_segment_id` is not greater than this segment's id;
    /// otherwise as [`Self::sync`] and [`Self::create`]; [`Error::Io`] if the cut fails, which
    /// poisons like a failed sync. On any error the old segment is closed (synced unless the
    /// sync was what failed) and the engine has no active segment.
    pub(crate) fn rotate(mut self, next_segment_id: u64) -> Result<WalWriter> {
        if next_segment_id <= self.segment_id {
            return Err(Error::InvalidArgument(format!(
                "next WAL segment id {next_segment_id} must be greater than {}",
                self.segment_id
            )));
        }
        self.check_usable()?;
        let len = self.file.len();
        if self.allocated > len {
            if let Err(e) = self.fs.truncate(&self.path, len) {
                self.failed = Some(format!("WAL cut of {} failed: {e}", self.path.display()));
                return Err(Error::io(&self.path, e));
            }
            self.allocated = len;
        } else {
            self.sync()?;
        }
        let fs = Arc::clone(&self.fs);
        let dir = self.dir.clone();
        let (segment_size_bytes, seqno_floor) = (self.segment_size_bytes, self.seqno_floor);
        drop(self);
        WalWriter::create_with_floor(fs, &dir, next_segment_id, segment_size_bytes, seqno_floor)
    }

    /// The segment file this writer appends to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The segment's logical length in bytes, header included: the end of the last record
    /// handed to the operating system, synced or not (the file may be longer, preallocated).
    /// The engine rotates on it (`len() >= segment_size`).
    pub(crate) fn len(&self) -> u64 {
        self.file.len()
    }

    /// The id of the segment being written.
    pub(crate) fn segment_id(&self) -> u64 {
        self.segment_id
    }

    /// The highest last seqno appended to this segment, 0 if none yet.
    pub(crate) fn last_seqno(&self) -> u64 {
        self.last_seqno
    }

    fn check_usable(&self) -> Result<()> {
        match &self.failed {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for WalWriter {
    /// Cuts the unwritten preallocated tail (not synced: a crash may leave it, and recovery
    /// cuts it then), so that a closed database's last segment ends at its last record. A
    /// failed writer leaves the file as it is: after a failed write or sync nothing more is
    /// done to it.
    fn drop(&mut self) {
        let len = self.file.len();
        if self.failed.is_none() && self.allocated > len {
            if let Err(e) = self.file.set_len(len) {
                log::warn!(
                    "strata: cutting the preallocated tail of WAL segment {} failed (recovery \
                     will): {e}",
                    self.path.display()
                );
            }
        }
    }
}
