//! The result schema (`strata-bench/1`, see the `bench` module documentation) and the text
//! output: db_bench-style lines, engine figures and the summary table.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The schema name every result line and document carries.
pub const SCHEMA: &str = "strata-bench/1";

/// db_bench's megabyte (2^20 bytes), used for MB/s.
const MB: f64 = 1_048_576.0;

/// The settings of one `strata bench` invocation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    /// The workloads asked for, in order.
    pub benchmarks: Vec<String>,
    /// Keys in the key space (`--num`).
    pub num: u64,
    /// Lookups per thread of the read workloads (`--reads`).
    pub reads: u64,
    /// Threads of the multi-threaded workloads (`--threads`).
    pub threads: usize,
    /// Key size in bytes.
    pub key_size: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Fraction of a value left after compression (`--compression-ratio`).
    pub compression_ratio: f64,
    /// The requested WAL mode: `none`, `write` or `fsync`.
    pub wal_mode: String,
    /// Page cache budget in bytes.
    pub cache_size_bytes: u64,
    /// Memtable memory limit in bytes.
    pub memory_limit_bytes: u64,
    /// The seed of all random streams.
    pub seed: u64,
    /// The database directory, or `null` for a temporary one.
    pub db: Option<String>,
    /// `--use-existing`.
    pub use_existing: bool,
}

/// Per-operation latency in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Fastest operation.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest operation.
    pub max: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_nanos(hist: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            min: us(hist.min()),
            mean: hist.mean() / 1000.0,
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            p999: us(hist.value_at_quantile(0.999)),
            max: us(hist.max()),
        }
    }
}

/// The background writer of `readwhilewriting`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WriterResult {
    /// Writes it made while the readers ran.
    pub ops: u64,
    /// Its writes per second.
    pub ops_per_sec: f64,
}

/// Engine and OS figures over one workload and its flush (counters are deltas; gauges are the
/// state at the end).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EngineFigures {
    /// User key and value bytes written (the engine's counter).
    pub user_bytes_written: u64,
    /// Run bytes written by dumps and compactions.
    pub run_bytes_written: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: u64,
    /// `run_bytes_written / user_bytes_written`; `null` without writes.
    pub write_amp: Option<f64>,
    /// `(run_bytes_written + wal_bytes_written) / user_bytes_written`.
    pub write_amp_with_wal: Option<f64>,
    /// `write_bytes` delta of `/proc/self/io`; `null` where unreadable.
    pub os_write_bytes: Option<u64>,
    /// `read_bytes` delta of `/proc/self/io`.
    pub os_read_bytes: Option<u64>,
    /// `os_write_bytes / user_bytes_written`; `null` without writes or when the file system does
    /// not account writes (`os_write_bytes` is 0).
    pub os_write_amp: Option<f64>,
    /// Bytes of all runs on disk at the end.
    pub run_bytes_on_disk: u64,
    /// Bytes still in memtables at the end (0 after a flush).
    pub memtable_bytes: u64,
    /// Keys of `0..num` written and not deleted, as tracked by the benchmark.
    pub live_keys: u64,
    /// `live_keys * (key_size + value_size)`: the uncompressed logical size.
    pub logical_bytes: u64,
    /// `run_bytes_on_disk / logical_bytes`. Below 1 when values compress.
    pub space_amp: Option<f64>,
    /// Runs at the end (summed over keyspaces; there are no ranges yet, so one range each).
    pub runs: u64,
    /// Ranges at the end, where the engine reports them.
    #[serde(default)]
    pub ranges: Option<u64>,
    /// Most runs (slices) in one range at the end, where the engine reports ranges.
    #[serde(default)]
    pub max_runs_per_range: Option<u64>,
    /// Bytes the compaction policy wants compacted at the end, where the engine reports it.
    #[serde(default)]
    pub compaction_debt_bytes: Option<u64>,
    /// The engine's own space amplification (disk bytes / bytes of the bottom level), where it
    /// reports one.
    #[serde(default)]
    pub engine_space_amp: Option<f64>,
    /// Dumps finished.
    pub dumps: u64,
    /// Compactions finished.
    pub compactions: u64,
    /// Commits that blocked on the memory limit.
    pub stalls: u64,
    /// Time they spent blocked, in milliseconds.
    pub stall_ms: u64,
    /// The longest single block since the database was opened, in milliseconds.
    pub longest_stall_ms: u64,
    /// Commits slowed (not blocked) as memory filled.
    pub throttled_commits: u64,
    /// Page cache hits.
    pub cache_hits: u64,
    /// Page cache misses.
    pub cache_misses: u64,
    /// `cache_hits / (cache_hits + cache_misses)`.
    pub cache_hit_rate: Option<f64>,
    /// Bloom filter probes.
    pub bloom_checks: u64,
    /// Probes that ruled a key out.
    pub bloom_negatives: u64,
    /// Point lookups.
    pub gets: u64,
    /// Runs whose pages point lookups searched.
    pub runs_probed: u64,
    /// `runs_probed / gets`.
    pub read_amp: Option<f64>,
    /// Pages read from disk (cache misses).
    pub pages_read: u64,
    /// Bytes of those pages.
    pub page_bytes_read: u64,
    /// Commits (batches).
    pub commits: u64,
    /// Commit groups (one WAL write, at most one sync each).
    pub commit_groups: u64,
    /// `commits / commit_groups`.
    pub commits_per_group: Option<f64>,
    /// WAL syncs.
    pub wal_syncs: u64,
}

