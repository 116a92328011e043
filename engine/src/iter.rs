//! User iterators: committed (key, value) pairs in key order, both directions.
//!
//! An [`Iter`] pins the tree version it was created on (memtables and runs) and a read seqno, so
//! it is a consistent read view for its whole life however long it lives; the runs it reads stay
//! on disk until it is dropped, but nothing else waits for it. It merges every source with a
//! heap ([`MergeIter`]) and resolves each user key to its newest version at the read seqno,
//! hiding deletes. The front and the back each have their own merge cursor, created on first
//! use, and stop where they meet.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use strata_compaction::{BoxedSource, EntrySource, MergeIter};
use strata_sstable::EntryKind;

use crate::error::Result;
use crate::keyspace::{Key, KeyspaceInner, Value};
use crate::memtable::MemCursor;
use crate::ranges_source::RangesSource;
use crate::read::{resolve_operands, Chain};
use crate::version::TreeVersion;

/// A double-ended iterator over committed pairs; see the module documentation.
///
/// Yields `Err` once if a run cannot be read (I/O or corruption), then ends.
pub struct Iter {
    keyspace: Arc<KeyspaceInner>,
    version: Arc<TreeVersion>,
    read_seqno: u64,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    front: Option<MergeIter>,
    back: Option<MergeIter>,
    front_last: Option<Bytes>,
    back_last: Option<Bytes>,
    done: bool,
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("read_seqno", &self.read_seqno)
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .finish()
    }
}

impl Iter {
    pub(crate) fn new(
        ks: &Arc<KeyspaceInner>,
        read_seqno: u64,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
    ) -> Iter {
        Iter::over(ks, ks.current(), read_seqno, lower, upper)
    }

    pub(crate) fn over(
        ks: &Arc<KeyspaceInner>,
        version: Arc<TreeVersion>,
        read_seqno: u64,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
    ) -> Iter {
        Iter {
            keyspace: Arc::clone(ks),
            version,
            read_seqno,
            lower,
            upper,
            front: None,
            back: None,
            front_last: None,
            back_last: None,
            done: false,
        }
    }

    fn merge(&self) -> MergeIter {
        let mut sources: Vec<BoxedSource> = Vec::new();
        for memtable in self.version.memtables() {
            if memtable.start_seqno <= self.read_seqno && !memtable.is_empty() {
                sources.push(Box::new(MemCursor::new(Arc::clone(memtable))));
            }
        }
        // The ranges' slices as one source, opened range by range (see `ranges_source`).
        let ranges: Vec<_> = self
            .version
            .ranges
            .iter()
            .filter(|r| r.intersects(&self.lower, &self.upper))
            .cloned()
            .collect();
        if !ranges.is_empty() {
            sources.push(Box::new(RangesSource::new(
                ranges,
                self.lower.clone(),
                self.upper.clone(),
                self.read_seqno,
            )));
        }
        MergeIter::new(sources)
    }

    fn below_lower(lower: &Bound<Bytes>, key: &[u8]) -> bool {
        match lower {
            Bound::Included(l) => key < l.as_ref(),
            Bound::Excluded(l) => key <= l.as_ref(),
            Bound::Unbounded => false,
        }
    }

    fn above_upper(upper: &Bound<Bytes>, key: &[u8]) -> bool {
        match upper {
            Bound::Included(u) => key > u.as_ref(),
            Bound::Excluded(u) => key >= u.as_ref(),
            Bound::Unbounded => false,
        }
    }

    fn step_front(&mut self) -> Result<Option<(Key, Value)>> {
        if self.front.is_none() {
            let mut merge = self.merge();
            match &self.lower {
                Bound::Unbounded => merge.seek_to_first()?,
                Bound::Included(k) => merge.seek(k, u64::MAX)?,
                Bound::Excluded(k) => {
                    merge.seek(k, 0)?;
                    while merge.valid() && merge.key() == k.as_ref() {
                        merge.next()?;
                    }
                }
            }
            self.front = Some(merge);
        }
        let Some(merge) = self.front.as_mut() else {
            return Ok(None);
        };
        loop {
            if !merge.valid() {
                return Ok(None);
            }
            let key = Bytes::copy_from_slice(merge.key());
            if Self::above_upper(&self.upper, &key)
                || self.back_last.as_ref().is_some_and(|b| key >= *b)
            {
                return Ok(None);
            }
            let mut chain = Chain::default();
            let mut more = true;
            while merge.valid() && merge.key() == key.as_ref() {
                if more && merge.seqno() <= self.read_seqno {
                    more = chain.push(merge.kind(), merge.value());
                }
                merge.next()?;
            }
            if let Some(value) = chain.resolve(&self.keyspace, &key)? {
                self.front_last = Some(key.clone());
                return Ok(Some((key, value)));
            }
        }
    }

    fn step_back(&mut self) -> Result<Option<(Key, Value)>> {
        if self.back.is_none() {
            let mut merge = self.merge();
            match &self.upper {
                Bound::Unbounded => merge.seek_to_last()?,
                Bound::Included(k) => merge.seek_for_prev(k, 0)?,
                Bound::Excluded(k) => merge.seek_for_prev(k, u64::MAX)?,
            }
            self.back = Some(merge);
        }
        let Some(merge) = self.back.as_mut() else {
            return Ok(None);
        };
        loop {
            if !merge.valid() {
                return Ok(None);
            }
            let key = Bytes::copy_from_slice(merge.key());
            if Self::below_lower(&self.lower, &key)
                || self.front_last.as_ref().is_some_and(|f| key <= *f)
            {
                return Ok(None);
            }
            // Going backwards, a key's versions come oldest first: each visible Put or Delete
            // replaces the base and drops the operands collected below it.
            let mut base: Option<Bytes> = None;
            let mut operands_oldest_first: Vec<Bytes> = Vec::new();
            while merge.valid() && merge.key() == key.as_ref() {
                if merge.seqno() <= self.read_seqno {
                    match merge.kind() {
                        EntryKind::Put => {
                            base = Some(merge.value());
                            operands_oldest_first.clear();
                        }
                        EntryKind::Delete => {
                            base = None;
                            operands_oldest_first.clear();
                        }
                        EntryKind::Merge => operands_oldest_first.push(merge.value()),
                    }
                }
                merge.prev()?;
            }
            let value = if operands_oldest_first.is_empty() {
                base
            } else {
                operands_oldest_first.reverse();
                Some(resolve_operands(
                    &self.keyspace,
                    &key,
                    base,
                    &operands_oldest_first,
                )?)
            };
            if let Some(value) = value {
                self.back_last = Some(key.clone());
                return Ok(Some((key, value)));
            }
        }
    }

    fn finish(&mut self, step: Result<Option<(Key, Value)>>) -> Option<Result<(Key, Value)>> {
        match step {
            Ok(Some(pair)) => Some(Ok(pair)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for Iter {
    type Item = Result<(Key, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step_front();
        self.finish(step)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step_back();
        self.finish(step)
    }
}
