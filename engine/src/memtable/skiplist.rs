//! The memtable's index: a skiplist whose nodes live in an append-only arena.
//!
//! One writer at a time (inserts take a mutex; the commit leader is the only regular writer),
//! any number of concurrent readers without locks. This is LevelDB's and RocksDB's memtable
//! design, chosen over a general concurrent map for three costs it removes from every write:
//! - no allocation per entry: a node, its key and its value are bump-allocated together from
//!   1 MiB chunks, and the whole memtable is freed by freeing its chunks;
//! - no pointer chase to compare keys: the key bytes sit in the node, next to its links;
//! - no epoch bookkeeping: nodes are never unlinked, so readers need no guard.
//!
//! Publication: a node is fully written (header, key, value, its own links) before the writer
//! links it in with `Release` stores, bottom level first; readers follow links with `Acquire`
//! loads. So a reader that reaches a node sees all of it, and a node reachable at some level is
//! reachable at every lower one. Nodes are immutable once linked, except for their link words,
//! which are atomics.
//!
//! Order: user key ascending, then seqno descending, then a squashed Put before the entry it
//! folds (see "Squashed entries" in the memtable module). Searches take a `(key, seqno)` probe and ignore the squashed
//! flag, so both entries of a squashed pair compare equal to a probe.

use std::alloc::{self, Layout};
use std::cmp::Ordering;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Mutex;

use strata_sstable::{compare_internal, EntryKind};

/// Tallest tower. With a branching factor of 4, 12 levels index 4^12 (16M) entries well.
const MAX_HEIGHT: usize = 12;
/// One node in `BRANCHING` is promoted to the next level (LevelDB's choice: shorter towers and
/// fewer cache lines per node than 1 in 2, for a slightly longer walk per level).
const BRANCHING: u64 = 4;
/// Arena chunk size. A node larger than a quarter of it gets a chunk of its own, so at most a
/// quarter of a chunk is wasted at its end.
const CHUNK_BYTES: usize = 1 << 20;
const NODE_ALIGN: usize = std::mem::align_of::<NodeHeader>();

/// The fixed part of a node. In memory it is followed by `height` link words
/// (`AtomicPtr<NodeHeader>`), then the key bytes, then the value bytes.
#[repr(C)]
struct NodeHeader {
    seqno: u64,
    key_len: u32,
    value_len: u32,
    chain: u32,
    kind: u8,
    squashed: bool,
    height: u8,
}

const HEADER_BYTES: usize = std::mem::size_of::<NodeHeader>();
const LINK_BYTES: usize = std::mem::size_of::<AtomicPtr<NodeHeader>>();

/// A published node: a reference valid as long as the list it came from.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    header: &'a NodeHeader,
}

impl<'a> Node<'a> {
    /// # Safety
    /// `ptr` must point to a node of a live list that was fully written before it was
    /// published, and the list must outlive `'a`.
    unsafe fn from_ptr(ptr: *const NodeHeader) -> Option<Node<'a>> {
        // SAFETY: the caller guarantees a published, fully initialised node that outlives 'a.
        unsafe { ptr.as_ref() }.map(|header| Node { header })
    }

    fn base(&self) -> *const u8 {
        (self.header as *const NodeHeader).cast()
    }

    fn link(&self, level: usize) -> &'a AtomicPtr<NodeHeader> {
        debug_assert!(level < usize::from(self.header.height));
        // SAFETY: a node is allocated with `height` link words right after its header
        // (`node_size`), 8-byte aligned, and initialised before publication.
        unsafe {
            &*self
                .base()
                .add(HEADER_BYTES + level * LINK_BYTES)
                .cast::<AtomicPtr<NodeHeader>>()
        }
    }

    fn next(&self, level: usize) -> Option<Node<'a>> {
        // SAFETY: links only ever hold null or published nodes of the same list.
        unsafe { Node::from_ptr(self.link(level).load(AtomicOrdering::Acquire)) }
    }

    fn payload_offset(&self) -> usize {
        HEADER_BYTES + usize::from(self.header.height) * LINK_BYTES
    }

    /// The user key.
    pub fn key(&self) -> &'a [u8] {
        // SAFETY: the key bytes follow the links and were written before publication; they are
        // never modified afterwards.
        unsafe {
            std::slice::from_raw_parts(
                self.base().add(self.payload_offset()),
                self.header.key_len as usize,
            )
        }
    }

    /// The value bytes.
    pub fn value(&self) -> &'a [u8] {
        // SAFETY: as for the key; the value follows it.
        unsafe {
            std::slice::from_raw_parts(
                self.base()
                    .add(self.payload_offset() + self.header.key_len as usize),
                self.header.value_len as usize,
            )
        }
    }

    pub fn seqno(&self) -> u64 {
        self.header.seqno
    }

    pub fn kind(&self) -> EntryKind {
        // Only valid kinds are ever stored (`insert` takes an `EntryKind`).
        EntryKind::from_u8(self.header.kind).unwrap_or(EntryKind::Merge)
    }

    pub fn chain(&self) -> u32 {
        self.header.chain
    }

    pub fn squashed(&self) -> bool {
        self.header.squashed
    }

    /// The next node in order (level 0).
    pub fn successor(&self) -> Option<Node<'a>> {
        self.next(0)
    }

    fn same_node(&self, other: &Node<'_>) -> bool {
        ptr::eq(self.header, other.header)
    }

    /// This node's position, to come back to it with [`SkipList::node_at`] without holding a
    /// borrow of the list.
    pub fn position(&self) -> Position {
        Position(NonNull::from(self.header))
    }
}

