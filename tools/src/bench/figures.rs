//! Engine and operating-system figures around a workload: snapshots of `Db::stats()` and of
//! `/proc/self/io` before and after, and the amplification figures computed from their deltas.

use std::time::{Duration, Instant};

use strata::{Db, DbStats};

use super::output::EngineFigures;
use super::BenchError;

/// This process's I/O counters from `/proc/self/io` (Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcIo {
    /// Bytes this process caused to be sent to the block layer (counted when pages are dirtied).
    pub write_bytes: u64,
    /// Bytes this process caused to be read from the block layer.
    pub read_bytes: u64,
}

impl ProcIo {
    /// The current counters, or `None` where `/proc/self/io` is not readable.
    pub fn read() -> Option<ProcIo> {
        let text = std::fs::read_to_string("/proc/self/io").ok()?;
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(ProcIo {
            write_bytes: field("write_bytes")?,
            read_bytes: field("read_bytes")?,
        })
    }
}

/// The database's and the OS's counters at one moment.
#[derive(Debug, Clone)]
pub struct Probe {
    stats: DbStats,
    io: Option<ProcIo>,
}

impl Probe {
    /// Takes the snapshot.
    pub fn take(db: &Db) -> Probe {
        Probe {
            stats: db.stats(),
            io: ProcIo::read(),
        }
    }
}

/// Sums of the per-keyspace counters.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    user_bytes: u64,
    run_bytes_written: u64,
    run_bytes_on_disk: u64,
    runs: u64,
    memtable_bytes: u64,
    dumps: u64,
    compactions: u64,
    gets: u64,
    runs_probed: u64,
    bloom_checks: u64,
    bloom_negatives: u64,
    pages_read: u64,
    bytes_read: u64,
}

fn sums(stats: &DbStats) -> Sums {
    let mut s = Sums::default();
    for ks in &stats.keyspaces {
        s.user_bytes += ks.user_bytes_written;
        s.run_bytes_written += ks.dump_bytes_out + ks.compaction_bytes_out;
        s.run_bytes_on_disk += ks.run_bytes_on_disk;
        s.runs += ks.runs as u64;
        s.memtable_bytes += ks.memtable_bytes;
        s.dumps += ks.dumps;
        s.compactions += ks.compactions;
        s.gets += ks.gets;
        s.runs_probed += ks.runs_probed;
        s.bloom_checks += ks.bloom_checks;
        s.bloom_negatives += ks.bloom_negatives;
        s.pages_read += ks.pages_read;
        s.bytes_read += ks.bytes_read;
    }
    s
}

/// Figures that newer engine versions add to `DbStats` (ranges, compaction debt, the engine's
/// own space amplification). They are read by their JSON names (which `DbStats` keeps stable),
/// so the benchmark works with engines that have them and engines that do not.
#[derive(Debug, Default, Clone, Copy)]
struct Extra {
    ranges: Option<u64>,
    max_runs_per_range: Option<u64>,
    compaction_debt_bytes: Option<u64>,
    compacting: bool,
    space_amp: Option<f64>,
}

