//! `strata::Error`: the one error type of the engine.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an engine operation can fail with.
///
/// Corruption always names the file and byte offset. After a failed fsync the database is
/// *poisoned*: every later write returns [`Error::Poisoned`] (an fsync is never retried, because
/// a retry can report success after the kernel dropped the dirty pages).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system reported an error on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Bytes in `path` at `offset` are damaged.
    #[error("corruption in {path} at offset {offset}: {what}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Offset of the structure that failed to decode.
        offset: u64,
        /// What was expected and what was found.
        what: String,
    },
    /// A file was written by a format version this build does not read.
    #[error("{path}: format version {version} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// An earlier fsync (or another write that must not be retried) failed; the database refuses
    /// further writes until it is reopened.
    #[error(
        "database is poisoned by an earlier failure and refuses writes until reopened: {reason}"
    )]
    Poisoned {
        /// The original failure.
        reason: String,
    },
    /// Another process (or another `Db` in this process) holds the database directory.
    #[error("database {path} is locked by another process or handle")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A writer waited longer than `Options::quota_timeout` for memory to be freed by dumps.
    #[error("write waited {waited_ms} ms for memory quota (dumps are not keeping up)")]
    QuotaTimeout {
        /// How long the writer waited.
        waited_ms: u64,
    },
    /// No keyspace has this name.
    #[error("keyspace {0:?} does not exist")]
    KeyspaceNotFound(String),
    /// A key longer than the limit (64 KiB).
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than `Options::max_value_len`.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An argument or option is invalid; the message says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The database has been closed.
    #[error("database is closed")]
    Closed,
    /// The keyspace's merge operator rejected an upsert operand of `key` (or the keyspace holds
    /// operands but was opened without an operator). Only this key's reads fail.
    #[error("merge of key {} in keyspace {keyspace:?} failed: {message}", strata_sstable::display_key(.key))]
    Merge {
        /// The keyspace.
        keyspace: String,
        /// The key whose operands could not be folded.
        key: Vec<u8>,
        /// What the merge operator said.
        message: String,
    },
    /// The keyspace was created with another merge operator (or none) than the one given.
    #[error("keyspace {keyspace:?} uses merge operator {stored:?}, but was opened with {given:?}")]
    MergeOperatorMismatch {
        /// The keyspace.
        keyspace: String,
        /// The operator name stored with the keyspace (`None`: no operator).
        stored: Option<String>,
        /// The operator name given now.
        given: Option<String>,
    },
    /// A transaction conflicted with another one that committed first (it read a key the other
    /// wrote, so committing it would not be serializable). Retry it from the start;
    /// [`Db::transact`](crate::Db::transact) does so automatically.
    #[error("transaction conflict: {reason}")]
    Conflict {
        /// Which operation found the conflict.
        reason: String,
    },
    /// A tuple, key, space definition or update operation is invalid; the error names the
    /// field, index or operation.
    #[error(transparent)]
    Tuple(#[from] crate::space::TupleError),
    /// An insert (or an update, replace or index build) would give two tuples the same key in
    /// a unique index.
    #[error("duplicate key in unique index {index:?} of space {space:?}")]
    DuplicateKey {
        /// The space.
        space: String,
        /// The unique index.
        index: String,
    },
    /// No space has this name.
    #[error("space {0:?} does not exist")]
    SpaceNotFound(String),
    /// A space with this name already exists.
    #[error("space {0:?} already exists")]
    SpaceExists(String),
    /// The space has no index of this name.
    #[error("space {space:?} has no index {index:?}")]
    IndexNotFound {
        /// The space.
        space: String,
        /// The index name asked for.
        index: String,
    },
    /// A transaction's buffered writes exceed `Options::max_transaction_bytes`.
    #[error("transaction buffers {bytes} bytes of writes, above the limit of {limit} bytes")]
    TransactionTooLarge {
        /// The transaction's buffered bytes including the rejected write.
        bytes: u64,
        /// `Options::max_transaction_bytes`.
        limit: u64,
    },
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }

    /// True if the error is a transaction conflict: retrying the transaction may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True if the error reports damaged bytes on disk.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corruption { .. } | Error::UnsupportedVersion { .. }
        )
    }
}

impl From<strata_sstable::Error> for Error {
    fn from(error: strata_sstable::Error) -> Self {
        use strata_sstable::Error as S;
        match error {
            S::Io { path, source } => Error::Io { path, source },
            S::Corruption { path, offset, what } => Error::Corruption { path, offset, what },
            S::UnsupportedVersion {
                path,
                version,
                supported,
            } => Error::UnsupportedVersion {
                path,
                version,
                supported,
            },
            S::KeyTooLarge { len, max } => Error::KeyTooLarge { len, max },
            S::ValueTooLarge { len, max } => Error::ValueTooLarge { len, max },
            other => Error::InvalidArgument(other.to_string()),
        }
    }
}