/// A node's address, detached from the list's lifetime (a cursor stores one next to the `Arc`
/// that keeps the list alive). Only [`SkipList::node_at`] turns it back into a node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position(NonNull<NodeHeader>);

// SAFETY: a position is an address only; it is dereferenced solely by `node_at`, whose caller
// guarantees the list is alive, and nodes are safe to read from any thread.
unsafe impl Send for Position {}
// SAFETY: as for `Send`.
unsafe impl Sync for Position {}

/// Bytes a node with these sizes occupies (rounded up to the node alignment).
fn node_size(height: usize, key_len: usize, value_len: usize) -> usize {
    let raw = HEADER_BYTES + height * LINK_BYTES + key_len + value_len;
    raw.div_ceil(NODE_ALIGN) * NODE_ALIGN
}

/// The append-only memory nodes are carved from. Only the writer touches it.
struct Arena {
    /// Every chunk ever allocated, freed together on drop.
    chunks: Vec<(NonNull<u8>, Layout)>,
    /// Free space left in the current chunk: `[cursor, end)`.
    cursor: usize,
    end: usize,
    allocated_bytes: usize,
}

impl Arena {
    fn new() -> Arena {
        Arena {
            chunks: Vec::new(),
            cursor: 0,
            end: 0,
            allocated_bytes: 0,
        }
    }

    fn new_chunk(&mut self, bytes: usize) -> NonNull<u8> {
        let layout = match Layout::from_size_align(bytes, NODE_ALIGN) {
            Ok(layout) => layout,
            Err(_) => alloc::handle_alloc_error(Layout::new::<u64>()),
        };
        // SAFETY: the layout has a non-zero size (every node has a header).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(chunk) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        self.chunks.push((chunk, layout));
        self.allocated_bytes += bytes;
        chunk
    }

