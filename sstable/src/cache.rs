//! Page caches: where decompressed pages are kept between reads.
//!
//! The reader asks the cache before reading and decompressing a page, and offers the decoded page
//! afterwards. [`NoCache`] keeps nothing. [`ClockCache`] keeps pages up to a byte budget, evicting
//! with CLOCK (second chance), sharded to keep lock hold times short under concurrent readers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use crate::prefetch::touch;

/// Identifies a page across all open runs: the run's process-unique id and the page number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// Process-unique id of the open run ([`crate::Run::cache_id`]).
    pub run: u64,
    /// Page number inside the run.
    pub page: u32,
}

/// A store of decompressed pages shared by readers.
///
/// Implementations must be thread-safe. A cache may drop anything at any time; `get` after
/// `insert` is a hint, not a promise.
pub trait PageCache: Send + Sync {
    /// Returns the cached page, if present.
    fn get(&self, key: PageKey) -> Option<Bytes>;
    /// Offers a freshly decoded page.
    fn insert(&self, key: PageKey, page: Bytes);
    /// Drops every page of a run (called when a run is closed for good).
    fn evict_run(&self, run: u64);
    /// Hit and miss counts and bytes held.
    fn stats(&self) -> CacheStats;
}

/// Counters of a page cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups that found the page.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Bytes of pages currently held.
    pub used_bytes: u64,
    /// The budget.
    pub capacity_bytes: u64,
}

/// A cache that keeps nothing: every read decodes the page.
#[derive(Debug, Default)]
pub struct NoCache {
    misses: AtomicU64,
}

impl PageCache for NoCache {
    fn get(&self, _key: PageKey) -> Option<Bytes> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn insert(&self, _key: PageKey, _page: Bytes) {}

    fn evict_run(&self, _run: u64) {}

    fn stats(&self) -> CacheStats {
        CacheStats {
            misses: self.misses.load(Ordering::Relaxed),
            ..CacheStats::default()
        }
    }
}

const SHARDS: usize = 16;

/// A multiplicative hasher for page keys: they are two integers, not attacker-chosen strings,
/// so SipHash's DoS resistance buys nothing and costs a tenth of a cache hit.
#[derive(Default)]
struct PageKeyHasher(u64);

impl Hasher for PageKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A cached page. It lives in the map itself, so a hit reads one hash-table bucket rather than a
/// bucket and then a slot elsewhere in memory (a second cache miss on every page load).
struct Cached {
    page: Bytes,
    /// Where the page's key sits on the clock.
    slot: u32,
    /// CLOCK's reference bit: set by a hit, cleared as the hand passes.
    referenced: bool,
}

type PageMap = HashMap<PageKey, Cached, BuildHasherDefault<PageKeyHasher>>;

#[derive(Default)]
struct Shard {
    map: PageMap,
    /// The clock: the key of each cached page, in no particular order; the hand sweeps it.
    slots: Vec<Option<PageKey>>,
    free: Vec<u32>,
    hand: usize,
    used_bytes: usize,
}

impl Shard {
    fn remove(&mut self, key: &PageKey) {
        if let Some(cached) = self.map.remove(key) {
            self.used_bytes -= cached.page.len();
            if let Some(slot) = self.slots.get_mut(cached.slot as usize) {
                *slot = None;
            }
            self.free.push(cached.slot);
        }
    }

    /// Sweeps the clock hand until `needed` more bytes fit in `capacity`. Bounded: each slot is
    /// visited at most twice (once to clear its reference bit, once to evict it).
    fn make_room(&mut self, needed: usize, capacity: usize) {
        let mut budget = 2 * self.slots.len() + 1;
        while self.used_bytes + needed > capacity && !self.map.is_empty() && budget > 0 {
            budget -= 1;
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let index = self.hand;
            self.hand += 1;
            let Some(Some(key)) = self.slots.get(index).copied() else {
                continue;
            };
            match self.map.get_mut(&key) {
                Some(cached) if cached.referenced => cached.referenced = false,
                Some(_) => self.remove(&key),
                // Not reachable: every key on the clock is in the map.
                None => {}
            }
        }
    }
}

