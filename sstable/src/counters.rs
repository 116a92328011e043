//! Read counters a run updates as it works; the engine shares one set per keyspace and sums them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Atomic counters updated by every read on the runs that share them. Thread-safe.
#[derive(Debug, Default)]
pub struct RunCounters {
    pages_read: AtomicU64,
    bytes_read: AtomicU64,
    bloom_checks: AtomicU64,
    bloom_negatives: AtomicU64,
}

/// A point-in-time copy of [`RunCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    /// Pages read from the file and decoded (page-cache misses).
    pub pages_read: u64,
    /// Stored bytes read for those pages.
    pub bytes_read: u64,
    /// Bloom filter probes.
    pub bloom_checks: u64,
    /// Probes that ruled the key out.
    pub bloom_negatives: u64,
}

impl RunCounters {
    pub(crate) fn page_read(&self, stored_bytes: u64) {
        self.pages_read.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(stored_bytes, Ordering::Relaxed);
    }

    pub(crate) fn bloom_check(&self, negative: bool) {
        self.bloom_checks.fetch_add(1, Ordering::Relaxed);
        if negative {
            self.bloom_negatives.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads all counters (each individually atomic; the set is not one atomic cut).
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            pages_read: self.pages_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bloom_checks: self.bloom_checks.load(Ordering::Relaxed),
            bloom_negatives: self.bloom_negatives.load(Ordering::Relaxed),
        }
    }
}