    /// `size` bytes aligned to [`NODE_ALIGN`] (`size` is a multiple of it), uninitialised.
    fn allocate(&mut self, size: usize) -> NonNull<u8> {
        debug_assert!(size > 0 && size.is_multiple_of(NODE_ALIGN));
        if size > CHUNK_BYTES / 4 {
            return self.new_chunk(size);
        }
        if self.end - self.cursor < size {
            let chunk = self.new_chunk(CHUNK_BYTES);
            self.cursor = chunk.as_ptr() as usize;
            self.end = self.cursor + CHUNK_BYTES;
        }
        let at = self.cursor;
        self.cursor += size;
        // The cursor lies inside a live chunk allocation, so it is non-null.
        match NonNull::new(at as *mut u8) {
            Some(p) => p,
            None => alloc::handle_alloc_error(Layout::new::<u64>()),
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for (chunk, layout) in self.chunks.drain(..) {
            // SAFETY: each chunk was allocated by `new_chunk` with exactly this layout and is
            // freed once; the list that owned the nodes in it is being dropped.
            unsafe { alloc::dealloc(chunk.as_ptr(), layout) };
        }
    }
}

/// The writer's side: the arena, the height generator and the last insert's predecessors.
struct Writer {
    arena: Arena,
    rng: u64,
    /// Each level's predecessor from the last insert (or the head): sequential inserts find
    /// their place here without a search.
    hint: [*mut NodeHeader; MAX_HEIGHT],
}

// SAFETY: the raw pointers in a writer point into its own arena (or the list's head, which is
// in the same arena); the writer is only reached through the list's mutex.
unsafe impl Send for Writer {}

/// See the module documentation. `Send` and `Sync`: inserts serialise on an internal mutex,
/// reads need no lock.
pub(crate) struct SkipList {
    head: NonNull<NodeHeader>,
    /// Height of the tallest tower so far: searches start there.
    height: AtomicUsize,
    writer: Mutex<Writer>,
}

// SAFETY: nodes are immutable after publication except for their atomic link words; publication
// uses Release/Acquire (module documentation); the arena (and so every node) is freed only in
// `drop`, which has exclusive access; all mutation of writer state happens under the mutex.
unsafe impl Send for SkipList {}
// SAFETY: as for `Send`.
unsafe impl Sync for SkipList {}

impl std::fmt::Debug for SkipList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkipList")
            .field("height", &self.height.load(AtomicOrdering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Internal order of `(key, seqno)` pairs.
#[inline]
fn compare(a_key: &[u8], a_seqno: u64, b_key: &[u8], b_seqno: u64) -> Ordering {
    compare_internal(a_key, a_seqno, b_key, b_seqno)
}

impl SkipList {
    pub fn new() -> SkipList {
        let mut arena = Arena::new();
        let size = node_size(MAX_HEIGHT, 0, 0);
        let head = arena.allocate(size).cast::<NodeHeader>();
        // SAFETY: `head` is a fresh, aligned allocation of `size` bytes: room for the header and
        // MAX_HEIGHT null links, all written here before anyone can see the node.
        unsafe {
            head.as_ptr().write(NodeHeader {
                seqno: 0,
                key_len: 0,
                value_len: 0,
                chain: 0,
                kind: 0,
                squashed: false,
                height: MAX_HEIGHT as u8,
            });
            let links = head
                .as_ptr()
                .cast::<u8>()
                .add(HEADER_BYTES)
                .cast::<AtomicPtr<NodeHeader>>();
            for level in 0..MAX_HEIGHT {
                links.add(level).write(AtomicPtr::new(ptr::null_mut()));
            }
        }
        SkipList {
            head,
            height: AtomicUsize::new(1),
            writer: Mutex::new(Writer {
                arena,
                rng: 0x9E37_79B9_7F4A_7C15,
                hint: [head.as_ptr(); MAX_HEIGHT],
            }),
        }
    }

    fn head(&self) -> Node<'_> {
        // SAFETY: the head is initialised in `new` and lives as long as the list.
        Node {
            header: unsafe { self.head.as_ref() },
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves at worst an allocated, unlinked node.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes taken from the allocator for nodes (chunks included whole).
    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        self.lock_writer().arena.allocated_bytes
    }

    /// Inserts an entry and returns the bytes its node occupies; returns `None`, inserting
    /// nothing, if an entry with the same key, seqno and squashed flag exists (seqnos are unique
    /// per key, so only a repeated squash can meet one).
    ///
    /// # Panics
    /// If the key or the value is 4 GiB or longer (the engine limits both far below).
    pub fn insert(
        &self,
        key: &[u8],
        seqno: u64,
        kind: EntryKind,
        chain: u32,
        squashed: bool,
        value: &[u8],
    ) -> Option<usize> {
        let key_len = u32::try_from(key.len()).expect("memtable key shorter than 4 GiB");
        let value_len = u32::try_from(value.len()).expect("memtable value shorter than 4 GiB");
        let mut writer = self.lock_writer();
        let height = random_height(&mut writer.rng);
        // Full order, squashed flag included: a squashed Put sorts before its Merge.
        let before_new = |node: Node<'_>| {
            compare(node.key(), node.seqno(), key, seqno)
                .then_with(|| squashed.cmp(&node.squashed()))
                == Ordering::Less
        };
        let preds = match self.hinted_preds(&writer.hint, height, &before_new) {
            Some(preds) => preds,
            None => self.search_preds(&before_new),
        };
        // SAFETY (every `Node::of` below): `preds` come from the hint or a search of this
        // list, made under the writer mutex held here, so they are its head or its nodes.
        if let Some(next) = unsafe { Node::of(preds[0]) }.next(0) {
            if next.seqno() == seqno && next.squashed() == squashed && next.key() == key {
                return None;
            }
        }

        let size = node_size(height, key.len(), value.len());
        let node = writer.arena.allocate(size).cast::<NodeHeader>();
        // SAFETY: `node` is a fresh, aligned allocation of `size` bytes, laid out as
        // `node_size` computed: header, `height` links, key, value. Everything is written
        // before the node is linked below.
        unsafe {
            node.as_ptr().write(NodeHeader {
                seqno,
                key_len,
                value_len,
                chain,
                kind: kind as u8,
                squashed,
                height: height as u8,
            });
            let base = node.as_ptr().cast::<u8>();
            let links = base.add(HEADER_BYTES).cast::<AtomicPtr<NodeHeader>>();
            for (level, pred) in preds.iter().enumerate().take(height) {
                let next = Node::of(*pred).link(level).load(AtomicOrdering::Relaxed);
                links.add(level).write(AtomicPtr::new(next));
            }
            let payload = base.add(HEADER_BYTES + height * LINK_BYTES);
            ptr::copy_nonoverlapping(key.as_ptr(), payload, key.len());
            ptr::copy_nonoverlapping(value.as_ptr(), payload.add(key.len()), value.len());
        }
        // Publish bottom-up: once reachable at a level, the node is reachable below it too.
        for (level, pred) in preds.iter().enumerate().take(height) {
            // SAFETY: as above.
            unsafe { Node::of(*pred) }
                .link(level)
                .store(node.as_ptr(), AtomicOrdering::Release);
        }
        if height > self.height.load(AtomicOrdering::Relaxed) {
            self.height.store(height, AtomicOrdering::Release);
        }
        for (level, hint) in writer.hint.iter_mut().enumerate() {
            *hint = if level < height {
                node.as_ptr()
            } else {
                preds[level]
            };
        }
        Some(size)
    }

    /// The predecessors at every level below `height` from the last insert's, if they still
    /// bracket the new entry (always for ascending inserts); `None` otherwise.
    fn hinted_preds(
        &self,
        hint: &[*mut NodeHeader; MAX_HEIGHT],
        height: usize,
        before_new: &dyn Fn(Node<'_>) -> bool,
    ) -> Option<[*mut NodeHeader; MAX_HEIGHT]> {
        for (level, &pred) in hint.iter().enumerate().take(height) {
            // SAFETY: hints are the head or nodes of this list, and the caller holds the writer
            // mutex.
            let pred = unsafe { Node::of(pred) };
            if !pred.same_node(&self.head()) && !before_new(pred) {
                return None;
            }
            if pred.next(level).is_some_and(before_new) {
                return None;
            }
        }
        // Levels at or above `height` are not linked, so their entries do not matter.
        Some(*hint)
    }

    /// Each level's last node ordered before the new entry (or the head).
    fn search_preds(&self, before_new: &dyn Fn(Node<'_>) -> bool) -> [*mut NodeHeader; MAX_HEIGHT] {
        let mut preds = [self.head.as_ptr(); MAX_HEIGHT];
        let mut x = self.head();
        for level in (0..MAX_HEIGHT).rev() {
            warm_descent(x, level);
            while let Some(next) = x.next(level) {
                if !before_new(next) {
                    break;
                }
                x = next;
                warm_descent(x, level);
            }
            preds[level] = (x.header as *const NodeHeader).cast_mut();
        }
        preds
    }

    /// The last node whose `(key, seqno)` satisfies `advance` walking from the head (the head
    /// itself if none does), and the level-0 successor the walk stopped at; `advance` must be
    /// true for a prefix of the order.
    ///
    /// The successor is the one the walk *saw*: loading the link again could return a node
    /// inserted meanwhile that `advance` would have passed (a newer version of the sought key),
    /// which a reader at an older seqno must not get.
    fn last_where(&self, advance: impl Fn(Node<'_>) -> bool) -> (Node<'_>, Option<Node<'_>>) {
        let mut x = self.head();
        let mut stop = None;
        for level in (0..self.height.load(AtomicOrdering::Acquire)).rev() {
            stop = None;
            warm_descent(x, level);
            while let Some(next) = x.next(level) {
                if !advance(next) {
                    stop = Some(next);
                    break;
                }
                x = next;
                warm_descent(x, level);
            }
        }
        (x, stop)
    }

    fn non_head<'a>(&self, node: Node<'a>) -> Option<Node<'a>> {
        (!node.same_node(&self.head())).then_some(node)
    }

    /// The first node at or after `(key, seqno)`.
    pub fn seek_ge(&self, key: &[u8], seqno: u64) -> Option<Node<'_>> {
        self.last_where(|n| compare(n.key(), n.seqno(), key, seqno) == Ordering::Less)
            .1
    }

    /// The last node at or before `(key, seqno)`.
    pub fn seek_le(&self, key: &[u8], seqno: u64) -> Option<Node<'_>> {
        self.non_head(
            self.last_where(|n| compare(n.key(), n.seqno(), key, seqno) != Ordering::Greater)
                .0,
        )
    }

    /// The last node before `(key, seqno)`.
    pub fn seek_lt(&self, key: &[u8], seqno: u64) -> Option<Node<'_>> {
        self.non_head(
            self.last_where(|n| compare(n.key(), n.seqno(), key, seqno) == Ordering::Less)
                .0,
        )
    }

