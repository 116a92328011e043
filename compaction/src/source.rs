//! Entry sources: sorted, bidirectional cursors over versioned entries in internal order.

use std::cmp::Ordering;

use bytes::Bytes;
use strata_sstable::{compare_internal, Entry, EntryKind, RunIter};

/// The result of moving an [`EntrySource`]: the run format's error type, so run cursors need no
/// conversion and errors from any depth of a merge tree arrive unchanged.
pub type SourceResult<T = ()> = Result<T, strata_sstable::Error>;

/// A boxed, sendable source: the form [`crate::MergeIter`] takes its inputs in.
pub type BoxedSource = Box<dyn EntrySource + Send>;

/// A sorted, bidirectional cursor over versioned entries (user key, seqno, kind, value) in
/// internal order ([`compare_internal`]: user key ascending, then seqno descending).
///
/// Runs ([`RunIter`]), memtable cursors, in-memory vectors ([`VecSource`]) and merges of all of
/// these ([`crate::MergeIter`]) implement it. The trait is object safe; `Box<dyn EntrySource +
/// Send>` ([`BoxedSource`]) is the common currency.
///
/// # Contract
///
/// - **Order.** Entries appear in non-decreasing internal order. Sources over one run or one
///   memtable are strictly increasing; equal (key, seqno) pairs only appear in merges of inputs
///   that share a version, which a healthy database never produces (see [`crate::MergeIter`]).
/// - **Positioning.** A new source is unpositioned (invalid); one of the four seek methods
///   positions it. Seek targets may use any seqno, including `u64::MAX` (sorts before every
///   version of its key) and `0` (sorts after, or at, every version of its key).
/// - **Ends.** [`next`](EntrySource::next) past the last entry or [`prev`](EntrySource::prev)
///   before the first one makes the source invalid. It stays invalid until the next seek: moving
///   an invalid source is a no-op that returns `Ok(())`.
/// - **Errors.** A movement method that returns `Err` should leave the source invalid; callers
///   must in any case not rely on its position afterwards and must seek before using it again.
/// - **Accessors.** [`key`](EntrySource::key), [`seqno`](EntrySource::seqno),
///   [`kind`](EntrySource::kind) and [`value`](EntrySource::value) describe the current entry and
///   may panic when the source is not [`valid`](EntrySource::valid). They must be cheap: merges
///   call `key` and `seqno` several times per step.
///
/// # Name clashes
///
/// [`RunIter`] has inherent methods called `seek`, `seek_for_prev`, `next` and `prev` with other
/// signatures, which win in method-call syntax. On a concrete `RunIter`, call the trait's methods
/// as `EntrySource::seek(&mut iter, key, seqno)`; through `dyn EntrySource` there is no clash.
pub trait EntrySource {
    /// True when positioned on an entry.
    fn valid(&self) -> bool;

    /// The current entry's user key.
    ///
    /// # Panics
    /// May panic if the source is not [`valid`](EntrySource::valid).
    fn key(&self) -> &[u8];

    /// The current entry's seqno. May panic like [`EntrySource::key`].
    fn seqno(&self) -> u64;

    /// The current entry's kind. May panic like [`EntrySource::key`].
    fn kind(&self) -> EntryKind;

    /// The current entry's value: a shared buffer, cheap to clone, never a copy of the bytes.
    /// May panic like [`EntrySource::key`].
    fn value(&self) -> Bytes;

    /// Positions at the first entry; invalid if there is none.
    ///
    /// # Errors
    /// Whatever the underlying storage reports ([`strata_sstable::Error::Io`],
    /// [`strata_sstable::Error::Corruption`], ...); the source is then not to be relied on until
    /// the next seek.
    fn seek_to_first(&mut self) -> SourceResult;

    /// Positions at the last entry; invalid if there is none. Errors as for
    /// [`EntrySource::seek_to_first`].
    fn seek_to_last(&mut self) -> SourceResult;

    /// Positions at the first entry >= (`key`, `seqno`) in internal order: the newest version of
    /// `key` with a seqno <= `seqno`, or whatever follows; invalid if there is none. Errors as for
    /// [`EntrySource::seek_to_first`].
    fn seek(&mut self, key: &[u8], seqno: u64) -> SourceResult;

    /// Positions at the last entry <= (`key`, `seqno`) in internal order: the oldest version of
    /// `key` with a seqno >= `seqno`, or whatever precedes; invalid if there is none. Errors as
    /// for [`EntrySource::seek_to_first`].
    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> SourceResult;

    /// Moves to the next entry; invalid past the last one; a no-op when already invalid. Errors
    /// as for [`EntrySource::seek_to_first`].
    fn next(&mut self) -> SourceResult;

    /// Moves to the previous entry; invalid before the first one; a no-op when already invalid.
    /// Errors as for [`EntrySource::seek_to_first`].
    fn prev(&mut self) -> SourceResult;

    /// The current entry as an owned [`Entry`] (the key is copied; the value is shared). May
    /// panic like [`EntrySource::key`].
    fn entry(&self) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(self.key()),
            seqno: self.seqno(),
            kind: self.kind(),
            value: self.value(),
        }
    }
}