/// One workload's result: one JSONL line, one element of a JSON document's `results`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkloadResult {
    /// Always `strata-bench/1`.
    pub schema: String,
    /// Identifies the invocation (unix seconds and process id), shared by its lines.
    pub run_id: String,
    /// The strata version that ran.
    pub strata_version: String,
    /// The workload's name.
    pub workload: String,
    /// `ok` or `skipped`.
    pub status: String,
    /// Why it was skipped.
    #[serde(default)]
    pub skip_reason: Option<String>,
    /// The WAL mode the database was open with for this workload.
    pub wal_mode: String,
    /// Threads measured.
    pub threads: usize,
    /// Operations done.
    pub ops: u64,
    /// Key and value bytes written or read.
    pub bytes: u64,
    /// Lookups or seeks that found their key (read workloads), else `null`.
    #[serde(default)]
    pub found: Option<u64>,
    /// Wall time of the operations, in seconds (not counting the flush).
    pub elapsed_s: f64,
    /// Sum of the threads' elapsed times / ops, in microseconds (db_bench's micros/op).
    pub micros_per_op: f64,
    /// `ops / elapsed_s`.
    pub ops_per_sec: f64,
    /// `bytes / 2^20 / elapsed_s` (db_bench's MB/s).
    pub mb_per_sec: f64,
    /// Per-operation latency; `null` when skipped.
    #[serde(default)]
    pub latency_us: Option<Latency>,
    /// Operations per second in each second of the workload; the last element covers the
    /// remaining fraction of a second (scaled to a rate), omitted under 0.1 s.
    #[serde(default)]
    pub timeline: Vec<f64>,
    /// Seconds spent flushing and waiting for background work after a writing workload.
    #[serde(default)]
    pub flush_s: Option<f64>,
    /// The background writer of `readwhilewriting`.
    #[serde(default)]
    pub writer: Option<WriterResult>,
    /// Engine and OS figures; `null` when skipped.
    #[serde(default)]
    pub engine: Option<EngineFigures>,
    /// The invocation's settings.
    pub config: RunConfig,
}

/// The `--format json` document: every result of one invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchDocument {
    /// Always `strata-bench/1`.
    pub schema: String,
    /// Identifies the invocation.
    pub run_id: String,
    /// The strata version that ran.
    pub strata_version: String,
    /// The invocation's settings.
    pub config: RunConfig,
    /// Wall time of the whole invocation, in seconds.
    pub total_s: f64,
    /// One element per workload, in order.
    pub results: Vec<WorkloadResult>,
}

