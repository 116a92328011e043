//! I/O errors at every operation, and the real file system's permissions and locking (issue 9,
//! "Corruption sweep and I/O errors").
//!
//! **The I/O-error loop** (`every_io_failure_reaches_the_caller_and_loses_nothing`): a workload
//! of single puts, batches across two keyspaces with deletes, flushes (dumps), a compaction, WAL
//! rotations (4 KiB segments), metadata-log rewrites (a 2 KiB threshold), a close and reopen
//! (recovery), a sync and a final close runs once per WAL mode without faults to count its
//! file-system operations `N` (`MemFs::op_count`). Then for every `k < N + 10`, on a fresh
//! `MemFs`, the `k`-th operation fails with one of `FaultKind::{Eio, NoSpace, ShortWrite,
//! SyncFailure}`, once or persistently (the disk is gone), with operations traced
//! (`MemFs::start_trace`) so the test knows which one failed (background threads make the
//! numbering vary a little between runs). The workload goes on after errors. Checks:
//!
//! 1. **The error reaches the caller**: some call of the workload returns `Err`, or the failed
//!    operation is one whose failure the engine absorbs by design (`absorbed` says which and
//!    why: deleting an obsolete run, the automatic metadata-log rewrite before its rename).
//! 2. **A failed WAL write or sync poisons**: after it, every later write of that `Db` (put,
//!    batch, flush, compact, sync) fails.
//! 3. **Nothing is lost**: after the workload, faults are cleared and the database reopened,
//!    both as after a process crash (the file system as it is) and after a power loss
//!    (`MemFs::crash`). The state must be the state after a prefix of the commit order
//!    (batches all or nothing), holding every acknowledged commit (process crash, or `Fsync`
//!    mode), or every commit made durable by a successful sync, flush, compaction or close
//!    (`Write` mode after a power loss). The commit order is the history the database really
//!    has: at the workload's reopen, the commits of the first instance that survived (at least
//!    the acknowledged ones, checked there) followed by the second instance's. The reopened
//!    database takes a write and closes cleanly.
//! 4. **No panic**: each case runs under `catch_unwind`; a panic on an engine thread shows up as
//!    an error or poison naming a panic, which fails the case too.
//!
//! By default every `k` runs in each WAL mode with one of the eight (kind, persistence)
//! combinations, rotating (about 500 cases, 10-15 s in debug). `STRATA_IO_ERRORS=full` runs all
//! eight for every `k` in both modes.
//!
//! Two targeted regressions: `a_failure_during_open_never_loses_data` (every operation of an
//! open failing, every kind, once and persistently; a failed `exists` used to replace the
//! metadata log) and `recovered_writes_are_durable_after_the_next_sync` (`Write` mode: writes
//! replayed after a process crash must become durable with the next sync).
//!
//! **The real file system** (`RealFs`): a database creates its directories 0700 and every file
//! 0600; a second `Db::open` of an open directory, in this process or in another one (the test
//! binary re-executes itself, as `tests/kill.rs` does), fails with `Error::Locked`, whose message
//! names the database and says it is locked.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use strata::fs::{FaultKind, MemFs, TracedOp};
use strata::{Db, Error, Keyspace, KeyspaceOptions, Options, WalMode};

const DIR: &str = "/db";
const KINDS: [FaultKind; 4] = [
    FaultKind::Eio,
    FaultKind::NoSpace,
    FaultKind::ShortWrite,
    FaultKind::SyncFailure,
];

fn options(fs: &MemFs, mode: WalMode) -> Options {
    Options {
        wal_mode: mode,
        wal_segment_size_bytes: 4096,
        range_size_min_bytes: 1024,
        meta_rewrite_threshold_bytes: 2048,
        compaction_threads: 1,
        cache_size_bytes: 1 << 20,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        page_size_bytes: 512,
        range_size_bytes: Some(2048),
        ..KeyspaceOptions::default()
    }
}

type State = [BTreeMap<Vec<u8>, Vec<u8>>; 2];
type Writes = Vec<(usize, Vec<u8>, Option<Vec<u8>>)>;