    /// The node at `position`.
    ///
    /// # Safety
    /// `position` must come from a node of this list ([`Node::position`]).
    pub unsafe fn node_at(&self, position: Position) -> Node<'_> {
        // SAFETY: positions are only created from published nodes, and the caller guarantees
        // this list (which owns the node's memory) is the one it came from.
        Node {
            header: unsafe { position.0.as_ref() },
        }
    }

    /// The first node.
    pub fn first(&self) -> Option<Node<'_>> {
        self.head().next(0)
    }

    /// The last node.
    pub fn last(&self) -> Option<Node<'_>> {
        self.non_head(self.last_where(|_| true).0)
    }
}

impl Node<'_> {
    /// A node from a pointer the writer holds (a hint or a predecessor).
    ///
    /// # Safety
    /// `ptr` must be the list's head or a published node of it, and the list must outlive
    /// `'b`: true of every pointer in [`Writer`] and of search results, while the writer's
    /// mutex is held by the caller.
    unsafe fn of<'b>(ptr: *mut NodeHeader) -> Node<'b> {
        // SAFETY: as the caller guarantees.
        match unsafe { Node::from_ptr(ptr) } {
            Some(node) => node,
            None => unreachable!("writer pointers are never null"),
        }
    }
}

/// Starts loading the node a search would visit if it dropped below `level` at `x` (`x`'s
/// successor one level down), while the node ahead at `level` is still being compared: a search
/// is a chain of cache misses, and this overlaps the miss of each descent with the comparison
/// that decides it. A wasted load when the search moves right instead. A plain load, no `unsafe`.
#[inline(always)]
fn warm_descent(x: Node<'_>, level: usize) {
    if level > 0 {
        if let Some(below) = x.next(level - 1) {
            std::hint::black_box(below.header.key_len);
        }
    }
}

