//! Version garbage collection: vinyl's "write iterator".
//!
//! [`VersionGc`] reads a merged [`EntrySource`] (every version of every key, in internal order:
//! key ascending, seqno descending) and yields the entries a compaction writes to its output
//! run: for each key, the fewest versions that still give every live reader the same answer.
//!
//! # Read views and intervals
//!
//! A reader at seqno `s` sees, for each key, the newest version with seqno `<= s`; a Merge
//! operand makes it keep going down and fold the operands it collected onto the first Put
//! (its value), Delete or nothing (no value) below them, and a Delete (or nothing) means the key
//! is absent.
//!
//! The engine passes the seqnos of its live read views (snapshots, read-only transactions moved
//! to a read view) **and its current visible seqno as the newest one**. Sorted and deduplicated,
//! the views `v1 < v2 < ... < vn` cut the seqno space into intervals:
//!
//! ```text
//!   [0, v1]   (v1, v2]   ...   (v(n-1), vn]   (vn, inf)
//!   interval 1  interval 2       interval n     above every view
//! ```
//!
//! Every reader that can exist reads at one of the views, or at a seqno above `vn` (a snapshot
//! taken after the compaction started). The reader at `vi` sees exactly the versions in
//! intervals `1..=i`, newest first; within interval `i` it only ever looks at the newest
//! version, and deeper ones only when that is a Merge operand.
//!
//! # The rules, per key
//!
//! 1. **Above every view** (seqno `> vn`): every version is copied unchanged. No reader exists
//!    there yet, but one may appear at any of those seqnos (with `vn` = the visible seqno this
//!    only happens for versions committed but not yet visible). Passing `u64::MAX` as a view
//!    declares that no such reader will appear, so everything is collapsed; with no views at all
//!    everything is copied (only rule 4 applies).
//! 2. **One version per interval.** In interval `i` only the newest version matters, and the
//!    first Put or Delete (from the newest down) ends the interval: the versions below it in the
//!    same interval are dropped ([`GcStats::versions_dropped`]). A Put or Delete that is the
//!    interval's newest version is kept as it is.
//! 3. **Merge operands are folded.** When the interval's newest version is a Merge operand, the
//!    operands from it down to the interval's first Put/Delete form a chain, and its *base* is:
//!    - that Put (its value) or Delete (no value), if the interval has one; it is consumed by the
//!      fold (counted in [`GcStats::versions_dropped`]);
//!    - otherwise the result of the next older interval that has versions of the key, as the
//!      reader of that interval's view sees it (a Put's value, a fold's value, or no value for a
//!      Delete). That older result is still written for its own view: folding interval 2 onto
//!      interval 1 does not remove interval 1's version;
//!    - otherwise, when nothing older exists in the input: no value at the bottom of the range
//!      (rule 4), and *unknown* anywhere else, because older runs outside this compaction may
//!      hold the base.
//!
//!    With a merge function and a known base, the chain becomes **one Put** carrying the newest
//!    operand's seqno and the value `merge(key, base, operands newest first)`
//!    ([`GcStats::merges_folded`] counts the operands, [`GcStats::merge_calls`] the calls). With
//!    an unknown base, or with no merge function at all, the chain is copied unchanged (every
//!    operand, then the interval's Put/Delete if it has one), so readers still fold it
//!    themselves. Without a merge function Merge entries are never folded or rewritten.
//! 4. **At the bottom of the range** (`is_last_level`: the compaction covers the range's oldest
//!    run, so nothing lies below its output), there is no difference between a Delete and
//!    nothing. So a Delete with nothing written below it is dropped ([`GcStats::deletes_dropped`]);
//!    the versions it shadowed in its interval were dropped by rule 2 already. In particular
//!    when the oldest interval's newest version is a Delete, it goes with everything older, and
//!    the rule repeats upwards: a Delete in a newer interval whose older intervals left nothing
//!    is dropped too. A chain with nothing below folds onto no value and becomes a Put (rule 3).
//!    Not at the bottom, Deletes are kept: they shadow versions in older runs.
//!
//! The output for each key comes out newest first, strictly ordered, ready for a run writer.
//! With a merge function at the bottom, a key has at most one version per interval (plus the
//! versions above every view), no Merge below the newest view and never a Delete as its oldest
//! version.
//!
//! # Examples
//!
//! Views `[10, 20]`; input versions of one key, newest first (`put`, `del`, `merge`):
//!
//! ```text
//! input:   put@25  put@18 merge@15 put@12  del@8 put@3
//! interval: above  |----(10, 20]-------|   |-[0,10]-|
//! output (not bottom):  put@25 put@18 del@8     merge@15 and put@12 are shadowed by put@18;
//!                                               put@3 is shadowed by del@8
//! output (bottom):      put@25 put@18           del@8 has nothing below: dropped
//! ```
//!
//! Views `[10, 20]`, merge function = concatenation, operands newest first:
//!
//! ```text
//! input:   merge(c)@19 merge(b)@14   put(a)@9
//! output:  put(abc)@19               put(a)@9     base of interval 2 is interval 1's put(a),
//!                                                 which view 10 still needs
//!
//! input:   merge(c)@19 merge(b)@14   merge(a)@9
//! output (bottom):     put(abc)@19   put(a)@9     interval 1 folds onto no value
//! output (not bottom): merge(c)@19 merge(b)@14 merge(a)@9      base unknown: copied
//!
//! input:   merge(c)@19 del@17 put(x)@12   put(a)@9
//! output:  put(c)@19                      put(a)@9     the chain's base is del@17 (no value)
//! ```
//!
//! # Cost
//!
//! Entries are read once, forward. The only buffering is per key: the versions that survive
//! rule 2 (one per interval plus the Merge chains), so memory is bounded by the number of views
//! and the length of the longest operand chain, not by the number of versions of a hot key.
//!
//! ```
//! use bytes::Bytes;
//! use strata_compaction::{Entry, EntryKind, GcError, MergeFn, VecSource, VersionGc};
//!
//! # fn main() -> Result<(), GcError> {
//! let input = VecSource::new(vec![
//!     Entry::new("k", 19, EntryKind::Merge, "c"),
//!     Entry::new("k", 14, EntryKind::Merge, "b"),
//!     Entry::new("k", 9, EntryKind::Put, "a"),
//!     Entry::new("k", 5, EntryKind::Put, "old"),
//! ]);
//! let concat = |_key: &[u8], base: Option<&[u8]>, operands: &[Bytes]| {
//!     let mut value = base.unwrap_or_default().to_vec();
//!     for operand in operands.iter().rev() {
//!         value.extend_from_slice(operand);
//!     }
//!     Ok::<_, String>(value)
//! };
//! let merge: &MergeFn = &concat;
//! let mut gc = VersionGc::new(input, &[10, 20], true).with_merge_fn(merge);
//! let output = gc.by_ref().collect::<Result<Vec<Entry>, GcError>>()?;
//! assert_eq!(
//!     output,
//!     vec![
//!         Entry::new("k", 19, EntryKind::Put, "abc"),
//!         Entry::new("k", 9, EntryKind::Put, "a"),
//!     ]
//! );
//! let stats = gc.stats();
//! assert_eq!((stats.entries_in, stats.entries_out, stats.merges_folded), (4, 2, 2));
//! # Ok(()) }
//! ```