fn value(n: usize, len: usize) -> Vec<u8> {
    let mut v = format!("v{n}-").into_bytes();
    v.resize(len, b'a' + (n % 26) as u8);
    v
}

/// One step of the workload.
#[derive(Debug, Clone, Copy)]
enum Step {
    Put(usize),
    Batch(usize),
    Flush,
    Compact,
    Sync,
    Reopen,
    Close,
}

impl Step {
    /// The writes of a commit step.
    fn writes(self) -> Option<Writes> {
        match self {
            Step::Put(i) => Some(vec![(
                0,
                format!("p{i:03}").into_bytes(),
                Some(value(i, 150)),
            )]),
            Step::Batch(j) => Some(vec![
                (
                    0,
                    format!("p{:03}", j * 3).into_bytes(),
                    Some(value(j + 500, 120)),
                ),
                (
                    1,
                    format!("q{j:03}").into_bytes(),
                    Some(value(j + 900, 200)),
                ),
                (1, format!("q{:03}", j / 2).into_bytes(), None),
                (0, format!("b{j:03}").into_bytes(), Some(value(j + 700, 80))),
            ]),
            _ => None,
        }
    }
}

fn workload() -> Vec<Step> {
    let mut steps: Vec<Step> = (0..12).map(Step::Put).collect();
    steps.extend((0..6).map(Step::Batch));
    steps.push(Step::Flush);
    steps.extend((12..24).map(Step::Put));
    steps.push(Step::Compact);
    steps.extend((6..10).map(Step::Batch));
    steps.push(Step::Reopen);
    steps.extend((24..32).map(Step::Put));
    steps.push(Step::Sync);
    steps.extend((10..13).map(Step::Batch));
    steps.push(Step::Flush);
    steps.push(Step::Close);
    steps
}

/// What one run of the workload did.
///
/// `history` is the effective commit order: every commit attempted by the current `Db`
/// instance, after the commits of earlier instances that the reopen found (an earlier
/// instance's commits that failed and did not survive are no longer part of it).
#[derive(Default)]
struct Run {
    history: Vec<Writes>,
    /// Where the current instance's commits start in `history`.
    epoch_start: usize,
    /// The length of the history through the last acknowledged commit.
    acked: usize,
    /// The length of the history made durable by a successful sync, flush, compaction or close
    /// (in `Fsync` mode, every acknowledged commit).
    durable: usize,
    /// Every failed step (index and error), in order.
    errors: Vec<(usize, String)>,
    /// Violations seen while running (a write accepted after a WAL sync failure, ...).
    problems: Vec<String>,
}

struct Live {
    db: Db,
    ks: [Keyspace; 2],
}

fn open(fs: &MemFs, mode: WalMode) -> strata::Result<Live> {
    let db = Db::open(DIR, options(fs, mode))?;
    let a = db.keyspace("a", ks_options())?;
    let b = db.keyspace("b", ks_options())?;
    Ok(Live { db, ks: [a, b] })
}

/// Reads both keyspaces by forward scans.
fn read_state(live: &Live) -> strata::Result<State> {
    let mut state = State::default();
    for (i, ks) in live.ks.iter().enumerate() {
        state[i] = ks
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<strata::Result<_>>()?;
    }
    Ok(state)
}

/// Whether the trace from index `since` on holds a failed write or `sync_data` of a WAL segment
/// (either poisons the database: a torn record may be followed by nothing, and an fsync is
/// never retried).
fn wal_write_failed(trace: &[TracedOp], since: usize) -> bool {
    trace.iter().skip(since).any(|t| {
        matches!(t.name, "write" | "sync_data")
            && t.fault.is_some()
            && t.path.extension().is_some_and(|e| e == "wal")
    })
}

