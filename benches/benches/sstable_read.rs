//! Reads from a prebuilt lz4 run of ~200k entries (16-byte keys, 100-byte values):
//!
//! * `sstable_get/hit_cached`: point lookup of a present key, every page already in a
//!   [`ClockCache`] large enough for the whole run (cache hit path).
//! * `sstable_get/hit_uncached`: the same through [`NoCache`]: every lookup reads, checks and
//!   decompresses its page.
//! * `sstable_get/miss_bloom`: a key inside the run's range but absent, so the bloom filter
//!   answers (about 1% of probes are false positives and search a page).
//! * `sstable_scan/{forward,reverse}_{cached,uncached}`: `run.iter()` and `run.iter().rev()`
//!   over every entry, with throughput in raw key + value bytes.
//! * `sstable_seek/seek_next10_{cached,uncached}`: a fresh [`RunIter`] seeks to a random present
//!   key and reads it and the 10 entries after it (db_bench's seekrandom, on one run).
//! * `bloom/*`: `key_fingerprint` alone, and `key_fingerprint` + `Run::bloom_may_contain`
//!   ("bloom probe") for present and absent keys.
//!
//! Lookup keys are drawn from a deterministic PRNG ahead of time and cycled through.

use std::hint::black_box;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use strata_benches::{
    absent_key, present_key, SplitMix64, TempRun, KEY_LEN, RUN_ENTRIES, VALUE_LEN,
};
use strata_sstable::{
    key_fingerprint, ClockCache, Compression, LookupOutcome, PageCache, ReadOptions, Run,
    RunCounters, RunIter, MAX_SEQNO,
};

/// Lookup keys prepared per benchmark (a power of two, cycled with a mask).
const KEY_POOL: usize = 1 << 16;

struct Fixture {
    built: TempRun,
    cache: Arc<ClockCache>,
    cached: Run,
    uncached: Run,
}

impl Fixture {
    fn new() -> Self {
        let built =
            TempRun::build(RUN_ENTRIES, VALUE_LEN, Compression::Lz4).expect("build the run");
        // Decompressed pages are about 8 KiB each; give the cache four times the raw data so no
        // shard ever evicts.
        let capacity = 4 * built.dataset.raw_bytes() as usize + (64 << 20);
        let cache = Arc::new(ClockCache::new(capacity));
        let cached = Run::open(
            built.path(),
            ReadOptions {
                cache: cache.clone(),
                counters: Arc::new(RunCounters::default()),
            },
        )
        .expect("open the run with a cache");
        let uncached = Run::open(built.path(), ReadOptions::default()).expect("open the run");
        let fixture = Fixture {
            built,
            cache,
            cached,
            uncached,
        };
        fixture.warm_and_check();
        fixture
    }

    /// Loads every page into the cache and checks the key layout the benchmarks rely on.
    fn warm_and_check(&self) {
        let n = self.built.dataset.len() as u64;
        assert!(
            self.cached.has_bloom(),
            "the run should have a bloom filter"
        );
        assert_eq!(self.cached.iter().count() as u64, n);
        for i in 0..n {
            let key = present_key(i);
            assert_eq!(lookup(&self.cached, &key), 1, "key {i} should be present");
        }
        assert_eq!(self.cached.properties().entries, n);
        // A second pass must be served from the cache alone.
        let misses = self.cache.stats().misses;
        for i in 0..n {
            lookup(&self.cached, &present_key(i));
        }
        assert_eq!(
            self.cache.stats().misses,
            misses,
            "the cache should hold every page"
        );
        let mut bloom_negative = 0;
        for i in 0..n - 1 {
            let key = absent_key(i);
            assert!(
                self.cached.key_in_range(&key),
                "absent key {i} should be in range"
            );
            match self.cached.get(&key, MAX_SEQNO, |_| true).expect("look up") {
                LookupOutcome::BloomNegative => bloom_negative += 1,
                LookupOutcome::Searched { visited: 0 } => {}
                other => panic!("absent key {i} gave {other:?}"),
            }
        }
        assert!(
            bloom_negative * 10 > (n - 1) * 9,
            "the bloom filter should rule out most absent keys ({bloom_negative} of {})",
            n - 1
        );
    }
}

