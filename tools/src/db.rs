//! `strata db`: statistics, reads, writes, flush and verification of a whole database.
//!
//! Read-only commands (`stats`, `get`, `scan`) open the database through [`ReadOnlyFs`], a
//! copy-on-write view of the directory: recovery runs as usual (the WAL is replayed into
//! memtables, a torn WAL tail is cut off, garbage files are deleted, a new WAL segment is
//! started) but every change lands in memory and is forgotten at exit, so the files on disk are
//! never modified. They refuse (exit code 4) while another process holds the database. `verify`
//! does not open the database at all (`strata::inspect::verify`). `put`, `delete` and `compact`
//! open it for writing, as an application would.
//!
//! The view refuses to create run files, so the background dumps and compactions a freshly
//! opened database may start fail at once (instead of writing gigabytes into memory); that
//! poisons the in-memory instance for writes only, and reads are unaffected.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand};
use comfy_table::Cell;
use serde_json::{json, Value};
use strata::fs::{DirLock, Fs, ReadAt, RealFs, WritableFile};
use strata::{Db, DbStats, Keyspace, KeyspaceOptions, Options};

use crate::output::{
    human_bytes, num, out, parse_key, table, CliError, CliResult, Ctx, Format, GlobalArgs,
    EXIT_CORRUPTION, EXIT_OTHER,
};

/// `strata db`: the subcommand and the output flags.
#[derive(Args, Debug)]
pub struct DbArgs {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: DbCommand,
}

/// `strata db ...`
#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Per-keyspace "compaction stats" and totals: amplification, memtable, cache, bloom, stalls.
    ///
    /// Read-only: recovery (WAL replay) runs in memory and no file is modified. Refuses with exit
    /// code 4 while another process holds the database.
    Stats(StatsArgs),
    /// Print the value of KEY in KEYSPACE (exit 3 if absent).
    ///
    /// Read-only: recovery (WAL replay) runs in memory and no file is modified. Refuses with exit
    /// code 4 while another process holds the database.
    Get(GetArgs),
    /// Print the key-value pairs of KEYSPACE in key order.
    ///
    /// Read-only: recovery (WAL replay) runs in memory and no file is modified. Refuses with exit
    /// code 4 while another process holds the database.
    Scan(ScanArgs),
    /// Set KEY to VALUE in KEYSPACE (opens the database for writing).
    Put(PutArgs),
    /// Delete KEY from KEYSPACE (opens the database for writing).
    Delete(KeyArgs),
    /// Dump every memtable, then compact every range of every keyspace (or of --keyspace)
    /// into one run, and wait.
    Compact(CompactArgs),
    /// Check every run page, WAL record and metadata frame checksum (exit 1 on a problem).
    ///
    /// Reads the files without opening the database, so it also works while another process
    /// holds it. Every problem is printed with its file and offset.
    Verify(DirArgs),
}

/// A database directory.
#[derive(Args, Debug)]
pub struct DirArgs {
    /// The database directory.
    pub dir: PathBuf,
}

/// Options of `strata db stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The database directory.
    pub dir: PathBuf,
    /// Also print one row per range (bounds, runs, bytes, runs per level, compaction debt).
    #[arg(long)]
    pub ranges: bool,
}

/// A key of a keyspace.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// The database directory.
    pub dir: PathBuf,
    /// The keyspace name.
    pub keyspace: String,
    /// The key (UTF-8, or hex with --key-hex).
    pub key: String,
    /// KEY is hex.
    #[arg(long)]
    pub key_hex: bool,
}

/// Options of `strata db get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    key: KeyArgs,
}

/// Options of `strata db put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The value (UTF-8, or hex with --value-hex).
    pub value: String,
    /// VALUE is hex.
    #[arg(long)]
    pub value_hex: bool,
    /// Create the keyspace (default options), and the database, if they do not exist.
    #[arg(long)]
    pub create: bool,
}