impl Run {
    /// After a reopen: finds how many of the previous instance's commits survived (at least every
    /// acknowledged one, as no power was lost), and makes that the history.
    fn reopened(&mut self, state: &State) {
        let states = prefix_states(&self.history);
        match (self.acked..=self.history.len()).find(|&n| states[n] == *state) {
            Some(n) => self.history.truncate(n),
            None => {
                self.problems.push(format!(
                    "the reopen in the workload found no prefix of the {} commits with at least \
                     {} (the acknowledged ones)",
                    self.history.len(),
                    self.acked
                ));
                // Keep going with what the database holds as the best guess.
                self.history.truncate(self.acked.min(self.history.len()));
            }
        }
        self.durable = self.durable.min(self.history.len());
        self.epoch_start = self.history.len();
    }
}

/// Runs the workload on `fs` (which is tracing), continuing after errors (so that a poisoned
/// database is seen refusing later writes) until the database cannot be opened.
fn run_workload(fs: &MemFs, mode: WalMode) -> Run {
    let mut run = Run::default();
    let mut live = match open(fs, mode) {
        Ok(live) => Some(live),
        Err(e) => {
            run.errors.push((0, format!("open: {e}")));
            return run;
        }
    };
    // Where the current `Db` instance's operations start in the trace.
    let mut instance_start = 0;
    for (n, step) in workload().into_iter().enumerate() {
        let Some(l) = live.as_ref() else { break };
        let wal_failed_before = wal_write_failed(&fs.trace(), instance_start);
        let result = match step {
            Step::Put(_) | Step::Batch(_) => {
                let writes = step.writes().expect("a commit step");
                let mut batch = l.db.batch();
                for (ks, key, value) in &writes {
                    match value {
                        Some(v) => batch.put(&l.ks[*ks], key, v),
                        None => batch.delete(&l.ks[*ks], key),
                    };
                }
                run.history.push(writes);
                let result = batch.commit();
                if result.is_ok() {
                    run.acked = run.history.len();
                    if mode == WalMode::Fsync {
                        run.durable = run.acked;
                    }
                }
                result
            }
            Step::Flush => l.db.flush(),
            Step::Compact => l.ks[0].compact(),
            Step::Sync => l.db.sync(),
            Step::Reopen | Step::Close => {
                let Some(Live { db, ks }) = live.take() else {
                    break;
                };
                drop(ks);
                match db.close() {
                    // A clean close syncs the WAL: everything committed is durable.
                    Ok(()) => run.durable = run.history.len(),
                    Err(e) => run.errors.push((n, format!("{step:?} (close): {e}"))),
                }
                if matches!(step, Step::Reopen) {
                    instance_start = fs.trace().len();
                    match open(fs, mode) {
                        Ok(reopened) => {
                            match read_state(&reopened) {
                                Ok(state) => run.reopened(&state),
                                Err(e) => run.problems.push(format!("read after reopen: {e}")),
                            }
                            live = Some(reopened);
                        }
                        Err(e) => run.errors.push((n, format!("{step:?} (open): {e}"))),
                    }
                }
                continue;
            }
        };
        match result {
            Ok(()) => {
                if wal_failed_before {
                    run.problems.push(format!(
                        "step {n} ({step:?}) succeeded after a WAL write or sync failed: not poisoned"
                    ));
                }
                if matches!(step, Step::Flush | Step::Compact | Step::Sync) {
                    run.durable = run.history.len();
                }
            }
            Err(e) => {
                if e.to_string().contains("panicked") {
                    run.problems.push(format!("step {n} ({step:?}): {e}"));
                }
                run.errors.push((n, format!("{step:?}: {e}")));
            }
        }
    }
    if let Some(Live { db, ks }) = live {
        drop(ks);
        if let Err(e) = db.close() {
            run.errors.push((usize::MAX, format!("final close: {e}")));
        }
    }
    run
}

/// The state after each prefix of `attempts` (index 0: nothing).
fn prefix_states(attempts: &[Writes]) -> Vec<State> {
    let mut states = vec![State::default()];
    for writes in attempts {
        let mut next = states.last().cloned().unwrap_or_default();
        for (ks, key, value) in writes {
            match value {
                Some(v) => next[*ks].insert(key.clone(), v.clone()),
                None => next[*ks].remove(key),
            };
        }
        states.push(next);
    }
    states
}

