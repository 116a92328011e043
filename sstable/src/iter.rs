//! Cursors over a run: seek, next, prev within user-key bounds, one page decoded at a time.

use std::ops::Bound;

use bytes::Bytes;

use crate::entry::{Entry, EntryKind};
use crate::error::{DecodeError, Result};
use crate::page::PageCursor;
use crate::reader::Run;

/// A cursor over every entry (all versions) of a run whose user key lies within bounds.
///
/// Positioned by one of the seek methods, then moved with [`RunIter::next`] and
/// [`RunIter::prev`]. After an error or running off either end it is invalid until the next
/// seek. Holds at most one decoded page. Not thread-safe; create one per thread.
pub struct RunIter {
    run: Run,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    page: usize,
    cursor: Option<PageCursor>,
}

fn owned(bound: Bound<&[u8]>) -> Bound<Bytes> {
    match bound {
        Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k)),
        Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RunIter {
    /// Creates an unpositioned cursor over entries whose user key is within `lower..upper`.
    pub fn new(run: &Run, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Self {
        Self::with_bounds(run, owned(lower), owned(upper))
    }

    /// As [`RunIter::new`], sharing the bounds' bytes instead of copying them (a scan opens one
    /// cursor per run slice for every seek).
    pub fn with_bounds(run: &Run, lower: Bound<Bytes>, upper: Bound<Bytes>) -> Self {
        RunIter {
            run: run.clone(),
            lower,
            upper,
            page: 0,
            cursor: None,
        }
    }

    /// True when positioned on an entry.
    pub fn valid(&self) -> bool {
        self.cursor.as_ref().is_some_and(PageCursor::valid)
    }

    fn current(&self) -> &PageCursor {
        match &self.cursor {
            Some(cursor) if cursor.valid() => cursor,
            _ => panic!("RunIter accessed while not positioned on an entry (check valid() first)"),
        }
    }

    /// The current entry's user key.
    ///
    /// # Panics
    /// If the cursor is not [`valid`](RunIter::valid).
    pub fn key(&self) -> &[u8] {
        self.current().key()
    }

    /// The current entry's seqno. Panics like [`RunIter::key`].
    pub fn seqno(&self) -> u64 {
        self.current().seqno()
    }

    /// The current entry's kind. Panics like [`RunIter::key`].
    pub fn kind(&self) -> EntryKind {
        self.current().kind()
    }

    /// The current entry's value (a slice of the page; no copy). Panics like [`RunIter::key`].
    pub fn value(&self) -> Bytes {
        self.current().value()
    }

    /// The current entry's value as a borrowed slice. Panics like [`RunIter::key`].
    pub fn value_slice(&self) -> &[u8] {
        self.current().value_slice()
    }

    /// The current entry, key copied into a shared buffer. Panics like [`RunIter::key`].
    pub fn entry(&self) -> Entry {
        let cursor = self.current();
        Entry {
            key: Bytes::copy_from_slice(cursor.key()),
            seqno: cursor.seqno(),
            kind: cursor.kind(),
            value: cursor.value(),
        }
    }

    /// (page, offset in page) of the current entry: a total order over positions.
    pub(crate) fn position(&self) -> Option<(usize, usize)> {
        let pos = self.cursor.as_ref()?.pos()?;
        Some((self.page, pos))
    }

    fn fail(&mut self, error: DecodeError) -> crate::Error {
        self.cursor = None;
        error.at(self.run.path(), self.run.page_offset(self.page))
    }

    fn load(&mut self, page: usize) -> Result<&mut PageCursor> {
        // Taken out first so that a failed load leaves the cursor invalid.
        let previous = self.cursor.take();
        let loaded = self.run.load_page(page)?;
        self.page = page;
        let cursor = match previous {
            Some(mut cursor) => {
                cursor.reset(loaded);
                cursor
            }
            None => PageCursor::new(loaded),
        };
        Ok(self.cursor.insert(cursor))
    }

    fn skip_forward(&mut self) -> Result<()> {
        while self.cursor.as_ref().is_some_and(|c| !c.valid()) {
            if self.page + 1 >= self.run.pages().len() {
                self.cursor = None;
                return Ok(());
            }
            let next = self.page + 1;
            let result = self.load(next)?.seek_to_first();
            result.map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    fn skip_backward(&mut self) -> Result<()> {
        while self.cursor.as_ref().is_some_and(|c| !c.valid()) {
            if self.page == 0 {
                self.cursor = None;
                return Ok(());
            }
            let prev = self.page - 1;
            let result = self.load(prev)?.seek_to_last();
            result.map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    fn above_upper(&self, key: &[u8]) -> bool {
        match &self.upper {
            Bound::Included(u) => key > u.as_ref(),
            Bound::Excluded(u) => key >= u.as_ref(),
            Bound::Unbounded => false,
        }
    }

    fn below_lower(&self, key: &[u8]) -> bool {
        match &self.lower {
            Bound::Included(l) => key < l.as_ref(),
            Bound::Excluded(l) => key <= l.as_ref(),
            Bound::Unbounded => false,
        }
    }

    fn enforce_upper(&mut self) {
        if self.valid() && self.above_upper(self.key()) {
            self.cursor = None;
        }
    }

    fn enforce_lower(&mut self) {
        if self.valid() && self.below_lower(self.key()) {
            self.cursor = None;
        }
    }

    /// First entry >= (key, seqno) in internal order, ignoring bounds.
    fn seek_ge(&mut self, key: &[u8], seqno: u64) -> Result<()> {
        if self.run.pages().is_empty() {
            self.cursor = None;
            return Ok(());
        }
        let page = self.run.page_for(key, seqno).unwrap_or(0);
        let result = self.load(page)?.seek(key, seqno);
        result.map_err(|e| self.fail(e))?;
        self.skip_forward()
    }

    /// Last entry <= (key, seqno) in internal order, ignoring bounds.
    fn seek_le(&mut self, key: &[u8], seqno: u64) -> Result<()> {
        let Some(page) = self.run.page_for(key, seqno) else {
            self.cursor = None;
            return Ok(());
        };
        let result = self.load(page)?.seek_for_prev(key, seqno);
        result.map_err(|e| self.fail(e))?;
        self.skip_backward()
    }

    /// Positions at the first entry within bounds.
    ///
    /// # Errors
    /// [`crate::Error::Io`] or [`crate::Error::Corruption`] reading a page; the cursor is then
    /// invalid.
    pub fn seek_to_first(&mut self) -> Result<()> {
        match self.lower.clone() {
            Bound::Unbounded => {
                if self.run.pages().is_empty() {
                    self.cursor = None;
                    return Ok(());
                }
                let result = self.load(0)?.seek_to_first();
                result.map_err(|e| self.fail(e))?;
            }
            Bound::Included(k) => self.seek_ge(&k, u64::MAX)?,
            Bound::Excluded(k) => {
                self.seek_ge(&k, 0)?;
                while self.valid() && self.key() == k.as_ref() {
                    self.step_forward()?;
                }
            }
        }
        self.enforce_upper();
        Ok(())
    }

    /// Positions at the last entry within bounds. Errors as for [`RunIter::seek_to_first`].
    pub fn seek_to_last(&mut self) -> Result<()> {
        match self.upper.clone() {
            Bound::Unbounded => {
                let Some(last) = self.run.pages().len().checked_sub(1) else {
                    self.cursor = None;
                    return Ok(());
                };
                let result = self.load(last)?.seek_to_last();
                result.map_err(|e| self.fail(e))?;
            }
            Bound::Included(k) => self.seek_le(&k, 0)?,
            Bound::Excluded(k) => self.seek_le(&k, u64::MAX)?,
        }
        self.enforce_lower();
        Ok(())
    }

    /// Positions at the newest version of the first user key >= `key` (within bounds). Errors as
    /// for [`RunIter::seek_to_first`].
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        if self.below_lower(key) {
            return self.seek_to_first();
        }
        self.seek_ge(key, u64::MAX)?;
        self.enforce_upper();
        Ok(())
    }

    /// Positions at the first entry >= (key, seqno) in internal order (within bounds): the
    /// newest version of `key` visible at `seqno`, or whatever follows. Errors as for
    /// [`RunIter::seek_to_first`].
    pub fn seek_at(&mut self, key: &[u8], seqno: u64) -> Result<()> {
        if self.below_lower(key) {
            return self.seek_to_first();
        }
        self.seek_ge(key, seqno)?;
        self.enforce_upper();
        Ok(())
    }

    /// Positions at the last entry <= (key, seqno) in internal order (within bounds). Errors as
    /// for [`RunIter::seek_to_first`].
    pub fn seek_for_prev_at(&mut self, key: &[u8], seqno: u64) -> Result<()> {
        if self.above_upper(key) {
            return self.seek_to_last();
        }
        self.seek_le(key, seqno)?;
        self.enforce_lower();
        Ok(())
    }

    /// Positions at the oldest version of the last user key <= `key` (within bounds). Errors as
    /// for [`RunIter::seek_to_first`].
    pub fn seek_for_prev(&mut self, key: &[u8]) -> Result<()> {
        if self.above_upper(key) {
            return self.seek_to_last();
        }
        self.seek_le(key, 0)?;
        self.enforce_lower();
        Ok(())
    }

    fn step_forward(&mut self) -> Result<()> {
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(());
        };
        let result = cursor.next();
        result.map_err(|e| self.fail(e))?;
        self.skip_forward()
    }

    /// Moves to the next entry; invalid past the last one within bounds. A no-op when invalid.
    /// Errors as for [`RunIter::seek_to_first`].
    // A fallible, bidirectional cursor cannot be an `Iterator`; `RunRange` is the iterator form.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<()> {
        let Some(cursor) = self.cursor.as_mut().filter(|c| c.valid()) else {
            return Ok(());
        };
        let result = cursor.next();
        // The common step stays in the page: skip the page-crossing loop and, without an upper
        // bound, the bound check.
        let in_page = cursor.valid();
        result.map_err(|e| self.fail(e))?;
        if !in_page {
            self.skip_forward()?;
        }
        if !matches!(self.upper, Bound::Unbounded) {
            self.enforce_upper();
        }
        Ok(())
    }

    /// Moves to the previous entry; invalid before the first one within bounds. A no-op when
    /// invalid. Errors as for [`RunIter::seek_to_first`].
    pub fn prev(&mut self) -> Result<()> {
        let Some(cursor) = self.cursor.as_mut().filter(|c| c.valid()) else {
            return Ok(());
        };
        let result = cursor.prev();
        result.map_err(|e| self.fail(e))?;
        self.skip_backward()?;
        self.enforce_lower();
        Ok(())
    }
}

/// A double-ended iterator over a run's entries (all versions) within bounds, in internal order.
///
/// Yields `Err` once on a read or decode failure, then ends. Created by [`Run::range`] and
/// [`Run::iter`].
pub struct RunRange {
    front: RunIter,
    back: RunIter,
    front_started: bool,
    back_started: bool,
    done: bool,
}

impl Run {
    /// Iterates over every entry whose user key is within the bounds.
    pub fn range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> RunRange {
        RunRange {
            front: RunIter::new(self, lower, upper),
            back: RunIter::new(self, lower, upper),
            front_started: false,
            back_started: false,
            done: false,
        }
    }

    /// Iterates over every entry of the run.
    pub fn iter(&self) -> RunRange {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

impl RunRange {
    fn finish_with(&mut self, result: Result<()>) -> Option<Result<Entry>> {
        match result {
            Ok(()) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for RunRange {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.front_started {
            self.front_started = true;
            if let Some(err) = {
                let result = self.front.seek_to_first();
                self.finish_with(result)
            } {
                return Some(err);
            }
        }
        let front = self.front.position()?;
        if self.back_started && self.back.position().is_none_or(|back| front > back) {
            self.done = true;
            return None;
        }
        let entry = self.front.entry();
        if let Some(err) = {
            let result = self.front.next();
            self.finish_with(result)
        } {
            return Some(err);
        }
        Some(Ok(entry))
    }
}

impl DoubleEndedIterator for RunRange {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.back_started {
            self.back_started = true;
            if let Some(err) = {
                let result = self.back.seek_to_last();
                self.finish_with(result)
            } {
                return Some(err);
            }
        }
        let back = self.back.position()?;
        if self.front_started && self.front.position().is_none_or(|front| back < front) {
            self.done = true;
            return None;
        }
        let entry = self.back.entry();
        if let Some(err) = {
            let result = self.back.prev();
            self.finish_with(result)
        } {
            return Some(err);
        }
        Some(Ok(entry))
    }
}
