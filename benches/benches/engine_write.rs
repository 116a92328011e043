//! Write path of the engine through the public `strata` API: `Keyspace::put` of 16-byte random
//! keys and 100-byte values (db_bench-style, compressible to about half), one commit per put.
//!
//! * `memtable/insert`: `WalMode::None`, one writer (the bench thread). No WAL I/O, so this is
//!   the commit pipeline (validation, quota check, seqno assignment, visibility) plus the
//!   memtable skiplist insert.
//! * `wal/append/{write,fsync}/{1,4}_threads`: the same puts with `WalMode::Write` (each commit
//!   handed to the OS, no sync) and `WalMode::Fsync` (each commit synced; group commit shares a
//!   sync among concurrent committers), from 1 writer (the bench thread) or 4 spawned writer
//!   threads that each do a quarter of the iterations; the time is the wall time from a barrier
//!   releasing all writers to the last one finishing. Throughput reads as commits/s. The WAL is
//!   in a temporary directory on the real file system (`std::env::temp_dir()`).
//!
//! Random inserts into a skiplist get slower as it grows (more levels, more cache misses), so
//! every timed put meets a memtable of the same size range: each database is prefilled (untimed,
//! in batches) with [`PREFILL`] random entries, and once [`WINDOW`] timed puts have gone into it
//! it is thrown away whole and a fresh prefilled one opened ([`ScratchDb::reset_if_written`],
//! untimed). The memtable thus holds 200k to 264k entries while timed (the size `memtable/get`
//! in `engine_read` reads from). The memory limit is 1 GiB (dumps start at half of it, throttling
//! at three quarters; the memtable never passes ~60 MiB), so no dump or throttling runs while
//! timed; each case asserts that afterwards.
//!
//! After each `wal/append` case the WAL's commits, groups, commits per group and syncs (summed
//! over criterion's warm-up and samples, prefills excluded) are printed to stderr.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use strata::{Keyspace, Options, WalMode};
use strata_benches::{
    random_key, ScratchDb, SplitMix64, ValueGenerator, COMPRESSION_RATIO, VALUE_LEN,
};

/// Memory limit of every write benchmark database: dumps start at half of it.
const MEMORY_LIMIT_BYTES: u64 = 1 << 30;

/// Random entries written (untimed) into each fresh database before timed puts.
const PREFILL: u64 = 200_000;

/// Timed puts into one database before it is replaced.
const WINDOW: u64 = 1 << 16;

fn options(wal_mode: WalMode) -> Options {
    Options {
        wal_mode,
        memory_limit_bytes: MEMORY_LIMIT_BYTES,
        ..Options::default()
    }
}

/// `puts` puts of random keys from `seed`, on the calling thread.
fn put_loop(keyspace: &Keyspace, puts: u64, seed: u64, values: &mut ValueGenerator) {
    let mut rng = SplitMix64::new(seed);
    for _ in 0..puts {
        let key = random_key(&mut rng);
        keyspace
            .put(black_box(key), values.next_value(VALUE_LEN))
            .expect("put");
    }
}

/// Wall time of `puts` puts spread over `threads` writers (the calling thread itself when
/// `threads` is 1); thread setup is outside the timed region.
fn timed_puts(
    keyspace: &Keyspace,
    threads: u64,
    puts: u64,
    seed: u64,
    values: &ValueGenerator,
) -> Duration {
    if threads == 1 {
        let mut values = values.clone();
        let start = Instant::now();
        put_loop(keyspace, puts, seed, &mut values);
        return start.elapsed();
    }
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let share = puts / threads + u64::from(t < puts % threads);
                let mut values = values.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    put_loop(keyspace, share, seed ^ (t << 56), &mut values);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for writer in writers {
            writer.join().expect("writer thread panicked");
        }
        start.elapsed()
    })
}

/// Criterion's `iters` puts in chunks, replacing the database whenever [`WINDOW`] puts have gone
/// into it.
fn run_iters(
    scratch: &mut ScratchDb,
    threads: u64,
    iters: u64,
    seed: &mut u64,
    values: &ValueGenerator,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        scratch
            .reset_if_written(WINDOW)
            .expect("replace the database");
        let chunk = left.min(WINDOW - scratch.written());
        *seed += 1;
        total += timed_puts(scratch.keyspace(), threads, chunk, *seed, values);
        left -= chunk;
    }
    total
}

fn check_no_dumps(scratch: &ScratchDb, what: &str) {
    let totals = scratch.totals();
    assert_eq!(totals.dumps, 0, "{what}: a dump ran during the benchmark");
    let stats = scratch.db().stats();
    assert_eq!(stats.memory.stalls, 0, "{what}: a writer stalled");
    assert_eq!(
        stats.memory.throttled_commits, 0,
        "{what}: writers were throttled"
    );
}

fn engine_write(c: &mut Criterion) {
    let values = ValueGenerator::new(0x5eed_0002, COMPRESSION_RATIO);

    let mut group = c.benchmark_group("memtable");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let mut scratch = ScratchDb::open(options(WalMode::None), PREFILL).expect("open the database");
    let mut seed = 0x1000_0000;
    group.bench_function("insert", |b| {
        b.iter_custom(|iters| run_iters(&mut scratch, 1, iters, &mut seed, &values));
    });
    group.finish();
    check_no_dumps(&scratch, "memtable/insert");
    drop(scratch);

    let mut group = c.benchmark_group("wal/append");
    group
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(1));
    for (mode_name, mode) in [("write", WalMode::Write), ("fsync", WalMode::Fsync)] {
        // A synced commit takes a fraction of a millisecond: fewer, longer samples.
        let (samples, measurement) = match mode {
            WalMode::Fsync => (10, Duration::from_secs(4)),
            _ => (10, Duration::from_secs(3)),
        };
        group
            .sample_size(samples)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(measurement);
        for threads in [1u64, 4] {
            let name = format!(
                "{mode_name}/{threads}_thread{}",
                if threads > 1 { "s" } else { "" }
            );
            let mut scratch = ScratchDb::open(options(mode), PREFILL).expect("open the database");
            let mut seed = threads << 40;
            group.bench_function(&name, |b| {
                b.iter_custom(|iters| run_iters(&mut scratch, threads, iters, &mut seed, &values));
            });
            check_no_dumps(&scratch, &name);
            let totals = scratch.totals();
            eprintln!(
                "wal/append/{name}: {} commits in {} groups ({:.2} commits/group), {} syncs, \
                 {} database(s)",
                totals.commits,
                totals.groups,
                totals.commits_per_group(),
                totals.syncs,
                totals.databases
            );
        }
    }
    group.finish();
}

criterion_group!(benches, engine_write);
criterion_main!(benches);
