//! `strata bench`: a db_bench-style workload runner, and `strata bench report`, which compares
//! result files.
//!
//! # Running
//!
//! `strata bench --benchmarks fillseq,readrandom --num 1000000 --reads 200000` runs the named
//! workloads in order on one database (a fresh temporary directory unless `--db DIR` is given)
//! and prints, per workload, db_bench's line, latency percentiles and the engine's figures, then
//! a summary table. See [`workloads::Workload`] for what each workload does.
//!
//! Keys are `--key-size` bytes: the key number in decimal, zero-padded (db_bench's style).
//! Random workloads draw key numbers uniformly from `0..num` (with replacement, so `fillrandom`
//! alone leaves about 63% of the keys present) from a PRNG seeded by `--seed`, the workload's
//! position and the thread. Values are `--value-size` slices of a pool built like db_bench's
//! `RandomGenerator`, compressible to about `--compression-ratio` of their size.
//!
//! Measurement: every operation is timed (two clock reads, about 40 ns) into an HDR histogram
//! per thread; multi-threaded histograms are merged. `micros/op` is the sum of the threads' own
//! elapsed times divided by the operations, `ops/sec` is operations divided by wall time (both
//! as db_bench computes them), and MB/s uses 2^20-byte megabytes like db_bench. After a
//! workload that writes, the benchmark flushes every memtable and waits for dumps and
//! compactions to finish; that time is reported as `flush_s`, not counted in ops/sec, but the
//! bytes it writes are counted in the amplification figures.
//!
//! `fillsync` needs every commit durable: the database is (re)opened with `WalMode::Fsync` for
//! it, and reopened with `--wal-mode` for the next workload. A reopen flushes first (not
//! measured), and the page cache starts cold after it.
//!
//! # Figures
//!
//! - write amplification, engine: (dump bytes out + compaction bytes out) / user key+value
//!   bytes written, both deltas over the workload and its flush, summed over keyspaces. "with
//!   WAL" adds the WAL bytes appended.
//! - write amplification, OS: the `write_bytes` delta of `/proc/self/io` / the same user bytes.
//!   The kernel counts bytes sent to the block layer when pages are dirtied, including the WAL
//!   and the metadata log; it is `n/a` where the file is unreadable or the file system does not
//!   account (the delta is 0, as on tmpfs).
//! - space amplification: bytes of all runs on disk / (live keys x (key size + value size)),
//!   where live keys are the keys of `0..num` the benchmark wrote and did not delete (tracked
//!   with one bit per key; `--use-existing` counts them with a scan at open). The denominator is
//!   uncompressed, so compressible values give figures below 1.
//! - runs, stalls (count, total and longest milliseconds), page cache hit rate, bloom negatives
//!   per check, runs probed per lookup, commits per group: from `Db::stats()` deltas.
//!
//! # Output
//!
//! `--format text` (default) prints the blocks above; a progress bar is drawn on stderr when it
//! is a terminal. `--format jsonl` prints one JSON object per workload, `--format json` one
//! document `{schema, run_id, strata_version, config, total_s, results: [...]}` at the end.
//! `--jsonl-out FILE` appends the JSON lines to FILE whatever the format.
//!
//! # Result schema `strata-bench/1`
//!
//! Each JSON line (and each element of `results`) is a [`output::WorkloadResult`]:
//!
//! | field | meaning |
//! |---|---|
//! | `schema` | `"strata-bench/1"` |
//! | `run_id` | identifies the invocation (`<unix seconds>-<pid>`), shared by its lines |
//! | `strata_version` | the version that ran |
//! | `workload` | the db_bench name |
//! | `status`, `skip_reason` | `"ok"`, or `"skipped"` with the reason |
//! | `wal_mode` | the WAL mode the database was open with for this workload |
//! | `threads`, `ops`, `bytes` | threads measured, operations, key+value bytes written or read |
//! | `found` | lookups or seeks that found their key (read workloads), else `null` |
//! | `elapsed_s`, `micros_per_op`, `ops_per_sec`, `mb_per_sec` | as described above |
//! | `latency_us` | `{min, mean, p50, p90, p99, p999, max}` per operation, microseconds |
//! | `timeline` | operations per second in each second (the last entry scales the remainder) |
//! | `flush_s` | seconds of the flush after a writing workload, else `null` |
//! | `writer` | `readwhilewriting`'s background writer: `{ops, ops_per_sec}` |
//! | `engine` | [`output::EngineFigures`]: the figures above and their raw counters |
//! | `config` | [`output::RunConfig`]: every flag of the invocation |
//!
//! Fields are only ever added to this schema; a change of meaning gets a new schema name.
//!
//! # Reports
//!
//! `strata bench report A.jsonl B.jsonl [--chart out.svg|out.png]` reads result files (JSON
//! lines, or `--format json` documents), prints a table of ops/sec and p99 per workload (rows)
//! and file (columns; the median when a file holds several results for a workload), and draws
//! throughput, p50/p99 latency and, where timelines exist, throughput over time.

