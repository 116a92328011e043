//! `compare`: strata against fjall 3 and RocksDB (rust-rocksdb), side by side, in one run.
//!
//! Each engine in turn runs the chosen workloads with the same keys, values, seeds and settings
//! (issue 5: 64 MiB write buffer, 256 MiB cache, 4 KiB blocks, 10 bits/key bloom, lz4, WAL on
//! without fsync except `fillsync`). Keys and values are generated exactly as `strata bench` does
//! (tools/src/bench/workloads.rs): decimal key numbers zero-padded to 16 bytes, 100-byte values
//! compressible to about half. Throughput is db_bench's: wall time of the op loop / ops.
//!
//! `fillseq`, `fillrandom` and `fillsync` start from a fresh, empty database (as in db_bench);
//! every other workload runs on the database the previous workload left (normally `fillrandom`'s).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use comfy_table::{presets::ASCII_MARKDOWN, Table};
use hdrhistogram::Histogram;

const KEY_SIZE: usize = 16;
const VALUE_SIZE: usize = 100;
const MIB: u64 = 1 << 20;
const WRITE_BUFFER: u64 = 64 * MIB;
const CACHE: u64 = 256 * MIB;
const BLOCK: usize = 4096;

#[derive(Parser, Debug)]
#[command(about = "strata vs fjall vs RocksDB, db_bench-style, equal settings")]
struct Args {
    /// Keys in the key space (and writes for fill workloads).
    #[arg(long, default_value_t = 5_000_000)]
    num: u64,
    /// Lookups / seeks for read workloads.
    #[arg(long, default_value_t = 500_000)]
    reads: u64,
    /// Durable writes for fillsync (default: num / 1000, at least 1000).
    #[arg(long)]
    sync_num: Option<u64>,
    /// Engines, in the order they run.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_ENGINES)]
    engines: Vec<String>,
    /// Workloads, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fillseq,fillrandom,overwrite,readrandom,readmissing,seekrandom,readwhilewriting,fillsync,fillsync4"
    )]
    benchmarks: Vec<String>,
    /// Seed of keys and values (the same for every engine).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory under which each engine's temporary database is made (default: the system's).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

#[cfg(feature = "rocksdb")]
const DEFAULT_ENGINES: &str = "strata,fjall,rocksdb";
#[cfg(not(feature = "rocksdb"))]
const DEFAULT_ENGINES: &str = "strata,fjall";

const WORKLOADS: [&str; 9] = [
    "fillseq",
    "fillrandom",
    "overwrite",
    "readrandom",
    "readmissing",
    "seekrandom",
    "readwhilewriting",
    "fillsync",
    "fillsync4",
];

/// Writer threads of `fillsync4`: concurrent durable commits, where group commit shows.
const SYNC_THREADS: u64 = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

// ---------------------------------------------------------------------------------------------
// Engines

trait Engine: Send + Sync {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()>;
    /// True if the key was found.
    fn get(&self, key: &[u8]) -> Res<bool>;
    /// Seek to the first key >= `key`, read it and up to `n - 1` following entries; returns the
    /// entries read and whether the first one was `key`.
    fn seek(&self, key: &[u8], n: usize) -> Res<(usize, bool)>;
    /// Close cleanly (flushing whatever the engine flushes at close).
    fn close(self: Box<Self>) -> Res<()>;
}

struct StrataEngine {
    db: strata::Db,
    ks: strata::Keyspace,
}

fn open_strata(dir: &Path, sync: bool) -> Res<Box<dyn Engine>> {
    let options = strata::Options {
        wal_mode: if sync {
            strata::WalMode::Fsync
        } else {
            strata::WalMode::Write
        },
        // Memtables are sealed and dumped above half of the memory limit: 128 MiB makes the
        // dump point 64 MiB, the write buffer size the others get.
        memory_limit_bytes: 2 * WRITE_BUFFER,
        cache_size_bytes: CACHE,
        ..strata::Options::default()
    };
    let db = strata::Db::open(dir, options)?;
    let ks_options = strata::KeyspaceOptions {
        page_size_bytes: BLOCK,
        bloom_fp_rate: 0.01, // ~9.6 bits/key
        dump_compression: strata::Compression::Lz4,
        compaction_compression: strata::Compression::Lz4,
        ..strata::KeyspaceOptions::default()
    };
    let ks = db.keyspace("bench", ks_options)?;
    Ok(Box::new(StrataEngine { db, ks }))
}