use std::fmt;
use std::iter::FusedIterator;

use bytes::Bytes;
use strata_sstable::{display_key, Entry, EntryKind};

use crate::source::EntrySource;

/// A merge function: `(key, base, operands) -> value`, folding Merge operands (given **newest
/// first**) onto a base value (`None` when the key has no value below them: a Delete, or nothing
/// at the bottom of the range).
///
/// It must be deterministic and behave like a full merge applied in steps: folding a chain in two
/// parts, `merge(k, Some(&merge(k, base, older)), newer)`, must equal
/// `merge(k, base, newer ++ older)`, because compaction folds chains per read-view interval and
/// readers fold what is left. An `Err(message)` (an operand the merge function rejects) leaves
/// the chain unfolded: it is copied as it is, so every reader of the key meets the same error,
/// and the rest of the compaction goes on ([`GcStats::merge_failures`] counts these).
pub type MergeFn = dyn Fn(&[u8], Option<&[u8]>, &[Bytes]) -> Result<Vec<u8>, String> + Send + Sync;

/// A partial merge function: `(key, operands) -> operand`, combining Merge operands (given
/// **newest first**, at least two) whose base is not known into one operand with the same
/// effect, or `None` to keep them apart. Used only for chains with an unknown base.
pub type PartialMergeFn = dyn Fn(&[u8], &[Bytes]) -> Option<Vec<u8>> + Send + Sync;