impl<S: EntrySource + ?Sized> EntrySource for Box<S> {
    #[inline]
    fn valid(&self) -> bool {
        (**self).valid()
    }
    #[inline]
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    #[inline]
    fn seqno(&self) -> u64 {
        (**self).seqno()
    }
    #[inline]
    fn kind(&self) -> EntryKind {
        (**self).kind()
    }
    #[inline]
    fn value(&self) -> Bytes {
        (**self).value()
    }
    fn seek_to_first(&mut self) -> SourceResult {
        (**self).seek_to_first()
    }
    fn seek_to_last(&mut self) -> SourceResult {
        (**self).seek_to_last()
    }
    fn seek(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        (**self).seek(key, seqno)
    }
    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        (**self).seek_for_prev(key, seqno)
    }
    #[inline]
    fn next(&mut self) -> SourceResult {
        (**self).next()
    }
    #[inline]
    fn prev(&mut self) -> SourceResult {
        (**self).prev()
    }
    fn entry(&self) -> Entry {
        (**self).entry()
    }
}

/// A run cursor as a source. Bounds given to [`RunIter::new`] are honoured: entries outside them
/// do not exist as far as the source is concerned (a seek below the lower bound lands on the
/// first entry within bounds, and so on).
impl EntrySource for RunIter {
    #[inline]
    fn valid(&self) -> bool {
        RunIter::valid(self)
    }
    #[inline]
    fn key(&self) -> &[u8] {
        RunIter::key(self)
    }
    #[inline]
    fn seqno(&self) -> u64 {
        RunIter::seqno(self)
    }
    #[inline]
    fn kind(&self) -> EntryKind {
        RunIter::kind(self)
    }
    #[inline]
    fn value(&self) -> Bytes {
        RunIter::value(self)
    }
    fn seek_to_first(&mut self) -> SourceResult {
        RunIter::seek_to_first(self)
    }
    fn seek_to_last(&mut self) -> SourceResult {
        RunIter::seek_to_last(self)
    }
    fn seek(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        RunIter::seek_at(self, key, seqno)
    }
    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        RunIter::seek_for_prev_at(self, key, seqno)
    }
    #[inline]
    fn next(&mut self) -> SourceResult {
        RunIter::next(self)
    }
    #[inline]
    fn prev(&mut self) -> SourceResult {
        RunIter::prev(self)
    }
    fn entry(&self) -> Entry {
        RunIter::entry(self)
    }
}

/// A source over an owned vector of entries in internal order.
///
/// For tests and small in-memory inputs. Never fails: every movement returns `Ok(())`. Seeks are
/// binary searches (O(log n)); steps are O(1).
#[derive(Debug, Clone)]
pub struct VecSource {
    entries: Vec<Entry>,
    /// Index of the current entry; `None` when invalid.
    pos: Option<usize>,
}

impl VecSource {
    /// Wraps `entries`, which must be in non-decreasing internal order ([`compare_internal`]).
    /// Equal (key, seqno) pairs are allowed and keep their vector order. The source starts
    /// unpositioned.
    ///
    /// # Panics
    /// If `entries` is out of order (checked in O(n), in every build).
    pub fn new(entries: Vec<Entry>) -> Self {
        if let Some(i) = entries
            .windows(2)
            .position(|w| w[0].cmp_internal(&w[1]) == Ordering::Greater)
        {
            panic!(
                "VecSource entries out of internal order at index {}: ({:?}, {}) then ({:?}, {})",
                i + 1,
                strata_sstable::display_key(&entries[i].key),
                entries[i].seqno,
                strata_sstable::display_key(&entries[i + 1].key),
                entries[i + 1].seqno,
            );
        }
        VecSource { entries, pos: None }
    }

    /// Sorts `entries` into internal order (stable: equal (key, seqno) pairs keep their relative
    /// order) and wraps them.
    pub fn from_unsorted(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(Entry::cmp_internal);
        VecSource { entries, pos: None }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Gives the entries back.
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn current(&self) -> &Entry {
        match self.pos.and_then(|pos| self.entries.get(pos)) {
            Some(entry) => entry,
            None => {
                panic!("VecSource accessed while not positioned on an entry (check valid() first)")
            }
        }
    }
}

impl EntrySource for VecSource {
    #[inline]
    fn valid(&self) -> bool {
        self.pos.is_some()
    }
    #[inline]
    fn key(&self) -> &[u8] {
        &self.current().key
    }
    #[inline]
    fn seqno(&self) -> u64 {
        self.current().seqno
    }
    #[inline]
    fn kind(&self) -> EntryKind {
        self.current().kind
    }
    #[inline]
    fn value(&self) -> Bytes {
        self.current().value.clone()
    }
    fn seek_to_first(&mut self) -> SourceResult {
        self.pos = if self.entries.is_empty() {
            None
        } else {
            Some(0)
        };
        Ok(())
    }
    fn seek_to_last(&mut self) -> SourceResult {
        self.pos = self.entries.len().checked_sub(1);
        Ok(())
    }
    fn seek(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        let first_ge = self
            .entries
            .partition_point(|e| compare_internal(&e.key, e.seqno, key, seqno) == Ordering::Less);
        self.pos = (first_ge < self.entries.len()).then_some(first_ge);
        Ok(())
    }
    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        let first_gt = self.entries.partition_point(|e| {
            compare_internal(&e.key, e.seqno, key, seqno) != Ordering::Greater
        });
        self.pos = first_gt.checked_sub(1);
        Ok(())
    }
    #[inline]
    fn next(&mut self) -> SourceResult {
        if let Some(pos) = self.pos {
            let next = pos + 1;
            self.pos = (next < self.entries.len()).then_some(next);
        }
        Ok(())
    }
    #[inline]
    fn prev(&mut self) -> SourceResult {
        if let Some(pos) = self.pos {
            self.pos = pos.checked_sub(1);
        }
        Ok(())
    }
    fn entry(&self) -> Entry {
        self.current().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, seqno: u64) -> Entry {
        Entry::new(key, seqno, EntryKind::Put, format!("{key}@{seqno}"))
    }

