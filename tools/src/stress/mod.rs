//! `strata stress`: a db_stress-style mixed workload that keeps the state the database must hold
//! in a crash-proof file and verifies the database against it at every start-up; and
//! `strata stress crash-loop`, which kills it with SIGKILL again and again.
//!
//! # One run
//!
//! 1. Open (or create) the expected-state file (`expected`: per-key generation, per-counter
//!    total and pending marks, per-thread batch and transaction records).
//! 2. If the database existed: `strata::inspect::verify` over its files as the crash left them
//!    (every checksum), then open it and verify every key (`verify`): strongly after a kill in
//!    `Write`/`Fsync` mode or a clean close, weakly after a kill in `None` mode. Settle the
//!    expected state to what was found.
//! 3. Run the workload (`workload`) on `--threads` threads for `--duration` seconds (0: verify
//!    only), checking every read as it goes.
//! 4. Verify every key again, close, and check the files once more.
//!
//! Lines on stdout starting with `stress:` are for the crash-loop driver (`key=value` fields).
//! Exit codes: 0 success, 1 verification failure or corruption, 2 usage, 4 other errors.
//!
//! # Crash loop
//!
//! See `crash_loop`: spawn `strata stress` (this executable), SIGKILL it at a random moment,
//! repeat with randomised options; each start-up verifies the previous kill.

mod crash_loop;
mod expected;
mod model;
mod verify;
mod workload;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use strata::fs::RealFs;
use strata::{Compression, Db, Keyspace, KeyspaceOptions, Options, WalMode};

use expected::{ExpectedState, MAX_THREADS};
use model::{keyspace_name, COUNTER_KEYSPACE, KEYSPACES};
use verify::{verify_database, Failure, VerifyReport};
use workload::{Shared, MIX};

/// Name of the expected-state file inside the database directory (unless `--expected`). The
/// engine ignores files it does not know.
pub const EXPECTED_FILE: &str = "stress-expected";

/// Largest `--keys`: key names have 8 digits.
const MAX_KEYS: u64 = 100_000_000;

/// Failures listed in a message at most.
const MAX_FAILURES_SHOWN: usize = 20;

/// An error of `strata stress`, with its exit code.
#[derive(Debug)]
pub enum StressError {
    /// Bad flags (exit code 2).
    Usage(String),
    /// Keys that do not hold what they must (exit code 1).
    Failed(Vec<Failure>),
    /// Damaged files found by `strata::inspect::verify` (exit code 1).
    Corrupt(String),
    /// An engine error opening or closing the database (1 for corruption, else 4).
    Engine(strata::Error),
    /// The expected-state file (exit code 4).
    State(expected::StateError),
    /// Anything else (exit code 4).
    Other(String),
}

impl fmt::Display for StressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StressError::Usage(m) | StressError::Other(m) => f.write_str(m),
            StressError::Failed(failures) => {
                write!(f, "verification failed: {} key(s)", failures.len())?;
                for failure in failures.iter().take(MAX_FAILURES_SHOWN) {
                    write!(f, "\n  FAILURE {failure}")?;
                }
                if failures.len() > MAX_FAILURES_SHOWN {
                    write!(
                        f,
                        "\n  ... and {} more",
                        failures.len() - MAX_FAILURES_SHOWN
                    )?;
                }
                Ok(())
            }
            StressError::Corrupt(m) => write!(f, "verification failed: {m}"),
            StressError::Engine(e) => write!(f, "{e}"),
            StressError::State(e) => write!(f, "expected state: {e}"),
        }
    }
}

impl StressError {
    /// The process exit code: 1 failure or corruption, 2 usage, 4 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            StressError::Failed(_) | StressError::Corrupt(_) => 1,
            StressError::Engine(e) if e.is_corruption() => 1,
            StressError::Usage(_) => 2,
            StressError::State(e) if e.is_mismatch() => 2,
            _ => 4,
        }
    }
}

/// `strata stress`: run the workload, or drive a crash loop with `crash-loop`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StressArgs {
    /// `crash-loop`, or nothing to run the workload once.
    #[command(subcommand)]
    pub command: Option<StressCommand>,
    /// Options of a run (boxed: they are large next to other commands' arguments).
    #[command(flatten)]
    pub run: Box<RunArgs>,
}

/// Subcommands of `strata stress`.
#[derive(Subcommand, Debug)]
pub enum StressCommand {
    /// Run `strata stress` as a child process, SIGKILL it at random moments, restart (which
    /// verifies), repeat with randomised options; print a summary.
    CrashLoop(crash_loop::CrashLoopArgs),
}

