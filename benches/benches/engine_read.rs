//! Read path of the engine through the public `strata` API, over ~200k entries of 16-byte keys
//! and 100-byte values ([`Dataset`]: keys `present_key(0..n)`, db_bench-style values):
//!
//! * `memtable/get`: `Keyspace::get` of random present keys, every entry in the active memtable
//!   (`WalMode::None`, 1 GiB memory limit, never dumped).
//! * `get/dumped/present_cached`: `Keyspace::get` of random present keys after `Db::flush` has
//!   dumped everything into runs (lz4, the default dump compression); the page cache (256 MiB)
//!   holds every page, warmed by reading every key once before measuring.
//! * `get/dumped/absent_bloom`: `Keyspace::get` of random absent keys that lie inside the runs'
//!   key range, so the bloom filter rules most of them out.
//! * `scan/dumped/forward`: `Keyspace::iter()` over every entry of the dumped database, with
//!   throughput in raw key + value bytes.
//!
//! Lookup keys are drawn from a deterministic PRNG ahead of time and cycled through. The
//! database is in a temporary directory on the real file system.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use strata::{Keyspace, KeyspaceStats, Options, WalMode};
use strata_benches::{
    absent_key, present_key, Dataset, ScratchDb, SplitMix64, KEY_LEN, RUN_ENTRIES, VALUE_LEN,
};

/// Lookup keys prepared per benchmark (a power of two, cycled with a mask).
const KEY_POOL: usize = 1 << 16;

/// Page cache of the dumped database: several times the raw data, so nothing is evicted.
const CACHE_SIZE_BYTES: u64 = 256 << 20;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// `KEY_POOL` keys made by `make` from uniformly random entry numbers in `0..bound`.
fn key_pool(seed: u64, bound: u64, make: fn(u64) -> [u8; KEY_LEN]) -> Vec<[u8; KEY_LEN]> {
    let mut rng = SplitMix64::new(seed);
    (0..KEY_POOL).map(|_| make(rng.below(bound))).collect()
}

fn keyspace_stats(scratch: &ScratchDb) -> KeyspaceStats {
    scratch
        .db()
        .stats()
        .keyspaces
        .into_iter()
        .find(|k| k.name == ScratchDb::KEYSPACE)
        .expect("the benchmark keyspace's stats")
}

/// A database holding `dataset`; dumped into runs if `dump`, else all in the active memtable.
fn load(dataset: &Dataset, dump: bool) -> ScratchDb {
    let scratch = ScratchDb::open(
        Options {
            wal_mode: WalMode::None,
            memory_limit_bytes: 1 << 30,
            cache_size_bytes: CACHE_SIZE_BYTES,
            ..Options::default()
        },
        0,
    )
    .expect("open the database");
    let keyspace = scratch.keyspace();
    for (key, value) in dataset.iter() {
        keyspace.put(key, value).expect("put");
    }
    let n = dataset.len() as u64;
    if dump {
        scratch.db().flush().expect("flush");
        let stats = keyspace_stats(&scratch);
        assert_eq!(
            stats.memtable_entries, 0,
            "flush should empty the memtables"
        );
        assert!(stats.runs >= 1, "flush should write a run");
        assert_eq!(stats.run_entries, n);
    } else {
        let stats = keyspace_stats(&scratch);
        assert_eq!(stats.dumps, 0, "the memtable should not be dumped");
        assert_eq!(stats.runs, 0);
        assert_eq!(stats.memtable_entries, n);
    }
    scratch
}

/// Reads every present key (checking it), then again checking no page is read from disk, and
/// every absent key checking the bloom filter rules most out.
fn warm_and_check(scratch: &ScratchDb, dataset: &Dataset) {
    let keyspace = scratch.keyspace();
    for (key, value) in dataset.iter() {
        let got = keyspace.get(key).expect("get");
        assert_eq!(got.as_deref(), Some(value), "a present key should be found");
    }
    let before = keyspace_stats(scratch);
    for (key, _) in dataset.iter() {
        black_box(keyspace.get(key).expect("get"));
    }
    let n = dataset.len() as u64;
    for i in 0..n - 1 {
        assert!(
            keyspace.get(absent_key(i)).expect("get").is_none(),
            "absent key {i} should be absent"
        );
    }
    let after = keyspace_stats(scratch);
    assert_eq!(
        after.pages_read, before.pages_read,
        "the page cache should hold every page"
    );
    let negatives = after.bloom_negatives - before.bloom_negatives;
    assert!(
        negatives * 10 > (n - 1) * 9,
        "the bloom filter should rule out most absent keys ({negatives} of {})",
        n - 1
    );
    eprintln!(
        "get/dumped: {} run(s), {} bytes on disk, read amplification {:.2}",
        after.runs, after.run_bytes_on_disk, after.read_amplification
    );
}

/// A criterion loop of `get`s cycling through `keys`.
fn bench_gets(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    keyspace: &Keyspace,
    keys: &[[u8; KEY_LEN]],
) {
    group.bench_function(name, |b| {
        let mut next = 0usize;
        b.iter(|| {
            let key = &keys[next & (KEY_POOL - 1)];
            next = next.wrapping_add(1);
            keyspace.get(black_box(key)).expect("get")
        });
    });
}

fn engine_read(c: &mut Criterion) {
    let dataset = Dataset::new(RUN_ENTRIES, VALUE_LEN);
    let n = dataset.len() as u64;
    let present = key_pool(0x2001, n, present_key);
    // Absent keys lie between two present ones: never past the last entry.
    let absent = key_pool(0x2002, n - 1, absent_key);

    let in_memory = load(&dataset, false);
    let mut group = c.benchmark_group("memtable");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    bench_gets(&mut group, "get", in_memory.keyspace(), &present);
    group.finish();
    let stats = keyspace_stats(&in_memory);
    assert_eq!(
        stats.gets, stats.gets_from_memtable,
        "every get should hit the memtable"
    );
    assert_eq!(stats.runs, 0);
    drop(in_memory);

    let dumped = load(&dataset, true);
    warm_and_check(&dumped, &dataset);
    let mut group = c.benchmark_group("get/dumped");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    bench_gets(&mut group, "present_cached", dumped.keyspace(), &present);
    bench_gets(&mut group, "absent_bloom", dumped.keyspace(), &absent);
    group.finish();

    let mut group = c.benchmark_group("scan/dumped");
    configure(&mut group);
    group
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(dataset.raw_bytes()));
    let keyspace = dumped.keyspace();
    group.bench_function("forward", |b| {
        b.iter(|| {
            let mut count = 0u64;
            for entry in keyspace.iter() {
                black_box(entry.expect("read an entry"));
                count += 1;
            }
            assert_eq!(count, n);
            count
        });
    });
    group.finish();
    let stats = keyspace_stats(&dumped);
    assert_eq!(stats.memtable_entries, 0);
    assert_eq!(stats.gets_from_memtable, 0, "no get should hit a memtable");
}

criterion_group!(benches, engine_read);
criterion_main!(benches);
