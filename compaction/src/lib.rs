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
//! The engine runs the chosen compactions on its background threads: for each range it asks the
//! policy for a task, merges the task's input runs with a [`MergeIter`], filters the merge through
//! [`VersionGc`] and writes what comes out as one new run.
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
//!
//! ## Version garbage collection
//!
//! [`VersionGc`] wraps the merge of a compaction's inputs and yields what the output run must
//! hold: per key, one version per read-view interval (the newest in it), nothing below the first
//! Put/Delete of an interval, Merge chains folded onto their base with a caller-supplied
//! [`MergeFn`] into one Put, versions newer than every read view copied unchanged, and at the
//! bottom of a range Deletes with nothing below them dropped. It is an
//! `Iterator<Item = Result<Entry, GcError>>` whose [`GcStats`] count what it kept, dropped and
//! folded. The [`gc`] module documents the rules precisely, with examples.
//!
//! ```
//! use strata_compaction::{BoxedSource, Entry, EntryKind, MergeIter, VecSource, VersionGc};
//! # fn main() -> Result<(), strata_compaction::GcError> {
//! let run = VecSource::new(vec![
//!     Entry::new("a", 7, EntryKind::Delete, ""),
//!     Entry::new("a", 3, EntryKind::Put, "old"),
//!     Entry::new("b", 6, EntryKind::Put, "new"),
//!     Entry::new("b", 5, EntryKind::Put, "newish"), // nobody reads it: view 10 sees "new"
//!     Entry::new("b", 2, EntryKind::Put, "old"),
//! ]);
//! let merge = MergeIter::new(vec![Box::new(run) as BoxedSource]);
//! // One snapshot at seqno 4, visible seqno 10; the output is the bottom of its range.
//! let mut gc = VersionGc::new(merge, &[4, 10], true);
//! let output: Vec<Entry> = gc.by_ref().collect::<Result<_, _>>()?;
//! assert_eq!(output, vec![
//!     Entry::new("a", 7, EntryKind::Delete, ""), // the snapshot still reads "old" below it
//!     Entry::new("a", 3, EntryKind::Put, "old"),
//!     Entry::new("b", 6, EntryKind::Put, "new"),
//!     Entry::new("b", 2, EntryKind::Put, "old"),
//! ]);
//! assert_eq!(gc.stats().versions_dropped, 1);
//! # Ok(()) }
//! ```
//!
//! ## Compaction policy
//!
//! A [`CompactionPolicy`] looks at one range's runs ([`RangeRuns`]: [`RunSlice`] sizes and
//! seeds, newest first) and returns its shape ([`RangeShape`]: levels, debt) and the task to run
//! ([`CompactionTask`]: merge the newest `run_count` runs). [`VinylPolicy`] is vinyl's: levels
//! from run sizes with `run_size_ratio` and `run_count_per_level`, an overfull level merged with
//! every newer level, one run at the bottom, and a per-slice seed that lets a level keep an extra
//! run one time in ten so ranges do not all compact at once. `compaction/POLICY.md` explains it
//! with a worked example; the [`policy`] module has the precise rules.
//!
//! ```
//! use strata_compaction::{CompactionPolicy, RangeRuns, RunSlice, VinylPolicy};
//!
//! let policy = VinylPolicy::default();
//! let slices = [10u64, 10, 10, 100].map(|mib| RunSlice { bytes: mib << 20, seed: 0 });
//! let task = policy.pick(&RangeRuns::new(&slices)).expect("three runs on one level");
//! // Their 30 MiB output would share the bottom level with the 100 MiB run: merge everything.
//! assert_eq!((task.run_count, task.output_is_bottom), (4, true));
//! ```

pub mod gc;
mod merge;
pub mod policy;
mod source;

pub use gc::{GcError, GcStats, MergeFn, PartialMergeFn, VersionGc};
pub use merge::MergeIter;
pub use policy::{
    keeps_extra_run, CompactionPolicy, CompactionReason, CompactionTask, Level, PolicyError,
    RangeRuns, RangeShape, RunSlice, VinylPolicy, DEFAULT_RUN_COUNT_PER_LEVEL,
    DEFAULT_RUN_SIZE_RATIO, MIN_RUN_SIZE_RATIO,
};
pub use source::{BoxedSource, EntrySource, SourceResult, VecSource};
pub use strata_sstable::{compare_internal, Entry, EntryKind};