/// WAL modes, as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WalModeArg {
    /// No WAL: after a kill only what was dumped survives (weak checks).
    None,
    /// Commits are handed to the OS before they return: a process kill loses nothing acked.
    Write,
    /// Commits are synced before they return.
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

    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            WalModeArg::None => "none",
            WalModeArg::Write => "write",
            WalModeArg::Fsync => "fsync",
        }
    }
}

/// Options of one stress run. Keyspace options (page size, compression, compaction) apply when
/// the keyspaces are created, i.e. on the first run in a directory; later runs keep them.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The database directory (created if absent; if it holds a database, the expected-state
    /// file must exist too).
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// The expected-state file (default: DIR/stress-expected).
    #[arg(long, value_name = "FILE")]
    pub expected: Option<PathBuf>,
    /// Seconds of workload after the start-up verification; 0 verifies and exits.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Worker threads (1..=64).
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Keys (fixed for a directory: the expected-state file is made for this many).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Seed of the operation streams.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Durability of commits.
    #[arg(long, value_enum, default_value_t = WalModeArg::Write)]
    pub wal_mode: WalModeArg,
    /// Memory limit of all memtables (K, M, G suffixes; at least 64K). Small, so dumps happen.
    #[arg(long, default_value = "1M", value_name = "SIZE")]
    pub memory_limit: String,
    /// Page cache budget.
    #[arg(long, default_value = "8M", value_name = "SIZE")]
    pub cache_size: String,
    /// WAL segment size (at least 4K).
    #[arg(long, default_value = "1M", value_name = "SIZE")]
    pub wal_segment_size: String,
    /// Lower clamp of the automatic range size.
    #[arg(long, default_value = "16K", value_name = "SIZE")]
    pub range_size_min: String,
    /// Metadata log rewrite threshold.
    #[arg(long, default_value = "64K", value_name = "SIZE")]
    pub meta_rewrite_threshold: String,
    /// Background dump threads.
    #[arg(long, default_value_t = 1)]
    pub dump_threads: usize,
    /// Background compaction threads.
    #[arg(long, default_value_t = 2)]
    pub compaction_threads: usize,
    /// Keyspace option: page size of runs.
    #[arg(long, default_value = "4K", value_name = "SIZE")]
    pub page_size: String,
    /// Keyspace option: bloom filter false-positive rate (1.0 disables).
    #[arg(long, default_value_t = 0.01)]
    pub bloom_fp_rate: f64,
    /// Keyspace option: compression of dumped runs (none, lz4, zstd, zstd:LEVEL).
    #[arg(long, default_value = "lz4")]
    pub dump_compression: String,
    /// Keyspace option: compression of compacted runs.
    #[arg(long, default_value = "zstd:1")]
    pub compaction_compression: String,
    /// Keyspace option: runs per level before compaction (vinyl's run_count_per_level).
    #[arg(long, default_value_t = 2)]
    pub run_count_per_level: u32,
    /// Keyspace option: size ratio of adjacent levels (vinyl's run_size_ratio).
    #[arg(long, default_value_t = 3.5)]
    pub run_size_ratio: f64,
    /// Keyspace option: target range size, or `auto`.
    #[arg(long, default_value = "64K", value_name = "SIZE")]
    pub range_size: String,
    /// Milliseconds between `stress: progress` lines.
    #[arg(long, default_value_t = 1000)]
    pub report_ms: u64,
    /// Exit at once when stdin reaches its end: the crash-loop driver passes a pipe, so a
    /// child does not outlive a driver that was itself killed.
    #[arg(long, hide = true)]
    pub watch_stdin: bool,
}

/// Runs `strata stress` or `strata stress crash-loop`.
///
/// # Errors
/// A [`StressError`]; its [`StressError::exit_code`] is the process's.
pub fn run(args: StressArgs) -> Result<(), StressError> {
    match args.command {
        Some(StressCommand::CrashLoop(cl)) => crash_loop::run(&cl),
        None => run_once(&args.run),
    }
}

/// Parses `128`, `64K`, `256M`, `1G` (binary suffixes).
fn parse_size(flag: &str, text: &str) -> Result<u64, StressError> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(StressError::Usage(format!("--{flag} {text:?}: not a size"))),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| StressError::Usage(format!("--{flag} {text:?}: not a size")))
}