impl Engine for StrataEngine {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        Ok(self.ks.put(key, value)?)
    }
    fn get(&self, key: &[u8]) -> Res<bool> {
        Ok(self.ks.get(key)?.is_some())
    }
    fn seek(&self, key: &[u8], n: usize) -> Res<(usize, bool)> {
        let (mut count, mut hit) = (0, false);
        for item in self.ks.range(key..).take(n) {
            let (k, _v) = item?;
            if count == 0 {
                hit = k.as_ref() == key;
            }
            count += 1;
        }
        Ok((count, hit))
    }
    fn close(self: Box<Self>) -> Res<()> {
        let StrataEngine { db, ks } = *self;
        drop(ks);
        Ok(db.close()?)
    }
}

struct FjallEngine {
    db: fjall::Database,
    ks: fjall::Keyspace,
    sync: bool,
}

fn open_fjall(dir: &Path, sync: bool) -> Res<Box<dyn Engine>> {
    use fjall::config::{
        BlockSizePolicy, BloomConstructionPolicy, CompressionPolicy, FilterPolicy,
        FilterPolicyEntry,
    };
    let db = fjall::Database::builder(dir)
        .cache_size(CACHE)
        .manual_journal_persist(sync)
        .open()?;
    let ks = db.keyspace("bench", || {
        fjall::KeyspaceCreateOptions::default()
            .max_memtable_size(WRITE_BUFFER)
            .data_block_size_policy(BlockSizePolicy::all(BLOCK as u32))
            .filter_policy(FilterPolicy::all(FilterPolicyEntry::Bloom(
                BloomConstructionPolicy::BitsPerKey(10.0),
            )))
            .data_block_compression_policy(CompressionPolicy::all(fjall::CompressionType::Lz4))
            .manual_journal_persist(sync)
    })?;
    Ok(Box::new(FjallEngine { db, ks, sync }))
}

impl Engine for FjallEngine {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.ks.insert(key, value)?;
        if self.sync {
            // fdatasync, as RocksDB's `sync = true` (use_fsync is off by default).
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }
    fn get(&self, key: &[u8]) -> Res<bool> {
        Ok(self.ks.get(key)?.is_some())
    }
    fn seek(&self, key: &[u8], n: usize) -> Res<(usize, bool)> {
        let (mut count, mut hit) = (0, false);
        for guard in self.ks.range(key..).take(n) {
            let (k, _v) = guard.into_inner()?;
            if count == 0 {
                hit = k.as_ref() == key;
            }
            count += 1;
        }
        Ok((count, hit))
    }
    fn close(self: Box<Self>) -> Res<()> {
        let FjallEngine { db, ks, .. } = *self;
        db.persist(fjall::PersistMode::Buffer)?;
        drop(ks);
        drop(db);
        Ok(())
    }
}

#[cfg(feature = "rocksdb")]
struct RocksEngine {
    db: rocksdb::DB,
    write: rocksdb::WriteOptions,
    _cache: rocksdb::Cache,
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb(dir: &Path, sync: bool) -> Res<Box<dyn Engine>> {
    let cache = rocksdb::Cache::new_lru_cache(CACHE as usize);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_size(BLOCK);
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(WRITE_BUFFER as usize);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_block_based_table_factory(&table);
    let db = rocksdb::DB::open(&opts, dir)?;
    let mut write = rocksdb::WriteOptions::default();
    write.set_sync(sync);
    Ok(Box::new(RocksEngine {
        db,
        write,
        _cache: cache,
    }))
}

#[cfg(feature = "rocksdb")]
impl Engine for RocksEngine {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        Ok(self.db.put_opt(key, value, &self.write)?)
    }
    fn get(&self, key: &[u8]) -> Res<bool> {
        Ok(self.db.get_pinned(key)?.is_some())
    }
    fn seek(&self, key: &[u8], n: usize) -> Res<(usize, bool)> {
        let mut it = self.db.raw_iterator();
        it.seek(key);
        let (mut count, mut hit) = (0, false);
        while count < n && it.valid() {
            if count == 0 {
                hit = it.key() == Some(key);
            }
            let _ = it.value();
            count += 1;
            it.next();
        }
        it.status()?;
        Ok((count, hit))
    }
    fn close(self: Box<Self>) -> Res<()> {
        drop(self);
        Ok(())
    }
}

