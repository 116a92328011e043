//! The metadata log file `meta.log`: header, frames, replay, append and compact rewrite.
//!
//! Layout (all integers little-endian; `engine/METADATA.md` is the full description):
//!
//! ```text
//! header: magic "STRATMET" (8) | format version u32 | crc32c of the previous 12 bytes u32
//! frame:  crc32c u32 | length u32 | payload (length bytes, MessagePack array of records)
//!         the crc covers the 4 length bytes and the payload; length >= 1
//! ```
//!
//! One frame is one atomic group of records.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{decode_group, encode_group, MetaRecord};
use super::state::MetaState;
use crate::error::{Error, Result};
use crate::fs::{temp_path, Fs, WritableFile};

/// Name of the metadata log in the database directory.
pub(crate) const LOG_FILE: &str = "meta.log";
/// First 8 bytes of the file.
pub(crate) const MAGIC: &[u8; 8] = b"STRATMET";
/// The format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Length of the file header.
pub(crate) const HEADER_LEN: usize = 16;
/// Length of a frame header (crc and length).
pub(crate) const FRAME_HEADER_LEN: usize = 8;

/// The file header of this format version.
fn header_bytes() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&header[..12]);
    header[12..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks the file header.
fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "file of {} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    };
    if &header[..8] != MAGIC {
        return Err(Error::corruption(
            path,
            0,
            "bad magic: not a strata metadata log",
        ));
    }
    let stored = le_u32(&header[12..16]);
    let actual = crc32c::crc32c(&header[..12]);
    if stored != actual {
        return Err(Error::corruption(
            path,
            0,
            format!("header checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
        ));
    }
    let version = le_u32(&header[8..12]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Reads a little-endian u32 from the first 4 bytes of `bytes` (0 if shorter; callers slice
/// exactly 4 bytes).
fn le_u32(bytes: &[u8]) -> u32 {
    let mut buf = [0u8; 4];
    if let Some(src) = bytes.get(..4) {
        buf.copy_from_slice(src);
    }
    u32::from_le_bytes(buf)
}

/// Frames `payload`: crc32c, length, payload.
fn encode_frame(payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        Error::InvalidArgument(format!(
            "metadata group of {} bytes exceeds the 4 GiB frame limit",
            payload.len()
        ))
    })?;
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&len_bytes);
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// If an intact frame starts at `pos`, the range of its payload. A frame is intact when its
/// header and whole payload lie inside `bytes`, its length is at least 1 and its crc matches.
/// Looks only at `bytes[pos..pos + 8 + length]`, so it is bounded by the input.
fn frame_at(bytes: &[u8], pos: usize) -> Option<std::ops::Range<usize>> {
    let start = pos.checked_add(FRAME_HEADER_LEN)?;
    let header = bytes.get(pos..start)?;
    let len = usize::try_from(le_u32(&header[4..8])).ok()?;
    if len == 0 {
        return None;
    }
    let end = start.checked_add(len)?;
    let payload = bytes.get(start..end)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[4..8]), payload);
    (crc == le_u32(&header[..4])).then_some(start..end)
}

/// The decoded contents of a metadata log, read without modifying it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogContents {
    /// Intact frames in file order: (offset of the frame, its records).
    pub(crate) frames: Vec<(u64, Vec<MetaRecord>)>,
    /// Bytes up to the end of the last intact frame; less than `file_len` when the file ends in
    /// a torn tail (a damaged frame with no intact frame after it).
    pub(crate) valid_len: u64,
    /// The file's length.
    pub(crate) file_len: u64,
}

/// Decodes a whole log image. A damaged frame followed by nothing intact is a torn tail (the
/// contents end before it); a damaged frame followed by an intact one, an intact frame whose
/// payload does not decode, or a bad header is corruption.
fn scan(path: &Path, bytes: &[u8]) -> Result<LogContents> {
    check_header(path, bytes)?;
    let mut frames = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let Some(payload) = frame_at(bytes, pos) else {
            // Damaged. Only the last append can be torn: if any intact frame starts after this
            // one (at any byte offset, since this frame's length may be the damaged part),
            // bytes that were once durable are damaged.
            if let Some(next) = (pos + 1..bytes.len()).find(|&p| frame_at(bytes, p).is_some()) {
                return Err(Error::corruption(
                    path,
                    pos as u64,
                    format!("damaged frame (bad checksum or length) followed by an intact frame at offset {next}"),
                ));
            }
            break;
        };
        let records = bytes
            .get(payload.clone())
            .map(decode_group)
            .unwrap_or_else(|| Err("frame out of bounds".to_string()))
            .map_err(|e| Error::corruption(path, pos as u64, e))?;
        frames.push((pos as u64, records));
        pos = payload.end;
    }
    Ok(LogContents {
        frames,
        valid_len: pos.min(bytes.len()) as u64,
        file_len: bytes.len() as u64,
    })
}