fn parse_compression(flag: &str, text: &str) -> Result<Compression, StressError> {
    text.parse()
        .map_err(|e| StressError::Usage(format!("--{flag}: {e}")))
}

/// The database and keyspace options the flags describe.
fn options(args: &RunArgs) -> Result<(Options, KeyspaceOptions), StressError> {
    let options = Options {
        wal_mode: args.wal_mode.mode(),
        memory_limit_bytes: parse_size("memory-limit", &args.memory_limit)?,
        cache_size_bytes: parse_size("cache-size", &args.cache_size)?,
        wal_segment_size_bytes: parse_size("wal-segment-size", &args.wal_segment_size)?,
        range_size_min_bytes: parse_size("range-size-min", &args.range_size_min)?,
        meta_rewrite_threshold_bytes: parse_size(
            "meta-rewrite-threshold",
            &args.meta_rewrite_threshold,
        )?,
        dump_threads: args.dump_threads,
        compaction_threads: args.compaction_threads,
        ..Options::default()
    };
    // Every field is set today; the update keeps this compiling as the engine adds options
    // (merge operators are being added), whose defaults are what the test wants.
    #[allow(clippy::needless_update)]
    let ks = KeyspaceOptions {
        page_size_bytes: parse_size("page-size", &args.page_size)? as usize,
        bloom_fp_rate: args.bloom_fp_rate,
        dump_compression: parse_compression("dump-compression", &args.dump_compression)?,
        compaction_compression: parse_compression(
            "compaction-compression",
            &args.compaction_compression,
        )?,
        run_count_per_level: args.run_count_per_level,
        run_size_ratio: args.run_size_ratio,
        range_size_bytes: match args.range_size.as_str() {
            "auto" => None,
            size => Some(parse_size("range-size", size)?),
        },
        ..KeyspaceOptions::default()
    };
    Ok((options, ks))
}

/// Prints one line to stdout now (the driver reads it while this process runs).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the driver went away) must not stop the workload.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn is_empty_dir(dir: &Path, ignore: &Path) -> Result<bool, StressError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry
                    .map_err(|e| StressError::Other(format!("listing {}: {e}", dir.display())))?;
                let path = entry.path();
                let ours = path == ignore || path.extension().is_some_and(|e| e == "creating");
                if !ours {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(StressError::Other(format!(
            "listing {}: {e}",
            dir.display()
        ))),
    }
}

/// `strata::inspect::verify` over the database's files: every checksum must hold.
fn verify_files(dir: &Path, when: &str) -> Result<(), StressError> {
    let report = strata::inspect::verify(&RealFs, dir, &mut |_, _| {})
        .map_err(|e| StressError::Other(format!("verifying {}: {e}", dir.display())))?;
    if !report.is_ok() {
        let problems: Vec<String> = report
            .problems
            .iter()
            .map(|p| match p.offset {
                Some(offset) => format!("{} at {offset}: {}", p.path.display(), p.what),
                None => format!("{}: {}", p.path.display(), p.what),
            })
            .collect();
        return Err(StressError::Corrupt(format!(
            "strata::inspect::verify {when}: {}",
            problems.join("; ")
        )));
    }
    say(&format!(
        "stress: files_ok when={when} runs={} pages={} entries={} wal_segments={} wal_batches={}",
        report.runs_checked,
        report.pages_checked,
        report.entries_checked,
        report.wal_segments_checked,
        report.wal_batches_checked
    ));
    Ok(())
}

fn report_line(when: &str, r: &VerifyReport) -> String {
    format!(
        "stress: verified when={when} checks={} keys={} counters={} present={} pending_old={} pending_new={} \
         batches_old={} batches_new={} weak_differences={}",
        if r.weak { "weak" } else { "strong" },
        r.keys,
        r.counters,
        r.present,
        r.pending_old,
        r.pending_new,
        r.batches_old,
        r.batches_new,
        r.weak_differences
    )
}