fn open(engine: &str, dir: &Path, sync: bool) -> Res<Box<dyn Engine>> {
    match engine {
        "strata" => open_strata(dir, sync),
        "fjall" => open_fjall(dir, sync),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => open_rocksdb(dir, sync),
        #[cfg(not(feature = "rocksdb"))]
        "rocksdb" => Err("built without RocksDB: rebuild with `--features rocksdb`".into()),
        other => Err(format!("unknown engine {other:?} (strata, fjall, rocksdb)").into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and values (the same generators as `strata bench`, tools/src/bench/workloads.rs)

#[derive(Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

fn derive_seed(seed: u64, stream: u64) -> u64 {
    SplitMix(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f)).next_u64()
}

/// Key `k` in decimal, zero-padded to 16 bytes, followed by `.` (the 17-byte missing key).
fn write_key(buf: &mut [u8; KEY_SIZE + 1], mut k: u64) {
    for byte in buf[..KEY_SIZE].iter_mut().rev() {
        *byte = b'0' + (k % 10) as u8;
        k /= 10;
    }
    buf[KEY_SIZE] = b'.';
}

/// db_bench-style value pool: 100-byte pieces, each a random 50-byte printable fragment repeated.
struct ValuePool(Vec<u8>);

impl ValuePool {
    fn new(seed: u64) -> Self {
        let len = 1usize << 20;
        let mut rng = SplitMix(derive_seed(seed, 301));
        let raw = 50;
        let mut data = Vec::with_capacity(len + 100);
        let mut fragment = vec![0u8; raw];
        while data.len() < len {
            for byte in fragment.iter_mut() {
                *byte = b' ' + rng.below(95) as u8;
            }
            let end = data.len() + 100;
            while data.len() < end {
                let take = (end - data.len()).min(raw);
                data.extend_from_slice(&fragment[..take]);
            }
        }
        ValuePool(data)
    }
    fn gen(&self, seed: u64) -> ValueGen<'_> {
        ValueGen {
            pool: &self.0,
            pos: SplitMix(seed).below(self.0.len() as u64) as usize,
        }
    }
}

struct ValueGen<'a> {
    pool: &'a [u8],
    pos: usize,
}