/// `1.5` as `1.50`, `None` as `n/a`.
fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// Latency in microseconds with a precision that suits its size.
fn us(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 1000.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The text block of one result: db_bench's line, latency, engine figures.
pub fn text_block(r: &WorkloadResult) -> String {
    let name = format!("{:<12} :", r.workload);
    if r.status != "ok" {
        return format!(
            "{name} skipped: {}\n",
            r.skip_reason.as_deref().unwrap_or("not available")
        );
    }
    let mut out = format!(
        "{name} {:>11.3} micros/op {:>7.0} ops/sec; {:>6.1} MB/s",
        r.micros_per_op, r.ops_per_sec, r.mb_per_sec
    );
    if let Some(found) = r.found {
        out += &format!(" ({found} of {} found)", r.ops);
    }
    if let Some(w) = &r.writer {
        out += &format!(
            " (writer: {} writes, {:.0} writes/sec)",
            w.ops, w.ops_per_sec
        );
    }
    if r.threads > 1 {
        out += &format!(" [{} threads]", r.threads);
    }
    out.push('\n');
    let pad = " ".repeat(15);
    if let Some(l) = &r.latency_us {
        out += &format!(
            "{pad}latency us: p50 {}  p99 {}  p99.9 {}  max {}  (mean {})\n",
            us(l.p50),
            us(l.p99),
            us(l.p999),
            us(l.max),
            us(l.mean)
        );
    }
    if let Some(e) = &r.engine {
        let mut parts = Vec::new();
        if let Some(f) = r.flush_s {
            parts.push(format!("flush {f:.2} s (not in ops/sec)"));
        }
        if e.user_bytes_written > 0 {
            let os = match (e.os_write_amp, e.os_write_bytes) {
                (Some(a), _) => format!("{a:.2}"),
                (None, _) => "n/a".to_string(),
            };
            parts.push(format!(
                "write amp {} engine ({} with WAL), {os} OS",
                opt(e.write_amp, 2),
                opt(e.write_amp_with_wal, 2)
            ));
        }
        let engine_amp = e
            .engine_space_amp
            .map_or(String::new(), |a| format!("; {a:.2} disk / bottom level"));
        parts.push(format!(
            "space amp {} ({} on disk / {} logical{engine_amp})",
            opt(e.space_amp, 2),
            mb(e.run_bytes_on_disk),
            mb(e.logical_bytes)
        ));
        let mut runs = format!("runs {}", e.runs);
        if let Some(ranges) = e.ranges {
            runs += &format!(" in {ranges} range(s)");
            if let Some(max) = e.max_runs_per_range {
                runs += &format!(", at most {max} per range");
            }
        }
        if let Some(debt) = e.compaction_debt_bytes.filter(|d| *d > 0) {
            runs += &format!(", compaction debt {}", mb(debt));
        }
        parts.push(runs);
        out += &format!("{pad}{}\n", parts.join(" | "));
        let mut parts = Vec::new();
        if e.commits > 0 {
            parts.push(format!(
                "stalls {} ({} ms, longest {} ms), throttled {}",
                e.stalls, e.stall_ms, e.longest_stall_ms, e.throttled_commits
            ));
            parts.push(format!("commits/group {}", opt(e.commits_per_group, 2)));
            if e.wal_syncs > 0 {
                parts.push(format!("wal syncs {}", e.wal_syncs));
            }
            parts.push(format!("dumps {}, compactions {}", e.dumps, e.compactions));
        }
        if e.cache_hits + e.cache_misses > 0 {
            parts.push(format!(
                "cache hits {}%",
                opt(e.cache_hit_rate.map(|h| h * 100.0), 1)
            ));
        }
        if e.bloom_checks > 0 {
            parts.push(format!(
                "bloom {}/{} negative",
                e.bloom_negatives, e.bloom_checks
            ));
        }
        if e.gets > 0 {
            parts.push(format!("runs/get {}", opt(e.read_amp, 2)));
        }
        if let Some(read) = e.os_read_bytes {
            if read >= 100_000 {
                parts.push(format!("OS read {}", mb(read)));
            }
        }
        if !parts.is_empty() {
            out += &format!("{pad}{}\n", parts.join(" | "));
        }
    }
    out
}

/// The full latency distribution of a workload (`--histogram`).
pub fn histogram_block(hist: &Histogram<u64>) -> String {
    let mut out = format!(
        "{:15}count {}  mean {} us  stddev {} us\n{:15}{:>10} {:>14} {:>12}\n",
        "",
        hist.len(),
        us(hist.mean() / 1000.0),
        us(hist.stdev() / 1000.0),
        "",
        "percentile",
        "latency us",
        "count"
    );
    for q in [
        0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0,
    ] {
        let value = hist.value_at_quantile(q);
        out += &format!(
            "{:15}{:>10} {:>14} {:>12}\n",
            "",
            format!("{:.2}", q * 100.0),
            us(value as f64 / 1000.0),
            hist.count_between(0, value)
        );
    }
    out
}

/// The summary table printed after the last workload.
pub fn summary_table(results: &[WorkloadResult]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "workload",
        "ops/sec",
        "micros/op",
        "MB/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "write amp",
        "space amp",
    ]);
    let right = |text: String| Cell::new(text).set_alignment(CellAlignment::Right);
    for r in results {
        if r.status != "ok" {
            table.add_row(vec![Cell::new(&r.workload), Cell::new("skipped")]);
            continue;
        }
        let l = r.latency_us;
        let e = r.engine.as_ref();
        table.add_row(vec![
            Cell::new(&r.workload),
            right(format!("{:.0}", r.ops_per_sec)),
            right(format!("{:.3}", r.micros_per_op)),
            right(format!("{:.1}", r.mb_per_sec)),
            right(l.map_or("n/a".into(), |l| us(l.p50))),
            right(l.map_or("n/a".into(), |l| us(l.p99))),
            right(l.map_or("n/a".into(), |l| us(l.p999))),
            right(l.map_or("n/a".into(), |l| us(l.max))),
            right(opt(e.and_then(|e| e.write_amp), 2)),
            right(opt(e.and_then(|e| e.space_amp), 2)),
        ]);
    }
    table
}

/// Megabytes (2^20) per second, as db_bench computes it.
pub fn mb_per_sec(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / MB / seconds
    } else {
        0.0
    }
}
