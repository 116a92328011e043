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
    /// For a Merge entry: the length of the operand chain it tops in this memtable (itself
    /// included), so long chains are noticed without walking them.
    pub chain: u32,
    /// A Put written by a squash: the folded value of the upsert chain topped by the Merge
    /// entry with the same key and seqno. It sorts just before that entry, so readers going
    /// forward stop at it; cursors skip the second of two entries with one (key, seqno), so
    /// each direction sees exactly one of them, and both give the same value.
    pub squashed: bool,
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
            .then_with(|| other.squashed.cmp(&self.squashed))
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

    /// Inserts one entry; returns the bytes charged to the memory quota and, for a Merge entry,
    /// the length of the operand chain it now tops in this memtable (0 for other kinds).
    ///
    /// Entries of one key must be inserted in seqno order for the chain length to be exact (the
    /// commit leader applies batches in seqno order).
    pub fn insert(&self, key: Bytes, seqno: u64, kind: EntryKind, value: Bytes) -> (u64, u32) {
        let charge = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD_BYTES;
        let chain = if kind == EntryKind::Merge {
            let older = Probe {
                key: &key,
                seqno: seqno.saturating_sub(1),
            };
            match self
                .map
                .lower_bound(Bound::Included(&older as &dyn KeyView))
            {
                Some(entry) if entry.key().key == key && entry.key().kind == EntryKind::Merge => {
                    entry.key().chain.saturating_add(1)
                }
                _ => 1,
            }
        } else {
            0
        };
        self.map.insert(
            MemKey {
                key,
                seqno,
                kind,
                chain,
                squashed: false,
            },
            value,
        );
        self.size_bytes.fetch_add(charge, AtomicOrdering::Relaxed);
        self.entries.fetch_add(1, AtomicOrdering::Relaxed);
        self.min_seqno.fetch_min(seqno, AtomicOrdering::Relaxed);
        (charge, chain)
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

    /// Adds the folded value of the upsert chain topped by the Merge entry `(key, seqno)` (see
    /// [`MemKey::squashed`]); returns the bytes charged. The caller computed `value` as the
    /// key's value visible at `seqno`.
    pub fn insert_squashed(&self, key: Bytes, seqno: u64, value: Bytes) -> u64 {
        let charge = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD_BYTES;
        self.map.insert(
            MemKey {
                key,
                seqno,
                kind: EntryKind::Put,
                chain: 0,
                squashed: true,
            },
            value,
        );
        self.size_bytes.fetch_add(charge, AtomicOrdering::Relaxed);
        self.entries.fetch_add(1, AtomicOrdering::Relaxed);
        charge
    }

    /// Calls `f` with each version of `key` visible at `read_seqno`, newest first, while it
    /// returns true.
    pub fn for_each_version(
        &self,
        key: &[u8],
        read_seqno: u64,
        mut f: impl FnMut(EntryKind, Bytes) -> bool,
    ) {
        let probe = Probe {
            key,
            seqno: read_seqno,
        };
        for entry in self
            .map
            .range::<dyn KeyView, _>((Bound::Included(&probe as &dyn KeyView), Bound::Unbounded))
        {
            let found = entry.key();
            if found.key.as_ref() != key || !f(found.kind, entry.value().clone()) {
                return;
            }
        }
    }

    /// Every entry in order, one per (key, seqno): a squashed Put hides the Merge entry it
    /// folds (for dumps, whose runs hold each internal key once).
    pub fn iter(&self) -> impl Iterator<Item = (MemKey, Bytes)> + '_ {
        let mut previous: Option<(Bytes, u64)> = None;
        self.map.iter().filter_map(move |entry| {
            let key = entry.key();
            if previous
                .as_ref()
                .is_some_and(|(k, s)| *k == key.key && *s == key.seqno)
            {
                return None;
            }
            previous = Some((key.key.clone(), key.seqno));
            Some((key.clone(), entry.value().clone()))
        })
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

    fn versions(mem: &Memtable, key: &str, read_seqno: u64) -> Vec<(u64, EntryKind)> {
        let mut out = Vec::new();
        let mut seqnos = Vec::new();
        mem.for_each_version(key.as_bytes(), read_seqno, |kind, value| {
            out.push(kind);
            seqnos.push(value);
            true
        });
        seqnos
            .iter()
            .map(|v| String::from_utf8_lossy(v).parse().unwrap())
            .zip(out)
            .collect()
    }

    #[test]
    fn versions_come_newest_first_from_the_read_seqno() {
        let mem = Memtable::new(1);
        mem.insert(b("k"), 5, EntryKind::Put, b("5"));
        mem.insert(b("k"), 9, EntryKind::Delete, b("9"));
        mem.insert(b("j"), 7, EntryKind::Put, b("7"));
        mem.insert(b("ka"), 3, EntryKind::Put, b("3"));
        assert_eq!(versions(&mem, "k", 4), vec![]);
        assert_eq!(versions(&mem, "k", 8), vec![(5, EntryKind::Put)]);
        assert_eq!(
            versions(&mem, "k", 100),
            vec![(9, EntryKind::Delete), (5, EntryKind::Put)]
        );
        assert_eq!(versions(&mem, "kb", 100), vec![]);
        assert_eq!((mem.min_seqno(), mem.entries()), (Some(3), 4));
    }

    #[test]
    fn a_squashed_put_shadows_its_merge_in_every_direction() {
        let mem = Arc::new(Memtable::new(1));
        mem.insert(b("k"), 1, EntryKind::Merge, b("1"));
        mem.insert(b("k"), 2, EntryKind::Merge, b("2"));
        mem.insert(b("l"), 3, EntryKind::Put, b("3"));
        mem.insert_squashed(b("k"), 2, b("12"));
        assert_eq!(
            versions(&mem, "k", 2).first(),
            Some(&(12, EntryKind::Put)),
            "point reads stop at the squashed value"
        );
        let dumped: Vec<(u64, EntryKind)> = mem.iter().map(|(k, _)| (k.seqno, k.kind)).collect();
        assert_eq!(
            dumped,
            vec![
                (2, EntryKind::Put),
                (1, EntryKind::Merge),
                (3, EntryKind::Put)
            ]
        );
        let mut c = MemCursor::new(Arc::clone(&mem));
        c.seek_to_first().unwrap();
        let mut forward = Vec::new();
        while c.valid() {
            forward.push((c.seqno(), c.kind()));
            c.next().unwrap();
        }
        assert_eq!(forward, dumped);
        c.seek_to_last().unwrap();
        let mut backward = Vec::new();
        while c.valid() {
            backward.push((c.seqno(), c.kind()));
            c.prev().unwrap();
        }
        assert_eq!(
            backward,
            vec![
                (3, EntryKind::Put),
                (1, EntryKind::Merge),
                (2, EntryKind::Merge)
            ],
            "backwards the Merge comes last and hides the squashed Put"
        );
        assert_eq!(mem.insert(b("k"), 4, EntryKind::Merge, b("4")).1, 1);
    }

    #[test]
    fn merge_chains_are_counted() {
        let mem = Memtable::new(1);
        assert_eq!(mem.insert(b("k"), 1, EntryKind::Merge, b("1")).1, 1);
        assert_eq!(mem.insert(b("k"), 2, EntryKind::Merge, b("2")).1, 2);
        assert_eq!(mem.insert(b("j"), 3, EntryKind::Merge, b("3")).1, 1);
        assert_eq!(mem.insert(b("k"), 4, EntryKind::Merge, b("4")).1, 3);
        assert_eq!(mem.insert(b("k"), 5, EntryKind::Put, b("5")).1, 0);
        assert_eq!(mem.insert(b("k"), 6, EntryKind::Merge, b("6")).1, 1);
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
