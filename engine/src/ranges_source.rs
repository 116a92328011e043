//! The runs of consecutive ranges as one sorted source.
//!
//! Ranges are disjoint and in key order, and every slice lies within its range, so a scan only
//! needs the slices of the range holding its current position: a seek opens (and seeks) one
//! range's slices, not every slice of every range up to the end of the query (which made a seek
//! followed by a few nexts cost one page load per slice of the keyspace). Moving past a range's
//! last entry opens the next range. vinyl's read iterator works range by range the same way.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use strata_compaction::{BoxedSource, EntrySource, MergeIter, SourceResult};
use strata_sstable::EntryKind;

use crate::version::Range;

/// See the module documentation. Ranges must be in key order (as in a tree version).
pub(crate) struct RangesSource {
    ranges: Vec<Arc<Range>>,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    read_seqno: u64,
    /// The open range and the merge of its slices.
    current: Option<(usize, MergeIter)>,
}

impl RangesSource {
    /// A source over the slices (visible at `read_seqno`) of `ranges` within the bounds.
    pub fn new(
        ranges: Vec<Arc<Range>>,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
        read_seqno: u64,
    ) -> Self {
        RangesSource {
            ranges,
            lower,
            upper,
            read_seqno,
            current: None,
        }
    }

    fn open(&mut self, index: usize) -> &mut MergeIter {
        let range = &self.ranges[index];
        let sources: Vec<BoxedSource> = range
            .slices
            .iter()
            .filter(|s| s.run.info.min_seqno <= self.read_seqno)
            .map(|s| Box::new(s.iter(&self.lower, &self.upper)) as BoxedSource)
            .collect();
        &mut self.current.insert((index, MergeIter::new(sources))).1
    }

    /// The index of the range holding `key` (the first range if `key` sorts before all).
    fn range_of(&self, key: &[u8]) -> usize {
        let after = self
            .ranges
            .partition_point(|r| r.begin.as_ref().is_none_or(|b| b.as_ref() <= key));
        after.saturating_sub(1)
    }

    /// While the open range is exhausted, opens the next ones from their first entry.
    fn skip_forward(&mut self) -> SourceResult<()> {
        while let Some((index, merge)) = &self.current {
            if merge.valid() {
                break;
            }
            let next = index + 1;
            if next >= self.ranges.len() {
                self.current = None;
                break;
            }
            self.open(next).seek_to_first()?;
        }
        Ok(())
    }

    /// While the open range is exhausted, opens the previous ones from their last entry.
    fn skip_backward(&mut self) -> SourceResult<()> {
        while let Some((index, merge)) = &self.current {
            if merge.valid() {
                break;
            }
            let Some(prev) = index.checked_sub(1) else {
                self.current = None;
                break;
            };
            self.open(prev).seek_to_last()?;
        }
        Ok(())
    }

    fn merge(&self) -> &MergeIter {
        match &self.current {
            Some((_, merge)) => merge,
            None => panic!("RangesSource accessed while not positioned (check valid() first)"),
        }
    }
}

impl EntrySource for RangesSource {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(|(_, m)| m.valid())
    }

    fn key(&self) -> &[u8] {
        self.merge().key()
    }

    fn seqno(&self) -> u64 {
        self.merge().seqno()
    }

    fn kind(&self) -> EntryKind {
        self.merge().kind()
    }

    fn value(&self) -> Bytes {
        self.merge().value()
    }

    fn seek_to_first(&mut self) -> SourceResult<()> {
        if self.ranges.is_empty() {
            self.current = None;
            return Ok(());
        }
        self.open(0).seek_to_first()?;
        self.skip_forward()
    }

    fn seek_to_last(&mut self) -> SourceResult<()> {
        let Some(last) = self.ranges.len().checked_sub(1) else {
            self.current = None;
            return Ok(());
        };
        self.open(last).seek_to_last()?;
        self.skip_backward()
    }

    fn seek(&mut self, key: &[u8], seqno: u64) -> SourceResult<()> {
        if self.ranges.is_empty() {
            self.current = None;
            return Ok(());
        }
        let index = self.range_of(key);
        self.open(index).seek(key, seqno)?;
        self.skip_forward()
    }

    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> SourceResult<()> {
        if self.ranges.is_empty() {
            self.current = None;
            return Ok(());
        }
        let index = self.range_of(key);
        self.open(index).seek_for_prev(key, seqno)?;
        self.skip_backward()
    }

    fn next(&mut self) -> SourceResult<()> {
        let Some((_, merge)) = self.current.as_mut() else {
            return Ok(());
        };
        merge.next()?;
        self.skip_forward()
    }

    fn prev(&mut self) -> SourceResult<()> {
        let Some((_, merge)) = self.current.as_mut() else {
            return Ok(());
        };
        merge.prev()?;
        self.skip_backward()
    }
}
