//! Memtables: the in-memory sorted level.
//!
//! A memtable is a skiplist (`skiplist.rs`: nodes in an arena, one writer at a time, lock-free
//! readers) of entries ordered like runs: user key ascending, seqno descending. Each keyspace has
//! one *active* memtable taking writes and a queue of *sealed* ones waiting to be dumped.
//!
//! Squashed entries. A long chain of upsert operands (Merge entries) is folded on a dump thread
//! into a Put carrying the same seqno as the Merge entry topping the chain, flagged *squashed*.
//! It sorts just before that entry, so readers going forward stop at it; cursors skip the second
//! of two entries with one (key, seqno), so each direction sees exactly one of them, and both
//! give the same value.
//!
//! Seqno routing. A memtable accepts the seqnos in `[start_seqno, limit_seqno)`. Sealing sets
//! `limit_seqno` to the next seqno the commit pipeline will hand out (it seals under the commit
//! lock), and the new active memtable starts there. A commit that got its seqno before the seal
//! but inserts after it still lands in the sealed memtable, so when every seqno below the limit
//! is visible, the sealed memtable holds *exactly* the keyspace's writes below the limit, and its
//! dump may record `Dumped { seqno: limit - 1 }` without ever covering a write that is elsewhere.

mod bloom;
mod skiplist;

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use bytes::Bytes;
use strata_sstable::EntryKind;

pub(crate) use bloom::bytes_for_budget as bloom_bytes_for_budget;
use bloom::MemBloom;
use skiplist::{Node, SkipList};