mod figures;
mod output;
mod report;
mod workloads;

use std::fmt;
use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use strata::{Db, Keyspace, KeyspaceOptions, Options, WalMode};

use figures::Probe;
use output::{BenchDocument, Latency, RunConfig, WorkloadResult, WriterResult, SCHEMA};
use workloads::{derive_seed, Context, KeyFormat, LiveKeys, ValuePool, Workload};

/// The default workloads. With the default `--num` (2,000,000: about 220 MiB of user data, more
/// than the default 128 MiB page cache) and `--reads` (400,000) they take about a minute on a
/// 2-core machine.
pub const DEFAULT_BENCHMARKS: &str = "fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,readreverse,seekrandom,readwhilewriting,updaterandom,fillsync";

/// The keyspace the benchmark uses.
const KEYSPACE: &str = "bench";
/// The keyspace of `upsertrandom`'s counters (it needs a merge operator, which the main
/// keyspace, reopened with `--use-existing`, may not have).
const COUNTERS_KEYSPACE: &str = "bench_counters";

/// An error of `strata bench`, with its exit code.
#[derive(Debug)]
pub enum BenchError {
    /// Bad flags or arguments (exit code 2).
    Usage(String),
    /// An error from the engine (exit code 1 for corruption, else 4).
    Engine(strata::Error),
    /// An I/O error on a file of the benchmark's own (exit code 4).
    Io(String, std::io::Error),
    /// Anything else (exit code 4).
    Other(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) | BenchError::Other(m) => f.write_str(m),
            BenchError::Engine(e) => write!(f, "{e}"),
            BenchError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl BenchError {
    /// The process exit code: 2 usage, 1 corruption, 4 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Usage(_) => 2,
            BenchError::Engine(e) if e.is_corruption() => 1,
            _ => 4,
        }
    }
}

fn engine(e: strata::Error) -> BenchError {
    BenchError::Engine(e)
}

/// `strata bench`: run workloads, or compare result files with `report`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `report`, or nothing to run workloads.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Options of a run (boxed: they are large next to other commands' arguments).
    #[command(flatten)]
    pub run: Box<RunArgs>,
}

/// Subcommands of `strata bench`.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Compare JSONL result files: a table of ops/sec and p99, and optionally a chart.
    Report(report::ReportArgs),
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// db_bench-style lines, engine figures and a summary table.
    Text,
    /// One JSON document with every result, at the end.
    Json,
    /// One JSON line per workload, as each finishes.
    Jsonl,
}

/// WAL modes, as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WalModeArg {
    /// No WAL: writes since the last dump are lost on a crash.
    None,
    /// Each commit is handed to the OS before it returns (the engine's default).
    Write,
    /// Each commit is synced before it returns.
    Fsync,
}

impl WalModeArg {
    fn mode(self) -> WalMode {
        match self {
            WalModeArg::None => WalMode::None,
            WalModeArg::Write => WalMode::Write,
            WalModeArg::Fsync => WalMode::Fsync,
        }
    }
}

fn wal_mode_name(mode: WalMode) -> &'static str {
    match mode {
        WalMode::None => "none",
        WalMode::Write => "write",
        WalMode::Fsync => "fsync",
    }
}