fn extra(stats: &DbStats) -> Extra {
    let mut out = Extra::default();
    let Ok(value) = serde_json::to_value(stats) else {
        return out;
    };
    let add = |acc: Option<u64>, v: Option<u64>| match (acc, v) {
        (_, None) => acc,
        (a, Some(v)) => Some(a.unwrap_or(0) + v),
    };
    for ks in value["keyspaces"].as_array().into_iter().flatten() {
        out.ranges = add(out.ranges, ks.get("ranges").and_then(|v| v.as_u64()));
        out.compaction_debt_bytes = add(
            out.compaction_debt_bytes,
            ks.get("compaction_debt_bytes").and_then(|v| v.as_u64()),
        );
        if let Some(amp) = ks.get("space_amplification").and_then(|v| v.as_f64()) {
            out.space_amp = Some(out.space_amp.map_or(amp, |a: f64| a.max(amp)));
        }
        for range in ks
            .get("range_details")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            out.compacting |= range.get("compacting").and_then(|v| v.as_bool()) == Some(true);
            if let Some(runs) = range.get("runs").and_then(|v| v.as_u64()) {
                out.max_runs_per_range = Some(out.max_runs_per_range.unwrap_or(0).max(runs));
            }
        }
    }
    out
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// The figures of the interval between two probes of the same open database. `live_keys` and
/// `entry_bytes` (key size + value size) give the logical size that space amplification divides
/// by.
pub fn between(before: &Probe, after: &Probe, live_keys: u64, entry_bytes: u64) -> EngineFigures {
    let (b, a) = (sums(&before.stats), sums(&after.stats));
    let after_extra = extra(&after.stats);
    let d = |x: u64, y: u64| y.saturating_sub(x);
    let user = d(b.user_bytes, a.user_bytes);
    let runs_written = d(b.run_bytes_written, a.run_bytes_written);
    let wal = d(
        before.stats.wal.bytes_written,
        after.stats.wal.bytes_written,
    );
    let os = match (before.io, after.io) {
        (Some(x), Some(y)) => Some((
            d(x.write_bytes, y.write_bytes),
            d(x.read_bytes, y.read_bytes),
        )),
        _ => None,
    };
    let os_write_bytes = os.map(|o| o.0);
    // write_bytes is 0 on file systems that do not account (tmpfs, some overlays): n/a then.
    let os_write_amp = match os_write_bytes {
        Some(w) if w > 0 => ratio(w, user),
        _ => None,
    };
    let logical = live_keys * entry_bytes;
    let (bc, ac) = (&before.stats.cache, &after.stats.cache);
    let hits = d(bc.hits, ac.hits);
    let misses = d(bc.misses, ac.misses);
    let commits = d(before.stats.wal.commits, after.stats.wal.commits);
    let groups = d(before.stats.wal.groups, after.stats.wal.groups);
    let gets = d(b.gets, a.gets);
    let (bm, am) = (&before.stats.memory, &after.stats.memory);
    EngineFigures {
        user_bytes_written: user,
        run_bytes_written: runs_written,
        wal_bytes_written: wal,
        write_amp: ratio(runs_written, user),
        write_amp_with_wal: ratio(runs_written + wal, user),
        os_write_bytes,
        os_read_bytes: os.map(|o| o.1),
        os_write_amp,
        run_bytes_on_disk: a.run_bytes_on_disk,
        memtable_bytes: a.memtable_bytes,
        live_keys,
        logical_bytes: logical,
        space_amp: ratio(a.run_bytes_on_disk, logical),
        runs: a.runs,
        ranges: after_extra.ranges,
        max_runs_per_range: after_extra.max_runs_per_range,
        compaction_debt_bytes: after_extra.compaction_debt_bytes,
        engine_space_amp: after_extra.space_amp,
        dumps: d(b.dumps, a.dumps),
        compactions: d(b.compactions, a.compactions),
        stalls: d(bm.stalls, am.stalls),
        stall_ms: d(bm.stall_time_ms, am.stall_time_ms),
        longest_stall_ms: am.longest_stall_ms,
        throttled_commits: d(bm.throttled_commits, am.throttled_commits),
        cache_hits: hits,
        cache_misses: misses,
        cache_hit_rate: ratio(hits, hits + misses),
        bloom_checks: d(b.bloom_checks, a.bloom_checks),
        bloom_negatives: d(b.bloom_negatives, a.bloom_negatives),
        gets,
        runs_probed: d(b.runs_probed, a.runs_probed),
        read_amp: ratio(d(b.runs_probed, a.runs_probed), gets),
        pages_read: d(b.pages_read, a.pages_read),
        page_bytes_read: d(b.bytes_read, a.bytes_read),
        commits,
        commit_groups: groups,
        commits_per_group: ratio(commits, groups),
        wal_syncs: d(before.stats.wal.syncs, after.stats.wal.syncs),
    }
}

/// True if a thread of this process other than the caller is running or waiting on I/O
/// (state `R` or `D` in `/proc/self/task/*/stat`); `None` where that cannot be read.
fn other_threads_busy() -> Option<bool> {
    let me = std::fs::read_link("/proc/thread-self").ok()?;
    let me = me.file_name()?.to_owned();
    let mut busy = false;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if entry.file_name() == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // "tid (name) S ...": the state follows the last parenthesis.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        busy |= matches!(state, Some('R' | 'D'));
    }
    Some(busy)
}

/// Flushes every memtable and waits until background work has settled, so that amplification
/// figures include the dumps and compactions a workload caused. Returns how long that took.
///
/// The engine has no "wait until compactions are idle" call, so settled means: no sealed
/// memtable, no range compacting (where the engine reports it), the dump and compaction
/// counters unchanged, and every other thread of the process asleep (not running, not in I/O),
/// for 250 ms in a row; and if the engine reports compaction debt, either none is left or all
/// of that has held for 2 s (the engine is idle with debt it does not act on). Where `/proc` is
/// unavailable, only the engine's figures are watched, for one second.
///
/// # Errors
/// The flush's error, or a timeout after ten minutes.
pub fn settle(db: &Db) -> Result<Duration, BenchError> {
    let started = Instant::now();
    db.flush().map_err(BenchError::Engine)?;
    let poll = Duration::from_millis(25);
    let mut quiet_since: Option<(Instant, (u64, u64, u64, u64))> = None;
    loop {
        let stats = db.stats();
        let sealed: usize = stats.keyspaces.iter().map(|ks| ks.sealed_memtables).sum();
        let s = sums(&stats);
        let more = extra(&stats);
        let marks = (s.dumps, s.compactions, s.run_bytes_written, s.runs);
        let threads = other_threads_busy();
        let mut window = if threads.is_some() {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        };
        if more.compaction_debt_bytes.unwrap_or(0) > 0 {
            window = window.max(Duration::from_secs(2));
        }
        let now = Instant::now();
        if sealed > 0 || more.compacting || threads == Some(true) {
            quiet_since = None;
        } else {
            match quiet_since {
                Some((since, seen)) if seen == marks => {
                    if now.duration_since(since) >= window {
                        return Ok(started.elapsed());
                    }
                }
                _ => quiet_since = Some((now, marks)),
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::Other(
                "background dumps and compactions did not settle within 10 minutes".into(),
            ));
        }
        std::thread::sleep(poll);
    }
}
