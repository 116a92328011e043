//! What one keyspace's tree holds at a moment: memtables and runs, as an immutable snapshot.
//!
//! Readers clone the current `Arc<TreeVersion>` and read it without locks; writers of the tree
//! shape (seal, dump, compaction) build a new version and swap it in. A run's file is deleted
//! when its [`RunHandle`] is dropped after being marked obsolete, which happens only when no
//! version (and so no iterator) refers to it any more.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use strata_sstable::{Run, RunIter, BLOCK_TRAILER_LEN};

use crate::fs::{self, Fs};
use crate::memtable::Memtable;
use crate::meta::RunInfo;

/// Deletes obsolete run files on a background thread and remembers them so the next metadata
/// commit can log `ForgetRun`.
///
/// A run becomes deletable when its last [`RunHandle`] drops, which may happen on any thread,
/// often a reader finishing an iterator. Deleting there would put a file removal and a directory
/// fsync (hundreds of milliseconds under write load) on the reader's latency, so the drop only
/// queues the file; a background thread calls [`Reaper::process`].
#[derive(Debug)]
pub(crate) struct Reaper {
    fs: Arc<dyn Fs>,
    pending: Mutex<Vec<(u64, PathBuf)>>,
    forgotten: Mutex<Vec<u64>>,
}

impl Reaper {
    pub fn new(fs: Arc<dyn Fs>) -> Self {
        Reaper {
            fs,
            pending: Mutex::new(Vec::new()),
            forgotten: Mutex::new(Vec::new()),
        }
    }

    fn enqueue(&self, run: u64, path: &Path) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((run, path.to_path_buf()));
    }

    /// Deletes the queued files, syncs their directories once, and moves their ids to the
    /// forgotten list. A file that cannot be deleted stays on disk; recovery deletes it (the
    /// metadata log says it was dropped).
    pub fn process(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        let mut deleted = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for (run, path) in pending {
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    log::warn!(
                        "strata: could not delete obsolete run {}: {e}",
                        path.display()
                    );
                    continue;
                }
            }
            dirs.insert(fs::parent(&path).to_path_buf());
            deleted.push(run);
        }
        for dir in dirs {
            if let Err(e) = self.fs.sync_dir(&dir) {
                // Without the sync the deletions may not be durable; recovery redoes them.
                log::warn!("strata: syncing {} after deleting runs: {e}", dir.display());
                return;
            }
        }
        self.forgotten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(deleted);
    }

    /// `ForgetRun` records for the runs deleted (durably) since the last call, to append to the
    /// next metadata group.
    pub fn forget_records(&self) -> Vec<crate::meta::MetaRecord> {
        let forgotten =
            std::mem::take(&mut *self.forgotten.lock().unwrap_or_else(|p| p.into_inner()));
        forgotten
            .into_iter()
            .map(|run| crate::meta::MetaRecord::ForgetRun { run })
            .collect()
    }
}

/// A run in a keyspace's tree.
pub(crate) struct RunHandle {
    pub id: u64,
    pub run: Run,
    pub info: RunInfo,
    path: PathBuf,
    obsolete: AtomicBool,
    reaper: Arc<Reaper>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish()
    }
}

impl RunHandle {
    pub fn new(id: u64, run: Run, info: RunInfo, path: PathBuf, reaper: Arc<Reaper>) -> Self {
        RunHandle {
            id,
            run,
            info,
            path,
            obsolete: AtomicBool::new(false),
            reaper,
        }
    }

    /// Marks the run as no longer part of the tree: its file is deleted when the last reader
    /// lets go.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            self.reaper.enqueue(self.id, &self.path);
        }
    }
}

/// The part `[begin, end)` of a run that lies in one range. A dump gives each range its run
/// intersects a slice of it; split and coalesce re-slice runs without copying data.
#[derive(Debug)]
pub(crate) struct Slice {
    pub id: u64,
    pub run: Arc<RunHandle>,
    /// Inclusive lower bound (`None`: unbounded).
    pub begin: Option<Bytes>,
    /// Exclusive upper bound (`None`: unbounded).
    pub end: Option<Bytes>,
    /// Stored bytes of the run's pages that overlap the slice (what the policy weighs).
    pub bytes: u64,
    /// Fixed random number for the policy's desynchronisation (one slice in ten lets its level
    /// keep an extra run).
    pub seed: u64,
}

impl Slice {
    /// True if `key` lies within the slice's bounds. A run's entries outside them belong to
    /// other slices (of other ranges, or of ranges since merged), which may have dropped or
    /// superseded them: a lookup must never consult a slice for a key outside it.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.begin.as_ref().is_none_or(|b| b.as_ref() <= key) && below(key, &self.end)
    }
}

