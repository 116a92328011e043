//! The k-way merge of entry sources: LevelDB's `MergingIterator`, over a heap of source indices.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
use strata_sstable::{Entry, EntryKind};

use crate::source::{BoxedSource, EntrySource, SourceResult};

/// Which way the merge last moved, and so which way the heap is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Min-heap; every source other than the current one is at its first entry after the
    /// current entry.
    Forward,
    /// Max-heap; every source other than the current one is at its last entry before the
    /// current entry.
    Reverse,
}

/// A merge of several [`EntrySource`]s into one, in internal order; itself an [`EntrySource`], so
/// merges nest (a merge of merges behaves like one flat merge of all their sources, in the same
/// order).
///
/// # Sources and duplicates
///
/// Sources are given **newest first** (memtable, then runs from the newest to the oldest). The
/// merge yields every entry of every source: all versions, nothing dropped or folded (that is the
/// job of version garbage collection on top of it).
///
/// Two sources holding the same (key, seqno) should not happen in a healthy database (seqnos are
/// unique per key), but it is handled deterministically: the merge orders entries by (key
/// ascending, seqno descending, source index ascending). So among equal (key, seqno) pairs the
/// entry of the lower-index (newer) source comes first and the duplicates from higher-index
/// sources are still yielded, right after it; backwards, the reverse. Seeks follow the same total
/// order: [`seek`](EntrySource::seek) lands on the lowest-index duplicate,
/// [`seek_for_prev`](EntrySource::seek_for_prev) on the highest-index one. A source may itself
/// contain equal pairs (a nested merge over duplicates); they keep that source's order.
///
/// # Movement
///
/// A new merge is unpositioned; seek first. Each step advances one source and restores the heap:
/// O(log k) comparisons of the sources' current (key, seqno), which are read through the sources
/// and never copied. Changing direction (a [`prev`](EntrySource::prev) after forward moves or a
/// [`next`](EntrySource::next) after backward ones) repositions every other source with a seek,
/// as LevelDB's `MergingIterator` does: O(k) seeks, so scans should keep to one direction.
///
/// # Errors
///
/// An error from any source is returned unchanged and leaves the merge invalid (its movement
/// methods are then no-ops) until the next seek, which repositions every source.
///
/// # Panics
///
/// The accessors ([`key`](EntrySource::key) and the rest) panic when the merge is not
/// [`valid`](EntrySource::valid).
pub struct MergeIter {
    sources: Vec<BoxedSource>,
    /// Indices of the valid sources, heap-ordered by `direction`; the root is the current source.
    /// Empty when the merge is invalid.
    heap: Vec<usize>,
    direction: Direction,
}

impl fmt::Debug for MergeIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergeIter")
            .field("sources", &self.sources.len())
            .field("direction", &self.direction)
            .field("current_source", &self.current_source())
            .finish()
    }
}

/// The merge's total order on source positions: (key ascending, seqno descending, index
/// ascending). `a` and `b` must be valid.
#[inline]
fn compare(a_key: &[u8], a_seqno: u64, a: usize, b_key: &[u8], b_seqno: u64, b: usize) -> Ordering {
    strata_sstable::compare_internal(a_key, a_seqno, b_key, b_seqno).then(a.cmp(&b))
}

impl Direction {
    /// True when a position ordered `ord` relative to another belongs nearer the heap's root.
    #[inline]
    fn precedes(self, ord: Ordering) -> bool {
        match self {
            Direction::Forward => ord == Ordering::Less,
            Direction::Reverse => ord == Ordering::Greater,
        }
    }
}

