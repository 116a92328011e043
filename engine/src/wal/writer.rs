//! Appending records to the active segment, syncing it and rotating to the next one.

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
}

impl fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalWriter")
            .field("path", &self.path)
            .field("segment_id", &self.segment_id)
            .field("len", &self.file.len())
            .field("last_seqno", &self.last_seqno)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl WalWriter {
    /// Creates segment `segment_id` in `dir` (named `{segment_id:020}.wal`) and makes it durable:
    /// the header is written and synced, then `dir` is synced, so the segment exists with a valid
    /// header after a crash once this returns.
    ///
    /// The engine picks ids: each new segment's id must be greater than every existing one's.
    ///
    /// # Errors
    /// [`Error::Io`] naming the segment (or `dir` for the directory sync); an existing file with
    /// that name fails with `AlreadyExists`. A failure may leave a partial segment behind, which
    /// reads as torn at 0 while it is the last one (see [`super::repair_torn_tail`]).
    pub(crate) fn create(fs: Arc<dyn Fs>, dir: &Path, segment_id: u64) -> Result<WalWriter> {
        Self::create_with_floor(fs, dir, segment_id, 0)
    }

    fn create_with_floor(
        fs: Arc<dyn Fs>,
        dir: &Path,
        segment_id: u64,
        seqno_floor: u64,
    ) -> Result<WalWriter> {
        let path = segment_path(dir, segment_id);
        let io = |e| Error::io(&path, e);
        let mut file = fs.create_new(&path).map_err(io)?;
        file.write_all(&encode_segment_header(segment_id))
            .map_err(io)?;
        file.flush().map_err(io)?;
        file.sync_data().map_err(io)?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(WalWriter {
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
        })
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
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.flush());
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

    /// Syncs this segment, closes it and creates segment `next_segment_id` (as [`Self::create`]).
    ///
    /// The old segment is synced first whatever the durability mode: a segment that is not the
    /// last must be complete, because recovery reads damage there as corruption, not as a torn
    /// tail. Call [`Self::last_seqno`] first to learn the closed segment's seqno range.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `next_segment_id` is not greater than this segment's id;
    /// otherwise as [`Self::sync`] and [`Self::create`]. On any error the old segment is closed
    /// (synced unless the sync was what failed) and the engine has no active segment.
    pub(crate) fn rotate(mut self, next_segment_id: u64) -> Result<WalWriter> {
        if next_segment_id <= self.segment_id {
            return Err(Error::InvalidArgument(format!(
                "next WAL segment id {next_segment_id} must be greater than {}",
                self.segment_id
            )));
        }
        self.sync()?;
        let WalWriter {
            fs,
            dir,
            file,
            seqno_floor,
            ..
        } = self;
        drop(file);
        WalWriter::create_with_floor(fs, &dir, next_segment_id, seqno_floor)
    }

    /// The segment's length in bytes, header included: what has been handed to the operating
    /// system, synced or not. The engine rotates on it (e.g. `len() >= segment_size`).
    /// The segment file this writer appends to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

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