/// A well-mixed 64-bit function of a slice id: the slice's seed.
pub(crate) fn slice_seed(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn below(key: &[u8], end: &Option<Bytes>) -> bool {
    end.as_ref().is_none_or(|e| key < e.as_ref())
}

fn at_or_above(key: &[u8], begin: &Option<Bytes>) -> bool {
    begin.as_ref().is_none_or(|b| key >= b.as_ref())
}

impl Slice {
    pub fn new(id: u64, run: Arc<RunHandle>, begin: Option<Bytes>, end: Option<Bytes>) -> Slice {
        let bytes = estimate_bytes(&run.run, &begin, &end);
        Slice {
            id,
            run,
            begin,
            end,
            bytes,
            seed: slice_seed(id),
        }
    }

    /// The metadata record that inserts this slice into range `range` of keyspace `keyspace`.
    pub fn record(&self, keyspace: u32, range: u64) -> crate::meta::MetaRecord {
        crate::meta::MetaRecord::InsertSlice {
            keyspace,
            range,
            slice: self.id,
            run: self.run.id,
            begin: self.begin.as_ref().map(|b| b.to_vec()),
            end: self.end.as_ref().map(|e| e.to_vec()),
        }
    }

    /// A cursor over the slice's entries within the caller's bounds too (sharing the bounds'
    /// bytes: no copy per cursor).
    pub fn iter(&self, lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> RunIter {
        let lower = tighter_lower(lower, self.begin.as_ref());
        let upper = tighter_upper(upper, self.end.as_ref());
        RunIter::with_bounds(&self.run.run, lower, upper)
    }

    /// True if the slice's run may hold keys in `[begin, end)` of the slice at all.
    pub fn is_empty(&self) -> bool {
        let info = &self.run.info;
        info.entries == 0
            || !below(&info.min_key, &self.end)
            || !at_or_above(&info.max_key, &self.begin)
    }
}

/// The tighter of a query's lower bound and a slice's inclusive begin.
fn tighter_lower(lower: &Bound<Bytes>, begin: Option<&Bytes>) -> Bound<Bytes> {
    match (lower, begin) {
        (lower, None) => lower.clone(),
        (Bound::Unbounded, Some(b)) => Bound::Included(b.clone()),
        (Bound::Included(l), Some(b)) => Bound::Included(l.max(b).clone()),
        (Bound::Excluded(l), Some(b)) if l >= b => Bound::Excluded(l.clone()),
        (Bound::Excluded(_), Some(b)) => Bound::Included(b.clone()),
    }
}

/// The tighter of a query's upper bound and a slice's exclusive end.
fn tighter_upper(upper: &Bound<Bytes>, end: Option<&Bytes>) -> Bound<Bytes> {
    match (upper, end) {
        (upper, None) => upper.clone(),
        (Bound::Unbounded, Some(e)) => Bound::Excluded(e.clone()),
        (Bound::Excluded(u), Some(e)) => Bound::Excluded(u.min(e).clone()),
        (Bound::Included(u), Some(e)) if u < e => Bound::Included(u.clone()),
        (Bound::Included(_), Some(e)) => Bound::Excluded(e.clone()),
    }
}

/// Stored bytes of the pages of `run` that overlap `[begin, end)`.
fn estimate_bytes(run: &Run, begin: &Option<Bytes>, end: &Option<Bytes>) -> u64 {
    let pages = run.pages();
    let mut total = 0;
    for (i, page) in pages.iter().enumerate() {
        // Page i holds keys from its first key up to (and maybe including) the next page's.
        let starts_before_end = below(&page.first_key, end);
        let ends_after_begin = match (pages.get(i + 1), begin) {
            (_, None) | (None, _) => true,
            (Some(next), Some(b)) => next.first_key.as_ref() >= b.as_ref(),
        };
        if starts_before_end && ends_after_begin {
            total += u64::from(page.stored_len) + BLOCK_TRAILER_LEN as u64;
        }
    }
    total
}

/// A contiguous interval `[begin, end)` of a keyspace's keys with its slices. Ranges tile the
/// key space; compaction works on one range at a time.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub id: u64,
    pub begin: Option<Bytes>,
    pub end: Option<Bytes>,
    /// Newest first: by run max seqno, so a compaction's output sorts behind slices dumped
    /// while it ran.
    pub slices: Vec<Arc<Slice>>,
}

impl Range {
    pub fn contains(&self, key: &[u8]) -> bool {
        at_or_above(key, &self.begin) && below(key, &self.end)
    }

    /// True if the range overlaps a query's bounds.
    pub fn intersects(&self, lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> bool {
        let starts_before_upper = match (upper, &self.begin) {
            (Bound::Unbounded, _) | (_, None) => true,
            (Bound::Included(u), Some(b)) => b <= u,
            (Bound::Excluded(u), Some(b)) => b < u,
        };
        let ends_after_lower = match (lower, &self.end) {
            (Bound::Unbounded, _) | (_, None) => true,
            (Bound::Included(l) | Bound::Excluded(l), Some(e)) => l < e,
        };
        starts_before_upper && ends_after_lower
    }

    /// True if the range overlaps the inclusive key interval `[min, max]`.
    pub fn overlaps_keys(&self, min: &[u8], max: &[u8]) -> bool {
        at_or_above(max, &self.begin) && below(min, &self.end)
    }

    pub fn bytes(&self) -> u64 {
        self.slices.iter().map(|s| s.bytes).sum()
    }

    /// Orders slices newest first.
    pub fn sort_slices(slices: &mut [Arc<Slice>]) {
        slices.sort_by(|a, b| {
            b.run
                .info
                .max_seqno
                .cmp(&a.run.info.max_seqno)
                .then(b.id.cmp(&a.id))
        });
    }
}

/// An immutable picture of a keyspace's tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeVersion {
    /// The memtable taking writes.
    pub active: Arc<Memtable>,
    /// Sealed memtables waiting to be dumped, newest first.
    pub sealed: Vec<Arc<Memtable>>,
    /// Ranges in key order, tiling the key space.
    pub ranges: Vec<Arc<Range>>,
}

impl TreeVersion {
    /// Checks the tree's shape (with the `invariants` feature, after every change): sealed
    /// memtables tile the seqno space below the active one, newest first, and runs are ordered
    /// newest first.
    #[cfg(feature = "invariants")]
    pub fn check_invariants(&self) {
        let mut start = self.active.start_seqno;
        assert_eq!(
            self.active.limit_seqno(),
            u64::MAX,
            "invariant: the active memtable is unsealed"
        );
        for sealed in &self.sealed {
            assert_eq!(
                sealed.limit_seqno(),
                start,
                "invariant: sealed memtables tile the seqnos below the active one"
            );
            start = sealed.start_seqno;
        }
        assert!(
            !self.ranges.is_empty(),
            "invariant: a keyspace has at least one range"
        );
        assert!(
            self.ranges[0].begin.is_none(),
            "invariant: the first range starts at minus infinity"
        );
        assert!(
            self.ranges[self.ranges.len() - 1].end.is_none(),
            "invariant: the last range ends at infinity"
        );
        for pair in self.ranges.windows(2) {
            assert_eq!(
                pair[0].end, pair[1].begin,
                "invariant: ranges tile the key space"
            );
        }
        for range in &self.ranges {
            for pair in range.slices.windows(2) {
                assert!(
                    pair[0].run.info.max_seqno >= pair[1].run.info.max_seqno,
                    "invariant: slices newest first in range {}",
                    range.id
                );
            }
            for slice in &range.slices {
                let inside_begin = match (&range.begin, &slice.begin) {
                    (None, _) => true,
                    (Some(r), Some(s)) => s >= r,
                    (Some(_), None) => false,
                };
                let inside_end = match (&range.end, &slice.end) {
                    (None, _) => true,
                    (Some(r), Some(s)) => s <= r,
                    (Some(_), None) => false,
                };
                assert!(
                    inside_begin && inside_end,
                    "invariant: slice {} lies within range {}",
                    slice.id,
                    range.id
                );
            }
        }
    }

    /// The range holding `key` (`None` only for a dropped keyspace's empty tree).
    pub fn range_for(&self, key: &[u8]) -> Option<&Arc<Range>> {
        let after = self
            .ranges
            .partition_point(|r| r.begin.as_ref().is_none_or(|b| b.as_ref() <= key));
        self.ranges.get(after.saturating_sub(1))
    }

    /// Every distinct live run, by id.
    pub fn runs(&self) -> BTreeMap<u64, Arc<RunHandle>> {
        let mut runs = BTreeMap::new();
        for range in &self.ranges {
            for slice in &range.slices {
                runs.entry(slice.run.id)
                    .or_insert_with(|| Arc::clone(&slice.run));
            }
        }
        runs
    }

    /// Memtables newest first: the active one, then the sealed ones.
    pub fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.sealed.iter())
    }
}

/// The file name of a run.
pub(crate) fn run_file_name(run: u64) -> String {
    format!("{run:012}.run")
}

/// Parses a run file name back into its id.
pub(crate) fn parse_run_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".run")?;
    (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}
