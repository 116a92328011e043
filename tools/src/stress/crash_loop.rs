//! `strata stress crash-loop`: RocksDB's crash test for strata.
//!
//! Each cycle spawns `strata stress` (this executable) on the cycle's database directory with
//! options drawn from the seed, waits until it has verified the previous crash and started its
//! workload, lets it run for a random `--min-run-ms..=--max-run-ms`, and kills it with SIGKILL.
//! In about one cycle in ten (`--startup-kill-percent`) the kill comes at a random moment from
//! the spawn instead, so it can land in recovery or in the start-up verification. The next
//! cycle's child verifies what the kill left; a child that exits by itself (a verification
//! failure, an engine error, a panic) ends the loop with its stderr and the directory kept.
//!
//! Options per cycle: WAL mode (from `--wal-modes`), worker threads, memory limit (64K..8M, so
//! dumps happen all the time), cache size, WAL segment size, range size clamp, metadata-log
//! rewrite threshold, dump and compaction threads. Keyspace options (page size, bloom filter,
//! dump and compaction compression, run_count_per_level, run_size_ratio, range size) are fixed
//! when a keyspace is created, so they are drawn per *database*: every `--fresh-every` cycles
//! the loop verifies the database a last time, deletes it and starts a new one.
//!
//! After the last cycle a final child with `--duration 0` verifies the last crash.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::model::{derive_seed, Rng};
use super::{StressError, WalModeArg};

/// How long a child may take to reach its workload (recovery and verification of a large
/// database in a debug build on a loaded machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(600);

/// Options of `strata stress crash-loop`.
#[derive(Args, Debug, Clone)]
pub struct CrashLoopArgs {
    /// Work directory: each database lives in DIR/db-NNNN (created).
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Kill-and-restart cycles.
    #[arg(long, default_value_t = 100)]
    pub cycles: u64,
    /// Shortest workload before the kill, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub min_run_ms: u64,
    /// Longest workload before the kill, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub max_run_ms: u64,
    /// Seed of the option and kill schedule (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most worker threads of a child (each cycle draws 1..=this).
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Keys of every database.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Start a new database (with new keyspace options) every this many cycles; 0: never.
    #[arg(long, default_value_t = 25)]
    pub fresh_every: u64,
    /// WAL modes to draw from, comma-separated (none, write, fsync). `none` is verified only
    /// weakly after a kill: values must be ones written, nothing acknowledged is promised.
    #[arg(long, default_value = "write,fsync")]
    pub wal_modes: String,
    /// Percent of cycles killed at a random moment from the spawn (possibly during recovery
    /// or verification) instead of during the workload.
    #[arg(long, default_value_t = 10)]
    pub startup_kill_percent: u64,
    /// Keep the directories of finished databases (default: delete them once verified).
    #[arg(long)]
    pub keep: bool,
    /// Do not copy the database before each start-up to DIR/db-NNNN.before (the copy lets a
    /// failure be replayed on exactly what the kill left; skip it for large databases).
    #[arg(long)]
    pub no_copy: bool,
}

/// What a child printed, as the reader thread saw it.
#[derive(Debug, Default)]
struct ChildView {
    started: Option<Instant>,
    ops: u64,
    verified: Vec<(String, String)>,
    lines: Vec<String>,
}

/// Fields of a `stress: ... k=v k=v` line.
fn fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn text_field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("?", |(_, v)| v.as_str())
}

/// The value after `flag` in an argument list.
fn flag_value<'a>(argv: &'a [String], flag: &str) -> &'a str {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .map_or("?", String::as_str)
}

fn field(fields: &[(String, String)], name: &str) -> u64 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Totals over the loop.
#[derive(Debug, Default)]
struct Totals {
    cycles: u64,
    startup_kills: u64,
    databases: u64,
    ops: u64,
    verifications: u64,
    weak_verifications: u64,
    keys_verified: u64,
    pending_old: u64,
    pending_new: u64,
    batches_old: u64,
    batches_new: u64,
}