/// A tower height: 1, then each further level with probability 1/BRANCHING (xorshift64*).
fn random_height(state: &mut u64) -> usize {
    let mut height = 1;
    while height < MAX_HEIGHT {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        if !(r >> 32).is_multiple_of(BRANCHING) {
            break;
        }
        height += 1;
    }
    height
}

impl Default for SkipList {
    fn default() -> Self {
        SkipList::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn entries(list: &SkipList) -> Vec<(Vec<u8>, u64, bool)> {
        let mut out = Vec::new();
        let mut node = list.first();
        while let Some(n) = node {
            out.push((n.key().to_vec(), n.seqno(), n.squashed()));
            node = n.successor();
        }
        out
    }

    #[test]
    fn iterates_in_internal_order_whatever_the_insert_order() {
        let list = SkipList::new();
        let mut model = BTreeMap::new();
        let mut rng = 7u64;
        for i in 0..5000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{:04}", (rng >> 33) % 700).into_bytes();
            let value = vec![(i % 251) as u8; (i % 37) as usize];
            assert!(list
                .insert(&key, i, EntryKind::Put, 0, false, &value)
                .is_some());
            model.insert((key, std::cmp::Reverse(i)), value);
        }
        let got = entries(&list);
        let want: Vec<_> = model.keys().map(|(k, s)| (k.clone(), s.0, false)).collect();
        assert_eq!(got, want);
        let mut node = list.first();
        for ((_, _), value) in &model {
            let n = node.unwrap();
            assert_eq!(n.value(), value.as_slice());
            node = n.successor();
        }
    }