/// Reopens the database on `fs` (faults cleared), reads both keyspaces, writes once and closes.
fn reopen_and_read(fs: &MemFs, mode: WalMode) -> Result<State, String> {
    let db = Db::open(DIR, options(fs, mode)).map_err(|e| format!("reopen: {e}"))?;
    let mut state = State::default();
    let names = db.keyspace_names();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let ks = db.keyspace(name, ks_options()).map_err(|e| e.to_string())?;
        state[i] = ks
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<strata::Result<_>>()
            .map_err(|e| format!("scan {name}: {e}"))?;
        let reverse: Vec<_> = ks
            .iter()
            .rev()
            .map(|r| r.map(|(k, _)| k.to_vec()))
            .collect::<strata::Result<_>>()
            .map_err(|e| format!("reverse scan {name}: {e}"))?;
        if !reverse.iter().rev().eq(state[i].keys()) {
            return Err(format!(
                "reverse scan of {name} differs from the forward scan"
            ));
        }
    }
    let ks = db
        .keyspace("a", ks_options())
        .map_err(|e| format!("keyspace after reopen: {e}"))?;
    ks.put("after-reopen", "ok")
        .map_err(|e| format!("write after reopen: {e}"))?;
    drop(ks);
    db.close().map_err(|e| format!("close after reopen: {e}"))?;
    Ok(state)
}

/// Checks that `actual` is the state after a prefix of the attempts of at least `floor` commits.
fn check_prefix(states: &[State], floor: usize, actual: &State, what: &str) -> Result<(), String> {
    if states[floor..].iter().any(|s| s == actual) {
        return Ok(());
    }
    let matching: Vec<usize> = (0..states.len())
        .filter(|&i| states[i] == *actual)
        .collect();
    Err(format!(
        "{what}: the state is no prefix of the {} commits with at least {floor} \
         (prefixes matching: {matching:?})",
        states.len() - 1
    ))
}

/// What kind of file `path` is, for the summary.
fn file_kind(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".wal") {
        "WAL segment"
    } else if name.ends_with(".run") {
        "run"
    } else if name.ends_with(".run.tmp") {
        "run (temporary)"
    } else if name == "meta.log" {
        "metadata log"
    } else if name == "meta.log.tmp" {
        "metadata log (temporary)"
    } else if name == "LOCK" {
        "lock file"
    } else {
        "directory"
    }
}

/// Operations whose failure the engine absorbs by design, so that no call need return an
/// error (the reopens that follow check that nothing was lost): `trace[at]` failed.
fn absorbed(trace: &[TracedOp], at: usize) -> Option<&'static str> {
    let file = |op: &TracedOp| {
        op.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string()
    };
    let op = &trace[at];
    // The same thread's previous operations (background threads interleave theirs).
    let mut own = trace[..at].iter().rev().filter(|t| t.thread == op.thread);
    let previous = own.next();
    let before_previous = own.next();
    let rewrite_renamed = [previous, before_previous]
        .iter()
        .flatten()
        .any(|p| p.name == "rename" && file(p) == "meta.log.tmp");
    let after_removal_of = |suffix: &str| {
        previous.is_some_and(|p| p.name == "remove_file" && file(p).ends_with(suffix))
    };
    let compaction_thread = op.thread.starts_with("strata-compact");
    match op.name {
        // `Fs::exists` cannot fail (like `Path::exists`): a fault makes it answer `false`.
        "exists" => Some("Fs::exists answers false"),
        // The reaper deletes obsolete runs, then syncs the directory; a failure leaves a file
        // that the metadata log still lists as dropped, and the next open deletes it.
        "remove_file" if file(op).ends_with(".run") => Some("deleting an obsolete run"),
        "sync_dir" if after_removal_of(".run") => Some("deleting an obsolete run"),
        // A compaction thread also deletes WAL segments that dumps have emptied, and only logs a
        // failure (a dump thread's failure poisons): the next trim, or recovery, redoes it.
        "remove_file" | "sync_dir"
            if compaction_thread && (file(op).ends_with(".wal") || after_removal_of(".wal")) =>
        {
            Some("deleting a dumped WAL segment after a compaction")
        }
        // The automatic metadata-log rewrite: a failure before the rename leaves the old log in
        // use, and the commit that triggered the rewrite is already durable.
        _ if file(op) == "meta.log.tmp" => Some("metadata-log rewrite before its rename"),
        // After the rename (directory sync, reopening the new log), a failed automatic rewrite
        // poisons the metadata log: the next metadata commit fails (a dump, creating a keyspace),
        // but the commit that triggered the rewrite is durable and succeeds.
        "sync_dir" | "open_append" if rewrite_renamed => {
            Some("metadata-log rewrite after its rename (poisons the log for later commits)")
        }
        _ => None,
    }
}

