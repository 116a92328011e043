//! Memtables: the in-memory sorted level.
//!
//! A memtable is a lock-free skiplist (`crossbeam-skiplist`) of entries ordered like runs: user
//! key ascending, seqno descending. Each keyspace has one *active* memtable taking writes and a
//! queue of *sealed* ones waiting to be dumped.
//!
//! Seqno routing. A memtable accepts the seqnos in `[start_seqno, limit_seqno)`. Sealing sets
//! `limit_seqno` to the next seqno the commit pipeline will hand out (it seals under the commit
//! lock), and the new active memtable starts there. A commit that got its seqno before the seal
//! but inserts after it still lands in the sealed memtable, so when every seqno below the limit
//! is visible, the sealed memtable holds *exactly* the keyspace's writes below the limit, and its
//! dump may record `Dumped { seqno: limit - 1 }` without ever covering a write that is elsewhere.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use strata_sstable::{compare_internal, EntryKind};

/// Bytes charged per entry on top of key and value: skiplist node, tower and `Bytes` headers.
const ENTRY_OVERHEAD_BYTES: u64 = 96;

/// A memtable key: user key, seqno and kind. Ordered by (key ascending, seqno descending); the
/// kind does not take part (a (key, seqno) pair is unique).
#[derive(Debug, Clone)]
pub(crate) struct MemKey {
    pub key: Bytes,
    pub seqno: u64,
    pub kind: EntryKind,
}

/// A borrowed view of an internal key, so lookups need no allocation.
pub(crate) trait KeyView {
    fn user_key(&self) -> &[u8];
    fn seqno(&self) -> u64;
}

impl KeyView for MemKey {
    fn user_key(&self) -> &[u8] {
        &self.key
    }

    fn seqno(&self) -> u64 {
        self.seqno
    }
}

/// A lookup target: (key, seqno) without owning the key.
pub(crate) struct Probe<'a> {
    pub key: &'a [u8],
    pub seqno: u64,
}

impl KeyView for Probe<'_> {
    fn user_key(&self) -> &[u8] {
        self.key
    }

    fn seqno(&self) -> u64 {
        self.seqno
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for MemKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl Ord for dyn KeyView + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(
            self.user_key(),
            self.seqno(),
            other.user_key(),
            other.seqno(),
        )
    }
}

impl PartialOrd for dyn KeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn KeyView + '_ {}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(&self.key, self.seqno, &other.key, other.seqno)
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MemKey {}

/// One memtable. Thread-safe: any number of concurrent inserts and readers.
pub(crate) struct Memtable {
    map: SkipMap<MemKey, Bytes>,
    size_bytes: AtomicU64,
    entries: AtomicU64,
    min_seqno: AtomicU64,
    /// The first seqno routed here.
    pub start_seqno: u64,
    /// Seqnos at or above this go to a newer memtable; `u64::MAX` while active.
    limit_seqno: AtomicU64,
}

impl std::fmt::Debug for Memtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memtable")
            .field("start_seqno", &self.start_seqno)
            .field("limit_seqno", &self.limit_seqno())
            .field("entries", &self.entries())
            .field("size_bytes", &self.size_bytes())
            .finish()
    }
}

/// The newest version of a key visible at a read seqno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub seqno: u64,
    pub kind: EntryKind,
    pub value: Bytes,
}

impl Memtable {
    pub fn new(start_seqno: u64) -> Self {
        Memtable {
            map: SkipMap::new(),
            size_bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            min_seqno: AtomicU64::new(u64::MAX),
            start_seqno,
            limit_seqno: AtomicU64::new(u64::MAX),
        }
    }

    pub fn limit_seqno(&self) -> u64 {
        self.limit_seqno.load(AtomicOrdering::Acquire)
    }

    /// Seals the memtable: seqnos at or above `limit` go elsewhere from now on.
    pub fn seal(&self, limit: u64) {
        self.limit_seqno.store(limit, AtomicOrdering::Release);
    }

    /// True if a write with this seqno belongs here.
    pub fn accepts(&self, seqno: u64) -> bool {
        seqno >= self.start_seqno && seqno < self.limit_seqno()
    }