impl Totals {
    fn add_verification(&mut self, v: &[(String, String)]) {
        self.verifications += 1;
        if v.iter().any(|(k, val)| k == "checks" && val == "weak") {
            self.weak_verifications += 1;
        }
        self.keys_verified += field(v, "keys");
        self.pending_old += field(v, "pending_old");
        self.pending_new += field(v, "pending_new");
        self.batches_old += field(v, "batches_old");
        self.batches_new += field(v, "batches_new");
    }
}

/// The options of one database (keyspace options: fixed at creation).
fn database_args(rng: &mut Rng) -> Vec<String> {
    let page = *rng.pick(&["512", "1K", "4K", "8K", "32K"]);
    let compression = ["none", "lz4", "zstd:1", "zstd:3"];
    let dump = *rng.pick(&compression);
    let compact = *rng.pick(&compression);
    let bloom = *rng.pick(&["0.01", "0.1", "1.0"]);
    let count = *rng.pick(&["1", "2", "3", "4"]);
    let ratio = *rng.pick(&["1.5", "2", "3.5", "6"]);
    let range = *rng.pick(&["16K", "64K", "1M", "auto"]);
    [
        ("--page-size", page),
        ("--dump-compression", dump),
        ("--compaction-compression", compact),
        ("--bloom-fp-rate", bloom),
        ("--run-count-per-level", count),
        ("--run-size-ratio", ratio),
        ("--range-size", range),
    ]
    .iter()
    .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
    .collect()
}

/// The options of one cycle (database options, which may change at every open).
fn cycle_args(rng: &mut Rng, args: &CrashLoopArgs, modes: &[WalModeArg]) -> Vec<String> {
    let threads = rng.between(1, args.threads as u64).to_string();
    let mode = rng.pick(modes).name();
    let memory = *rng.pick(&["64K", "128K", "256K", "1M", "8M"]);
    let cache = *rng.pick(&["64K", "1M", "32M"]);
    let segment = *rng.pick(&["16K", "256K", "64M"]);
    let range_min = *rng.pick(&["4K", "64K", "16M"]);
    let meta = *rng.pick(&["8K", "64K", "4M"]);
    let dump_threads = *rng.pick(&["1", "2"]);
    let compaction_threads = *rng.pick(&["1", "2", "3"]);
    [
        ("--threads", threads.as_str()),
        ("--wal-mode", mode),
        ("--memory-limit", memory),
        ("--cache-size", cache),
        ("--wal-segment-size", segment),
        ("--range-size-min", range_min),
        ("--meta-rewrite-threshold", meta),
        ("--dump-threads", dump_threads),
        ("--compaction-threads", compaction_threads),
    ]
    .iter()
    .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
    .collect()
}

fn parse_modes(text: &str) -> Result<Vec<WalModeArg>, StressError> {
    let modes: Vec<WalModeArg> = text
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| match m {
            "none" => Ok(WalModeArg::None),
            "write" => Ok(WalModeArg::Write),
            "fsync" => Ok(WalModeArg::Fsync),
            _ => Err(StressError::Usage(format!(
                "--wal-modes: unknown mode {m:?} (none, write, fsync)"
            ))),
        })
        .collect::<Result<_, _>>()?;
    if modes.is_empty() {
        return Err(StressError::Usage("--wal-modes names no mode".into()));
    }
    Ok(modes)
}

/// A running child with threads collecting its output.
struct Running {
    child: Child,
    view: Arc<Mutex<ChildView>>,
    stdout: std::thread::JoinHandle<()>,
    stderr: std::thread::JoinHandle<String>,
    command: String,
}