/// One case: the workload with the `k`-th operation failing, then the reopen checks.
fn run_case(k: u64, kind: FaultKind, persistent: bool, mode: WalMode) -> Result<String, String> {
    let fs = MemFs::new();
    fs.fail_at(k, kind, persistent);
    fs.start_trace();
    let run = run_workload(&fs, mode);
    let trace = fs.trace();
    fs.stop_trace();
    let mut problems = run.problems.clone();
    let failed = trace.iter().position(|t| t.fault.is_some());
    let mut note = String::from("no fault");
    if let Some(at) = failed {
        let op = &trace[at];
        note = format!("{} {}", op.name, file_kind(&op.path));
        if std::env::var_os("STRATA_IO_ERRORS_TRACE").is_some() {
            for t in &trace[at.saturating_sub(12)..(at + 4).min(trace.len())] {
                println!("  {t:?}");
            }
        }
        if run.errors.is_empty() {
            match absorbed(&trace, at) {
                Some(why) => note = format!("absorbed: {why}"),
                None => problems.push(format!(
                    "the failure of op {} ({} {}) reached no caller",
                    op.index,
                    op.name,
                    op.path.display()
                )),
            }
        }
    }
    let states = prefix_states(&run.history);
    // As after a process crash: the file system keeps everything written.
    let restart = fs.fork();
    match reopen_and_read(&restart, mode) {
        Ok(state) => {
            if let Err(e) = check_prefix(&states, run.acked, &state, "after a restart") {
                problems.push(e);
            }
        }
        Err(e) => problems.push(format!("after a restart: {e}")),
    }
    // After a power loss.
    let power_loss = fs.fork();
    power_loss.crash();
    let floor = if mode == WalMode::Fsync {
        run.acked
    } else {
        run.durable
    };
    match reopen_and_read(&power_loss, mode) {
        Ok(state) => {
            if let Err(e) = check_prefix(&states, floor, &state, "after a power loss") {
                problems.push(e);
            }
        }
        Err(e) => problems.push(format!("after a power loss: {e}")),
    }
    if problems.is_empty() {
        Ok(note)
    } else {
        Err(format!(
            "{problems:#?}\n  errors: {:?}",
            run.errors.iter().take(4).collect::<Vec<_>>()
        ))
    }
}