/// Why version garbage collection stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The source failed to move (I/O error, corruption); the error is the source's, unchanged.
    #[error(transparent)]
    Source(#[from] strata_sstable::Error),
}

/// Counters of one [`VersionGc`] run.
///
/// Every input entry is counted exactly once as written, dropped or folded, and every merge call
/// writes one Put, so
/// `entries_in + merge_calls == entries_out + versions_dropped + deletes_dropped + merges_folded`
/// once the iterator is exhausted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Entries read from the source.
    pub entries_in: u64,
    /// Entries yielded (copied versions and Puts made by folds).
    pub entries_out: u64,
    /// Versions dropped because a newer Put/Delete in the same read-view interval decides for
    /// every reader, including Put/Delete bases consumed by a fold in their own interval.
    pub versions_dropped: u64,
    /// Deletes dropped at the bottom of the range because nothing was written below them.
    pub deletes_dropped: u64,
    /// Merge operands consumed by the merge function.
    pub merges_folded: u64,
    /// Successful calls to the merge function (each wrote one Put) and to the partial merge
    /// function (each wrote one Merge).
    pub merge_calls: u64,
    /// Chains left unfolded because the merge function rejected them.
    pub merge_failures: u64,
}

/// The result, for the reader of an interval's view, of what has been decided below it.
#[derive(Debug, Clone)]
enum Below {
    /// Older runs outside the compaction may hold the answer.
    Unknown,
    /// The key's value (`None`: absent or deleted).
    Known(Option<Bytes>),
}

/// A run of surviving versions of the current key that share one interval:
/// `pending[start..end]`, newest first.
#[derive(Debug, Clone, Copy)]
struct Group {
    interval: usize,
    start: usize,
    end: usize,
    /// A Put or Delete ended the group: older versions of the interval are dropped.
    closed: bool,
}

/// Version garbage collection over a merged source: an iterator of the entries to write (see
/// the [module documentation](self) for the exact rules).
///
/// Build it with [`VersionGc::new`] and optionally [`VersionGc::with_merge_fn`]. The first call
/// to [`Iterator::next`] seeks the source to its first entry (bound the input with the sources'
/// own bounds, e.g. a [`strata_sstable::RunIter`]'s). Items come newest first per key, in strict
/// internal order. After an `Err` item the output is incomplete: the iterator then ends (it is
/// fused) and the compaction must be abandoned.
pub struct VersionGc<'a, S> {
    source: S,
    /// Sorted, deduplicated read views.
    views: Vec<u64>,
    is_last_level: bool,
    merge: Option<&'a MergeFn>,
    partial: Option<&'a PartialMergeFn>,
    started: bool,
    /// The source is exhausted or failed.
    done: bool,
    /// The current key's output, oldest first (yielded by popping).
    out: Vec<Entry>,
    /// Surviving versions of the key being read, newest first.
    pending: Vec<Entry>,
    groups: Vec<Group>,
    /// Scratch for the operands of one fold.
    operands: Vec<Bytes>,
    stats: GcStats,
}

