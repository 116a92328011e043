//! # strata-compaction: merging runs and deciding when to
//!
//! The middle layer of strata, between the run file format (`strata-sstable`) and the engine
//! (`strata`). It holds the pieces of compaction that need no knowledge of threads, files or the
//! metadata log, so they can be tested as pure functions:
//!
//! - merge iterators: a k-way heap merge of sorted entry sources (runs, memtables) in internal
//!   order (user key ascending, seqno descending);
//! - version garbage collection (vinyl's "write iterator"): given the live read views, keep one
//!   version per read-view interval, fold merge operands, drop deletes at the bottom level;
//! - the compaction policy: vinyl's per-range levels computed from run sizes
//!   (`run_size_ratio`, `run_count_per_level`), choosing which runs of a range to merge.
//!
//! The engine runs the chosen compactions on its background threads. This crate is filled in by
//! the compaction issue; until then it only re-exports the entry vocabulary it will work on.

pub use strata_sstable::{compare_internal, Entry, EntryKind};