#[test]
fn every_io_failure_reaches_the_caller_and_loses_nothing() {
    let started = Instant::now();
    let full = std::env::var("STRATA_IO_ERRORS").is_ok_and(|v| v == "full");
    let mut combos = Vec::new();
    for persistent in [false, true] {
        for kind in KINDS {
            combos.push((kind, persistent));
        }
    }
    let mut cases = Vec::new();
    let mut totals = Vec::new();
    for (m, mode) in [WalMode::Fsync, WalMode::Write].into_iter().enumerate() {
        let probe = MemFs::new();
        let run = run_workload(&probe, mode);
        assert!(
            run.errors.is_empty(),
            "{mode:?}: the workload fails without faults: {:?}",
            run.errors
        );
        assert_eq!(run.acked, run.history.len());
        let total = probe.op_count();
        let runs = probe
            .files()
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "run"))
            .count();
        assert!(runs >= 2, "{mode:?}: the workload should leave runs");
        assert!(
            total > 150,
            "{mode:?}: workload too small: {total} operations"
        );
        totals.push((mode, total));
        // A little past the count: background threads make it vary a little from run to run.
        for k in 0..total + 10 {
            if full {
                cases.extend(combos.iter().map(|&(kind, p)| (k, kind, p, mode)));
            } else {
                let (kind, p) = combos[(k as usize + 3 * m) % combos.len()];
                cases.push((k, kind, p, mode));
            }
        }
    }
    let mut failures = Vec::new();
    let mut notes: BTreeMap<String, usize> = BTreeMap::new();
    for &(k, kind, persistent, mode) in &cases {
        let what = format!("{mode:?}, op {k} fails with {kind:?} (persistent: {persistent})");
        match panic::catch_unwind(AssertUnwindSafe(|| run_case(k, kind, persistent, mode))) {
            Ok(Ok(note)) => *notes.entry(note).or_default() += 1,
            Ok(Err(e)) => failures.push(format!("{what}: {e}")),
            Err(payload) => failures.push(format!(
                "{what}: PANIC: {}",
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    println!(
        "I/O-error loop: {} cases over {totals:?} operations in {:.1} s (full: {full})",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    for (note, n) in &notes {
        println!("  {note}: {n}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The checks of the loop can fail: a state missing an acknowledged commit is not accepted.
#[test]
fn prefix_check_rejects_a_lost_commit() {
    let attempts: Vec<Writes> = (0..3).map(|i| Step::Put(i).writes().unwrap()).collect();
    let states = prefix_states(&attempts);
    assert!(check_prefix(&states, 2, &states[3], "").is_ok());
    assert!(check_prefix(&states, 2, &states[1], "").is_err());
    let mut holed = states[3].clone();
    holed[0].remove(&b"p001"[..]);
    assert!(check_prefix(&states, 0, &holed, "").is_err());
}

const LOCK_CHILD_ENV: &str = "STRATA_IO_ERRORS_LOCK_CHILD_DIR";
const LOCK_CHILD_TEST: &str = "lock_child_tries_to_open";

/// The child process of `second_process_gets_a_clear_lock_error`: tries to open the database
/// and prints the outcome. Does nothing in a normal test run.
#[test]
#[ignore = "the child process of second_process_gets_a_clear_lock_error"]
fn lock_child_tries_to_open() {
    let Ok(dir) = std::env::var(LOCK_CHILD_ENV) else {
        return;
    };
    match Db::open(&dir, Options::default()) {
        Ok(_) => println!("outcome: opened"),
        Err(e @ Error::Locked { .. }) => println!("outcome: locked: {e}"),
        Err(e) => println!("outcome: other error: {e:?}"),
    }
}

#[test]
fn second_process_gets_a_clear_lock_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir, Options::default()).unwrap();
    let child = |dir: &Path| {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", LOCK_CHILD_TEST, "--nocapture", "--ignored"])
            .env(LOCK_CHILD_ENV, dir)
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "child failed: {stdout}");
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("outcome: ").map(str::to_string))
            .unwrap_or_else(|| panic!("no outcome from the child: {stdout}"))
    };
    let outcome = child(&dir);
    assert!(
        outcome.starts_with("locked: ") && outcome.contains("is locked by another process"),
        "second process: {outcome}"
    );
    assert!(
        outcome.contains(&dir.display().to_string()),
        "the error names the database: {outcome}"
    );
    // The same process cannot open it twice either.
    match Db::open(&dir, Options::default()) {
        Err(Error::Locked { path }) => assert!(path.starts_with(&dir)),
        other => panic!("second open in the same process: {other:?}"),
    }
    db.close().unwrap();
    assert_eq!(child(&dir), "opened", "the lock is released by close");
}

#[test]
fn files_are_created_0600_in_a_0700_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("db");
    let options = Options {
        wal_segment_size_bytes: 4096,
        ..Options::default()
    };
    let db = Db::open(&dir, options.clone()).unwrap();
    let ks = db.keyspace("t", KeyspaceOptions::default()).unwrap();
    for i in 0..200 {
        ks.put(format!("k{i:04}"), vec![b'v'; 100]).unwrap();
    }
    db.flush().unwrap();
    ks.put("after", "flush").unwrap();
    drop(ks);
    db.close().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "database directory");
    assert_eq!(
        mode(dir.parent().unwrap()),
        0o700,
        "created parent directory"
    );
    let mut kinds = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        let kind = path.extension().map_or("other", |e| {
            if e == "run" {
                "run"
            } else if e == "wal" {
                "wal"
            } else {
                "other"
            }
        });
        *kinds.entry(kind).or_insert(0) += 1;
    }
    assert!(
        kinds.contains_key("run") && kinds.contains_key("wal") && kinds["other"] >= 2,
        "expected runs, WAL segments, the metadata log and the lock file: {kinds:?}"
    );
}

