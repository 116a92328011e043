//! The conflict manager: vinyl's serializable optimistic concurrency control.
//!
//! Every read-write transaction has a *slot* holding the key intervals it read. Every commit
//! (transactional or not) passes [`ConflictManager::check_commit`] under the commit lock, just
//! before its seqnos are assigned, so checks are ordered exactly like commits. A commit whose
//! written keys fall in another open transaction's read intervals:
//! - dooms that transaction if it has written anything (it gets [`Error::Conflict`] at its next
//!   read, write or commit);
//! - otherwise sends it to a *read view* at the seqno visible just before the commit: it keeps
//!   reading that consistent past, and fails only if it later tries to write.
//!
//! A transaction that did not read a key cannot conflict on it: blind writes never conflict.
//!
//! # Why reads are race-free
//! A read registers its interval and takes its read seqno (the visible one) in one step under
//! the manager's lock. A commit checked *before* that step but not yet visible at it is still in
//! the `committing` list, so the read sees it and waits for it to become visible instead of
//! reading under it. Commits checked before the transaction even began (when no slot could see
//! them) all have seqnos up to the `begin_seqno` taken at begin, and the first read waits for
//! that seqno to be visible.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use crate::batch::BatchEntry;
use crate::commit::CommitPipeline;
use crate::error::{Error, Result};
use crate::snapshot::ReadViews;

/// The upper end of a key interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upper {
    Included(Bytes),
    Excluded(Bytes),
    Unbounded,
}

impl Upper {
    fn covers(&self, key: &[u8]) -> bool {
        match self {
            Upper::Included(hi) => key <= hi.as_ref(),
            Upper::Excluded(hi) => key < hi.as_ref(),
            Upper::Unbounded => true,
        }
    }

    fn max(self, other: Upper) -> Upper {
        match (self, other) {
            (Upper::Unbounded, _) | (_, Upper::Unbounded) => Upper::Unbounded,
            (Upper::Included(a), Upper::Included(b)) => Upper::Included(a.max(b)),
            (Upper::Excluded(a), Upper::Excluded(b)) => Upper::Excluded(a.max(b)),
            (Upper::Included(a), Upper::Excluded(b)) | (Upper::Excluded(b), Upper::Included(a)) => {
                if a >= b {
                    Upper::Included(a)
                } else {
                    Upper::Excluded(b)
                }
            }
        }
    }
}

/// A key interval `[lower, upper]`: `lower` inclusive (the empty key is the smallest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interval {
    pub lower: Bytes,
    pub upper: Upper,
}

impl Interval {
    /// The one-key interval `[key, key]`.
    pub fn point(key: &[u8]) -> Interval {
        let key = Bytes::copy_from_slice(key);
        Interval {
            lower: key.clone(),
            upper: Upper::Included(key),
        }
    }

    /// The interval of a range's bounds.
    pub fn from_bounds(lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> Interval {
        let lower = match lower {
            Bound::Included(k) => k.clone(),
            // The smallest key above `k` is `k ++ [0]`.
            Bound::Excluded(k) => {
                let mut next = k.to_vec();
                next.push(0);
                Bytes::from(next)
            }
            Bound::Unbounded => Bytes::new(),
        };
        let upper = match upper {
            Bound::Included(k) => Upper::Included(k.clone()),
            Bound::Excluded(k) => Upper::Excluded(k.clone()),
            Bound::Unbounded => Upper::Unbounded,
        };
        Interval { lower, upper }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.lower.as_ref() && self.upper.covers(key)
    }

    fn is_empty(&self) -> bool {
        !self.upper.covers(&self.lower)
    }
}

/// A union of key intervals, kept disjoint so a membership test is one ordered lookup.
#[derive(Debug, Default, Clone)]
pub(crate) struct IntervalSet {
    by_lower: BTreeMap<Bytes, Upper>,
}

impl IntervalSet {
    pub fn insert(&mut self, interval: Interval) {
        if interval.is_empty() {
            return;
        }
        let Interval {
            mut lower,
            mut upper,
        } = interval;
        if let Some((prev_lower, prev_upper)) = self.by_lower.range(..=lower.clone()).next_back() {
            if prev_upper.covers(&lower) {
                lower = prev_lower.clone();
                upper = upper.max(prev_upper.clone());
            }
        }
        loop {
            let next = self
                .by_lower
                .range((Bound::Excluded(lower.clone()), Bound::Unbounded))
                .next()
                .map(|(l, u)| (l.clone(), u.clone()));
            match next {
                Some((next_lower, next_upper)) if upper.covers(&next_lower) => {
                    upper = upper.max(next_upper);
                    self.by_lower.remove(&next_lower);
                }
                _ => break,
            }
        }
        self.by_lower.insert(lower, upper);
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.by_lower
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|(_, upper)| upper.covers(key))
    }

