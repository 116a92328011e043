//! A memtable's bloom filter: lets a point lookup skip a memtable that cannot hold its key
//! without searching the skiplist (RocksDB: `memtable_whole_key_filtering`).
//!
//! A search of a large memtable costs one cache miss per node visited, about twenty for a few
//! hundred thousand entries, and a lookup of a key that lives in a run searches every memtable
//! first. The filter is *blocked*: all of a key's probe bits lie in one 64-byte cache line, so a
//! check costs one miss. It is sized once, when the memtable is created, from the memory budget
//! (memtables cannot outgrow it), and filled as entries are inserted.
//!
//! Concurrency: bits are set with atomic `fetch_or` before the entry is linked into the
//! skiplist, and a reader only looks for keys committed before its read seqno became visible
//! (which is ordered after the insert), so it never misses a bit it needs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Probes per key: near-optimal for the ~9-18 bits per key the sizing gives.
const PROBES: u32 = 6;
/// Words per block: one 64-byte cache line.
const BLOCK_WORDS: usize = 8;

/// See the module documentation. Thread-safe.
pub(crate) struct MemBloom {
    words: Box<[AtomicU64]>,
    blocks: u64,
}

impl MemBloom {
    /// A filter of about `bytes` bytes (rounded down to whole cache lines); with fewer than one
    /// line it is disabled and every key "may be present".
    pub fn new(bytes: usize) -> MemBloom {
        let blocks = bytes / (BLOCK_WORDS * 8);
        let words = (0..blocks * BLOCK_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect();
        MemBloom {
            words,
            blocks: blocks as u64,
        }
    }

    /// Records `key`.
    pub fn insert(&self, key: &[u8]) {
        if self.blocks == 0 {
            return;
        }
        let (block, mut probe, step) = self.locate(key);
        for _ in 0..PROBES {
            let bit = probe & 511;
            self.words[block + (bit >> 6) as usize].fetch_or(1 << (bit & 63), Ordering::Relaxed);
            probe = probe.wrapping_add(step);
        }
    }

    /// False only if `key` was never inserted.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        if self.blocks == 0 {
            return true;
        }
        let (block, mut probe, step) = self.locate(key);
        for _ in 0..PROBES {
            let bit = probe & 511;
            let word = self.words[block + (bit >> 6) as usize].load(Ordering::Relaxed);
            if word & (1 << (bit & 63)) == 0 {
                return false;
            }
            probe = probe.wrapping_add(step);
        }
        true
    }

    /// The key's block (first word index), first probe bit and probe step.
    fn locate(&self, key: &[u8]) -> (usize, u32, u32) {
        let hash = hash(key);
        // Multiply-shift maps the high half onto the block count without a division.
        let block = ((hash >> 32) * self.blocks) >> 32;
        let low = hash as u32;
        // An odd step visits distinct bits of the 512 before repeating.
        (block as usize * BLOCK_WORDS, low, (low >> 9) | 1)
    }
}

/// A fast 64-bit hash of arbitrary bytes (folded 128-bit multiplies, as wyhash).
fn hash(key: &[u8]) -> u64 {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    fn mix(a: u64, b: u64) -> u64 {
        let product = u128::from(a) * u128::from(b);
        (product as u64) ^ ((product >> 64) as u64)
    }
    let mut state = mix(key.len() as u64 ^ P0, P1);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state = mix(state ^ u64::from_le_bytes(word), P1);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        state = mix(state ^ u64::from_le_bytes(word), P0);
    }
    mix(state, P0 ^ P1)
}

/// The filter size for a memtable when all memtables together may hold `memory_limit_bytes`:
/// one bit per 32 bytes of budget, so a memtable dumped at half the budget gets about 9 bits
/// per key with 150-byte entries (more with smaller ones); at most 8 MiB.
pub(crate) fn bytes_for_budget(memory_limit_bytes: u64) -> usize {
    usize::try_from(memory_limit_bytes / 256)
        .unwrap_or(usize::MAX)
        .min(8 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_a_false_negative_and_few_false_positives() {
        let bloom = MemBloom::new(64 << 10); // 512 Ki bits
        let keys = 50_000; // ~10 bits per key
        for i in 0..keys {
            bloom.insert(format!("{i:016}").as_bytes());
        }
        for i in 0..keys {
            assert!(bloom.may_contain(format!("{i:016}").as_bytes()));
        }
        let false_positives = (keys..keys * 3)
            .filter(|i| bloom.may_contain(format!("{i:016}").as_bytes()))
            .count();
        let rate = false_positives as f64 / (2 * keys) as f64;
        assert!(rate < 0.03, "false positive rate {rate}");
    }

    #[test]
    fn a_disabled_filter_admits_everything() {
        let bloom = MemBloom::new(0);
        bloom.insert(b"a");
        assert!(bloom.may_contain(b"b"));
        assert_eq!(bytes_for_budget(128 << 20), 512 << 10);
    }

    #[test]
    fn hashes_spread_short_and_long_keys() {
        let mut seen = std::collections::HashSet::new();
        for len in 0..40 {
            let key = vec![0u8; len];
            assert!(seen.insert(hash(&key)), "length {len} collides");
        }
        assert_ne!(hash(b"ab"), hash(b"ba"));
    }
}
