//! Transactions and upserts through the public `strata` API (`WalMode::Write`, a temporary
//! directory on the real file system).
//!
//! * `txn_commit/{low,high}/{1,2,4}_threads`: transfers, each a transaction that reads two
//!   random accounts and writes both (retried by `Db::transact` on conflict), spread over 1, 2
//!   or 4 threads; throughput reads as committed transactions/s. `low` contention picks accounts
//!   among 1,000,000, `high` among 8 (most concurrent transfers then conflict and retry).
//! * `counter/{upsert,txn_rmw}/{1,4}_threads`: incrementing one of 64 hot counters, by a blind
//!   `Keyspace::upsert` with the `Counter` merge operator, or by a read-modify-write transaction.
//!
//! Conflicts counted during each `txn_commit` case are printed to stderr.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use strata::merge::Counter;
use strata::{Db, Keyspace, KeyspaceOptions, Options};
use strata_benches::SplitMix64;

struct Bench {
    _dir: tempfile::TempDir,
    db: Db,
    accounts: Keyspace,
    counters: Keyspace,
}

fn open() -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let accounts = db
        .keyspace("accounts", KeyspaceOptions::default())
        .expect("keyspace");
    let counters = db
        .keyspace(
            "counters",
            KeyspaceOptions {
                merge_operator: Some(Arc::new(Counter)),
                ..KeyspaceOptions::default()
            },
        )
        .expect("keyspace");
    Bench {
        _dir: dir,
        db,
        accounts,
        counters,
    }
}

/// Runs `work(thread, ops)` on `threads` threads sharing `ops` operations; returns the wall time
/// from a barrier to the last thread's end.
fn timed(threads: u64, ops: u64, work: &(dyn Fn(u64, u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = ops / threads + u64::from(t < ops % threads);
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    work(t, share);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for handle in handles {
            handle.join().expect("worker panicked");
        }
        start.elapsed()
    })
}

fn transfer(bench: &Bench, rng: &mut SplitMix64, accounts: u64) {
    let a = (rng.below(accounts)).to_be_bytes();
    let b = (rng.below(accounts)).to_be_bytes();
    bench
        .db
        .transact(|tx| {
            let x = tx.get(&bench.accounts, a)?.map_or(0, |v| v.len());
            let y = tx.get(&bench.accounts, b)?.map_or(0, |v| v.len());
            tx.put(&bench.accounts, a, vec![0u8; 8 + (y % 2)])?;
            tx.put(&bench.accounts, b, vec![0u8; 8 + (x % 2)])?;
            Ok(())
        })
        .expect("transfer");
}

fn txn_commit(c: &mut Criterion) {
    let bench = open();
    let mut group = c.benchmark_group("txn_commit");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    for (label, accounts) in [("low", 1_000_000u64), ("high", 8)] {
        for threads in [1u64, 2, 4] {
            let before = bench.db.stats().transactions.conflicts;
            group.bench_function(format!("{label}/{threads}_threads"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, ops| {
                        let mut rng = SplitMix64::new(0x5eed ^ (t << 40) ^ ops);
                        for _ in 0..ops {
                            transfer(&bench, &mut rng, accounts);
                        }
                    })
                })
            });
            let after = bench.db.stats().transactions.conflicts;
            eprintln!(
                "txn_commit/{label}/{threads}_threads: {} conflicts",
                after - before
            );
        }
    }
    group.finish();
}

fn counter(c: &mut Criterion) {
    let bench = open();
    let mut group = c.benchmark_group("counter");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    for threads in [1u64, 4] {
        group.bench_function(format!("upsert/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                timed(threads, iters, &|t, ops| {
                    let mut rng = SplitMix64::new(0xc0 ^ (t << 40) ^ ops);
                    for _ in 0..ops {
                        let key = rng.below(64).to_be_bytes();
                        bench
                            .counters
                            .upsert(key, Counter::operand(1))
                            .expect("upsert");
                    }
                })
            })
        });
        group.bench_function(format!("txn_rmw/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                timed(threads, iters, &|t, ops| {
                    let mut rng = SplitMix64::new(0xc1 ^ (t << 40) ^ ops);
                    for _ in 0..ops {
                        let key = rng.below(64).to_be_bytes();
                        bench
                            .db
                            .transact(|tx| {
                                let n = tx
                                    .get(&bench.accounts, key)?
                                    .map_or(0, |v| Counter::decode(&v).unwrap_or(0));
                                tx.put(&bench.accounts, key, Counter::operand(n + 1))
                            })
                            .expect("increment");
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(10);
    targets = txn_commit, counter
}
criterion_main!(benches);