fn spawn(args: &[String]) -> Result<Running, StressError> {
    let exe = std::env::current_exe()
        .map_err(|e| StressError::Other(format!("finding this executable: {e}")))?;
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StressError::Other(format!("spawning {}: {e}", exe.display())))?;
    let view = Arc::new(Mutex::new(ChildView::default()));
    let out = child.stdout.take();
    let shared = Arc::clone(&view);
    let stdout = std::thread::spawn(move || {
        let Some(out) = out else { return };
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let mut v = shared.lock().unwrap_or_else(|p| p.into_inner());
            if line == "stress: started" {
                v.started = Some(Instant::now());
            } else if let Some(rest) = line.strip_prefix("stress: progress ") {
                v.ops = field(&fields(rest), "ops");
            } else if let Some(rest) = line.strip_prefix("stress: done ") {
                v.ops = field(&fields(rest), "ops");
            } else if line.starts_with("stress: verified when=startup") {
                v.verified = fields(&line);
            }
            v.lines.push(line);
        }
    });
    let err = child.stderr.take();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut err) = err {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    let command = format!("strata {}", args.join(" "));
    Ok(Running {
        child,
        view,
        stdout,
        stderr,
        command,
    })
}

/// How a child ended.
struct Ended {
    view: ChildView,
    stderr: String,
    /// The exit code if it exited by itself (`None`: killed by us).
    exited: Option<Option<i32>>,
}

fn finish(mut running: Running, kill: bool) -> Result<Ended, StressError> {
    let exited = running
        .child
        .try_wait()
        .map_err(|e| StressError::Other(format!("waiting for the child: {e}")))?;
    if exited.is_none() && kill {
        // SIGKILL on Unix.
        running
            .child
            .kill()
            .map_err(|e| StressError::Other(format!("killing the child: {e}")))?;
    }
    let status = running
        .child
        .wait()
        .map_err(|e| StressError::Other(format!("waiting for the child: {e}")))?;
    let _ = running.stdout.join();
    let stderr = running.stderr.join().unwrap_or_default();
    let view = std::mem::take(&mut *running.view.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Ended {
        view,
        stderr,
        exited: if exited.is_some() || !kill {
            Some(status.code())
        } else {
            None
        },
    })
}

/// Where the state a kill left is copied before the next child opens it.
fn before_path(dir: &Path) -> PathBuf {
    dir.with_extension("before")
}

/// Copies the database directory (flat: the engine makes no subdirectories) to
/// [`before_path`], so that a failing verification can be replayed on exactly what the kill
/// left: the failing child itself changes the directory (recovery, dumps, compaction).
fn preserve(dir: &Path) -> Result<(), StressError> {
    let to = before_path(dir);
    let io = |what: &str, path: &Path, e: std::io::Error| {
        StressError::Other(format!("{what} {}: {e}", path.display()))
    };
    if to.exists() {
        std::fs::remove_dir_all(&to).map_err(|e| io("removing", &to, e))?;
    }
    if !dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&to).map_err(|e| io("creating", &to, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| io("listing", dir, e))? {
        let entry = entry.map_err(|e| io("listing", dir, e))?;
        let path = entry.path();
        if path.is_file() {
            // A file the engine removes between the listing and the copy is simply not copied.
            match std::fs::copy(&path, to.join(entry.file_name())) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("copying", &path, e)),
            }
        }
    }
    Ok(())
}

fn child_failed(
    cycle: &str,
    command: &str,
    dir: &Path,
    ended: &Ended,
    keys: u64,
    copied: bool,
) -> StressError {
    let code = ended.exited.flatten();
    let replay = if copied {
        format!(
            "The state the kill left, before this child opened it, is in {before}; to verify it \
             again (on a copy: verifying changes it):\n  cp -a {before} /tmp/replay && \
             strata stress --db /tmp/replay --keys {keys} --duration 0\n",
            before = before_path(dir).display()
        )
    } else {
        String::new()
    };
    let message = format!(
        "{cycle}: the child exited by itself with {}:\n{}\n--- its stdout (last lines) ---\n{}\n\
         --- command ---\n{command}\n{replay}\
         The database as the child left it is in {dir}; to verify it again:\n  \
         strata stress --db {dir} --keys {keys} --duration 0",
        code.map_or("a signal".to_string(), |c| format!("exit code {c}")),
        ended.stderr.trim_end(),
        ended
            .view
            .lines
            .iter()
            .rev()
            .take(8)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        dir = dir.display(),
    );
    if code == Some(1) {
        StressError::Corrupt(message)
    } else {
        StressError::Other(message)
    }
}