/// Moves the source at `heap[pos]` down until neither child precedes it.
fn sift_down(heap: &mut [usize], sources: &[BoxedSource], direction: Direction, mut pos: usize) {
    let Some(&moving) = heap.get(pos) else {
        return;
    };
    let source = &sources[moving];
    let (key, seqno) = (source.key(), source.seqno());
    loop {
        let left = 2 * pos + 1;
        let Some(&left_index) = heap.get(left) else {
            break;
        };
        let (mut best, mut best_index) = (left, left_index);
        let (mut best_key, mut best_seqno) =
            (sources[left_index].key(), sources[left_index].seqno());
        if let Some(&right_index) = heap.get(left + 1) {
            let right = &sources[right_index];
            let (right_key, right_seqno) = (right.key(), right.seqno());
            let ord = compare(
                right_key,
                right_seqno,
                right_index,
                best_key,
                best_seqno,
                best_index,
            );
            if direction.precedes(ord) {
                (best, best_index, best_key, best_seqno) =
                    (left + 1, right_index, right_key, right_seqno);
            }
        }
        if !direction.precedes(compare(
            best_key, best_seqno, best_index, key, seqno, moving,
        )) {
            break;
        }
        heap[pos] = best_index;
        pos = best;
    }
    heap[pos] = moving;
}

impl MergeIter {
    /// A merge of `sources`, given newest first (see the type's documentation for what the order
    /// decides). The merge starts unpositioned; the sources' positions are ignored and replaced by
    /// the first seek. Any number of sources, including none, is allowed.
    pub fn new(sources: Vec<BoxedSource>) -> Self {
        MergeIter {
            heap: Vec::with_capacity(sources.len()),
            sources,
            direction: Direction::Forward,
        }
    }

    /// The number of sources.
    pub fn num_sources(&self) -> usize {
        self.sources.len()
    }

    /// The index (in the vector given to [`MergeIter::new`]) of the source the current entry
    /// comes from; `None` when the merge is invalid.
    pub fn current_source(&self) -> Option<usize> {
        self.heap.first().copied()
    }

    /// Gives the sources back, in their original order and in unspecified positions.
    pub fn into_sources(self) -> Vec<BoxedSource> {
        self.sources
    }

    // Every accessor goes through here (a merge of merges calls it once per level), so it must
    // not cost a call of its own.
    #[inline]
    fn current(&self) -> &dyn EntrySource {
        match self.heap.first() {
            Some(&index) => &*self.sources[index],
            None => {
                panic!("MergeIter accessed while not positioned on an entry (check valid() first)")
            }
        }
    }

    /// Makes the merge invalid and hands the error back.
    fn fail(&mut self, error: strata_sstable::Error) -> SourceResult {
        self.heap.clear();
        Err(error)
    }

    /// Rebuilds the heap from every valid source, ordered for `direction`.
    fn rebuild(&mut self, direction: Direction) {
        self.direction = direction;
        self.heap.clear();
        self.heap
            .extend((0..self.sources.len()).filter(|&i| self.sources[i].valid()));
        for pos in (0..self.heap.len() / 2).rev() {
            sift_down(&mut self.heap, &self.sources, direction, pos);
        }
    }

    /// Positions every source with `position`, then rebuilds the heap for `direction`.
    fn position_all(
        &mut self,
        direction: Direction,
        mut position: impl FnMut(&mut BoxedSource) -> SourceResult,
    ) -> SourceResult {
        self.heap.clear();
        for source in &mut self.sources {
            if let Err(error) = position(source) {
                return self.fail(error);
            }
        }
        self.rebuild(direction);
        Ok(())
    }

    /// Puts the root source back in its place after it moved: drops it if it ran out.
    fn settle_root(&mut self) {
        let Some(&root) = self.heap.first() else {
            return;
        };
        if !self.sources[root].valid() {
            self.heap.swap_remove(0);
        }
        // A lone source (the common case of a seek into one range with one run) stays the root;
        // sifting would only read its key to compare it with nothing.
        if self.heap.len() > 1 {
            sift_down(&mut self.heap, &self.sources, self.direction, 0);
        }
    }