/// Options of a benchmark run.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workloads to run in order, comma-separated: fillseq, fillrandom, overwrite, readrandom,
    /// readmissing, readseq, readreverse, seekrandom, readwhilewriting, fillsync, updaterandom,
    /// upsertrandom (counter upserts), txnrandom (two-key transfer transactions), deleterandom.
    #[arg(long, default_value = DEFAULT_BENCHMARKS)]
    pub benchmarks: String,
    /// Keys in the key space; writes per thread of fillseq, fillrandom, overwrite and
    /// deleterandom (fillsync does num/1000).
    #[arg(long, default_value_t = 2_000_000)]
    pub num: u64,
    /// Lookups (or seeks, or read-modify-writes) per thread of readrandom, readmissing,
    /// seekrandom, readwhilewriting and updaterandom.
    #[arg(long, default_value_t = 400_000)]
    pub reads: u64,
    /// Threads of the multi-threaded workloads (fillseq, readseq and readreverse use one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Fraction of its size a value compresses to (db_bench's --compression_ratio).
    #[arg(long, default_value_t = 0.5)]
    pub compression_ratio: f64,
    /// Database directory (default: a fresh temporary directory, removed afterwards). Must be
    /// empty or absent unless --use-existing; it is kept afterwards.
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Reuse the database in --db instead of starting empty.
    #[arg(long)]
    pub use_existing: bool,
    /// Durability of commits (fillsync always uses fsync).
    #[arg(long, value_enum, default_value_t = WalModeArg::Write)]
    pub wal_mode: WalModeArg,
    /// Page cache budget, in bytes or with a K, M or G suffix (binary; default: the engine's,
    /// 128M).
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// Memory limit of all memtables, as for --cache-size (default: the engine's, 128M).
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// Seed of every random stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Append one JSON line per workload to FILE.
    #[arg(long, value_name = "FILE")]
    pub jsonl_out: Option<PathBuf>,
    /// Print each workload's full latency distribution (text format).
    #[arg(long)]
    pub histogram: bool,
}

/// Runs `strata bench` or `strata bench report`.
///
/// # Errors
/// A [`BenchError`]; its [`BenchError::exit_code`] is the process's.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    match args.command {
        Some(BenchCommand::Report(report)) => report::run(&report),
        None => run_workloads(&args.run),
    }
}

/// Writes `text` to stdout (an error, not a panic, when stdout is closed).
fn say(text: &str) -> Result<(), BenchError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| BenchError::Io("writing to stdout".into(), e))
}

/// Parses `128`, `64K`, `256M`, `1G`, `256MiB`, `1GB` (all suffixes binary).
fn parse_size(flag: &str, text: &str) -> Result<u64, BenchError> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(BenchError::Usage(format!(
                "{flag} {text:?}: expected bytes with an optional K, M or G suffix"
            )))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| BenchError::Usage(format!("{flag} {text:?} is not a valid size")))
}

