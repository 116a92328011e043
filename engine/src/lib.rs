//! # strata: an embedded LSM-tree storage engine in the style of Tarantool's vinyl
//!
//! The crate applications depend on. It owns time, threads and durability: the write-ahead log,
//! memtables, dumps of memtables into runs, the metadata log, crash recovery, read views,
//! transactions, the compaction scheduler and the tuple layer. It builds on `strata-sstable` (the
//! run file format) and `strata-compaction` (merging and policy).
//!
//! The engine is being built issue by issue; today this crate re-exports the run format so the
//! tools and benchmarks can already work with runs.

pub use strata_sstable as sstable;
