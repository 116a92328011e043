//! # strata: an embedded LSM-tree storage engine in the style of Tarantool's vinyl
//!
//! The crate applications depend on. It owns time, threads and durability: the write-ahead log,
//! memtables, dumps of memtables into runs, the metadata log, crash recovery, read views,
//! transactions, the compaction scheduler and the tuple layer. It builds on `strata-sstable` (the
//! run file format) and `strata-compaction` (merging and policy).

mod error;
pub mod fs;
#[allow(dead_code)]
mod meta;
#[allow(dead_code)]
mod wal;

pub use error::{Error, Result};
pub use strata_sstable as sstable;