    pub fn len(&self) -> usize {
        self.by_lower.len()
    }
}

/// An open read-write transaction's state in the manager.
#[derive(Debug, Default)]
struct Slot {
    /// Intervals read, per keyspace id.
    reads: HashMap<u32, IntervalSet>,
    /// Scans still open: (scan id, keyspace, whole requested interval). A scan protects its
    /// whole range while it runs and only what it returned once it ends.
    scans: Vec<(u64, u32, Interval)>,
    has_writes: bool,
    doomed: bool,
    read_view: Option<u64>,
    /// Commits up to this seqno were never checked against this transaction: reads wait until
    /// it is visible.
    begin_seqno: u64,
}

impl Slot {
    fn read_any(&self, keyspace: u32, key: &[u8]) -> bool {
        self.reads
            .get(&keyspace)
            .is_some_and(|set| set.contains(key))
            || self
                .scans
                .iter()
                .any(|(_, ks, interval)| *ks == keyspace && interval.contains(key))
    }
}

/// A commit checked but maybe not visible yet.
#[derive(Debug)]
struct Committing {
    id: u64,
    last_seqno: u64,
    writes: Vec<(u32, Bytes)>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    txns: HashMap<u64, Slot>,
    committing: Vec<Committing>,
}

/// Transaction counters.
#[derive(Debug, Default)]
pub(crate) struct TxnCounters {
    pub commits: AtomicU64,
    pub rollbacks: AtomicU64,
    pub conflicts: AtomicU64,
    pub sent_to_read_view: AtomicU64,
}

/// Where a read must be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAt {
    /// Read at this seqno.
    Seqno(u64),
    /// Wait until this seqno is visible, then ask again.
    WaitFor(u64),
}

/// See the module documentation. Thread-safe.
#[derive(Debug, Default)]
pub(crate) struct ConflictManager {
    state: Mutex<State>,
    pub counters: TxnCounters,
}

fn conflict(reason: &str) -> Error {
    Error::Conflict {
        reason: reason.to_string(),
    }
}

impl ConflictManager {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a slot; returns its id. Runs under the commit lock so the begin seqno is exact.
    pub fn begin(&self, commit: &CommitPipeline) -> u64 {
        commit.with_next_seqno(|next| {
            let mut state = self.lock();
            let id = state.next_id;
            state.next_id += 1;
            state.txns.insert(
                id,
                Slot {
                    begin_seqno: next.saturating_sub(1),
                    ..Slot::default()
                },
            );
            id
        })
    }

    /// Closes a slot (commit done, rollback or drop) and releases its read view. Idempotent.
    pub fn finish(&self, id: u64, read_views: &ReadViews) {
        let slot = self.lock().txns.remove(&id);
        if let Some(view) = slot.and_then(|s| s.read_view) {
            read_views.unregister(view);
        }
    }

    /// Closes the slot of a transaction that commits without writes.
    ///
    /// # Errors
    /// [`Error::Conflict`] if it was doomed (it wrote, then rolled the writes back, and what it
    /// read was overwritten meanwhile).
    pub fn finish_checked(&self, id: u64, read_views: &ReadViews) -> Result<()> {
        let slot = self.lock().txns.remove(&id);
        let Some(slot) = slot else {
            return Ok(());
        };
        if let Some(view) = slot.read_view {
            read_views.unregister(view);
        }
        if slot.doomed {
            return Err(self.count_conflict("another transaction overwrote what this one read"));
        }
        Ok(())
    }

    fn count_conflict(&self, reason: &str) -> Error {
        self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
        conflict(reason)
    }

