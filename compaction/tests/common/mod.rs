//! Helpers shared by the compaction integration tests: in-memory runs, a failing source, and a
//! model of a merge.
#![allow(dead_code)]

use std::cmp::Ordering;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

use bytes::Bytes;
use strata_compaction::{EntrySource, SourceResult};
use strata_sstable::{
    compare_internal, Entry, EntryKind, ReadOptions, Run, RunIter, RunWriter, WriterOptions,
};

/// Writes `entries` (strictly in internal order) into an in-memory run and returns its bytes.
pub fn write_run(entries: &[Entry], options: WriterOptions) -> Vec<u8> {
    let mut writer = RunWriter::new(Path::new("mem.run"), Vec::new(), options).expect("options");
    for e in entries {
        writer.add(&e.key, e.seqno, e.kind, &e.value).expect("add");
    }
    writer.finish_with_file().expect("finish").1
}

/// Opens run bytes held in memory.
pub fn open_run(bytes: Vec<u8>) -> strata_sstable::Result<Run> {
    Run::open_with(
        Path::new("mem.run"),
        Box::new(bytes),
        ReadOptions::default(),
    )
}

/// An unbounded cursor over an in-memory run of `entries`.
pub fn run_iter(entries: &[Entry], options: WriterOptions) -> RunIter {
    let run = open_run(write_run(entries, options)).expect("open");
    RunIter::new(&run, Bound::Unbounded, Bound::Unbounded)
}

/// Writer options with small pages, so even short runs span many pages.
pub fn small_pages(page_size: usize) -> WriterOptions {
    WriterOptions {
        page_size,
        restart_interval: 2,
        ..WriterOptions::default()
    }
}

/// True when `key` is within the bounds.
pub fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above_lower = match lower {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below_upper = match upper {
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Unbounded => true,
    };
    above_lower && below_upper
}

/// Wraps a source and fails its `fail_at`-th movement (1-based, counting every seek and step),
/// once: that call returns a corruption error naming `failing.run` and leaves the source invalid
/// until its next seek. `fired` turns true when it fails.
pub struct FailingSource<S> {
    inner: S,
    fail_at: u64,
    moves: u64,
    broken: bool,
    pub fired: Arc<AtomicBool>,
}

impl<S: EntrySource> FailingSource<S> {
    pub fn new(inner: S, fail_at: u64) -> Self {
        FailingSource {
            inner,
            fail_at,
            moves: 0,
            broken: false,
            fired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Counts a movement; `Err` when this is the one to fail.
    fn tick(&mut self, seek: bool) -> SourceResult {
        if seek {
            self.broken = false;
        }
        self.moves += 1;
        if self.moves == self.fail_at {
            self.broken = true;
            self.fired.store(true, AtomicOrdering::SeqCst);
            return Err(strata_sstable::Error::corruption(
                "failing.run",
                self.moves,
                "injected failure",
            ));
        }
        Ok(())
    }
}

impl<S: EntrySource> EntrySource for FailingSource<S> {
    fn valid(&self) -> bool {
        !self.broken && self.inner.valid()
    }
    fn key(&self) -> &[u8] {
        assert!(!self.broken, "accessed a failed source");
        self.inner.key()
    }
    fn seqno(&self) -> u64 {
        assert!(!self.broken, "accessed a failed source");
        self.inner.seqno()
    }
    fn kind(&self) -> EntryKind {
        assert!(!self.broken, "accessed a failed source");
        self.inner.kind()
    }
    fn value(&self) -> Bytes {
        assert!(!self.broken, "accessed a failed source");
        self.inner.value()
    }
    fn seek_to_first(&mut self) -> SourceResult {
        self.tick(true)?;
        self.inner.seek_to_first()
    }
    fn seek_to_last(&mut self) -> SourceResult {
        self.tick(true)?;
        self.inner.seek_to_last()
    }
    fn seek(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        self.tick(true)?;
        self.inner.seek(key, seqno)
    }
    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> SourceResult {
        self.tick(true)?;
        self.inner.seek_for_prev(key, seqno)
    }
    fn next(&mut self) -> SourceResult {
        if !self.valid() {
            return Ok(());
        }
        self.tick(false)?;
        self.inner.next()
    }
    fn prev(&mut self) -> SourceResult {
        if !self.valid() {
            return Ok(());
        }
        self.tick(false)?;
        self.inner.prev()
    }
}

/// One entry of the model, with the (global) index of the source it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub entry: Entry,
    pub source: usize,
}

/// The merge's total order: key ascending, seqno descending, source index ascending.
pub fn tagged_order(a: &Tagged, b: &Tagged) -> Ordering {
    a.entry.cmp_internal(&b.entry).then(a.source.cmp(&b.source))
}

/// A merge as a sorted vector and a position in it.
#[derive(Debug, Clone)]
pub struct Model {
    pub entries: Vec<Tagged>,
    pub pos: Option<usize>,
}

impl Model {
    /// The model of a merge of sources holding `tagged` (any order).
    pub fn new(mut tagged: Vec<Tagged>) -> Self {
        tagged.sort_by(tagged_order);
        Model {
            entries: tagged,
            pos: None,
        }
    }