/// One memtable. Thread-safe: inserts serialise inside the skiplist (the commit leader is the
/// only regular writer), any number of readers run concurrently.
pub(crate) struct Memtable {
    list: SkipList,
    /// Lets point lookups skip this memtable (`bloom.rs`).
    bloom: MemBloom,
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

/// One entry as a dump writes it: key, seqno, kind, value, borrowed from the memtable.
pub(crate) type MemEntry<'a> = (&'a [u8], u64, EntryKind, &'a [u8]);

impl Memtable {
    /// An empty memtable taking seqnos from `start_seqno`, with a bloom filter of about
    /// `bloom_bytes` (see [`bloom_bytes_for_budget`]; 0 disables it).
    pub fn new(start_seqno: u64, bloom_bytes: usize) -> Self {
        Memtable {
            list: SkipList::new(),
            bloom: MemBloom::new(bloom_bytes),
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

    /// Inserts one entry (copying key and value into the memtable's arena); returns the bytes
    /// charged to the memory quota and, for a Merge entry, the length of the operand chain it
    /// now tops in this memtable (0 for other kinds).
    ///
    /// Entries of one key must be inserted in seqno order for the chain length to be exact (the
    /// commit leader applies batches in seqno order).
    pub fn insert(&self, key: &[u8], seqno: u64, kind: EntryKind, value: &[u8]) -> (u64, u32) {
        let chain = if kind == EntryKind::Merge {
            match self.list.seek_ge(key, seqno.saturating_sub(1)) {
                Some(older) if older.key() == key && older.kind() == EntryKind::Merge => {
                    older.chain().saturating_add(1)
                }
                _ => 1,
            }
        } else {
            0
        };
        let charge = self.add(key, seqno, kind, chain, false, value);
        (charge, chain)
    }

    fn add(
        &self,
        key: &[u8],
        seqno: u64,
        kind: EntryKind,
        chain: u32,
        squashed: bool,
        value: &[u8],
    ) -> u64 {
        // Before the node is linked: see bloom.rs on why readers then never miss it.
        self.bloom.insert(key);
        let Some(bytes) = self.list.insert(key, seqno, kind, chain, squashed, value) else {
            return 0;
        };
        let charge = bytes as u64;
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
        self.list.first().is_none()
    }

    /// Smallest seqno held, if any.
    pub fn min_seqno(&self) -> Option<u64> {
        let min = self.min_seqno.load(AtomicOrdering::Relaxed);
        (min != u64::MAX).then_some(min)
    }

    /// Adds the folded value of the upsert chain topped by the Merge entry `(key, seqno)` (see
    /// the module documentation); returns the bytes charged (0 if that squash was done
    /// already). The caller computed `value` as the key's value visible at `seqno`.
    pub fn insert_squashed(&self, key: &[u8], seqno: u64, value: &[u8]) -> u64 {
        self.add(key, seqno, EntryKind::Put, 0, true, value)
    }

    /// Calls `f` with each version of `key` visible at `read_seqno`, newest first, while it
    /// returns true. Values are copied out of the memtable.
    pub fn for_each_version(
        &self,
        key: &[u8],
        read_seqno: u64,
        mut f: impl FnMut(EntryKind, Bytes) -> bool,
    ) {
        if !self.bloom.may_contain(key) {
            return;
        }
        let mut node = self.list.seek_ge(key, read_seqno);
        while let Some(found) = node {
            if found.key() != key {
                return;
            }
            // The seek never lands on a newer version, but a squashed Put linked meanwhile
            // right after the found node could carry one; versions above the read seqno are
            // not the reader's to see.
            if found.seqno() <= read_seqno
                && !f(found.kind(), Bytes::copy_from_slice(found.value()))
            {
                return;
            }
            node = found.successor();
        }
    }

    /// Every entry in order, one per (key, seqno): a squashed Put hides the Merge entry it
    /// folds (for dumps, whose runs hold each internal key once).
    pub fn iter(&self) -> impl Iterator<Item = MemEntry<'_>> + '_ {
        let mut node = self.list.first();
        std::iter::from_fn(move || {
            let current = node?;
            node = successor_skipping_pair(current);
            Some((
                current.key(),
                current.seqno(),
                current.kind(),
                current.value(),
            ))
        })
    }
}

/// The next node after `node`, skipping the second entry of a squashed pair.
fn successor_skipping_pair(node: Node<'_>) -> Option<Node<'_>> {
    let next = node.successor()?;
    if next.seqno() == node.seqno() && next.key() == node.key() {
        next.successor()
    } else {
        Some(next)
    }
}

/// Memtables holding more than this are freed on a background thread.
const BACKGROUND_FREE_BYTES: u64 = 4 << 20;

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
    /// The last reference to a dumped memtable is often a reader's tree version; returning tens
    /// of megabytes of arena to the OS there would stall that read, so large ones are handed to
    /// a background thread.
    fn drop(&mut self) {
        if self.size_bytes() <= BACKGROUND_FREE_BYTES {
            return;
        }
        let list = std::mem::take(&mut self.list);
        if let Some(sender) = freeing_thread() {
            // On a send error the list comes back inside the error and is freed here.
            let _ = sender.send(Box::new(list));
        }
    }
}

/// A cursor over a memtable in internal order, implementing the merge iterator's source
/// interface. Holds the memtable alive. Moving forward follows a link; moving backward
/// searches again from the top (O(log n)), as the skiplist has no back links.
pub(crate) struct MemCursor {
    mem: Arc<Memtable>,
    current: Option<skiplist::Position>,
}

impl MemCursor {
    pub fn new(mem: Arc<Memtable>) -> Self {
        MemCursor { mem, current: None }
    }

    fn node(&self) -> Node<'_> {
        match self.current {
            // SAFETY: the cursor only holds positions of nodes of `self.mem`'s list, which the
            // `Arc` keeps alive.
            Some(position) => unsafe { self.mem.list.node_at(position) },
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
        self.node().key()
    }

    fn seqno(&self) -> u64 {
        self.node().seqno()
    }

    fn kind(&self) -> EntryKind {
        self.node().kind()
    }

    fn value(&self) -> Bytes {
        Bytes::copy_from_slice(self.node().value())
    }

    fn seek_to_first(&mut self) -> strata_compaction::SourceResult<()> {
        self.current = self.mem.list.first().map(|n| n.position());
        Ok(())
    }

    fn seek_to_last(&mut self) -> strata_compaction::SourceResult<()> {
        self.current = self.mem.list.last().map(|n| n.position());
        Ok(())
    }

    fn seek(&mut self, key: &[u8], seqno: u64) -> strata_compaction::SourceResult<()> {
        self.current = self.mem.list.seek_ge(key, seqno).map(|n| n.position());
        Ok(())
    }

    fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> strata_compaction::SourceResult<()> {
        self.current = self.mem.list.seek_le(key, seqno).map(|n| n.position());
        Ok(())
    }

    fn next(&mut self) -> strata_compaction::SourceResult<()> {
        if self.current.is_some() {
            self.current = successor_skipping_pair(self.node()).map(|n| n.position());
        }
        Ok(())
    }

    fn prev(&mut self) -> strata_compaction::SourceResult<()> {
        if self.current.is_some() {
            let node = self.node();
            self.current = self
                .mem
                .list
                .seek_lt(node.key(), node.seqno())
                .map(|n| n.position());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_compaction::EntrySource;

    fn b(s: &str) -> &[u8] {
        s.as_bytes()
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
        let mem = Memtable::new(1, 4096);
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
        let mem = Arc::new(Memtable::new(1, 4096));
        mem.insert(b("k"), 1, EntryKind::Merge, b("1"));
        mem.insert(b("k"), 2, EntryKind::Merge, b("2"));
        mem.insert(b("l"), 3, EntryKind::Put, b("3"));
        mem.insert_squashed(b("k"), 2, b("12"));
        assert_eq!(
            versions(&mem, "k", 2).first(),
            Some(&(12, EntryKind::Put)),
            "point reads stop at the squashed value"
        );
        let dumped: Vec<(u64, EntryKind)> = mem
            .iter()
            .map(|(_, seqno, kind, _)| (seqno, kind))
            .collect();
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
        let mem = Memtable::new(1, 4096);
        assert_eq!(mem.insert(b("k"), 1, EntryKind::Merge, b("1")).1, 1);
        assert_eq!(mem.insert(b("k"), 2, EntryKind::Merge, b("2")).1, 2);
        assert_eq!(mem.insert(b("j"), 3, EntryKind::Merge, b("3")).1, 1);
        assert_eq!(mem.insert(b("k"), 4, EntryKind::Merge, b("4")).1, 3);
        assert_eq!(mem.insert(b("k"), 5, EntryKind::Put, b("5")).1, 0);
        assert_eq!(mem.insert(b("k"), 6, EntryKind::Merge, b("6")).1, 1);
    }

    #[test]
    fn cursor_walks_both_ways_and_seeks() {
        let mem = Arc::new(Memtable::new(1, 4096));
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
        let mem = Memtable::new(10, 4096);
        assert!(mem.accepts(10) && mem.accepts(1 << 40) && !mem.accepts(9));
        mem.seal(20);
        assert!(mem.accepts(19) && !mem.accepts(20));
    }
}