/// A byte-budgeted page cache with CLOCK eviction, sharded 16 ways by page key.
///
/// Thread-safe; each shard holds `capacity / 16` bytes. A page larger than a shard's budget is
/// not cached.
pub struct ClockCache {
    shards: Vec<Mutex<Shard>>,
    shard_capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ClockCache {
    /// Creates a cache holding at most `capacity_bytes` of page data.
    pub fn new(capacity_bytes: usize) -> Self {
        ClockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: capacity_bytes / SHARDS,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: PageKey) -> &Mutex<Shard> {
        let mixed = (key.run.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(key.page))
            .wrapping_mul(0xff51_afd7_ed55_8ccd);
        &self.shards[(mixed >> 60) as usize % SHARDS]
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding the lock leaves a consistent shard (every mutation is a few field
    // writes), so a poisoned lock is still safe to use.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PageCache for ClockCache {
    fn get(&self, key: PageKey) -> Option<Bytes> {
        let mut shard = lock(self.shard(key));
        let found = shard.map.get_mut(&key).map(|cached| {
            cached.referenced = true;
            // Readers start with a page's last bytes (its restart array). Loading them now lets
            // that cache miss overlap the one of the reference count update below.
            touch(&cached.page, cached.page.len().wrapping_sub(1));
            cached.page.clone()
        });
        drop(shard);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn insert(&self, key: PageKey, page: Bytes) {
        if page.len() > self.shard_capacity {
            return;
        }
        let mut shard = lock(self.shard(key));
        shard.remove(&key);
        shard.make_room(page.len(), self.shard_capacity);
        if shard.used_bytes + page.len() > self.shard_capacity {
            return;
        }
        let slot = match shard.free.pop() {
            Some(slot) => slot,
            None => {
                // More pages than fit in a u32 would need 2^32 pages of at least one byte in a
                // shard, far beyond any budget; refuse rather than wrap.
                let Ok(slot) = u32::try_from(shard.slots.len()) else {
                    return;
                };
                shard.slots.push(None);
                slot
            }
        };
        if let Some(entry) = shard.slots.get_mut(slot as usize) {
            *entry = Some(key);
        }
        shard.used_bytes += page.len();
        shard.map.insert(
            key,
            Cached {
                page,
                slot,
                referenced: false,
            },
        );
    }

    fn evict_run(&self, run: u64) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            let doomed: Vec<PageKey> = shard
                .map
                .keys()
                .filter(|key| key.run == run)
                .copied()
                .collect();
            for key in doomed {
                shard.remove(&key);
            }
        }
    }

    fn stats(&self) -> CacheStats {
        let used: usize = self.shards.iter().map(|s| lock(s).used_bytes).sum();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            used_bytes: used as u64,
            capacity_bytes: (self.shard_capacity * SHARDS) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(page: u32) -> PageKey {
        PageKey { run: 1, page }
    }

    #[test]
    fn stays_within_budget_and_prefers_referenced_pages() {
        let cache = ClockCache::new(16 * 1000);
        for page in 0..1000 {
            cache.insert(key(page), Bytes::from(vec![0u8; 100]));
            assert!(cache.stats().used_bytes <= 16 * 1000);
        }
        let hits_before = cache.stats().hits;
        let present = (0..1000).filter(|&p| cache.get(key(p)).is_some()).count();
        assert!(present > 0 && present <= 160);
        assert_eq!(cache.stats().hits - hits_before, present as u64);
    }

    /// The map and the clock describe the same pages, and the byte count is theirs.
    fn check_shard(shard: &Shard, capacity: usize) {
        let bytes: usize = shard.map.values().map(|c| c.page.len()).sum();
        assert_eq!(shard.used_bytes, bytes);
        assert!(bytes <= capacity);
        for (key, cached) in &shard.map {
            assert_eq!(shard.slots[cached.slot as usize], Some(*key));
        }
        assert_eq!(shard.slots.iter().flatten().count(), shard.map.len());
        for &free in &shard.free {
            assert_eq!(shard.slots[free as usize], None);
        }
        assert_eq!(shard.free.len() + shard.map.len(), shard.slots.len());
    }

    #[test]
    fn random_operations_keep_map_and_clock_consistent() {
        let cache = ClockCache::new(16 * 2000);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for step in 0..20_000 {
            let key = PageKey {
                run: random(3),
                page: random(300) as u32,
            };
            match random(10) {
                0..=5 => {
                    let len = 1 + random(400) as usize;
                    cache.insert(key, Bytes::from(vec![key.page as u8; len]));
                }
                6..=8 => {
                    if let Some(page) = cache.get(key) {
                        assert!(page.iter().all(|&b| b == key.page as u8));
                    }
                }
                _ if step % 50 == 0 => cache.evict_run(key.run),
                _ => {}
            }
            for shard in &cache.shards {
                check_shard(&lock(shard), cache.shard_capacity);
            }
        }
    }

    #[test]
    fn a_hit_saves_a_page_from_the_next_sweep() {
        // One shard's worth: pages 0..4 of 100 bytes fill 400 of the 400 bytes it holds.
        let cache = ClockCache::new(16 * 400);
        let same_shard: Vec<PageKey> = (0..10_000)
            .map(key)
            .filter(|k| std::ptr::eq(cache.shard(*k), cache.shard(key(0))))
            .take(6)
            .collect();
        for &k in &same_shard[..4] {
            cache.insert(k, Bytes::from(vec![0u8; 100]));
        }
        assert!(cache.get(same_shard[0]).is_some());
        // The sweep clears page 0's bit and evicts the first unreferenced page, page 1.
        cache.insert(same_shard[4], Bytes::from(vec![0u8; 100]));
        assert!(cache.get(same_shard[0]).is_some());
        assert!(cache.get(same_shard[1]).is_none());
        assert!(cache.get(same_shard[4]).is_some());
    }

    #[test]
    fn evict_run_drops_only_that_run() {
        let cache = ClockCache::new(1 << 20);
        cache.insert(PageKey { run: 1, page: 0 }, Bytes::from_static(b"a"));
        cache.insert(PageKey { run: 2, page: 0 }, Bytes::from_static(b"b"));
        cache.evict_run(1);
        assert!(cache.get(PageKey { run: 1, page: 0 }).is_none());
        assert!(cache.get(PageKey { run: 2, page: 0 }).is_some());
        assert_eq!(cache.stats().used_bytes, 1);
    }

    #[test]
    fn oversized_pages_are_not_cached() {
        let cache = ClockCache::new(16 * 10);
        cache.insert(key(0), Bytes::from(vec![0u8; 11]));
        assert!(cache.get(key(0)).is_none());
    }
}