fn run_once(args: &RunArgs) -> Result<(), StressError> {
    let usage = |m: String| Err(StressError::Usage(m));
    let Some(dir) = args.db.clone() else {
        return usage("--db DIR is required".into());
    };
    if args.threads == 0 || args.threads > MAX_THREADS {
        return usage(format!(
            "--threads {} is outside 1..={MAX_THREADS}",
            args.threads
        ));
    }
    if args.keys == 0 || args.keys > MAX_KEYS {
        return usage(format!("--keys {} is outside 1..={MAX_KEYS}", args.keys));
    }
    if !(args.duration >= 0.0 && args.duration.is_finite()) {
        return usage(format!(
            "--duration {} is not a number of seconds",
            args.duration
        ));
    }
    let (options, ks_options) = options(args)?;
    if args.watch_stdin {
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            // Like a kill: the expected state is crash-proof, the database must be too.
            std::process::exit(4);
        });
    }
    let expected_path = args
        .expected
        .clone()
        .unwrap_or_else(|| dir.join(EXPECTED_FILE));
    if !expected_path.exists() && !is_empty_dir(&dir, &expected_path)? {
        return usage(format!(
            "{} holds files but there is no expected state {}: stress needs an empty or new \
             directory, or one a stress run made",
            dir.display(),
            expected_path.display()
        ));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| StressError::Other(format!("creating {}: {e}", dir.display())))?;
    if strata::inspect::is_locked(&RealFs, &dir).map_err(StressError::Engine)? {
        return Err(StressError::Other(format!(
            "{} is in use by another process",
            dir.display()
        )));
    }
    let (state, created) =
        ExpectedState::open_or_create(&expected_path, args.keys).map_err(StressError::State)?;
    let (last_mode, clean) = state.last_run().map_err(StressError::State)?;
    // After a kill in `None` mode only what was dumped is promised.
    let weak = last_mode == Some(WalMode::None) && !clean;
    let start = state.count_start().map_err(StressError::State)?;
    say(&format!(
        "stress: start db={} start={start} wal_mode={} last_wal_mode={} last_clean={clean} \
         threads={} keys={} seed={} duration_s={}",
        dir.display(),
        args.wal_mode.name(),
        match last_mode {
            None => "-",
            Some(WalMode::None) => "none",
            Some(WalMode::Write) => "write",
            Some(WalMode::Fsync) => "fsync",
        },
        args.threads,
        args.keys,
        args.seed,
        args.duration
    ));
    // Before the first run reached its workload the directory may hold a half-created database
    // (a kill inside the first `Db::open`), which is not damage.
    if !created && last_mode.is_some() {
        verify_files(&dir, "startup")?;
    }
    let db = Db::open(&dir, options).map_err(StressError::Engine)?;
    let keyspaces: Vec<Keyspace> = (0..KEYSPACES)
        .map(|i| db.keyspace(&keyspace_name(i), ks_options.clone()))
        .collect::<strata::Result<_>>()
        .map_err(StressError::Engine)?;
    let counters = db
        .keyspace(
            COUNTER_KEYSPACE,
            KeyspaceOptions {
                merge_operator: Some(Arc::new(strata::merge::Counter)),
                ..ks_options.clone()
            },
        )
        .map_err(StressError::Engine)?;
    let report = verify_database(&keyspaces, &counters, &state, weak)?;
    say(&report_line("startup", &report));

    if args.duration > 0.0 {
        state
            .mark_running(args.wal_mode.mode())
            .map_err(StressError::State)?;
        say("stress: started");
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(args.duration);
        let shared = Shared::new(
            &db,
            &keyspaces,
            &counters,
            &state,
            args.threads,
            args.seed,
            deadline,
        );
        std::thread::scope(|scope| {
            for thread in 0..args.threads {
                let shared = &shared;
                scope.spawn(move || workload::run_worker(shared, thread));
            }
            let period = Duration::from_millis(args.report_ms.max(10));
            let mut next = Instant::now() + period;
            while !shared.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5).min(period));
                if Instant::now() >= next {
                    say(&format!("stress: progress ops={}", shared.ops()));
                    next += period;
                }
            }
        });
        if let Some(error) = shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(error);
        }
        let counts: Vec<String> = MIX
            .iter()
            .zip(&shared.counts)
            .map(|((op, _), n)| format!("{}={}", op.name(), n.load(Ordering::Relaxed)))
            .collect();
        say(&format!(
            "stress: done ops={} reads_checked={} txn_gave_up={} elapsed_s={:.1} {}",
            shared.ops(),
            shared.reads_checked.load(Ordering::Relaxed),
            shared.txn_gave_up.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
            counts.join(" ")
        ));
        let report = verify_database(&keyspaces, &counters, &state, false)?;
        say(&report_line("end", &report));
    }
    drop(keyspaces);
    drop(counters);
    db.close().map_err(StressError::Engine)?;
    state.mark_clean().map_err(StressError::State)?;
    verify_files(&dir, "after-close")?;
    Ok(())
}