/// Parses `--benchmarks`.
fn parse_benchmarks(list: &str) -> Result<Vec<Workload>, BenchError> {
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(BenchError::Usage("--benchmarks names no workload".into()));
    }
    names
        .into_iter()
        .map(|name| {
            Workload::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                BenchError::Usage(format!(
                    "unknown benchmark {name:?} in --benchmarks (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

fn is_empty_dir(path: &Path) -> Result<bool, BenchError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(BenchError::Io(format!("reading {}", path.display()), e)),
    }
}

/// The open database, reopened when a workload needs another WAL mode.
struct Session {
    dir: PathBuf,
    options: Options,
    db: Option<(Db, Keyspace, Keyspace)>,
}

impl Session {
    /// Makes sure the database is open with `mode`; returns true if it had to be reopened.
    fn ensure(&mut self, mode: WalMode) -> Result<bool, BenchError> {
        if self.db.is_some() && self.options.wal_mode == mode {
            return Ok(false);
        }
        let reopened = self.close()?;
        self.options.wal_mode = mode;
        let db = Db::open(&self.dir, self.options.clone()).map_err(engine)?;
        let ks = db
            .keyspace(KEYSPACE, KeyspaceOptions::default())
            .map_err(engine)?;
        let counters = db
            .keyspace(
                COUNTERS_KEYSPACE,
                KeyspaceOptions {
                    merge_operator: Some(std::sync::Arc::new(strata::merge::Counter)),
                    ..KeyspaceOptions::default()
                },
            )
            .map_err(engine)?;
        self.db = Some((db, ks, counters));
        Ok(reopened)
    }

    /// Flushes and closes the database if it is open; returns true if it was.
    fn close(&mut self) -> Result<bool, BenchError> {
        let Some((db, ks, counters)) = self.db.take() else {
            return Ok(false);
        };
        drop((ks, counters));
        figures::settle(&db)?;
        db.close().map_err(engine)?;
        Ok(true)
    }
}

/// Where results go as they are produced.
struct Sink {
    format: Format,
    histogram: bool,
    jsonl_out: Option<(PathBuf, std::fs::File)>,
    results: Vec<WorkloadResult>,
}

impl Sink {
    fn emit(
        &mut self,
        result: WorkloadResult,
        hist: Option<&hdrhistogram::Histogram<u64>>,
        note: Option<&str>,
    ) -> Result<(), BenchError> {
        let line = serde_json::to_string(&result)
            .map_err(|e| BenchError::Other(format!("encoding a result: {e}")))?;
        if let Some((path, file)) = &mut self.jsonl_out {
            writeln!(file, "{line}")
                .and_then(|()| file.flush())
                .map_err(|e| BenchError::Io(format!("appending to {}", path.display()), e))?;
        }
        let mut stdout = std::io::stdout().lock();
        let written = match self.format {
            Format::Text => {
                let mut text = output::text_block(&result);
                if let Some(note) = note {
                    text += &format!("{:15}({note})\n", "");
                }
                if let (true, Some(hist)) = (self.histogram, hist) {
                    text += &output::histogram_block(hist);
                }
                write!(stdout, "{text}").and_then(|()| stdout.flush())
            }
            Format::Jsonl => writeln!(stdout, "{line}").and_then(|()| stdout.flush()),
            Format::Json => Ok(()),
        };
        written.map_err(|e| BenchError::Io("writing to stdout".into(), e))?;
        self.results.push(result);
        Ok(())
    }
}

fn header(config: &RunConfig, dir: &Path, temporary: bool) -> String {
    let raw = config.num as f64 * (config.key_size + config.value_size) as f64;
    let compressed_value = (config.value_size as f64 * config.compression_ratio).round();
    let file = config.num as f64 * (config.key_size as f64 + compressed_value);
    let mib = |b: u64| format!("{} MiB", b >> 20);
    format!(
        "strata bench {version}\n\
         Keys:       {ks} bytes each\n\
         Values:     {vs} bytes each ({cv} bytes after compression)\n\
         Entries:    {num}\n\
         Reads:      {reads} per thread\n\
         Threads:    {threads}\n\
         RawSize:    {raw:.1} MB (estimated)\n\
         FileSize:   {file:.1} MB (estimated)\n\
         WAL:        {wal} (fillsync: fsync)\n\
         Memory:     cache {cache}, memtable limit {mem}\n\
         Seed:       {seed}\n\
         DB:         {dir}{tmp}\n\
         CPUs:       {cpus}\n\
         ------------------------------------------------\n",
        version = env!("CARGO_PKG_VERSION"),
        ks = config.key_size,
        vs = config.value_size,
        cv = compressed_value,
        num = config.num,
        reads = config.reads,
        threads = config.threads,
        raw = raw / 1_048_576.0,
        file = file / 1_048_576.0,
        wal = config.wal_mode,
        cache = mib(config.cache_size_bytes),
        mem = mib(config.memory_limit_bytes),
        seed = config.seed,
        dir = dir.display(),
        tmp = if temporary {
            " (temporary, removed afterwards)"
        } else {
            ""
        },
        cpus = std::thread::available_parallelism().map_or(0, |n| n.get()),
    )
}

/// Fills `live` from the keys already in `ks` (for `--use-existing`).
fn count_existing(
    ks: &Keyspace,
    keys: KeyFormat,
    num: u64,
    live: &LiveKeys,
) -> Result<(), BenchError> {
    for item in ks.iter() {
        let (key, _) = item.map_err(engine)?;
        if let Some(k) = keys.parse(&key) {
            if k < num {
                live.set(k);
            }
        }
    }
    Ok(())
}

fn run_workloads(args: &RunArgs) -> Result<(), BenchError> {
    let started = Instant::now();
    let workloads = parse_benchmarks(&args.benchmarks)?;
    let usage = |m: String| Err(BenchError::Usage(m));
    if args.num == 0 {
        return usage("--num must be at least 1".into());
    }
    if args.threads == 0 || args.threads > 1024 {
        return usage(format!("--threads {} is outside 1..=1024", args.threads));
    }
    if !(args.compression_ratio > 0.0 && args.compression_ratio <= 1.0) {
        return usage(format!(
            "--compression-ratio {} is outside (0, 1]",
            args.compression_ratio
        ));
    }
    if args.key_size + 1 > strata::sstable::MAX_KEY_LEN {
        return usage(format!(
            "--key-size {} is above the engine's limit of {} (less one for readmissing's suffix)",
            args.key_size,
            strata::sstable::MAX_KEY_LEN - 1
        ));
    }
    let keys = KeyFormat::new(args.key_size, args.num)?;
    let mut options = Options {
        wal_mode: args.wal_mode.mode(),
        ..Options::default()
    };
    if let Some(size) = &args.cache_size {
        options.cache_size_bytes = parse_size("--cache-size", size)?;
    }
    if let Some(size) = &args.memory_limit {
        options.memory_limit_bytes = parse_size("--memory-limit", size)?;
    }
    if args.value_size > options.max_value_len {
        return usage(format!(
            "--value-size {} is above the engine's limit of {}",
            args.value_size, options.max_value_len
        ));
    }

    // The directory: a temporary one, or --db (empty unless --use-existing).
    let temp = match &args.db {
        Some(_) => None,
        None if args.use_existing => {
            return usage("--use-existing needs --db DIR".into());
        }
        None => Some(
            tempfile::Builder::new()
                .prefix("strata-bench-")
                .tempdir()
                .map_err(|e| BenchError::Io("creating a temporary directory".into(), e))?,
        ),
    };
    let dir = match (&args.db, &temp) {
        (Some(dir), _) => {
            if !args.use_existing && !is_empty_dir(dir)? {
                return usage(format!(
                    "--db {} is not empty: pass --use-existing to reuse it, or name an empty directory",
                    dir.display()
                ));
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| BenchError::Io(format!("creating {}", dir.display()), e))?;
            dir.clone()
        }
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => return usage("no database directory".into()),
    };

    let config = RunConfig {
        benchmarks: workloads.iter().map(|w| w.name().to_string()).collect(),
        num: args.num,
        reads: args.reads,
        threads: args.threads,
        key_size: args.key_size,
        value_size: args.value_size,
        compression_ratio: args.compression_ratio,
        wal_mode: wal_mode_name(options.wal_mode).to_string(),
        cache_size_bytes: options.cache_size_bytes,
        memory_limit_bytes: options.memory_limit_bytes,
        seed: args.seed,
        db: args.db.as_ref().map(|d| d.display().to_string()),
        use_existing: args.use_existing,
    };
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run_id = format!("{unix}-{}", std::process::id());
    let jsonl_out = match &args.jsonl_out {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| BenchError::Io(format!("opening {}", path.display()), e))?;
            Some((path.clone(), file))
        }
        None => None,
    };
    let mut sink = Sink {
        format: args.format,
        histogram: args.histogram,
        jsonl_out,
        results: Vec::new(),
    };
    if args.format == Format::Text {
        say(&header(&config, &dir, temp.is_some()))?;
    }
    let progress = args.format == Format::Text && std::io::stderr().is_terminal();

    let pool = ValuePool::new(args.compression_ratio, args.value_size, args.seed);
    let live = LiveKeys::new(args.num);
    let entry_bytes = (args.key_size + args.value_size) as u64;
    let requested = options.wal_mode;
    let mut session = Session {
        dir,
        options,
        db: None,
    };
    let template = WorkloadResult {
        schema: SCHEMA.to_string(),
        run_id: run_id.clone(),
        strata_version: env!("CARGO_PKG_VERSION").to_string(),
        workload: String::new(),
        status: "ok".into(),
        skip_reason: None,
        wal_mode: String::new(),
        threads: 0,
        ops: 0,
        bytes: 0,
        found: None,
        elapsed_s: 0.0,
        micros_per_op: 0.0,
        ops_per_sec: 0.0,
        mb_per_sec: 0.0,
        latency_us: None,
        timeline: Vec::new(),
        flush_s: None,
        writer: None,
        engine: None,
        config: config.clone(),
    };

    let mut counted = false;
    for (index, &w) in workloads.iter().enumerate() {
        let mode = w.wal_mode(requested);
        let reopened = session.ensure(mode)?;
        let Some((db, ks, counters)) = &session.db else {
            return Err(BenchError::Other("the database is not open".into()));
        };
        if args.use_existing && !counted {
            count_existing(ks, keys, args.num, &live)?;
            counted = true;
        }
        let note = reopened.then(|| {
            format!(
                "database reopened with WAL mode {}; the page cache starts cold",
                wal_mode_name(mode)
            )
        });
        let cx = Context {
            db,
            ks,
            counters,
            num: args.num,
            reads: args.reads,
            threads: args.threads,
            keys,
            value_size: args.value_size,
            pool: &pool,
            live: &live,
            seed: derive_seed(args.seed, index as u64 + 1),
            progress,
        };
        let before = Probe::take(db);
        let m = workloads::run(w, &cx)?;
        let flush = if w.writes() {
            Some(figures::settle(db)?.as_secs_f64())
        } else {
            None
        };
        let after = Probe::take(db);
        let wall = m.wall.as_secs_f64();
        let result = WorkloadResult {
            workload: w.name().into(),
            wal_mode: wal_mode_name(mode).into(),
            threads: m.threads,
            ops: m.ops,
            bytes: m.bytes,
            found: m.found,
            elapsed_s: wall,
            micros_per_op: if m.ops > 0 {
                m.thread_time.as_secs_f64() * 1e6 / m.ops as f64
            } else {
                0.0
            },
            ops_per_sec: if wall > 0.0 { m.ops as f64 / wall } else { 0.0 },
            mb_per_sec: output::mb_per_sec(m.bytes, wall),
            latency_us: (m.ops > 0).then(|| Latency::from_nanos(&m.hist)),
            timeline: m.timeline,
            flush_s: flush,
            writer: m.writer.map(|(ops, secs)| WriterResult {
                ops,
                ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            }),
            engine: Some(figures::between(&before, &after, live.count(), entry_bytes)),
            ..template.clone()
        };
        sink.emit(result, Some(&m.hist), note.as_deref())?;
    }
    session.close()?;
    drop(temp);

    let total = started.elapsed().as_secs_f64();
    match args.format {
        Format::Text => {
            say(&format!("{}\n", output::summary_table(&sink.results)))?;
            let measured: f64 = sink.results.iter().map(|r| r.elapsed_s).sum();
            let flushes: f64 = sink.results.iter().filter_map(|r| r.flush_s).sum();
            say(&format!(
                "total {total:.1} s: workloads {measured:.1} s, flushes {flushes:.1} s, set-up and reopens {:.1} s\n",
                (total - measured - flushes).max(0.0)
            ))?;
        }
        Format::Json => {
            let document = BenchDocument {
                schema: SCHEMA.into(),
                run_id,
                strata_version: env!("CARGO_PKG_VERSION").into(),
                config,
                total_s: total,
                results: sink.results,
            };
            let text = serde_json::to_string_pretty(&document)
                .map_err(|e| BenchError::Other(format!("encoding results: {e}")))?;
            say(&format!("{text}\n"))?;
        }
        Format::Jsonl => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("x", "128").ok(), Some(128));
        assert_eq!(parse_size("x", "64K").ok(), Some(64 << 10));
        assert_eq!(parse_size("x", "256MiB").ok(), Some(256 << 20));
        assert_eq!(parse_size("x", "1g").ok(), Some(1 << 30));
        assert!(parse_size("x", "12X").is_err());
        assert!(parse_size("x", "M").is_err());
    }

    #[test]
    fn benchmark_lists_parse_and_reject_unknown_names() {
        let all = parse_benchmarks(DEFAULT_BENCHMARKS).expect("the defaults parse");
        assert_eq!(all[0], Workload::FillSeq);
        let error = parse_benchmarks("fillseq,bogus").expect_err("bogus is unknown");
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("\"bogus\""));
    }
}