    /// Registers a read of `interval` in `keyspace` and says where to read it.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the transaction is doomed.
    pub fn read(
        &self,
        id: u64,
        keyspace: u32,
        interval: Interval,
        visible: &dyn Fn() -> u64,
    ) -> Result<ReadAt> {
        self.register(id, keyspace, interval, false, visible)
            .map(|(at, _)| at)
    }

    /// Registers an open scan over `interval` (see [`ConflictManager::read`]); returns where to
    /// read and the scan's id for [`ConflictManager::end_scan`] (`None`: nothing to end).
    pub fn begin_scan(
        &self,
        id: u64,
        keyspace: u32,
        interval: Interval,
        visible: &dyn Fn() -> u64,
    ) -> Result<(ReadAt, Option<u64>)> {
        self.register(id, keyspace, interval, true, visible)
    }

    fn register(
        &self,
        id: u64,
        keyspace: u32,
        interval: Interval,
        scan: bool,
        visible: &dyn Fn() -> u64,
    ) -> Result<(ReadAt, Option<u64>)> {
        let mut state = self.lock();
        let State {
            next_id,
            txns,
            committing,
        } = &mut *state;
        let Some(slot) = txns.get_mut(&id) else {
            return Err(conflict("the transaction is finished"));
        };
        if slot.doomed {
            drop(state);
            return Err(self.count_conflict("another transaction overwrote what this one read"));
        }
        if let Some(view) = slot.read_view {
            // Nothing to track: the view never changes, and any write now fails.
            return Ok((ReadAt::Seqno(view), None));
        }
        let seqno = visible();
        if seqno < slot.begin_seqno {
            return Ok((ReadAt::WaitFor(slot.begin_seqno), None));
        }
        let pending = committing
            .iter()
            .filter(|c| {
                c.last_seqno > seqno
                    && c.writes
                        .iter()
                        .any(|(ks, key)| *ks == keyspace && interval.contains(key))
            })
            .map(|c| c.last_seqno)
            .max();
        if let Some(last) = pending {
            return Ok((ReadAt::WaitFor(last), None));
        }
        if scan {
            let scan_id = *next_id;
            *next_id += 1;
            slot.scans.push((scan_id, keyspace, interval));
            Ok((ReadAt::Seqno(seqno), Some(scan_id)))
        } else {
            slot.reads.entry(keyspace).or_default().insert(interval);
            Ok((ReadAt::Seqno(seqno), None))
        }
    }

    /// Ends a scan: from now on only `covered` (what it returned, gaps included) stays read.
    pub fn end_scan(&self, id: u64, scan_id: u64, covered: Vec<Interval>) {
        let mut state = self.lock();
        let Some(slot) = state.txns.get_mut(&id) else {
            return;
        };
        let Some(position) = slot.scans.iter().position(|s| s.0 == scan_id) else {
            return;
        };
        let (_, keyspace, _) = slot.scans.swap_remove(position);
        let set = slot.reads.entry(keyspace).or_default();
        for interval in covered {
            set.insert(interval);
        }
    }

    /// Records that the transaction buffers a write.
    ///
    /// # Errors
    /// [`Error::Conflict`] if it is doomed, or was sent to a read view (a write there could not
    /// be serialized).
    pub fn write(&self, id: u64) -> Result<()> {
        let mut state = self.lock();
        let Some(slot) = state.txns.get_mut(&id) else {
            return Err(conflict("the transaction is finished"));
        };
        if slot.doomed {
            drop(state);
            return Err(self.count_conflict("another transaction overwrote what this one read"));
        }
        if slot.read_view.is_some() {
            drop(state);
            return Err(self.count_conflict(
                "another transaction overwrote what this one read, so it reads an older view \
                 and cannot write",
            ));
        }
        slot.has_writes = true;
        Ok(())
    }