impl<'a> ValueGen<'a> {
    fn next(&mut self) -> &'a [u8] {
        if self.pos + VALUE_SIZE > self.pool.len() {
            self.pos = 0;
        }
        self.pos += VALUE_SIZE;
        &self.pool[self.pos - VALUE_SIZE..self.pos]
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement

struct Measured {
    ops: u64,
    wall: Duration,
    hist: Histogram<u64>,
    found: Option<u64>,
    note: String,
}

impl Measured {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// Runs `op` `ops` times, timing each call, and the whole loop by wall time.
fn timed(ops: u64, mut op: impl FnMut(u64) -> Res<bool>) -> Res<Measured> {
    let mut hist = histogram();
    let mut found = 0u64;
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        if op(i)? {
            found += 1;
        }
        hist.saturating_record(t.elapsed().as_nanos() as u64);
    }
    Ok(Measured {
        ops,
        wall: start.elapsed(),
        hist,
        found: Some(found),
        note: String::new(),
    })
}

fn run_workload(w: &str, db: &dyn Engine, args: &Args, pool: &ValuePool) -> Res<Measured> {
    let num = args.num;
    // Same streams for every engine: seeded by the workload's position in WORKLOADS.
    let stream = WORKLOADS.iter().position(|x| *x == w).unwrap_or(0) as u64;
    let mut rng = SplitMix(derive_seed(args.seed, stream));
    let mut values = pool.gen(rng.next_u64());
    let mut key = [0u8; KEY_SIZE + 1];
    let mut m = match w {
        "fillseq" => timed(num, |k| {
            write_key(&mut key, k);
            db.put(&key[..KEY_SIZE], values.next())?;
            Ok(false)
        })?,
        "fillrandom" | "overwrite" => timed(num, |_| {
            write_key(&mut key, rng.below(num));
            db.put(&key[..KEY_SIZE], values.next())?;
            Ok(false)
        })?,
        "fillsync" => timed(sync_num(args), |_| {
            write_key(&mut key, rng.below(num));
            db.put(&key[..KEY_SIZE], values.next())?;
            Ok(false)
        })?,
        "fillsync4" => {
            let per_thread = sync_num(args) / SYNC_THREADS;
            let seeds: Vec<u64> = (0..SYNC_THREADS).map(|_| rng.next_u64()).collect();
            let start = Instant::now();
            let parts = std::thread::scope(|s| -> Res<Vec<Measured>> {
                let handles: Vec<_> = seeds
                    .iter()
                    .map(|&seed| {
                        s.spawn(move || {
                            let mut rng = SplitMix(seed);
                            let mut values = pool.gen(rng.next_u64());
                            let mut key = [0u8; KEY_SIZE + 1];
                            timed(per_thread, |_| {
                                write_key(&mut key, rng.below(num));
                                db.put(&key[..KEY_SIZE], values.next())?;
                                Ok(false)
                            })
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().map_err(|_| BoxError::from("writer panicked"))?)
                    .collect()
            })?;
            let mut hist = histogram();
            for part in &parts {
                hist.add(&part.hist).map_err(|e| e.to_string())?;
            }
            Measured {
                ops: per_thread * SYNC_THREADS,
                wall: start.elapsed(),
                hist,
                found: None,
                note: format!("{SYNC_THREADS} writer threads"),
            }
        }
        "readrandom" => timed(args.reads, |_| {
            write_key(&mut key, rng.below(num));
            db.get(&key[..KEY_SIZE])
        })?,
        "readmissing" => timed(args.reads, |_| {
            write_key(&mut key, rng.below(num));
            db.get(&key[..])
        })?,
        "seekrandom" => timed(args.reads, |_| {
            write_key(&mut key, rng.below(num));
            Ok(db.seek(&key[..KEY_SIZE], 11)?.1)
        })?,
        "readwhilewriting" => {
            let stop = AtomicBool::new(false);
            let writes = AtomicU64::new(0);
            let mut wrng = SplitMix(derive_seed(args.seed, u64::MAX));
            let mut wvalues = pool.gen(wrng.next_u64());
            let (reader, writer_secs) = std::thread::scope(|s| -> Res<(Measured, f64)> {
                let writer = s.spawn(|| -> Res<f64> {
                    let mut key = [0u8; KEY_SIZE + 1];
                    let start = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        write_key(&mut key, wrng.below(num));
                        db.put(&key[..KEY_SIZE], wvalues.next())?;
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(start.elapsed().as_secs_f64())
                });
                let reader = timed(args.reads, |_| {
                    write_key(&mut key, rng.below(num));
                    db.get(&key[..KEY_SIZE])
                });
                stop.store(true, Ordering::Relaxed);
                let secs = writer.join().map_err(|_| "writer panicked")??;
                Ok((reader?, secs))
            })?;
            let mut reader = reader;
            reader.note = format!(
                "writer {:.0} writes/s",
                writes.load(Ordering::Relaxed) as f64 / writer_secs.max(1e-9)
            );
            reader
        }
        other => return Err(format!("unknown workload {other:?}").into()),
    };
    if matches!(w, "fillseq" | "fillrandom" | "overwrite" | "fillsync" | "fillsync4") {
        m.found = None;
    }
    Ok(m)
}

fn sync_num(args: &Args) -> u64 {
    args.sync_num.unwrap_or((args.num / 1000).max(1000))
}

/// Workloads that start from an empty database (db_bench's `fresh_db`).
fn fresh(w: &str) -> bool {
    matches!(w, "fillseq" | "fillrandom" | "fillsync" | "fillsync4")
}

fn run_engine(
    engine: &str,
    args: &Args,
    pool: &ValuePool,
) -> Res<Vec<(String, Measured)>> {
    let mut results = Vec::new();
    let mut current: Option<(Box<dyn Engine>, tempfile::TempDir)> = None;
    for w in &args.benchmarks {
        if fresh(w) || current.is_none() {
            if let Some((db, dir)) = current.take() {
                db.close()?;
                drop(dir);
            }
            let dir = match &args.dir {
                Some(base) => tempfile::Builder::new().prefix(engine).tempdir_in(base)?,
                None => tempfile::Builder::new().prefix(engine).tempdir()?,
            };
            let db = open(engine, dir.path(), w.starts_with("fillsync"))?;
            if !fresh(w) {
                // A read or overwrite workload with nothing before it: fill sequentially first
                // (untimed).
                eprintln!("  [{engine}] {w}: no fill before it, loading {} keys untimed", args.num);
                run_workload("fillseq", db.as_ref(), args, pool)?;
            }
            current = Some((db, dir));
        }
        let Some((db, _)) = current.as_ref() else {
            unreachable!()
        };
        let m = run_workload(w, db.as_ref(), args, pool)?;
        let found = m
            .found
            .map(|f| format!(", found {:.1}%", 100.0 * f as f64 / m.ops.max(1) as f64))
            .unwrap_or_default();
        eprintln!(
            "  [{engine:7}] {w:16} {:>10.0} ops/s  {:>8.3} micros/op  p50 {:.2}us p99 {:.2}us max {:.0}us{found}{}{}",
            m.ops_per_sec(),
            1e6 / m.ops_per_sec(),
            m.hist.value_at_quantile(0.5) as f64 / 1e3,
            m.hist.value_at_quantile(0.99) as f64 / 1e3,
            m.hist.max() as f64 / 1e3,
            if m.note.is_empty() { "" } else { ", " },
            m.note,
        );
        results.push((w.clone(), m));
        // A sync database is only for fillsync: later workloads get a fresh normal one.
        if w.starts_with("fillsync") {
            if let Some((db, dir)) = current.take() {
                db.close()?;
                drop(dir);
            }
        }
    }
    if let Some((db, dir)) = current.take() {
        db.close()?;
        drop(dir);
    }
    Ok(results)
}

fn fmt_ops(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() -> Res<()> {
    let args = Args::parse();
    for w in &args.benchmarks {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(format!("unknown workload {w:?} (known: {})", WORKLOADS.join(",")).into());
        }
    }
    if args.num >= 10u64.pow(KEY_SIZE as u32) {
        return Err("--num too large for 16-digit keys".into());
    }
    let pool = ValuePool::new(args.seed);
    eprintln!(
        "compare: num {} reads {} sync-num {} engines {} ({} MiB write buffer, {} MiB cache, {} B blocks, 10 bits/key bloom, lz4)",
        args.num,
        args.reads,
        sync_num(&args),
        args.engines.join(","),
        WRITE_BUFFER / MIB,
        CACHE / MIB,
        BLOCK
    );
    let started = Instant::now();
    let mut all: Vec<(String, Vec<(String, Measured)>)> = Vec::new();
    for engine in &args.engines {
        let t = Instant::now();
        eprintln!("engine {engine}:");
        let results = run_engine(engine, &args, &pool)?;
        eprintln!("  ({engine}: {:.1} s)", t.elapsed().as_secs_f64());
        all.push((engine.clone(), results));
    }

    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN);
    let mut header = vec!["workload".to_string()];
    header.extend(args.engines.iter().map(|e| format!("{e} ops/s")));
    let has_strata = args.engines.iter().any(|e| e == "strata");
    let others = args.engines.iter().filter(|e| *e != "strata").count();
    if has_strata && others > 0 {
        header.push("strata / best other".into());
        header.push("goal 1.2x".into());
    }
    table.set_header(header);
    for (i, w) in args.benchmarks.iter().enumerate() {
        let label = match w.as_str() {
            "seekrandom" => "seekrandom (seek + 10 next)".to_string(),
            "readwhilewriting" => "readwhilewriting (reads/s, 1 writer + 1 reader)".to_string(),
            "fillsync" => format!("fillsync (fdatasync per commit, {} writes)", sync_num(&args)),
            "fillsync4" => format!(
                "fillsync, {SYNC_THREADS} threads ({} writes; group commit)",
                sync_num(&args) / SYNC_THREADS * SYNC_THREADS
            ),
            _ => w.clone(),
        };
        let mut row = vec![label];
        let mut strata = None;
        let mut best_other: Option<f64> = None;
        for (engine, results) in &all {
            let ops = results[i].1.ops_per_sec();
            row.push(fmt_ops(ops));
            if engine == "strata" {
                strata = Some(ops);
            } else {
                best_other = Some(best_other.map_or(ops, |b: f64| b.max(ops)));
            }
        }
        if let (Some(s), Some(b)) = (strata, best_other) {
            let ratio = s / b;
            row.push(format!("{ratio:.2}x"));
            row.push(if ratio >= 1.2 { "met" } else { "MISSED" }.to_string());
        }
        table.add_row(row);
    }
    println!(
        "\n--num {} --reads {} (fillsync: {} writes), total {:.1} s\n",
        args.num,
        args.reads,
        sync_num(&args),
        started.elapsed().as_secs_f64()
    );
    println!("{table}");
    Ok(())
}