    pub fn current(&self) -> Option<&Tagged> {
        self.pos.map(|p| &self.entries[p])
    }

    pub fn seek_to_first(&mut self) {
        self.pos = (!self.entries.is_empty()).then_some(0);
    }

    pub fn seek_to_last(&mut self) {
        self.pos = self.entries.len().checked_sub(1);
    }

    pub fn seek(&mut self, key: &[u8], seqno: u64) {
        let i = self.entries.partition_point(|t| {
            compare_internal(&t.entry.key, t.entry.seqno, key, seqno) == Ordering::Less
        });
        self.pos = (i < self.entries.len()).then_some(i);
    }

    pub fn seek_for_prev(&mut self, key: &[u8], seqno: u64) {
        let i = self.entries.partition_point(|t| {
            compare_internal(&t.entry.key, t.entry.seqno, key, seqno) != Ordering::Greater
        });
        self.pos = i.checked_sub(1);
    }

    pub fn next(&mut self) {
        if let Some(p) = self.pos {
            self.pos = (p + 1 < self.entries.len()).then_some(p + 1);
        }
    }

    pub fn prev(&mut self) {
        if let Some(p) = self.pos {
            self.pos = p.checked_sub(1);
        }
    }
}

/// One cursor operation, applied alike to a source and to the model.
#[derive(Debug, Clone)]
pub enum Op {
    Next,
    Prev,
    SeekToFirst,
    SeekToLast,
    Seek(Vec<u8>, u64),
    SeekForPrev(Vec<u8>, u64),
}

impl Op {
    pub fn apply(&self, source: &mut dyn EntrySource) -> SourceResult {
        match self {
            Op::Next => source.next(),
            Op::Prev => source.prev(),
            Op::SeekToFirst => source.seek_to_first(),
            Op::SeekToLast => source.seek_to_last(),
            Op::Seek(key, seqno) => source.seek(key, *seqno),
            Op::SeekForPrev(key, seqno) => source.seek_for_prev(key, *seqno),
        }
    }

    pub fn apply_model(&self, model: &mut Model) {
        match self {
            Op::Next => model.next(),
            Op::Prev => model.prev(),
            Op::SeekToFirst => model.seek_to_first(),
            Op::SeekToLast => model.seek_to_last(),
            Op::Seek(key, seqno) => model.seek(key, *seqno),
            Op::SeekForPrev(key, seqno) => model.seek_for_prev(key, *seqno),
        }
    }

    pub fn is_seek(&self) -> bool {
        !matches!(self, Op::Next | Op::Prev)
    }
}

/// The source's current entry, `None` when invalid.
pub fn current_entry(source: &dyn EntrySource) -> Option<Entry> {
    source.valid().then(|| source.entry())
}

/// Drains a positioned source forwards.
pub fn collect_forward(source: &mut dyn EntrySource) -> SourceResult<Vec<Entry>> {
    let mut out = Vec::new();
    while source.valid() {
        out.push(source.entry());
        source.next()?;
    }
    Ok(out)
}

/// Drains a positioned source backwards; returns the entries in the order visited.
pub fn collect_backward(source: &mut dyn EntrySource) -> SourceResult<Vec<Entry>> {
    let mut out = Vec::new();
    while source.valid() {
        out.push(source.entry());
        source.prev()?;
    }
    Ok(out)
}