/// Reads and decodes the metadata log in `dir` without modifying anything (no truncation of a
/// torn tail, no removal of a leftover temporary file). For `strata meta dump`.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Corruption`] or
/// [`Error::UnsupportedVersion`] as [`MetaLog::open`] would report them, except that records
/// are not checked against the state.
#[allow(dead_code)] // API for stats and tools, not used by the engine yet.
pub(crate) fn read_log(fs: &dyn Fs, dir: &Path) -> Result<LogContents> {
    let path = dir.join(LOG_FILE);
    let bytes = fs.read_file(&path).map_err(|e| Error::io(&path, e))?;
    scan(&path, &bytes)
}

/// The intact frames of the metadata log in `dir` as (offset, records), read without modifying
/// anything; a torn tail is left out. See [`read_log`].
///
/// # Errors
/// As [`read_log`].
#[allow(dead_code)] // API for stats and tools, not used by the engine yet.
pub(crate) fn dump_records(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, Vec<MetaRecord>)>> {
    Ok(read_log(fs, dir)?.frames)
}

/// The metadata log of one database directory, open for appending. The engine keeps it behind
/// its own mutex and is its only writer.
pub(crate) struct MetaLog {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    path: PathBuf,
    /// Append handle; `None` only when poisoned mid-rewrite.
    file: Option<Box<dyn WritableFile>>,
    state: MetaState,
    size: u64,
    records_written: u64,
    rewrites: u64,
    rewrite_threshold: u64,
    /// An automatic rewrite also waits until the log is larger than this (twice the size of the
    /// last rewritten log), so a large state does not cause a rewrite on every commit.
    rewrite_floor: u64,
    poisoned: Option<String>,
}

impl fmt::Debug for MetaLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaLog")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("records_written", &self.records_written)
            .field("rewrites", &self.rewrites)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Writes a complete log image to `meta.log.tmp`, syncs it, renames it over `meta.log` and
/// syncs the directory. Returns which step failed: `Err((false, e))` before the rename (the old
/// log, if any, is untouched and still valid), `Err((true, e))` from the rename on.
fn install(fs: &dyn Fs, dir: &Path, path: &Path, image: &[u8]) -> Result<(), (bool, Error)> {
    let tmp = temp_path(path);
    let write_tmp = || -> Result<()> {
        let io = |e| Error::io(&tmp, e);
        remove_if_present(fs, &tmp).map_err(io)?;
        let mut file = fs.create_new(&tmp).map_err(io)?;
        file.write_all(image).map_err(io)?;
        file.flush().map_err(io)?;
        file.sync_data().map_err(io)
    };
    if let Err(e) = write_tmp() {
        // Best effort: a leftover is removed by the next open.
        let _ = remove_if_present(fs, &tmp);
        return Err((false, e));
    }
    fs.rename(&tmp, path)
        .map_err(|e| (true, Error::io(path, e)))?;
    fs.sync_dir(dir).map_err(|e| (true, Error::io(dir, e)))
}