/// Runs a child with `--duration 0` (verify and exit) and checks it succeeds.
fn verify_only(
    base: &[String],
    label: &str,
    dir: &Path,
    keys: u64,
    copy: bool,
    totals: &mut Totals,
) -> Result<(), StressError> {
    let mut argv = base.to_vec();
    argv.extend(["--duration".into(), "0".into()]);
    if copy {
        preserve(dir)?;
    }
    let running = spawn(&argv)?;
    let command = running.command.clone();
    let ended = finish(running, false)?;
    if ended.exited != Some(Some(0)) {
        return Err(child_failed(label, &command, dir, &ended, keys, copy));
    }
    totals.add_verification(&ended.view.verified);
    println!(
        "{label}: verified {} keys ({} checks) of {}",
        field(&ended.view.verified, "keys"),
        text_field(&ended.view.verified, "checks"),
        dir.display()
    );
    Ok(())
}

/// Runs the crash loop.
///
/// # Errors
/// [`StressError::Corrupt`] when a child found a verification failure (exit code 1), other
/// variants for usage and errors of the children.
pub fn run(args: &CrashLoopArgs) -> Result<(), StressError> {
    let modes = parse_modes(&args.wal_modes)?;
    if args.min_run_ms > args.max_run_ms {
        return Err(StressError::Usage(
            "--min-run-ms is above --max-run-ms".into(),
        ));
    }
    if args.threads == 0 || args.threads > super::expected::MAX_THREADS {
        return Err(StressError::Usage(format!(
            "--threads {} is outside 1..={}",
            args.threads,
            super::expected::MAX_THREADS
        )));
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    std::fs::create_dir_all(&args.db)
        .map_err(|e| StressError::Other(format!("creating {}: {e}", args.db.display())))?;
    println!(
        "crash-loop: {} cycles, seed {seed}, keys {}, up to {} threads, runs of {}..={} ms, \
         WAL modes {}, {}, work directory {}",
        args.cycles,
        args.keys,
        args.threads,
        args.min_run_ms,
        args.max_run_ms,
        args.wal_modes,
        if args.fresh_every == 0 {
            "one database".to_string()
        } else {
            format!("a new database every {} cycles", args.fresh_every)
        },
        args.db.display()
    );
    let copy = !args.no_copy;
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut current: Option<(PathBuf, Vec<String>)> = None;
    let child_duration = (args.max_run_ms / 1000 * 10).max(600).to_string();
    for cycle in 0..args.cycles {
        let epoch = cycle.checked_div(args.fresh_every).unwrap_or(0);
        let dir = args.db.join(format!("db-{epoch:04}"));
        if current.as_ref().is_none_or(|(d, _)| *d != dir) {
            if let Some((old, base)) = current.take() {
                verify_only(&base, "final", &old, args.keys, copy, &mut totals)?;
                if !args.keep {
                    for path in [old.clone(), before_path(&old)] {
                        if path.exists() {
                            std::fs::remove_dir_all(&path).map_err(|e| {
                                StressError::Other(format!("removing {}: {e}", path.display()))
                            })?;
                        }
                    }
                }
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| StressError::Other(format!("removing {}: {e}", dir.display())))?;
            }
            let mut rng = Rng::new(derive_seed(seed, 1 << 32 | epoch));
            let mut base: Vec<String> = vec![
                "stress".into(),
                "--db".into(),
                dir.display().to_string(),
                "--keys".into(),
                args.keys.to_string(),
            ];
            base.extend(database_args(&mut rng));
            println!("database {}: {}", dir.display(), base[5..].join(" "));
            totals.databases += 1;
            current = Some((dir.clone(), base));
        }
        let Some((dir, base)) = &current else {
            return Err(StressError::Other("no database".into()));
        };
        let mut rng = Rng::new(derive_seed(seed, cycle));
        let mut argv = base.clone();
        argv.extend(cycle_args(&mut rng, args, &modes));
        argv.extend([
            "--seed".into(),
            rng.next_u64().to_string(),
            "--duration".into(),
            child_duration.clone(),
            "--report-ms".into(),
            "100".into(),
            "--watch-stdin".into(),
        ]);
        let startup_kill = rng.chance(args.startup_kill_percent, 100);
        let run_ms = rng.between(args.min_run_ms, args.max_run_ms);
        let label = format!("cycle {}/{}", cycle + 1, args.cycles);
        if copy {
            preserve(dir)?;
        }
        let mut running = spawn(&argv)?;
        let command = running.command.clone();
        let spawned = Instant::now();
        let kill_at =
            startup_kill.then(|| spawned + Duration::from_millis(rng.below(args.max_run_ms + 1)));
        // Wait for the kill moment; a child that exits by itself has failed.
        let mut failed = false;
        loop {
            std::thread::sleep(Duration::from_millis(2));
            let started_at = running
                .view
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .started;
            let due = kill_at.or(started_at.map(|s| s + Duration::from_millis(run_ms)));
            if due.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let exited = running
                .child
                .try_wait()
                .map_err(|e| StressError::Other(format!("waiting for the child: {e}")))?;
            if exited.is_some() || (started_at.is_none() && spawned.elapsed() > STARTUP_TIMEOUT) {
                failed = true;
                break;
            }
        }
        let killed_at = Instant::now();
        let ended = finish(running, true)?;
        if failed || ended.exited.is_some() {
            return Err(child_failed(&label, &command, dir, &ended, args.keys, copy));
        }
        totals.cycles += 1;
        if startup_kill {
            totals.startup_kills += 1;
        }
        totals.ops += ended.view.ops;
        let v = &ended.view.verified;
        let verified = if v.is_empty() {
            "not verified (killed first)".to_string()
        } else {
            totals.add_verification(v);
            format!(
                "verified {} keys ({}{}; in flight not applied/applied {}/{}, batches {}/{})",
                field(v, "keys"),
                text_field(v, "checks"),
                match field(v, "weak_differences") {
                    0 => String::new(),
                    n => format!(", {n} keys older than acknowledged"),
                },
                field(v, "pending_old"),
                field(v, "pending_new"),
                field(v, "batches_old"),
                field(v, "batches_new")
            )
        };
        let killed = match ended.view.started {
            Some(s) => format!(
                "killed after {} ms of workload",
                killed_at.saturating_duration_since(s).as_millis()
            ),
            None => format!(
                "killed during start-up, {} ms after the spawn",
                killed_at.duration_since(spawned).as_millis()
            ),
        };
        println!(
            "{label}: wal {} threads {} memory {} | {verified} | {} ops | {killed}",
            flag_value(&argv, "--wal-mode"),
            flag_value(&argv, "--threads"),
            flag_value(&argv, "--memory-limit"),
            ended.view.ops,
        );
    }
    if let Some((dir, base)) = &current {
        verify_only(base, "final", dir, args.keys, copy, &mut totals)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "crash-loop summary: cycles {} ({} killed at a random moment from the spawn), databases {}, \
         ops {}, verifications {} ({} weak), keys verified {}, writes in flight at a kill: {} \
         not applied / {} applied, batches in flight: {} not applied / {} applied, failures 0, \
         {secs:.1} s, seed {seed}",
        totals.cycles,
        totals.startup_kills,
        totals.databases,
        totals.ops,
        totals.verifications,
        totals.weak_verifications,
        totals.keys_verified,
        totals.pending_old,
        totals.pending_new,
        totals.batches_old,
        totals.batches_new
    );
    Ok(())
}