/// Point lookup of the newest version; returns the number of versions seen (0 or 1).
fn lookup(run: &Run, key: &[u8]) -> usize {
    let mut found = 0;
    run.get(key, MAX_SEQNO, |version| {
        black_box(&version.value);
        found += 1;
        false
    })
    .expect("look up");
    found
}

/// `KEY_POOL` keys made by `make` from uniformly random entry numbers in `0..bound`.
fn key_pool(seed: u64, bound: u64, make: fn(u64) -> [u8; KEY_LEN]) -> Vec<[u8; KEY_LEN]> {
    let mut rng = SplitMix64::new(seed);
    (0..KEY_POOL).map(|_| make(rng.below(bound))).collect()
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn sstable_read(c: &mut Criterion) {
    let fixture = Fixture::new();
    let n = fixture.built.dataset.len() as u64;
    let present = key_pool(0x1001, n, present_key);
    // Absent keys lie between two present ones: never past the last entry.
    let absent = key_pool(0x1002, n - 1, absent_key);

    let mut group = c.benchmark_group("sstable_get");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let runs = [
        ("hit_cached", &fixture.cached, &present),
        ("hit_uncached", &fixture.uncached, &present),
        ("miss_bloom", &fixture.cached, &absent),
    ];
    for (name, run, keys) in runs {
        group.bench_function(name, |b| {
            let mut next = 0usize;
            b.iter(|| {
                let key = &keys[next & (KEY_POOL - 1)];
                next = next.wrapping_add(1);
                lookup(run, black_box(key))
            });
        });
    }
    group.finish();

    // Seek targets leave 10 entries after them.
    let seek_targets = key_pool(0x1003, n - 11, present_key);
    let mut group = c.benchmark_group("sstable_seek");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    for (cache, run) in [("cached", &fixture.cached), ("uncached", &fixture.uncached)] {
        group.bench_function(format!("seek_next10_{cache}"), |b| {
            let mut next = 0usize;
            b.iter(|| {
                let key = &seek_targets[next & (KEY_POOL - 1)];
                next = next.wrapping_add(1);
                // The cursor the engine's scans use (one per run slice).
                let mut iter = RunIter::new(run, Bound::Unbounded, Bound::Unbounded);
                iter.seek(black_box(key)).expect("seek");
                let mut read = 0usize;
                while iter.valid() && read < 11 {
                    black_box((iter.key(), iter.value_slice()));
                    iter.next().expect("next");
                    read += 1;
                }
                assert_eq!(read, 11);
                read
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("sstable_scan");
    configure(&mut group);
    group
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(fixture.built.dataset.raw_bytes()));
    for (cache, run) in [("cached", &fixture.cached), ("uncached", &fixture.uncached)] {
        group.bench_function(format!("forward_{cache}"), |b| {
            b.iter(|| {
                let mut count = 0u64;
                for entry in run.iter() {
                    black_box(entry.expect("read an entry"));
                    count += 1;
                }
                assert_eq!(count, n);
                count
            });
        });
        group.bench_function(format!("reverse_{cache}"), |b| {
            b.iter(|| {
                let mut count = 0u64;
                for entry in run.iter().rev() {
                    black_box(entry.expect("read an entry"));
                    count += 1;
                }
                assert_eq!(count, n);
                count
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("bloom");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    group.bench_function("fingerprint", |b| {
        let mut next = 0usize;
        b.iter(|| {
            let key = &present[next & (KEY_POOL - 1)];
            next = next.wrapping_add(1);
            key_fingerprint(black_box(key))
        });
    });
    for (name, keys) in [("probe_present", &present), ("probe_absent", &absent)] {
        let run = &fixture.cached;
        group.bench_function(name, |b| {
            let mut next = 0usize;
            b.iter(|| {
                let key = &keys[next & (KEY_POOL - 1)];
                next = next.wrapping_add(1);
                run.bloom_may_contain(key_fingerprint(black_box(key)))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sstable_read);
criterion_main!(benches);