/// Options of `strata db scan`.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// The database directory.
    pub dir: PathBuf,
    /// The keyspace name.
    pub keyspace: String,
    /// Start at this key (inclusive).
    #[arg(long, conflicts_with = "prefix")]
    pub from: Option<String>,
    /// Stop before this key (exclusive).
    #[arg(long, conflicts_with = "prefix")]
    pub to: Option<String>,
    /// Only keys starting with this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Print at most this many pairs.
    #[arg(long)]
    pub limit: Option<u64>,
    /// From the last key backwards.
    #[arg(long)]
    pub reverse: bool,
    /// --from, --to and --prefix are hex.
    #[arg(long)]
    pub key_hex: bool,
}

/// Options of `strata db compact`.
#[derive(Args, Debug)]
pub struct CompactArgs {
    /// The database directory.
    pub dir: PathBuf,
    /// Compact only this keyspace (memtables of every keyspace are dumped first).
    #[arg(long)]
    pub keyspace: Option<String>,
}

/// Runs a `strata db` command.
///
/// # Errors
/// Exit code and message for the failure (see [`crate::output`]).
pub fn run(args: &DbArgs) -> CliResult {
    let ctx = &Ctx::new(&args.global);
    match &args.command {
        DbCommand::Stats(args) => stats(ctx, args),
        DbCommand::Get(args) => get(ctx, &args.key),
        DbCommand::Scan(args) => scan(ctx, args),
        DbCommand::Put(args) => put(ctx, args),
        DbCommand::Delete(args) => delete(ctx, args),
        DbCommand::Compact(args) => compact(ctx, args),
        DbCommand::Verify(args) => verify(ctx, &args.dir),
    }
}

// ---------------------------------------------------------------------------------------------
// Opening