    /// The commit gate: called under the commit lock with the commit's first seqno and entries.
    /// Closes the committing transaction's slot (`txn`), failing if it is doomed; dooms or
    /// sends to a read view every open transaction that read a written key; and, if any is
    /// open, records the commit as in flight until [`ConflictManager::committed`].
    ///
    /// # Errors
    /// [`Error::Conflict`] if `txn` is doomed or in a read view.
    pub fn check_commit(
        &self,
        txn: Option<u64>,
        first_seqno: u64,
        entries: &[BatchEntry],
        read_views: &ReadViews,
        commit: &CommitPipeline,
    ) -> Result<Option<u64>> {
        let mut state = self.lock();
        if let Some(id) = txn {
            if let Some(slot) = state.txns.remove(&id) {
                if let Some(view) = slot.read_view {
                    read_views.unregister(view);
                }
                if slot.doomed || slot.read_view.is_some() {
                    drop(state);
                    return Err(
                        self.count_conflict("another transaction overwrote what this one read")
                    );
                }
            }
        }
        if state.txns.is_empty() {
            return Ok(None);
        }
        for slot in state.txns.values_mut() {
            if slot.doomed || slot.read_view.is_some() {
                continue;
            }
            if entries.iter().any(|e| slot.read_any(e.keyspace, &e.key)) {
                if slot.has_writes {
                    slot.doomed = true;
                } else {
                    // This commit is not visible yet (its seqnos are being assigned now).
                    let view = read_views.register_current(|| commit.visible_seqno());
                    slot.read_view = Some(view);
                    self.counters
                        .sent_to_read_view
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        state.committing.push(Committing {
            id,
            last_seqno: first_seqno + entries.len().saturating_sub(1) as u64,
            writes: entries
                .iter()
                .map(|e| (e.keyspace, e.key.clone()))
                .collect(),
        });
        Ok(Some(id))
    }

    /// The commit recorded by [`ConflictManager::check_commit`] is visible (or failed).
    pub fn committed(&self, commit_id: u64) {
        self.lock().committing.retain(|c| c.id != commit_id);
    }

    /// (open read-write transactions, tracked read intervals).
    pub fn summary(&self) -> (usize, usize) {
        let state = self.lock();
        let intervals = state
            .txns
            .values()
            .map(|s| s.reads.values().map(IntervalSet::len).sum::<usize>() + s.scans.len())
            .sum();
        (state.txns.len(), intervals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn closed(lo: &str, hi: &str) -> Interval {
        Interval {
            lower: b(lo),
            upper: Upper::Included(b(hi)),
        }
    }

    #[test]
    fn interval_sets_merge_overlaps_and_answer_membership() {
        let mut set = IntervalSet::default();
        set.insert(closed("d", "f"));
        set.insert(closed("a", "b"));
        set.insert(Interval::point(b"m"));
        assert_eq!(set.len(), 3);
        assert!(set.contains(b"a") && set.contains(b"aa") && set.contains(b"b"));
        assert!(!set.contains(b"c") && !set.contains(b"ba") && !set.contains(b"g"));
        assert!(set.contains(b"m") && !set.contains(b"ma"));
        // Bridges the first two and swallows nothing else.
        set.insert(closed("b", "e"));
        assert_eq!(set.len(), 2);
        assert!(set.contains(b"c") && set.contains(b"f"));
        set.insert(Interval::from_bounds(
            &Bound::Excluded(b("g")),
            &Bound::Unbounded,
        ));
        assert!(set.contains(b"ga") && set.contains(b"zzz") && !set.contains(b"g"));
        assert_eq!(set.len(), 2, "m was swallowed by (g, inf)");
        // Empty intervals are ignored.
        let mut empty = IntervalSet::default();
        empty.insert(Interval::from_bounds(
            &Bound::Included(b("k")),
            &Bound::Excluded(b("k")),
        ));
        assert_eq!(empty.len(), 0);
    }

    #[test]
    fn interval_set_matches_a_naive_model() {
        // Deterministic pseudo-random intervals over a small alphabet.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let keys: Vec<Bytes> = (0..12u8).map(|i| Bytes::from(vec![b'a' + i])).collect();
        for _ in 0..200 {
            let mut set = IntervalSet::default();
            let mut model = Vec::new();
            for _ in 0..6 {
                let lo = keys[(next() % 12) as usize].clone();
                let hi = keys[(next() % 12) as usize].clone();
                let upper = match next() % 3 {
                    0 => Upper::Included(hi),
                    1 => Upper::Excluded(hi),
                    _ => Upper::Unbounded,
                };
                let interval = Interval { lower: lo, upper };
                set.insert(interval.clone());
                model.push(interval);
            }
            for probe in (0..14u8).map(|i| vec![b'a' - 1 + i]) {
                let expected = model.iter().any(|i| i.contains(&probe));
                assert_eq!(set.contains(&probe), expected, "{model:?} {probe:?}");
            }
        }
    }
}
