//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong writing or reading a run file.
///
/// Corruption is always reported as [`Error::Corruption`] with the file and the byte offset where the
/// bad structure starts, so an operator can find it with `strata sst pages` or a hex dump.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system reported an error reading or writing `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file being accessed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Bytes in `path` at `offset` do not decode to a valid structure (checksum mismatch, bad
    /// length, impossible value, keys out of order, ...).
    #[error("corruption in {path} at offset {offset}: {what}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// File offset of the structure that failed to decode (page, block or footer start).
        offset: u64,
        /// What was expected and what was found.
        what: String,
    },
    /// The file is a run file, but of a format version this build cannot read.
    #[error("{path}: run format version {version} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its footer.
        version: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A key longer than [`crate::MAX_KEY_LEN`] was given to the writer.
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than the writer's configured maximum was given to the writer.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A seqno at or above 2^56 was given to the writer.
    #[error("seqno {seqno} exceeds the maximum {max}")]
    SeqnoOutOfRange {
        /// The rejected seqno.
        seqno: u64,
        /// [`crate::MAX_SEQNO`].
        max: u64,
    },
    /// The writer was given an entry that does not sort strictly after the previous one.
    #[error("entries out of order in {path}: ({key:?}, seqno {seqno}) does not sort after the previous entry ({prev_key:?}, seqno {prev_seqno})")]
    OutOfOrder {
        /// The run being written.
        path: PathBuf,
        /// The previous entry's user key (lossily printed).
        prev_key: String,
        /// The previous entry's seqno.
        prev_seqno: u64,
        /// The rejected entry's user key (lossily printed).
        key: String,
        /// The rejected entry's seqno.
        seqno: u64,
    },
    /// An option value is outside its valid range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

impl Error {
    /// Builds an [`Error::Corruption`].
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }

    /// Builds an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True if this error says the bytes on disk are damaged (as opposed to an I/O failure or a
    /// caller mistake).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corruption { .. } | Error::UnsupportedVersion { .. }
        )
    }
}

/// A decoding failure inside a structure, before the caller attaches the file path and the
/// structure's file offset. Keeps the low-level decoders free of path plumbing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub String);

impl DecodeError {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        DecodeError(what.into())
    }

    pub(crate) fn at(self, path: &std::path::Path, offset: u64) -> Error {
        Error::corruption(path, offset, self.0)
    }
}

pub(crate) type DecodeResult<T> = std::result::Result<T, DecodeError>;