    /// Inserts one entry; returns the bytes charged to the memory quota.
    pub fn insert(&self, key: Bytes, seqno: u64, kind: EntryKind, value: Bytes) -> u64 {
        let charge = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD_BYTES;
        self.map.insert(MemKey { key, seqno, kind }, value);
        self.size_bytes.fetch_add(charge, AtomicOrdering::Relaxed);
        self.entries.fetch_add(1, AtomicOrdering::Relaxed);
        self.min_seqno.fetch_min(seqno, AtomicOrdering::Relaxed);
        charge
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(AtomicOrdering::Relaxed)
    }

    pub fn entries(&self) -> u64 {
        self.entries.load(AtomicOrdering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Smallest seqno held, if any.
    pub fn min_seqno(&self) -> Option<u64> {
        let min = self.min_seqno.load(AtomicOrdering::Relaxed);
        (min != u64::MAX).then_some(min)
    }

    /// The newest version of `key` with seqno <= `read_seqno`.
    pub fn get(&self, key: &[u8], read_seqno: u64) -> Option<Found> {
        let probe = Probe {
            key,
            seqno: read_seqno,
        };
        let entry = self
            .map
            .lower_bound(Bound::Included(&probe as &dyn KeyView))?;
        let found = entry.key();
        (found.key.as_ref() == key).then(|| Found {
            seqno: found.seqno,
            kind: found.kind,
            value: entry.value().clone(),
        })
    }

    /// Every entry in order (for dumps).
    pub fn iter(&self) -> impl Iterator<Item = (MemKey, Bytes)> + '_ {
        self.map
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
    }
}

/// Memtables with more entries than this are freed on a background thread.
const BACKGROUND_FREE_ENTRIES: u64 = 4096;

type Garbage = Box<dyn Send>;

/// The sender of the process-wide thread that frees large memtables, started on first use;
/// `None` if it could not be started (then memtables are freed inline).
fn freeing_thread() -> Option<&'static crossbeam_channel::Sender<Garbage>> {
    static SENDER: std::sync::OnceLock<Option<crossbeam_channel::Sender<Garbage>>> =
        std::sync::OnceLock::new();
    SENDER
        .get_or_init(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Garbage>();
            std::thread::Builder::new()
                .name("strata-free".into())
                .spawn(move || rx.iter().for_each(drop))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

impl Drop for Memtable {
    /// The last reference to a dumped memtable is often a reader's tree version; freeing a
    /// skiplist of hundreds of thousands of nodes there would stall that read for hundreds of
    /// milliseconds, so large ones are handed to a background thread.
    fn drop(&mut self) {
        if self.entries() <= BACKGROUND_FREE_ENTRIES {
            return;
        }
        let map = std::mem::replace(&mut self.map, SkipMap::new());
        if let Some(sender) = freeing_thread() {
            // On a send error the map comes back inside the error and is freed here.
            let _ = sender.send(Box::new(map));
        }
    }
}

/// A cursor over a memtable in internal order, implementing the merge iterator's source
/// interface. Holds the memtable alive. Each move re-seeks from the current key (O(log n)),
/// because a skiplist entry borrows the map and cannot live beside the `Arc` that owns it.
pub(crate) struct MemCursor {
    mem: Arc<Memtable>,
    current: Option<(MemKey, Bytes)>,
}

impl MemCursor {
    pub fn new(mem: Arc<Memtable>) -> Self {
        MemCursor { mem, current: None }
    }

    fn set(&mut self, entry: Option<crossbeam_skiplist::map::Entry<'_, MemKey, Bytes>>) {
        self.current = entry.map(|e| (e.key().clone(), e.value().clone()));
    }

    fn current(&self) -> &(MemKey, Bytes) {
        match &self.current {
            Some(current) => current,
            None => {
                panic!("MemCursor accessed while not positioned on an entry (check valid() first)")
            }
        }
    }
}

impl strata_compaction::EntrySource for MemCursor {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        &self.current().0.key
    }

    fn seqno(&self) -> u64 {
        self.current().0.seqno
    }

    fn kind(&self) -> EntryKind {
        self.current().0.kind
    }

    fn value(&self) -> Bytes {
        self.current().1.clone()
    }

    fn seek_to_first(&mut self) -> strata_compaction::SourceResult<()> {
        let mem = Arc::clone(&self.mem);
        self.set(mem.map.front());
        Ok(())
    }

    fn seek_to_last(&mut self) -> strata_compaction::SourceResult<()> {
        let mem = Arc::clone(&self.mem);
        self.set(mem.map.back());
        Ok(())
    }

    fn seek(&mut self, key: &[u8], seqno: u64) -> strata_compaction::SourceResult<()> {
        let mem = Arc::clone(&self.mem);
        let probe = Probe { key, seqno };
        self.set(mem.map.lower_bound(Bound::Included(&probe as &dyn KeyView)));
        Ok(())
    }

    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> strata_compaction::SourceResult<()> {
        let mem = Arc::clone(&self.mem);
        let probe = Probe { key, seqno };
        self.set(mem.map.upper_bound(Bound::Included(&probe as &dyn KeyView)));
        Ok(())
    }

    fn next(&mut self) -> strata_compaction::SourceResult<()> {
        let Some((key, _)) = self.current.take() else {
            return Ok(());
        };
        let mem = Arc::clone(&self.mem);
        self.set(mem.map.lower_bound(Bound::Excluded(&key as &dyn KeyView)));
        Ok(())
    }

    fn prev(&mut self) -> strata_compaction::SourceResult<()> {
        let Some((key, _)) = self.current.take() else {
            return Ok(());
        };
        let mem = Arc::clone(&self.mem);
        self.set(mem.map.upper_bound(Bound::Excluded(&key as &dyn KeyView)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_compaction::EntrySource;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn get_returns_the_newest_visible_version() {
        let mem = Memtable::new(1);
        mem.insert(b("k"), 5, EntryKind::Put, b("v5"));
        mem.insert(b("k"), 9, EntryKind::Delete, Bytes::new());
        mem.insert(b("j"), 7, EntryKind::Put, b("j7"));
        assert_eq!(mem.get(b"k", 4), None);
        assert_eq!(mem.get(b"k", 5).map(|f| f.value), Some(b("v5")));
        assert_eq!(mem.get(b"k", 8).map(|f| f.seqno), Some(5));
        assert_eq!(mem.get(b"k", 100).map(|f| f.kind), Some(EntryKind::Delete));
        assert_eq!(mem.get(b"ka", 100), None);
        assert_eq!((mem.min_seqno(), mem.entries()), (Some(5), 3));
    }

    #[test]
    fn cursor_walks_both_ways_and_seeks() {
        let mem = Arc::new(Memtable::new(1));
        for (k, s) in [("a", 3), ("a", 1), ("b", 2), ("c", 4)] {
            mem.insert(b(k), s, EntryKind::Put, b(k));
        }
        let mut c = MemCursor::new(Arc::clone(&mem));
        c.seek_to_first().unwrap();
        let mut forward = Vec::new();
        while c.valid() {
            forward.push((c.key().to_vec(), c.seqno()));
            c.next().unwrap();
        }
        assert_eq!(
            forward,
            vec![
                (b"a".to_vec(), 3),
                (b"a".to_vec(), 1),
                (b"b".to_vec(), 2),
                (b"c".to_vec(), 4)
            ]
        );
        c.seek_to_last().unwrap();
        c.prev().unwrap();
        assert_eq!(c.key(), b"b");
        c.seek(b"a", 2).unwrap();
        assert_eq!((c.key(), c.seqno()), (&b"a"[..], 1));
        c.seek_for_prev(b"a", 2).unwrap();
        assert_eq!((c.key(), c.seqno()), (&b"a"[..], 3));
        c.seek_for_prev(b"0", 0).unwrap();
        assert!(!c.valid());
    }

    #[test]
    fn seqno_routing_follows_the_seal() {
        let mem = Memtable::new(10);
        assert!(mem.accepts(10) && mem.accepts(1 << 40) && !mem.accepts(9));
        mem.seal(20);
        assert!(mem.accepts(19) && !mem.accepts(20));
    }
}