    /// Turns the merge around at the current entry (source `current`): repositions every other
    /// source on the far side of the current entry in the merge's total order, then rebuilds the
    /// heap for `to`, with `current` at its root.
    fn turn(&mut self, current: usize, to: Direction) -> SourceResult {
        let (before, rest) = self.sources.split_at_mut(current);
        let Some((here, after)) = rest.split_first_mut() else {
            return Ok(());
        };
        let (key, seqno) = (here.key(), here.seqno());
        let at_current = |s: &BoxedSource| s.valid() && s.seqno() == seqno && s.key() == key;
        let result = (|| {
            match to {
                Direction::Forward => {
                    // Lower-index sources must get past their copies of (key, seqno), which sort
                    // before the current entry; higher-index ones stop at theirs, which follow it.
                    for source in before.iter_mut() {
                        source.seek(key, seqno)?;
                        while at_current(source) {
                            source.next()?;
                        }
                    }
                    for source in after.iter_mut() {
                        source.seek(key, seqno)?;
                    }
                }
                Direction::Reverse => {
                    for source in before.iter_mut() {
                        source.seek_for_prev(key, seqno)?;
                    }
                    for source in after.iter_mut() {
                        source.seek_for_prev(key, seqno)?;
                        while at_current(source) {
                            source.prev()?;
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(error) = result {
            return self.fail(error);
        }
        self.rebuild(to);
        debug_assert_eq!(
            self.heap.first(),
            Some(&current),
            "a source broke the EntrySource seek contract"
        );
        Ok(())
    }

    /// One step in `direction`, turning first if the merge last moved the other way.
    fn step(&mut self, direction: Direction) -> SourceResult {
        let Some(&current) = self.heap.first() else {
            return Ok(());
        };
        if self.direction != direction {
            self.turn(current, direction)?;
        }
        // The root is `current` again unless a source broke its seek contract; stepping the root
        // whatever it is keeps the heap holding valid sources only.
        let Some(&root) = self.heap.first() else {
            return Ok(());
        };
        let source = &mut self.sources[root];
        let result = match direction {
            Direction::Forward => source.next(),
            Direction::Reverse => source.prev(),
        };
        if let Err(error) = result {
            return self.fail(error);
        }
        self.settle_root();
        Ok(())
    }
}

impl EntrySource for MergeIter {
    #[inline]
    fn valid(&self) -> bool {
        !self.heap.is_empty()
    }

    #[inline]
    fn key(&self) -> &[u8] {
        self.current().key()
    }

    #[inline]
    fn seqno(&self) -> u64 {
        self.current().seqno()
    }

    #[inline]
    fn kind(&self) -> EntryKind {
        self.current().kind()
    }

    #[inline]
    fn value(&self) -> Bytes {
        self.current().value()
    }

    fn entry(&self) -> Entry {
        self.current().entry()
    }

    fn seek_to_first(&mut self) -> SourceResult {
        self.position_all(Direction::Forward, |s| s.seek_to_first())
    }

    fn seek_to_last(&mut self) -> SourceResult {
        self.position_all(Direction::Reverse, |s| s.seek_to_last())
    }

    fn seek(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        self.position_all(Direction::Forward, |s| s.seek(key, seqno))
    }

    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        self.position_all(Direction::Reverse, |s| s.seek_for_prev(key, seqno))
    }

    fn next(&mut self) -> SourceResult {
        self.step(Direction::Forward)
    }

    fn prev(&mut self) -> SourceResult {
        self.step(Direction::Reverse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::VecSource;

    fn e(key: &str, seqno: u64, value: &str) -> Entry {
        Entry::new(key, seqno, EntryKind::Put, value)
    }

    fn merge(sources: Vec<Vec<Entry>>) -> MergeIter {
        MergeIter::new(
            sources
                .into_iter()
                .map(|v| Box::new(VecSource::new(v)) as BoxedSource)
                .collect(),
        )
    }

    /// (key, seqno, value, source) at the merge's position.
    fn here(m: &MergeIter) -> Option<(String, u64, String, usize)> {
        m.valid().then(|| {
            (
                String::from_utf8_lossy(m.key()).into_owned(),
                m.seqno(),
                String::from_utf8_lossy(&m.value()).into_owned(),
                m.current_source().unwrap(),
            )
        })
    }

    fn h(
        key: &str,
        seqno: u64,
        value: &str,
        source: usize,
    ) -> Option<(String, u64, String, usize)> {
        Some((key.into(), seqno, value.into(), source))
    }

    #[test]
    fn merges_forward_and_backward() {
        let mut m = merge(vec![
            vec![e("a", 9, "a9"), e("c", 2, "c2")],
            vec![e("a", 3, "a3"), e("b", 1, "b1")],
            vec![],
        ]);
        assert!(!m.valid());
        m.seek_to_first().unwrap();
        let mut forward = Vec::new();
        while m.valid() {
            forward.push(here(&m));
            m.next().unwrap();
        }
        assert_eq!(
            forward,
            vec![
                h("a", 9, "a9", 0),
                h("a", 3, "a3", 1),
                h("b", 1, "b1", 1),
                h("c", 2, "c2", 0)
            ]
        );
        m.seek_to_last().unwrap();
        let mut backward = Vec::new();
        while m.valid() {
            backward.push(here(&m));
            m.prev().unwrap();
        }
        backward.reverse();
        assert_eq!(backward, forward);
    }

    #[test]
    fn duplicates_are_ordered_by_source_index() {
        let mut m = merge(vec![
            vec![e("k", 5, "new")],
            vec![e("a", 1, "a"), e("k", 5, "mid"), e("z", 1, "z")],
            vec![e("k", 5, "old")],
        ]);
        m.seek(b"k", 5).unwrap();
        assert_eq!(here(&m), h("k", 5, "new", 0));
        m.next().unwrap();
        assert_eq!(here(&m), h("k", 5, "mid", 1));
        m.next().unwrap();
        assert_eq!(here(&m), h("k", 5, "old", 2));
        // Turn around in the middle of the duplicates.
        m.prev().unwrap();
        assert_eq!(here(&m), h("k", 5, "mid", 1));
        m.prev().unwrap();
        assert_eq!(here(&m), h("k", 5, "new", 0));
        m.prev().unwrap();
        assert_eq!(here(&m), h("a", 1, "a", 1));
        m.next().unwrap();
        assert_eq!(here(&m), h("k", 5, "new", 0));
        m.next().unwrap();
        assert_eq!(here(&m), h("k", 5, "mid", 1));
        m.prev().unwrap();
        assert_eq!(here(&m), h("k", 5, "new", 0));
        m.next().unwrap();
        m.next().unwrap();
        m.next().unwrap();
        assert_eq!(here(&m), h("z", 1, "z", 1));

        m.seek_for_prev(b"k", 5).unwrap();
        assert_eq!(here(&m), h("k", 5, "old", 2));
        m.next().unwrap();
        assert_eq!(here(&m), h("z", 1, "z", 1));
    }

    #[test]
    fn turning_at_the_ends() {
        let mut m = merge(vec![vec![e("a", 1, "a")], vec![e("b", 1, "b")]]);
        m.seek_to_first().unwrap();
        m.prev().unwrap();
        assert!(!m.valid());
        m.next().unwrap();
        assert!(!m.valid(), "an invalid merge stays invalid until a seek");
        m.seek_to_last().unwrap();
        assert_eq!(here(&m), h("b", 1, "b", 1));
        m.next().unwrap();
        assert!(!m.valid());
        m.seek(b"b", u64::MAX).unwrap();
        m.prev().unwrap();
        assert_eq!(here(&m), h("a", 1, "a", 0));
        m.next().unwrap();
        assert_eq!(here(&m), h("b", 1, "b", 1));
    }

    #[test]
    fn no_sources() {
        let mut m = MergeIter::new(Vec::new());
        m.seek_to_first().unwrap();
        assert!(!m.valid());
        m.seek_to_last().unwrap();
        m.next().unwrap();
        m.prev().unwrap();
        assert!(!m.valid());
        assert_eq!(m.num_sources(), 0);
    }

    #[test]
    #[should_panic(expected = "not positioned")]
    fn accessors_panic_when_invalid() {
        let m = merge(vec![vec![e("a", 1, "a")]]);
        let _ = m.key();
    }

    #[test]
    fn merge_is_send_and_nests() {
        fn assert_send<T: Send>() {}
        assert_send::<MergeIter>();
        let inner = merge(vec![vec![e("b", 1, "b")]]);
        let mut outer = MergeIter::new(vec![
            Box::new(inner),
            Box::new(VecSource::new(vec![e("a", 1, "a")])),
        ]);
        outer.seek_to_first().unwrap();
        assert_eq!(outer.entry(), e("a", 1, "a"));
        outer.next().unwrap();
        assert_eq!(outer.entry(), e("b", 1, "b"));
        assert!(format!("{outer:?}").contains("current_source: Some(0)"));
    }
}