/// Refuses politely if another process holds the database.
///
/// A lock seen once is checked again a few times over 200 ms: a process that forks a child
/// while it holds the lock file open shares the lock with that child until the child execs (or
/// exits), so a database closed a moment ago can still look locked for an instant.
fn check_unlocked(dir: &Path) -> CliResult {
    let mut locked = strata::inspect::is_locked(&RealFs, dir)?;
    for _ in 0..10 {
        if !locked {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        locked = strata::inspect::is_locked(&RealFs, dir)?;
    }
    if locked {
        return Err(CliError::new(
            EXIT_OTHER,
            format!(
                "the database {} is in use by another process; stop it first (`strata wal dump`, \
                 `strata meta dump` and `strata db verify` read it without opening it)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Opens the database in `dir` without modifying any file (see the module docs).
fn open_read_only(dir: &Path) -> CliResult<Db> {
    crate::meta::read(dir)?;
    check_unlocked(dir)?;
    let options = Options {
        fs: Arc::new(ReadOnlyFs::default()),
        ..Options::default()
    };
    Ok(Db::open(dir, options)?)
}

/// Opens the database in `dir` for writing; `create`: create it if it does not exist.
fn open_read_write(dir: &Path, create: bool) -> CliResult<Db> {
    if !create {
        crate::meta::read(dir)?;
    }
    check_unlocked(dir)?;
    Ok(Db::open(dir, Options::default())?)
}

/// The existing keyspace `name` (exit 3 if there is none).
fn keyspace(db: &Db, name: &str) -> CliResult<Keyspace> {
    let names = db.keyspace_names();
    if !names.iter().any(|n| n == name) {
        return Err(CliError::not_found(format!(
            "keyspace {name:?} does not exist in {} (keyspaces: {})",
            db.path().display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok(db.existing_keyspace(name)?)
}

fn close(db: Db) -> CliResult {
    Ok(db.close()?)
}

/// Closes a database opened with [`open_read_only`]: nothing is durable, and a background dump
/// or compaction refused by the view has poisoned it, so the close's verdict does not matter.
fn close_read_only(db: Db) {
    let _ = db.close();
}

// ---------------------------------------------------------------------------------------------
// stats

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn fixed(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.2}"))
}

fn stats(ctx: &Ctx, args: &StatsArgs) -> CliResult {
    let db = open_read_only(&args.dir)?;
    let stats: DbStats = db.stats();
    close_read_only(db);
    let rows: Vec<Value> = stats
        .keyspaces
        .iter()
        .map(|ks| keyspace_row(ctx, ks))
        .collect();
    let sum = |f: fn(&strata::KeyspaceStats) -> u64| stats.keyspaces.iter().map(f).sum::<u64>();
    let (bloom_checks, bloom_negatives) = (sum(|k| k.bloom_checks), sum(|k| k.bloom_negatives));
    let bottom: f64 = stats
        .keyspaces
        .iter()
        .filter(|k| k.space_amplification > 0.0)
        .map(|k| k.run_bytes_on_disk as f64 / k.space_amplification)
        .sum();
    let disk = sum(|k| k.run_bytes_on_disk);
    let written = sum(|k| k.dump_bytes_out + k.compaction_bytes_out);
    let totals = json!({
        "write_amplification": ratio(written, sum(|k| k.user_bytes_written)),
        "space_amplification": (bottom > 0.0).then(|| disk as f64 / bottom),
        "read_amplification": ratio(sum(|k| k.runs_probed), sum(|k| k.gets)),
        "sorted_runs_max": rows.iter().filter_map(|r| r["sorted_runs"].as_u64()).max().unwrap_or(0),
        "bytes_on_disk": disk,
        "logical_bytes": sum(|k| k.run_bytes_logical),
        "compaction_debt_bytes": sum(|k| k.compaction_debt_bytes),
        "memtable": {
            "bytes": sum(|k| k.memtable_bytes),
            "entries": sum(|k| k.memtable_entries),
            "quota_used_bytes": stats.memory.used_bytes,
            "quota_limit_bytes": stats.memory.limit_bytes,
        },
        "cache": {
            "hits": stats.cache.hits,
            "misses": stats.cache.misses,
            "hit_rate": ratio(stats.cache.hits, stats.cache.hits + stats.cache.misses),
            "used_bytes": stats.cache.used_bytes,
            "capacity_bytes": stats.cache.capacity_bytes,
        },
        "bloom": {
            "checks": bloom_checks,
            "negatives": bloom_negatives,
            "useful_rate": ratio(bloom_negatives, bloom_checks),
        },
        "stalls": {
            "count": stats.memory.stalls,
            "time_ms": stats.memory.stall_time_ms,
            "longest_ms": stats.memory.longest_stall_ms,
            "throttled_commits": stats.memory.throttled_commits,
        },
        "transactions": null,
    });
    let note = "counters (dumps, compactions, bytes written, gets, cache, bloom, stalls) count \
                since this command opened the database: the engine does not persist them; \
                sizes, levels, ranges and memtables (the replayed WAL) are the database's";
    if !ctx.text() {
        return ctx.json(&json!({
            "dir": args.dir,
            "seqno": stats.seqno,
            "keyspaces": rows,
            "totals": totals,
            "stats": stats,
            "note": note,
        }));
    }
    for row in &rows {
        print_keyspace_stats(row, args.ranges)?;
    }
    print_totals(&stats, &totals)?;
    out(format!("note: {note}"))
}

/// One keyspace's figures (see tools/README.md for the schema).
fn keyspace_row(ctx: &Ctx, ks: &strata::KeyspaceStats) -> Value {
    let memtables = ks.sealed_memtables + usize::from(ks.memtable_entries > 0);
    let written = ks.dump_bytes_out + ks.compaction_bytes_out;
    let widest = ks.range_details.iter().map(|r| r.runs).max().unwrap_or(0);
    let levels: Vec<Value> = ks
        .levels
        .iter()
        .map(|l| json!({"level": l.level, "runs": l.runs, "bytes": l.bytes}))
        .collect();
    let ranges: Vec<Value> = ks
        .range_details
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "begin": r.begin.as_deref().map(|b| ctx.bytes(b)),
                "end": r.end.as_deref().map(|e| ctx.bytes(e)),
                "runs": r.runs,
                "bytes": r.bytes,
                "runs_per_level": r.runs_per_level,
                "debt_bytes": r.debt_bytes,
                "compacting": r.compacting,
            })
        })
        .collect();
    json!({
        "keyspace": ks.name,
        "runs": ks.runs,
        "run_entries": ks.run_entries,
        "bytes_on_disk": ks.run_bytes_on_disk,
        "logical_bytes": ks.run_bytes_logical,
        "compression_ratio": ratio(ks.run_bytes_logical, ks.run_bytes_on_disk),
        "memtable_bytes": ks.memtable_bytes,
        "memtable_entries": ks.memtable_entries,
        "sealed_memtables": ks.sealed_memtables,
        "dumps": ks.dumps,
        "dump_bytes_in": ks.dump_bytes_in,
        "dump_bytes_out": ks.dump_bytes_out,
        "compactions": ks.compactions,
        "compaction_bytes_in": ks.compaction_bytes_in,
        "compaction_bytes_out": ks.compaction_bytes_out,
        "user_bytes_written": ks.user_bytes_written,
        "write_amplification": ratio(written, ks.user_bytes_written),
        "space_amplification": (ks.runs > 0).then_some(ks.space_amplification),
        "read_amplification": ratio(ks.runs_probed, ks.gets),
        "sorted_runs": widest + memtables,
        "compaction_debt_bytes": ks.compaction_debt_bytes,
        "splits": ks.splits,
        "coalesces": ks.coalesces,
        "versions_dropped": ks.versions_dropped,
        "levels": levels,
        "ranges": ranges,
    })
}

fn bytes_cell(value: &Value) -> Cell {
    num(human_bytes(value.as_u64().unwrap_or(0)))
}

/// RocksDB-style "Compaction Stats" of one keyspace: a row per level (or per range), then Sum.
fn print_keyspace_stats(row: &Value, ranges: bool) -> CliResult {
    let list = |name: &str| row[name].as_array().cloned().unwrap_or_default();
    out(format!(
        "** Compaction Stats [{}] ** {} ranges, compaction debt {}, {} splits, {} coalesces, {} versions dropped",
        row["keyspace"].as_str().unwrap_or_default(),
        list("ranges").len(),
        human_bytes(row["compaction_debt_bytes"].as_u64().unwrap_or(0)),
        row["splits"],
        row["coalesces"],
        row["versions_dropped"],
    ))?;
    if ranges {
        let mut t = table([
            "Range",
            "Begin",
            "End",
            "Runs",
            "Data",
            "Runs/level",
            "Debt",
            "Compacting",
        ]);
        for r in list("ranges") {
            let bound = |v: &Value, unbounded: &str| {
                v.as_str().map_or(unbounded.to_string(), str::to_string)
            };
            let per_level: Vec<String> = r["runs_per_level"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            t.add_row(vec![
                num(&r["id"]),
                Cell::new(bound(&r["begin"], "-inf")),
                Cell::new(bound(&r["end"], "+inf")),
                num(&r["runs"]),
                bytes_cell(&r["bytes"]),
                Cell::new(per_level.join(" ")),
                bytes_cell(&r["debt_bytes"]),
                Cell::new(if r["compacting"] == true { "yes" } else { "" }),
            ]);
        }
        out(t)?;
    }
    let mut t = table([
        "Level", "Runs", "Data", "Disk", "Logical", "Dumps", "Dump In", "Dump Out", "Comp",
        "Comp In", "Comp Out", "W-Amp", "S-Amp",
    ]);
    let amp = |v: &Value| num(fixed(v.as_f64()));
    let blank = || Cell::new("");
    let mut data = 0;
    for l in list("levels") {
        data += l["bytes"].as_u64().unwrap_or(0);
        let mut cells = vec![
            Cell::new(format!("L{}", l["level"])),
            num(&l["runs"]),
            bytes_cell(&l["bytes"]),
        ];
        cells.extend((0..10).map(|_| blank()));
        t.add_row(cells);
    }
    t.add_row(vec![
        Cell::new("Sum"),
        num(&row["runs"]),
        bytes_cell(&json!(data)),
        bytes_cell(&row["bytes_on_disk"]),
        bytes_cell(&row["logical_bytes"]),
        num(&row["dumps"]),
        bytes_cell(&row["dump_bytes_in"]),
        bytes_cell(&row["dump_bytes_out"]),
        num(&row["compactions"]),
        bytes_cell(&row["compaction_bytes_in"]),
        bytes_cell(&row["compaction_bytes_out"]),
        amp(&row["write_amplification"]),
        amp(&row["space_amplification"]),
    ]);
    out(t)
}

fn print_totals(stats: &DbStats, totals: &Value) -> CliResult {
    let sum = |f: fn(&strata::KeyspaceStats) -> u64| stats.keyspaces.iter().map(f).sum::<u64>();
    let mut t = table(["total", "value"]);
    let mut add = |name: &str, value: String| {
        t.add_row(vec![Cell::new(name), Cell::new(value)]);
    };
    add(
        "write amplification",
        fixed(totals["write_amplification"].as_f64()),
    );
    add(
        "space amplification",
        fixed(totals["space_amplification"].as_f64()),
    );
    add(
        "read amplification (runs searched per get)",
        fixed(totals["read_amplification"].as_f64()),
    );
    add(
        "sorted runs a get may search (max)",
        totals["sorted_runs_max"].to_string(),
    );
    add(
        "compaction debt",
        human_bytes(totals["compaction_debt_bytes"].as_u64().unwrap_or(0)),
    );
    add(
        "memtables",
        format!(
            "{} in {} entries; quota {} of {}",
            human_bytes(sum(|k| k.memtable_bytes)),
            sum(|k| k.memtable_entries),
            human_bytes(stats.memory.used_bytes),
            human_bytes(stats.memory.limit_bytes)
        ),
    );
    add(
        "page cache",
        format!(
            "{} hits, {} misses (hit rate {}); {} of {}",
            stats.cache.hits,
            stats.cache.misses,
            fixed(totals["cache"]["hit_rate"].as_f64()),
            human_bytes(stats.cache.used_bytes),
            human_bytes(stats.cache.capacity_bytes)
        ),
    );
    add(
        "bloom filters",
        format!(
            "{} checks, {} negatives (useful {})",
            totals["bloom"]["checks"],
            totals["bloom"]["negatives"],
            fixed(totals["bloom"]["useful_rate"].as_f64())
        ),
    );
    add(
        "write stalls",
        format!(
            "{} stalls, {} ms total, longest {} ms; {} commits throttled",
            stats.memory.stalls,
            stats.memory.stall_time_ms,
            stats.memory.longest_stall_ms,
            stats.memory.throttled_commits
        ),
    );
    add(
        "WAL",
        format!(
            "{} closed segments holding undumped data",
            stats.wal.closed_segments
        ),
    );
    add("read views", format!("{} open", stats.read_views.open));
    add("metadata log", human_bytes(stats.metadata_log_bytes));
    add("transactions", "- (not in the engine yet)".to_string());
    out(t)
}

// ---------------------------------------------------------------------------------------------
// get, scan, put, delete

fn get(ctx: &Ctx, args: &KeyArgs) -> CliResult {
    let key = parse_key(&args.key, args.key_hex)?;
    let db = open_read_only(&args.dir)?;
    let value = keyspace(&db, &args.keyspace)?.get(&key)?;
    close_read_only(db);
    if !ctx.text() {
        ctx.json(&json!({
            "keyspace": args.keyspace,
            "key": ctx.bytes(&key),
            "found": value.is_some(),
            "value": value.as_ref().map(|v| ctx.bytes(v)),
        }))?;
    } else if let Some(value) = &value {
        out(ctx.bytes(value))?;
    }
    match value {
        Some(_) => Ok(()),
        None => Err(CliError::not_found(format!(
            "key {} not found in keyspace {:?}",
            ctx.bytes(&key),
            args.keyspace
        ))),
    }
}

fn scan(ctx: &Ctx, args: &ScanArgs) -> CliResult {
    let from = args
        .from
        .as_deref()
        .map(|k| parse_key(k, args.key_hex))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|k| parse_key(k, args.key_hex))
        .transpose()?;
    let prefix = args
        .prefix
        .as_deref()
        .map(|k| parse_key(k, args.key_hex))
        .transpose()?;
    let db = open_read_only(&args.dir)?;
    let ks = keyspace(&db, &args.keyspace)?;
    let estimate = db
        .stats()
        .keyspaces
        .iter()
        .find(|k| k.name == args.keyspace)
        .map_or(0, |k| k.run_entries + k.memtable_entries);
    let iter = match (&prefix, from, to) {
        (Some(p), _, _) => ks.prefix(p),
        (None, from, to) => {
            use std::ops::Bound;
            let lower = from.map_or(Bound::Unbounded, Bound::Included);
            let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
            ks.range::<Vec<u8>, _>((lower, upper))
        }
    };
    let pairs: Box<dyn Iterator<Item = strata::Result<(strata::Key, strata::Value)>>> =
        if args.reverse {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
    let limit = usize::try_from(args.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let progress = ctx.progress(
        estimate.min(args.limit.unwrap_or(u64::MAX)),
        false,
        "scanning",
    );
    let mut rows = Vec::new();
    let mut failure = None;
    for pair in pairs.take(limit) {
        match pair {
            Ok((key, value)) => {
                let row = json!({"key": ctx.bytes(&key), "value": ctx.bytes(&value)});
                if ctx.format == Format::Jsonl {
                    ctx.json(&row)?;
                } else {
                    rows.push(row);
                }
                progress.inc(1);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(progress);
    drop(ks);
    close_read_only(db);
    match ctx.format {
        Format::Jsonl => {}
        Format::Json => ctx.json(&json!({
            "keyspace": args.keyspace,
            "count": rows.len(),
            "entries": rows,
        }))?,
        Format::Text => {
            let mut t = table(["key", "value"]);
            for r in &rows {
                t.add_row(vec![
                    Cell::new(r["key"].as_str().unwrap_or_default()),
                    Cell::new(r["value"].as_str().unwrap_or_default()),
                ]);
            }
            out(t)?;
            out(format!("{} pairs", rows.len()))?;
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn put(ctx: &Ctx, args: &PutArgs) -> CliResult {
    let key = parse_key(&args.key.key, args.key.key_hex)?;
    let value = parse_key(&args.value, args.value_hex)?;
    let db = open_read_write(&args.key.dir, args.create)?;
    let ks = if args.create {
        db.keyspace(&args.key.keyspace, KeyspaceOptions::default())?
    } else {
        keyspace(&db, &args.key.keyspace)?
    };
    ks.put(&key, &value)?;
    db.sync()?;
    let seqno = db.stats().seqno;
    drop(ks);
    close(db)?;
    report_write(ctx, "put", &args.key.keyspace, &key, seqno)
}

fn delete(ctx: &Ctx, args: &KeyArgs) -> CliResult {
    let key = parse_key(&args.key, args.key_hex)?;
    let db = open_read_write(&args.dir, false)?;
    let ks = keyspace(&db, &args.keyspace)?;
    ks.delete(&key)?;
    db.sync()?;
    let seqno = db.stats().seqno;
    drop(ks);
    close(db)?;
    report_write(ctx, "delete", &args.keyspace, &key, seqno)
}

fn report_write(ctx: &Ctx, op: &str, keyspace: &str, key: &[u8], seqno: u64) -> CliResult {
    if ctx.text() {
        out(format!(
            "{op} {} in keyspace {keyspace:?}: committed and synced at seqno {seqno}",
            ctx.bytes(key)
        ))
    } else {
        ctx.json(&json!({
            "op": op,
            "keyspace": keyspace,
            "key": ctx.bytes(key),
            "seqno": seqno,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// compact

fn compact(ctx: &Ctx, args: &CompactArgs) -> CliResult {
    let db = open_read_write(&args.dir, false)?;
    let target = args
        .keyspace
        .as_deref()
        .map(|name| keyspace(&db, name))
        .transpose()?;
    let before = db.stats();
    let spinner = ctx.spinner("compacting");
    let compacted = match &target {
        Some(ks) => ks.compact(),
        None => db.compact_all(),
    };
    drop(spinner);
    compacted?;
    let after = db.stats();
    drop(target);
    close(db)?;
    let rows: Vec<Value> = before
        .keyspaces
        .iter()
        .filter(|k| args.keyspace.as_ref().is_none_or(|n| *n == k.name))
        .map(|b| {
            let a = after.keyspaces.iter().find(|a| a.name == b.name);
            let space = |k: &strata::KeyspaceStats| (k.runs > 0).then_some(k.space_amplification);
            json!({
                "keyspace": b.name,
                "runs_before": b.runs,
                "runs_after": a.map_or(0, |a| a.runs),
                "bytes_before": b.run_bytes_on_disk,
                "bytes_after": a.map_or(0, |a| a.run_bytes_on_disk),
                "space_amplification_before": space(b),
                "space_amplification_after": a.and_then(space),
                "memtable_bytes_dumped": b.memtable_bytes,
                "versions_dropped": a.map_or(0, |a| a.versions_dropped),
            })
        })
        .collect();
    if !ctx.text() {
        return ctx.json(&json!({"keyspaces": rows}));
    }
    let mut t = table([
        "keyspace",
        "runs before",
        "runs after",
        "bytes before",
        "bytes after",
        "S-Amp before",
        "S-Amp after",
        "memtable dumped",
        "versions dropped",
    ]);
    for r in &rows {
        t.add_row(vec![
            Cell::new(r["keyspace"].as_str().unwrap_or_default()),
            num(&r["runs_before"]),
            num(&r["runs_after"]),
            num(&r["bytes_before"]),
            num(&r["bytes_after"]),
            num(fixed(r["space_amplification_before"].as_f64())),
            num(fixed(r["space_amplification_after"].as_f64())),
            num(human_bytes(
                r["memtable_bytes_dumped"].as_u64().unwrap_or(0),
            )),
            num(&r["versions_dropped"]),
        ]);
    }
    out(t)
}

// ---------------------------------------------------------------------------------------------
// verify

fn verify(ctx: &Ctx, dir: &Path) -> CliResult {
    // A directory without a readable log is not a database; a damaged log is a problem the
    // report lists with everything else.
    if let Err(e) = crate::meta::read(dir) {
        if e.code != EXIT_CORRUPTION {
            return Err(e);
        }
    }
    let progress = ctx.progress(0, true, "verifying runs");
    let report = strata::inspect::verify(&RealFs, dir, &mut |done, total| {
        progress.set_length(total);
        progress.set(done);
    })?;
    drop(progress);
    match ctx.format {
        Format::Json | Format::Jsonl => {
            let mut doc = serde_json::to_value(&report)
                .map_err(|e| CliError::other(format!("JSON encoding: {e}")))?;
            doc["ok"] = report.is_ok().into();
            doc["dir"] = json!(dir);
            ctx.json(&doc)?;
        }
        Format::Text => {
            let mut t = table(["checked", "count"]);
            for (name, count) in [
                ("runs", report.runs_checked as u64),
                ("pages", report.pages_checked),
                ("entries", report.entries_checked),
                ("WAL segments", report.wal_segments_checked as u64),
                ("WAL batches", report.wal_batches_checked),
                ("problems", report.problems.len() as u64),
                ("stray files", report.stray_files.len() as u64),
            ] {
                t.add_row(vec![Cell::new(name), num(count)]);
            }
            out(t)?;
            if !report.problems.is_empty() {
                let mut t = table(["file", "offset", "problem"]);
                for p in &report.problems {
                    t.add_row(vec![
                        Cell::new(p.path.display()),
                        num(p.offset.map_or("-".to_string(), |o| o.to_string())),
                        Cell::new(&p.what),
                    ]);
                }
                out(t)?;
            }
            for stray in &report.stray_files {
                out(format!(
                    "stray file (not part of the database): {}",
                    stray.display()
                ))?;
            }
            out(if report.is_ok() {
                format!("{}: OK", dir.display())
            } else {
                format!(
                    "{}: {} problems found",
                    dir.display(),
                    report.problems.len()
                )
            })?;
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(CliError::silent(EXIT_CORRUPTION))
    }
}

// ---------------------------------------------------------------------------------------------
// The read-only file system

/// A copy-on-write view of the real file system: reads see the disk plus this process's own
/// changes; creates, appends, truncations, renames and removals change only memory. The engine
/// can run recovery through it without touching a byte on disk.
#[derive(Debug, Default)]
pub struct ReadOnlyFs {
    overlay: Mutex<Overlay>,
}

#[derive(Debug, Default)]
struct Overlay {
    /// Files created or changed, with their whole contents.
    files: HashMap<PathBuf, Arc<Mutex<Vec<u8>>>>,
    /// Real files removed or renamed away.
    removed: HashSet<PathBuf>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", path.display()),
    )
}

impl Overlay {
    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path) || (!self.removed.contains(path) && path.is_file())
    }

    /// The overlay copy of `path`, copying the real file in on first change.
    fn materialize(&mut self, path: &Path) -> io::Result<Arc<Mutex<Vec<u8>>>> {
        if let Some(data) = self.files.get(path) {
            return Ok(Arc::clone(data));
        }
        if self.removed.contains(path) {
            return Err(not_found(path));
        }
        let data = Arc::new(Mutex::new(std::fs::read(path)?));
        self.files.insert(path.to_path_buf(), Arc::clone(&data));
        Ok(data)
    }
}

struct OverlayFile {
    data: Arc<Mutex<Vec<u8>>>,
}

impl Write for OverlayFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.data).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WritableFile for OverlayFile {
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> u64 {
        lock(&self.data).len() as u64
    }
}

#[derive(Debug)]
struct NoLock;

impl DirLock for NoLock {}

impl Fs for ReadOnlyFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".run") || name.ends_with(".run.tmp") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: read-only view, no runs are written", path.display()),
            ));
        }
        let mut overlay = lock(&self.overlay);
        if overlay.exists(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let data = Arc::new(Mutex::new(Vec::new()));
        overlay.files.insert(path.to_path_buf(), Arc::clone(&data));
        overlay.removed.remove(path);
        Ok(Box::new(OverlayFile { data }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let data = lock(&self.overlay).materialize(path)?;
        Ok(Box::new(OverlayFile { data }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        let overlay = lock(&self.overlay);
        if let Some(data) = overlay.files.get(path) {
            return Ok(Arc::new(lock(data).clone()));
        }
        if overlay.removed.contains(path) {
            return Err(not_found(path));
        }
        RealFs.open_read(path)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let overlay = lock(&self.overlay);
        if let Some(data) = overlay.files.get(path) {
            return Ok(lock(data).clone());
        }
        if overlay.removed.contains(path) {
            return Err(not_found(path));
        }
        std::fs::read(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let data = lock(&self.overlay).materialize(path)?;
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        lock(&data).resize(len, 0);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut overlay = lock(&self.overlay);
        let data = overlay.materialize(from)?;
        overlay.files.remove(from);
        overlay.removed.insert(from.to_path_buf());
        overlay.removed.remove(to);
        overlay.files.insert(to.to_path_buf(), data);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut overlay = lock(&self.overlay);
        if !overlay.exists(path) {
            return Err(not_found(path));
        }
        overlay.files.remove(path);
        overlay.removed.insert(path.to_path_buf());
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if path.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: read-only view, cannot create", path.display()),
            ))
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let overlay = lock(&self.overlay);
        let mut names: Vec<String> = RealFs
            .list_dir(path)?
            .into_iter()
            .filter(|name| !overlay.removed.contains(&path.join(name)))
            .collect();
        for file in overlay.files.keys() {
            if file.parent() == Some(path) {
                if let Some(name) = file.file_name().and_then(|n| n.to_str()) {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string());
                    }
                }
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let overlay = lock(&self.overlay);
        if let Some(data) = overlay.files.get(path) {
            return Ok(lock(data).len() as u64);
        }
        if overlay.removed.contains(path) {
            return Err(not_found(path));
        }
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> bool {
        lock(&self.overlay).exists(path)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        // Hold the real lock while reading, so no writer opens the database meanwhile; without
        // a lock file (or permission to open it) there is nothing to hold.
        if path.is_file() {
            match RealFs.lock(path) {
                Ok(lock) => return Ok(lock),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Box::new(NoLock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_fs_never_touches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("a");
        std::fs::write(&real, b"disk").unwrap();
        let fs = ReadOnlyFs::default();
        let mut f = fs.open_append(&real).unwrap();
        f.write_all(b"+mem").unwrap();
        assert_eq!(fs.read_file(&real).unwrap(), b"disk+mem");
        fs.truncate(&real, 2).unwrap();
        assert_eq!(fs.file_len(&real).unwrap(), 2);
        let new = dir.path().join("b");
        drop(fs.create_new(&new).unwrap());
        assert!(fs.exists(&new));
        fs.rename(&new, &dir.path().join("c")).unwrap();
        fs.remove_file(&real).unwrap();
        let mut names = fs.list_dir(dir.path()).unwrap();
        names.sort();
        assert_eq!(names, vec!["c"]);
        assert_eq!(std::fs::read(&real).unwrap(), b"disk");
        assert!(!new.exists() && !dir.path().join("c").exists());
    }
}