    #[test]
    fn every_level_stays_ordered_so_seeks_find_every_version() {
        // Few keys, many versions each, inserted in seqno order (as the commit leader does):
        // every new version lands before the older ones of its key.
        let list = SkipList::new();
        let mut model: BTreeMap<(Vec<u8>, std::cmp::Reverse<u64>), ()> = BTreeMap::new();
        let mut rng = 99u64;
        for seqno in 1..=6000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = ((rng >> 33) % 8).to_be_bytes().to_vec();
            list.insert(&key, seqno, EntryKind::Put, 0, false, b"");
            model.insert((key, std::cmp::Reverse(seqno)), ());
        }
        for level in 0..MAX_HEIGHT {
            let mut x = list.head().next(level);
            while let Some(node) = x {
                if let Some(next) = node.next(level) {
                    assert_eq!(
                        compare(node.key(), node.seqno(), next.key(), next.seqno()),
                        Ordering::Less,
                        "level {level} out of order"
                    );
                }
                x = node.next(level);
            }
        }
        for key in 0..8u64 {
            let key = key.to_be_bytes().to_vec();
            for read in (0..6000u64).step_by(7) {
                let want = model
                    .range((key.clone(), std::cmp::Reverse(read))..)
                    .next()
                    .filter(|((k, _), _)| *k == key)
                    .map(|((_, s), _)| s.0);
                let got = list
                    .seek_ge(&key, read)
                    .filter(|n| n.key() == key.as_slice())
                    .map(|n| n.seqno());
                assert_eq!(got, want, "key {key:?} at {read}");
            }
        }
    }

    #[test]
    fn ascending_inserts_use_the_hint_and_stay_ordered() {
        let list = SkipList::new();
        for i in 0..20_000u64 {
            let key = format!("{i:016}");
            list.insert(key.as_bytes(), 1, EntryKind::Put, 0, false, b"v");
        }
        // An out-of-order insert after a run of ascending ones must not trust the hint.
        list.insert(b"0000000000000500x", 1, EntryKind::Delete, 0, false, b"");
        let got = entries(&list);
        assert_eq!(got.len(), 20_001);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        let n = list.seek_ge(b"0000000000000500x", u64::MAX).unwrap();
        assert_eq!(
            (n.key(), n.kind()),
            (&b"0000000000000500x"[..], EntryKind::Delete)
        );
    }

    #[test]
    fn seeks_find_neighbours_of_every_probe() {
        let list = SkipList::new();
        let keys: Vec<(&[u8], u64)> = vec![(b"a", 9), (b"a", 3), (b"b", 5), (b"d", 1)];
        for (k, s) in &keys {
            list.insert(k, *s, EntryKind::Put, 0, false, b"");
        }
        let at = |n: Option<Node<'_>>| n.map(|n| (n.key().to_vec(), n.seqno()));
        assert_eq!(at(list.seek_ge(b"a", 5)), Some((b"a".to_vec(), 3)));
        assert_eq!(at(list.seek_ge(b"a", 9)), Some((b"a".to_vec(), 9)));
        assert_eq!(at(list.seek_le(b"a", 5)), Some((b"a".to_vec(), 9)));
        assert_eq!(at(list.seek_lt(b"a", 9)), None);
        assert_eq!(at(list.seek_le(b"c", 0)), Some((b"b".to_vec(), 5)));
        assert_eq!(at(list.seek_ge(b"e", 0)), None);
        assert_eq!(at(list.first()), Some((b"a".to_vec(), 9)));
        assert_eq!(at(list.last()), Some((b"d".to_vec(), 1)));
        assert_eq!(at(SkipList::new().last()), None);
    }

    #[test]
    fn a_squashed_entry_sorts_first_and_duplicates_are_refused() {
        let list = SkipList::new();
        assert!(list
            .insert(b"k", 4, EntryKind::Merge, 1, false, b"m")
            .is_some());
        assert!(list
            .insert(b"k", 4, EntryKind::Put, 0, true, b"p")
            .is_some());
        assert!(list
            .insert(b"k", 4, EntryKind::Put, 0, true, b"p")
            .is_none());
        assert_eq!(
            entries(&list),
            vec![(b"k".to_vec(), 4, true), (b"k".to_vec(), 4, false)]
        );
        assert!(list.seek_ge(b"k", 4).unwrap().squashed());
        assert!(!list.seek_le(b"k", 4).unwrap().squashed());
        assert!(list.seek_lt(b"k", 4).is_none());
    }

    #[test]
    fn large_values_get_their_own_chunk() {
        let list = SkipList::new();
        let big = vec![7u8; CHUNK_BYTES];
        list.insert(b"big", 1, EntryKind::Put, 0, false, &big);
        list.insert(b"small", 2, EntryKind::Put, 0, false, b"s");
        assert_eq!(list.seek_ge(b"big", 9).unwrap().value(), big.as_slice());
        assert_eq!(list.seek_ge(b"small", 9).unwrap().value(), b"s");
        assert!(list.allocated_bytes() >= 2 * CHUNK_BYTES);
    }

    #[test]
    fn point_reads_at_a_published_seqno_see_a_consistent_cut() {
        use std::sync::atomic::AtomicU64;
        const KEYS: u64 = 8;
        let list = Arc::new(SkipList::new());
        let visible = Arc::new(AtomicU64::new(0));
        for key in 0..KEYS {
            list.insert(
                &key.to_be_bytes(),
                key + 1,
                EntryKind::Put,
                0,
                false,
                &100i64.to_le_bytes(),
            );
        }
        visible.store(KEYS, AtomicOrdering::Release);
        let writer = {
            let (list, visible) = (Arc::clone(&list), Arc::clone(&visible));
            std::thread::spawn(move || {
                let mut balances = [100i64; KEYS as usize];
                let mut seqno = KEYS;
                let mut rng = 5u64;
                for _ in 0..20_000 {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let from = (rng >> 33) % KEYS;
                    let to = (from + 1 + (rng >> 40) % (KEYS - 1)) % KEYS;
                    balances[from as usize] -= 3;
                    balances[to as usize] += 3;
                    for key in [from, to] {
                        seqno += 1;
                        let value = balances[key as usize].to_le_bytes();
                        list.insert(&key.to_be_bytes(), seqno, EntryKind::Put, 0, false, &value);
                    }
                    visible.store(seqno, AtomicOrdering::Release);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (list, visible) = (Arc::clone(&list), Arc::clone(&visible));
                std::thread::spawn(move || {
                    let mut checks = 0;
                    loop {
                        let at = visible.load(AtomicOrdering::Acquire);
                        let sum: i64 = (0..KEYS)
                            .map(|key| {
                                let node = list.seek_ge(&key.to_be_bytes(), at).unwrap();
                                assert_eq!(node.key(), key.to_be_bytes());
                                i64::from_le_bytes(node.value().try_into().unwrap())
                            })
                            .sum();
                        assert_eq!(sum, 100 * KEYS as i64, "at seqno {at}");
                        checks += 1;
                        if at == KEYS + 40_000 {
                            return checks;
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    }

    #[test]
    fn readers_see_consistent_nodes_while_one_thread_writes() {
        let list = Arc::new(SkipList::new());
        let writer = {
            let list = Arc::clone(&list);
            std::thread::spawn(move || {
                for i in 0..40_000u64 {
                    let key = ((i * 7919) % 40_000).to_be_bytes();
                    list.insert(&key, i, EntryKind::Put, 0, false, &key);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let list = Arc::clone(&list);
                std::thread::spawn(move || {
                    let mut rounds = 0;
                    loop {
                        let mut seen = 0;
                        let mut previous: Option<Vec<u8>> = None;
                        let mut node = list.first();
                        while let Some(n) = node {
                            assert_eq!(n.key(), n.value(), "a node is seen whole");
                            if let Some(p) = &previous {
                                assert!(p.as_slice() < n.key(), "order holds mid-insert");
                            }
                            previous = Some(n.key().to_vec());
                            seen += 1;
                            node = n.successor();
                        }
                        rounds += 1;
                        if seen == 40_000 {
                            return rounds;
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for reader in readers {
            assert!(reader.join().unwrap() >= 1);
        }
    }
}
