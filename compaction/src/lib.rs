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
//! The engine runs the chosen compactions on its background threads.
//!
//! ## Merge iterators
//!
//! Everything that reads more than one sorted input goes through [`EntrySource`]: a
//! bidirectional cursor in internal order with LevelDB's vocabulary (`seek_to_first`,
//! `seek_to_last`, `seek`, `seek_for_prev`, `next`, `prev`, `valid`, accessors for the current
//! entry). Seeks take a (key, seqno) target, so a reader positions at "the newest version of `key`
//! visible at `seqno`" directly; `u64::MAX` and `0` as seqnos mean "before" and "after" every
//! version of the key. Movement returns the run format's error type ([`SourceResult`]).
//!
//! - [`strata_sstable::RunIter`] is a source (its bounds are honoured);
//! - [`VecSource`] is a source over an owned, sorted `Vec<Entry>` (tests, small in-memory inputs);
//! - [`MergeIter`] merges any number of boxed sources ([`BoxedSource`], given newest first) with a
//!   binary heap of source indices, and is itself a source, so merges nest. It yields every
//!   version of every source; equal (key, seqno) pairs across sources (an unhealthy database)
//!   come out deterministically, the lower-index source's first. Changing direction repositions
//!   all sources, as in LevelDB's `MergingIterator`; errors from any source propagate and leave
//!   the merge invalid until the next seek.
//!
//! ```
//! use strata_compaction::{BoxedSource, Entry, EntryKind, EntrySource, MergeIter, VecSource};
//! # fn main() -> Result<(), strata_sstable::Error> {
//! let memtable = VecSource::new(vec![Entry::new("b", 9, EntryKind::Put, "new")]);
//! let run = VecSource::new(vec![
//!     Entry::new("a", 3, EntryKind::Put, "x"),
//!     Entry::new("b", 2, EntryKind::Put, "old"),
//! ]);
//! let sources: Vec<BoxedSource> = vec![Box::new(memtable), Box::new(run)];
//! let mut merge = MergeIter::new(sources);
//!
//! merge.seek(b"b", u64::MAX)?; // the newest version of "b"
//! assert_eq!((merge.key(), merge.seqno()), (&b"b"[..], 9));
//! merge.next()?;
//! assert_eq!(&merge.value()[..], b"old");
//! merge.prev()?; // turning around is allowed
//! merge.prev()?;
//! assert_eq!(merge.key(), b"a");
//! # Ok(()) }
//! ```

mod merge;
mod source;

pub use merge::MergeIter;
pub use source::{BoxedSource, EntrySource, SourceResult, VecSource};
pub use strata_sstable::{compare_internal, Entry, EntryKind};