    fn here(s: &VecSource) -> Option<(String, u64)> {
        s.valid()
            .then(|| (String::from_utf8_lossy(s.key()).into_owned(), s.seqno()))
    }

    #[test]
    fn vec_source_seeks_in_internal_order() {
        let mut s = VecSource::new(vec![e("a", 5), e("a", 3), e("b", 9), e("c", 1)]);
        assert!(!s.valid());
        s.seek(b"a", u64::MAX).unwrap();
        assert_eq!(here(&s), Some(("a".into(), 5)));
        s.seek(b"a", 4).unwrap();
        assert_eq!(here(&s), Some(("a".into(), 3)));
        s.seek(b"a", 0).unwrap();
        assert_eq!(here(&s), Some(("b".into(), 9)));
        s.seek(b"c", 1).unwrap();
        assert_eq!(here(&s), Some(("c".into(), 1)));
        s.seek(b"c", 0).unwrap();
        assert_eq!(here(&s), None, "(c, 1) sorts before (c, 0)");
        s.seek(b"d", u64::MAX).unwrap();
        assert_eq!(here(&s), None);

        s.seek_for_prev(b"a", 4).unwrap();
        assert_eq!(here(&s), Some(("a".into(), 5)));
        s.seek_for_prev(b"a", u64::MAX).unwrap();
        assert_eq!(here(&s), None);
        s.seek_for_prev(b"b", 0).unwrap();
        assert_eq!(here(&s), Some(("b".into(), 9)));
        s.seek_for_prev(b"bb", u64::MAX).unwrap();
        assert_eq!(here(&s), Some(("b".into(), 9)));
        s.seek_for_prev(b"z", 0).unwrap();
        assert_eq!(here(&s), Some(("c".into(), 1)));
    }

    #[test]
    fn vec_source_steps_and_stays_invalid_past_the_ends() {
        let mut s = VecSource::new(vec![e("a", 1), e("b", 1)]);
        s.seek_to_last().unwrap();
        s.next().unwrap();
        assert!(!s.valid());
        s.prev().unwrap();
        assert!(!s.valid(), "an invalid source stays invalid until a seek");
        s.seek_to_first().unwrap();
        s.prev().unwrap();
        assert!(!s.valid());
        s.seek_to_first().unwrap();
        s.next().unwrap();
        assert_eq!(here(&s), Some(("b".into(), 1)));
        assert_eq!(s.entry(), e("b", 1));
    }

    #[test]
    fn empty_vec_source_is_never_valid() {
        let mut s = VecSource::new(Vec::new());
        s.seek_to_first().unwrap();
        assert!(!s.valid());
        s.seek_to_last().unwrap();
        assert!(!s.valid());
        s.seek(b"", u64::MAX).unwrap();
        assert!(!s.valid());
        s.seek_for_prev(b"\xff", 0).unwrap();
        assert!(!s.valid());
    }

    #[test]
    #[should_panic(expected = "out of internal order")]
    fn vec_source_rejects_disorder() {
        VecSource::new(vec![e("a", 1), e("a", 2)]);
    }

    #[test]
    fn from_unsorted_sorts() {
        let s = VecSource::from_unsorted(vec![e("b", 1), e("a", 1), e("a", 2)]);
        assert_eq!(s.entries(), &[e("a", 2), e("a", 1), e("b", 1)]);
    }

    #[test]
    #[should_panic(expected = "not positioned")]
    fn accessors_panic_when_invalid() {
        let s = VecSource::new(vec![e("a", 1)]);
        let _ = s.key();
    }

    #[test]
    fn trait_is_object_safe_and_boxes_are_sources() {
        let mut boxed: BoxedSource = Box::new(VecSource::new(vec![e("a", 1)]));
        boxed.seek_to_first().unwrap();
        assert_eq!(boxed.key(), b"a");
        fn generic<S: EntrySource>(s: &mut S) -> bool {
            s.seek_to_last().is_ok() && s.valid()
        }
        assert!(generic(&mut boxed));
    }
}