/// In `Write` mode a commit is acknowledged once the OS has it; after a process crash the next
/// open replays it from the unsynced WAL tail and it is visible again. A later `Db::sync` must
/// then make it durable with everything after it: otherwise a power loss keeps the newer,
/// synced commit and loses the older, recovered one (not a prefix of the commit order).
#[test]
fn recovered_writes_are_durable_after_the_next_sync() {
    let fs = MemFs::new();
    let live = open(&fs, WalMode::Write).unwrap();
    for i in 0..5 {
        live.ks[0].put(format!("k{i}"), "before the crash").unwrap();
    }
    // A process crash: the files as they are, nothing more synced (the fork shares no handle or
    // lock with the running database).
    let after_crash = fs.fork();
    drop(live);
    let live = open(&after_crash, WalMode::Write).unwrap();
    assert_eq!(read_state(&live).unwrap()[0].len(), 5, "the replay");
    live.ks[0].put("k5", "after the restart").unwrap();
    live.db.sync().unwrap();
    after_crash.crash();
    drop(live);
    let live = open(&after_crash, WalMode::Write).unwrap();
    let keys: Vec<_> = read_state(&live).unwrap()[0].keys().cloned().collect();
    assert_eq!(
        keys,
        (0..6)
            .map(|i| format!("k{i}").into_bytes())
            .collect::<Vec<_>>(),
        "after a sync and a power loss"
    );
}

/// Each operation of an open failing (once, or from then on) leaves the database as it was:
/// after clearing the fault, it opens with all its data. (A failed `exists` of the metadata log
/// used to make the open replace the log with an empty one, and then delete every run as a
/// stray.)
#[test]
fn a_failure_during_open_never_loses_data() {
    let pristine = MemFs::new();
    let live = open(&pristine, WalMode::Fsync).unwrap();
    for i in 0..40 {
        live.ks[i % 2]
            .put(format!("k{i:02}"), value(i, 100))
            .unwrap();
        if i == 20 {
            live.db.flush().unwrap();
        }
    }
    let expected = read_state(&live).unwrap();
    drop(live);
    let probe = pristine.fork();
    let start = probe.op_count();
    drop(open(&probe, WalMode::Fsync).unwrap());
    let ops = probe.op_count() - start;
    let mut cases = 0;
    for k in 0..ops {
        for kind in KINDS {
            for persistent in [false, true] {
                let fs = pristine.fork();
                fs.fail_at(fs.op_count() + k, kind, persistent);
                let what =
                    format!("op {k} of the open fails with {kind:?} (persistent: {persistent})");
                if let Ok(live) = open(&fs, WalMode::Fsync) {
                    assert_eq!(read_state(&live).unwrap(), expected, "{what}");
                }
                fs.clear_faults();
                let live = open(&fs, WalMode::Fsync).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(
                    read_state(&live).unwrap(),
                    expected,
                    "{what}: after clearing"
                );
                cases += 1;
            }
        }
    }
    assert!(cases > 100, "{cases} cases");
}