/// Removes `path` and says whether it was there; a missing file is fine. (Not `Fs::exists`
/// first: it answers `false` for any error, as `Path::exists` does.)
fn remove_if_present(fs: &dyn Fs, path: &Path) -> std::io::Result<bool> {
    match fs.remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl MetaLog {
    /// Opens the metadata log in `dir`, creating an empty one (header written and synced,
    /// directory synced) if there is none, and replays it. A leftover `meta.log.tmp` is deleted;
    /// a torn tail is truncated away. An automatic [`MetaLog::rewrite`] happens after a commit
    /// that leaves the file larger than `rewrite_threshold_bytes` (and larger than twice the last
    /// rewritten log).
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Corruption`] naming the file and the offset of the bad header
    /// (0) or frame, for damage other than a torn tail and for an intact frame whose records do
    /// not apply to the state; [`Error::UnsupportedVersion`] for another format version.
    pub(crate) fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        rewrite_threshold_bytes: u64,
    ) -> Result<MetaLog> {
        let path = dir.join(LOG_FILE);
        let tmp = temp_path(&path);
        if remove_if_present(&*fs, &tmp).map_err(|e| Error::io(&tmp, e))? {
            log::info!("removed {} left by an interrupted rewrite", tmp.display());
        }
        // Only a log that is certainly missing is created: deciding from `Fs::exists`, which
        // answers `false` for any error, would let one failed `stat` replace the whole log.
        let existing = match fs.read_file(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let state = if let Some(bytes) = existing {
            let contents = scan(&path, &bytes)?;
            let mut state = MetaState::default();
            for (offset, records) in &contents.frames {
                for (i, record) in records.iter().enumerate() {
                    state.apply(record).map_err(|e| {
                        Error::corruption(
                            &path,
                            *offset,
                            format!("record {i} ({}) does not apply: {e}", record.kind()),
                        )
                    })?;
                }
            }
            #[cfg(feature = "invariants")]
            state
                .check_invariants()
                .map_err(|e| Error::corruption(&path, 0, format!("replayed state: {e}")))?;
            if contents.valid_len < contents.file_len {
                log::warn!(
                    "{}: dropping a torn tail of {} bytes at offset {}",
                    path.display(),
                    contents.file_len - contents.valid_len,
                    contents.valid_len
                );
                fs.truncate(&path, contents.valid_len)
                    .map_err(|e| Error::io(&path, e))?;
            }
            state
        } else {
            install(&*fs, dir, &path, &header_bytes()).map_err(|(_, e)| e)?;
            MetaState::default()
        };
        let file = fs.open_append(&path).map_err(|e| Error::io(&path, e))?;
        Ok(MetaLog {
            size: file.len(),
            fs,
            dir: dir.to_path_buf(),
            path,
            file: Some(file),
            state,
            records_written: 0,
            rewrites: 0,
            rewrite_threshold: rewrite_threshold_bytes,
            rewrite_floor: 0,
            poisoned: None,
        })
    }

    /// What the log says exists.
    pub(crate) fn state(&self) -> &MetaState {
        &self.state
    }

    /// The log file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Current length of the log file in bytes.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Records committed through this handle since it was opened (rewrites not counted).
    #[allow(dead_code)] // API for stats and tools, not used by the engine yet.
    pub(crate) fn records_written(&self) -> u64 {
        self.records_written
    }

    /// Rewrites done through this handle since it was opened.
    #[allow(dead_code)] // API for stats and tools, not used by the engine yet.
    pub(crate) fn rewrites(&self) -> u64 {
        self.rewrites
    }

    /// Why the log refuses writes, if it does.
    #[allow(dead_code)] // API for stats and tools, not used by the engine yet.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, reason: String) {
        log::error!("metadata log is poisoned: {reason}");
        self.poisoned = Some(reason);
    }

    /// Appends `records` as one atomic group and publishes the new state once it is durable.
    ///
    /// The group is first applied to a copy of the state; a group that does not apply changes
    /// nothing. Then the frame is written and `sync_data`-ed. An empty group is a no-op. If the
    /// file then exceeds the rewrite threshold, the log is rewritten; a failed automatic rewrite
    /// does not fail the (already durable) commit: it is logged, and if it got past the point of
    /// no return the log is poisoned for later commits.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the group does not apply to the state (a programmer error;
    /// nothing changed); [`Error::Io`] if the write or sync failed, after which the log is
    /// poisoned (the group may or may not be durable); [`Error::Poisoned`] after an earlier
    /// failure.
    pub(crate) fn commit(&mut self, records: Vec<MetaRecord>) -> Result<()> {
        self.check_poisoned()?;
        if records.is_empty() {
            return Ok(());
        }
        let mut next = self.state.clone();
        for (i, record) in records.iter().enumerate() {
            next.apply(record).map_err(|e| {
                Error::InvalidArgument(format!(
                    "metadata group rejected at record {i} ({}): {e}",
                    record.kind()
                ))
            })?;
        }
        #[cfg(feature = "invariants")]
        next.check_invariants()
            .map_err(|e| Error::InvalidArgument(format!("metadata group breaks the state: {e}")))?;
        let payload = encode_group(&records).map_err(Error::InvalidArgument)?;
        let frame = encode_frame(&payload)?;
        let Some(file) = self.file.as_mut() else {
            return Err(Error::Poisoned {
                reason: "the metadata log has no open file".into(),
            });
        };
        let written = file
            .write_all(&frame)
            .and_then(|()| file.flush())
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            self.poison(format!("appending to {} failed: {e}", self.path.display()));
            return Err(Error::io(&self.path, e));
        }
        self.size += frame.len() as u64;
        self.records_written += records.len() as u64;
        self.state = next;
        if self.size > self.rewrite_threshold.max(self.rewrite_floor) {
            if let Err(e) = self.rewrite() {
                log::warn!("automatic rewrite of {} failed: {e}", self.path.display());
                // Do not retry on every commit.
                self.rewrite_floor = self.size.saturating_mul(2);
            }
        }
        Ok(())
    }

    /// Creates a keyspace with the next free id and returns the id (one committed group).
    ///
    /// # Errors
    /// As [`MetaLog::commit`]; `InvalidArgument` if the name is taken.
    #[allow(dead_code)] // API for stats and tools, not used by the engine yet.
    pub(crate) fn create_keyspace(&mut self, name: &str, options: Vec<u8>) -> Result<u32> {
        let id = self.state.next_keyspace_id;
        self.commit(vec![MetaRecord::CreateKeyspace {
            id,
            name: name.to_owned(),
            options,
        }])?;
        Ok(id)
    }

    /// Logs `PrepareRun` for a new run of `keyspace` with the next free run id and returns the
    /// id. The run file may be created once this returns.
    ///
    /// # Errors
    /// As [`MetaLog::commit`]; `InvalidArgument` if the keyspace does not exist.
    pub(crate) fn prepare_run(&mut self, keyspace: u32) -> Result<u64> {
        let run = self.state.next_run_id;
        self.commit(vec![MetaRecord::PrepareRun { keyspace, run }])?;
        Ok(run)
    }

    /// Replaces the log with a compact one holding one frame of
    /// [`MetaState::snapshot_records`]: written to `meta.log.tmp`, synced, renamed over
    /// `meta.log`, directory synced, then reopened for appending. A crash at any point leaves
    /// either the old or the new log, and both replay to the same state.
    ///
    /// # Errors
    /// [`Error::Io`]. A failure before the rename leaves the old log in use; from the rename on
    /// the log is poisoned (its durable name is uncertain). [`Error::Poisoned`] after an
    /// earlier failure.
    pub(crate) fn rewrite(&mut self) -> Result<()> {
        self.check_poisoned()?;
        let records = self.state.snapshot_records();
        let payload = encode_group(&records).map_err(Error::InvalidArgument)?;
        let mut image = header_bytes().to_vec();
        image.extend_from_slice(&encode_frame(&payload)?);
        match install(&*self.fs, &self.dir, &self.path, &image) {
            Ok(()) => {}
            Err((false, e)) => return Err(e),
            Err((true, e)) => {
                self.file = None;
                self.poison(format!("rewriting {} failed: {e}", self.path.display()));
                return Err(e);
            }
        }
        // The old handle points at the replaced file.
        self.file = None;
        let file = match self.fs.open_append(&self.path) {
            Ok(file) => file,
            Err(e) => {
                self.poison(format!(
                    "reopening {} after a rewrite failed: {e}",
                    self.path.display()
                ));
                return Err(Error::io(&self.path, e));
            }
        };
        self.size = file.len();
        self.file = Some(file);
        self.rewrites += 1;
        self.rewrite_floor = self.size.saturating_mul(2);
        log::debug!(
            "rewrote {} to {} bytes ({} records)",
            self.path.display(),
            self.size,
            records.len()
        );
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod test_support {
    //! Helpers for building log images by hand.
    use super::*;

    /// The header of this version.
    pub(crate) fn header() -> Vec<u8> {
        header_bytes().to_vec()
    }

    /// A frame holding `records`.
    pub(crate) fn frame(records: &[MetaRecord]) -> Vec<u8> {
        encode_frame(&encode_group(records).unwrap()).unwrap()
    }

    /// A frame holding arbitrary payload bytes.
    pub(crate) fn raw_frame(payload: &[u8]) -> Vec<u8> {
        encode_frame(payload).unwrap()
    }
}
