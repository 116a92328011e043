//! # strata: an embedded LSM-tree storage engine in the style of Tarantool's vinyl
//!
//! The crate applications depend on. It owns time, threads and durability; it builds on
//! `strata-sstable` (the run file format) and `strata-compaction` (merging and policy).
//!
//! ```
//! # fn main() -> strata::Result<()> {
//! # let dir = tempfile::tempdir().map_err(|e| strata::Error::io("tmp", e))?;
//! let db = strata::Db::open(dir.path(), strata::Options::default())?;
//! let users = db.keyspace("users", strata::KeyspaceOptions::default())?;
//! users.put("alice", "admin")?;
//! let view = db.snapshot();
//! users.put("alice", "guest")?;
//! assert_eq!(users.get("alice")?.as_deref(), Some(&b"guest"[..]));
//! assert_eq!(view.get(&users, "alice")?.as_deref(), Some(&b"admin"[..]));
//! # Ok(()) }
//! ```
//!
//! ## Architecture
//!
//! - **Write path** ([`Keyspace::put`], [`WriteBatch`]): a batch is validated, throttled by the
//!   memory quota (`quota`), given consecutive seqnos and written to the write-ahead log by the
//!   commit pipeline (`commit`: group commit, one leader writes and syncs for everyone queued),
//!   inserted into the keyspaces' active memtables (`memtable`, lock-free skiplists) and made
//!   visible in seqno order, so readers never see a hole.
//! - **Dumps** (`dump`): above half the memory limit the largest active memtable is sealed at an
//!   exact seqno boundary and a background thread writes it to a run; the metadata log (`meta`)
//!   records the run and the keyspace's dumped seqno atomically; WAL segments (`wal`) whose
//!   records are all dumped are deleted.
//! - **Reads** (`read`, `iter`): memtables newest first, then runs newest first (skipped by key
//!   range and bloom filter); iterators merge every source with a heap and resolve each key to its
//!   newest version at their read seqno. A [`Snapshot`] pins a seqno; an [`Iter`] pins the tree
//!   version it reads.
//! - **Transactions** ([`Transaction`], `txn`): buffered writes committed as one batch; reads
//!   recorded as key intervals; every commit is checked against open transactions under the
//!   commit lock (vinyl's rule: a reader whose reads were overwritten is doomed if it wrote,
//!   else sent to a read view).
//! - **Upserts** ([`merge`]): Merge entries folded by the keyspace's [`MergeOperator`] in
//!   reads, in compaction, and by background squashes of long memtable chains.
//! - **Spaces** ([`space`]): MessagePack tuples with typed primary and secondary indexes, each
//!   index a keyspace, every operation one transaction.
//! - **Recovery** (`recovery`): replay the metadata log, delete files of unfinished runs, open
//!   the live runs, replay WAL records newer than each keyspace's dumped seqno.
//! - **Files** go through the [`fs::Fs`] trait: the real file system, or an in-memory one that
//!   simulates crashes and injects faults in tests.
//!
//! File formats: `sstable/FORMAT.md` (runs), `engine/WAL.md`, `engine/METADATA.md`,
//! `engine/SPACES.md` (index keys and the space catalogue).

mod batch;
mod commit;
mod compact;
mod db;
mod dump;
mod error;
pub mod fs;
pub mod inspect;
mod iter;
mod keyspace;
mod memtable;
pub mod merge;
mod meta;
mod options;
mod quota;
mod ranges_source;
mod read;
mod recovery;
mod regulator;
mod snapshot;
pub mod space;
mod stats;
mod txn;
mod version;
mod wal;
mod write_batch;

pub use bytes::Bytes;
pub use db::Db;
pub use error::{Error, Result};
pub use iter::Iter;
pub use keyspace::{Key, Keyspace, Value};
pub use merge::MergeOperator;
pub use options::{KeyspaceOptions, Options, WalMode, WalRecovery};
pub use snapshot::Snapshot;
pub use space::{
    FieldType, IndexDef, IteratorType, Space, SpaceDef, SpaceTx, Tuple, TupleError, UpdateOp,
};
pub use stats::{
    DbStats, KeyspaceStats, LevelStats, MemoryStats, RangeStats, ReadViewStats, TransactionStats,
    WalStats, WriteAmplificationByLevel,
};
pub use strata_sstable as sstable;
pub use strata_sstable::Compression;
pub use txn::{Savepoint, Transaction, TxnIter};
pub use write_batch::WriteBatch;