impl<S> fmt::Debug for VersionGc<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionGc")
            .field("views", &self.views)
            .field("is_last_level", &self.is_last_level)
            .field("merge_fn", &self.merge.is_some())
            .field("done", &self.done)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'a, S: EntrySource> VersionGc<'a, S> {
    /// Garbage-collects `source` for the given read views (any order; duplicates are ignored).
    /// Pass the live snapshots' seqnos and the engine's current visible seqno.
    /// `is_last_level` says the output is the bottom of its range (the compaction merges the
    /// range's oldest run), which lets Deletes go. Without [`with_merge_fn`](Self::with_merge_fn)
    /// Merge operands are kept as they are.
    pub fn new(source: S, read_views: &[u64], is_last_level: bool) -> Self {
        let mut views = read_views.to_vec();
        views.sort_unstable();
        views.dedup();
        VersionGc {
            source,
            views,
            is_last_level,
            merge: None,
            partial: None,
            started: false,
            done: false,
            out: Vec::new(),
            pending: Vec::new(),
            groups: Vec::new(),
            operands: Vec::new(),
            stats: GcStats::default(),
        }
    }

    /// Folds Merge operand chains with `merge` (see [`MergeFn`] for its contract).
    #[must_use]
    pub fn with_merge_fn(mut self, merge: &'a MergeFn) -> Self {
        self.merge = Some(merge);
        self
    }

    /// Combines operand chains whose base is unknown with `partial` (see [`PartialMergeFn`]).
    #[must_use]
    pub fn with_partial_merge_fn(mut self, partial: &'a PartialMergeFn) -> Self {
        self.partial = Some(partial);
        self
    }

    /// The counters so far (final once the iterator returned `None`).
    pub fn stats(&self) -> GcStats {
        self.stats
    }

    /// The read views in use, sorted and deduplicated.
    pub fn read_views(&self) -> &[u64] {
        &self.views
    }

    /// True when Deletes with nothing below them are dropped.
    pub fn is_last_level(&self) -> bool {
        self.is_last_level
    }

    /// Gives the source back.
    pub fn into_source(self) -> S {
        self.source
    }

    /// The index of the interval holding `seqno`; `views.len()` for above every view.
    #[inline]
    fn interval_of(&self, seqno: u64) -> usize {
        self.views.partition_point(|&view| view < seqno)
    }

    /// Reads every version of the next key, applying rule 2 on the way, then resolves them
    /// into `out`. `Ok(false)` when the source is exhausted.
    fn fill(&mut self) -> Result<bool, GcError> {
        if !self.started {
            self.started = true;
            self.source.seek_to_first()?;
        }
        if !self.source.valid() {
            return Ok(false);
        }
        let key = Bytes::copy_from_slice(self.source.key());
        self.pending.clear();
        self.groups.clear();
        let above_all = self.views.len();
        while self.source.valid() && self.source.key() == &key[..] {
            let seqno = self.source.seqno();
            let kind = self.source.kind();
            self.stats.entries_in += 1;
            let interval = self.interval_of(seqno);
            debug_assert!(
                self.groups.last().is_none_or(|g| g.interval >= interval),
                "source versions out of seqno order for key {}",
                display_key(&key)
            );
            let closes = kind != EntryKind::Merge && interval != above_all;
            match self.groups.last_mut() {
                Some(group) if group.interval == interval => {
                    if group.closed {
                        self.stats.versions_dropped += 1;
                    } else {
                        group.end += 1;
                        group.closed = closes;
                        self.pending.push(Entry {
                            key: key.clone(),
                            seqno,
                            kind,
                            value: self.source.value(),
                        });
                    }
                }
                _ => {
                    let start = self.pending.len();
                    self.groups.push(Group {
                        interval,
                        start,
                        end: start + 1,
                        closed: closes,
                    });
                    self.pending.push(Entry {
                        key: key.clone(),
                        seqno,
                        kind,
                        value: self.source.value(),
                    });
                }
            }
            self.source.next()?;
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.resolve(&key, &pending);
        self.pending = pending;
        result.map(|()| true)
    }

    /// Writes the surviving versions of `key` (`pending`, grouped by `groups`) to `out`,
    /// oldest interval first, applying rules 1, 3 and 4.
    fn resolve(&mut self, key: &Bytes, pending: &[Entry]) -> Result<(), GcError> {
        let mut below = if self.is_last_level {
            Below::Known(None)
        } else {
            Below::Unknown
        };
        for index in (0..self.groups.len()).rev() {
            let group = self.groups[index];
            let versions = &pending[group.start..group.end];
            let Some(newest) = versions.first() else {
                continue;
            };
            if group.interval == self.views.len() {
                // Rule 1: above every view, copied (this is the key's newest group).
                self.keep_all(versions);
                continue;
            }
            match newest.kind {
                EntryKind::Put => {
                    below = Below::Known(Some(newest.value.clone()));
                    self.keep(newest.clone());
                }
                EntryKind::Delete => {
                    below = Below::Known(None);
                    self.keep(newest.clone());
                }
                EntryKind::Merge => {
                    let (operands, base) = match versions.split_last() {
                        Some((last, operands)) if group.closed => (operands, Some(last)),
                        _ => (versions, None),
                    };
                    let base_value = match (base, &below) {
                        (Some(base), _) => Some(match base.kind {
                            EntryKind::Put => Some(base.value.clone()),
                            _ => None,
                        }),
                        (None, Below::Known(value)) => Some(value.clone()),
                        (None, Below::Unknown) => None,
                    };
                    self.operands.clear();
                    self.operands
                        .extend(operands.iter().map(|operand| operand.value.clone()));
                    let folded = match (self.merge, &base_value) {
                        (Some(merge), Some(base_value)) => {
                            Some(merge(key, base_value.as_deref(), &self.operands))
                        }
                        _ => None,
                    };
                    match folded {
                        Some(Err(_)) => {
                            // A rejected operand: copy the chain so readers report it; nothing
                            // above can be folded onto it either.
                            self.stats.merge_failures += 1;
                            below = Below::Unknown;
                            self.keep_all(versions);
                        }
                        Some(Ok(value)) => {
                            let value = Bytes::from(value);
                            self.stats.merge_calls += 1;
                            self.stats.merges_folded += operands.len() as u64;
                            if base.is_some() {
                                self.stats.versions_dropped += 1;
                            }
                            below = Below::Known(Some(value.clone()));
                            self.out.push(Entry {
                                key: key.clone(),
                                seqno: newest.seqno,
                                kind: EntryKind::Put,
                                value,
                            });
                        }
                        None => {
                            // No merge function, or an unknown base: readers fold the chain.
                            // Nothing below depends on `below` any more without a merge
                            // function; with one, an unknown base stays unknown.
                            let combined = match self.partial {
                                Some(partial) if self.merge.is_some() && operands.len() > 1 => {
                                    partial(key, &self.operands)
                                }
                                _ => None,
                            };
                            match combined {
                                Some(value) if operands.len() == versions.len() => {
                                    self.stats.merge_calls += 1;
                                    self.stats.merges_folded += operands.len() as u64;
                                    self.keep(Entry {
                                        key: key.clone(),
                                        seqno: newest.seqno,
                                        kind: EntryKind::Merge,
                                        value: Bytes::from(value),
                                    });
                                }
                                _ => self.keep_all(versions),
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `versions` (newest first) unchanged, oldest first, subject to rule 4.
    fn keep_all(&mut self, versions: &[Entry]) {
        for version in versions.iter().rev() {
            self.keep(version.clone());
        }
    }

    /// Writes one version above everything written so far for its key, unless it is a Delete
    /// at the bottom with nothing below it (rule 4).
    fn keep(&mut self, version: Entry) {
        if version.kind == EntryKind::Delete && self.is_last_level && self.out.is_empty() {
            self.stats.deletes_dropped += 1;
        } else {
            self.out.push(version);
        }
    }
}

impl<S: EntrySource> Iterator for VersionGc<'_, S> {
    type Item = Result<Entry, GcError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.out.pop() {
                self.stats.entries_out += 1;
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(error) => {
                    self.done = true;
                    self.out.clear();
                    return Some(Err(error));
                }
            }
        }
    }
}

impl<S: EntrySource> FusedIterator for VersionGc<'_, S> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::VecSource;

    #[test]
    fn intervals_are_upper_inclusive() {
        let gc = VersionGc::new(VecSource::new(Vec::new()), &[20, 10, 10], false);
        assert_eq!(gc.read_views(), &[10, 20]);
        assert_eq!(gc.interval_of(0), 0);
        assert_eq!(gc.interval_of(10), 0);
        assert_eq!(gc.interval_of(11), 1);
        assert_eq!(gc.interval_of(20), 1);
        assert_eq!(gc.interval_of(21), 2);
    }

    #[test]
    fn empty_source_yields_nothing() {
        let mut gc = VersionGc::new(VecSource::new(Vec::new()), &[5], true);
        assert!(gc.next().is_none());
        assert!(gc.next().is_none());
        assert_eq!(gc.stats(), GcStats::default());
        assert!(format!("{gc:?}").contains("done: true"));
    }
}
