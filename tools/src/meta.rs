//! `strata meta dump`: the metadata log frame by frame and the state it replays to, read with
//! `strata::inspect::read_meta` (recovery's own reader) without modifying anything.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use comfy_table::Cell;
use serde_json::{json, Value};
use strata::fs::RealFs;
use strata::inspect;

use crate::output::{
    cell_text, check_exists, num, out, render_byte_arrays, table, CliError, CliResult, Ctx, Format,
    GlobalArgs,
};

/// `strata meta`: the subcommand and the output flags.
#[derive(Args, Debug)]
pub struct MetaArgs {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: MetaCommand,
}

/// `strata meta ...`
#[derive(Subcommand, Debug)]
pub enum MetaCommand {
    /// Print every record of the metadata log, frame by frame, then the state it replays to.
    Dump(DumpArgs),
}

/// Options of `strata meta dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The database directory.
    pub dir: PathBuf,
}

/// Runs a `strata meta` command.
///
/// # Errors
/// Exit code and message for the failure (see [`crate::output`]).
pub fn run(args: &MetaArgs) -> CliResult {
    let ctx = &Ctx::new(&args.global);
    match &args.command {
        MetaCommand::Dump(args) => dump(ctx, &args.dir),
    }
}

/// Reads the metadata log of `dir`, with a clear message when `dir` is not a database.
///
/// # Errors
/// Not found (3) for a missing directory or log, corruption (1), other (4).
pub fn read(dir: &Path) -> CliResult<inspect::MetaView> {
    check_exists(dir)?;
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory; give the database directory",
            dir.display()
        )));
    }
    inspect::read_meta(&RealFs, dir).map_err(|e| match e {
        strata::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CliError::not_found(format!(
                "{} is not a strata database: it has no metadata log",
                dir.display()
            ))
        }
        other => other.into(),
    })
}

/// The run file of run `id` in `dir`, found by listing the directory.
pub fn run_file(dir: &Path, id: u64) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|e| e == "run")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok())
                    == Some(id)
        })
}

/// One record as JSON: `{"kind": .., "fields": {..}}` with byte strings rendered. The opaque
/// options of `CreateKeyspace` show as the state decodes them (when the keyspace still exists).
fn record_json(ctx: &Ctx, record: &inspect::MetaRecordView, state: &inspect::StateView) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    // Externally tagged: {"CreateRun": {fields}}.
    let mut fields = match value.take() {
        Value::Object(map) => map.into_iter().next().map_or(Value::Null, |(_, v)| v),
        other => other,
    };
    if record.kind() == "CreateKeyspace" {
        let id = fields["id"].as_u64();
        let options = state
            .keyspaces
            .iter()
            .find(|k| Some(u64::from(k.id)) == id)
            .and_then(|k| serde_json::to_value(&k.options).ok());
        if let Some(options) = options {
            fields["options"] = options;
        }
    }
    render_byte_arrays(ctx, &mut fields, true);
    json!({"kind": record.kind(), "fields": fields})
}

fn dump(ctx: &Ctx, dir: &Path) -> CliResult {
    let meta = read(dir)?;
    let mut records = Vec::new();
    for (frame, (offset, group)) in meta.frames.iter().enumerate() {
        for (i, record) in group.iter().enumerate() {
            let mut r = record_json(ctx, record, &meta.state);
            r["frame"] = frame.into();
            r["offset"] = (*offset).into();
            r["index"] = i.into();
            records.push(r);
        }
    }
    let keyspaces: Vec<Value> = meta
        .state
        .keyspaces
        .iter()
        .map(|k| {
            let runs: Vec<Value> = k
                .runs
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "file": run_file(dir, r.id),
                        "min_seqno": r.min_seqno,
                        "max_seqno": r.max_seqno,
                        "entries": r.entries,
                        "file_size": r.file_size,
                        "min_key": ctx.bytes(&r.min_key),
                        "max_key": ctx.bytes(&r.max_key),
                    })
                })
                .collect();
            let bound = |b: &Option<Vec<u8>>| b.as_ref().map(|k| ctx.bytes(k));
            let ranges: Vec<Value> = k
                .ranges
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "begin": bound(&r.begin),
                        "end": bound(&r.end),
                        "slices": r.slices.iter().map(|sl| json!({
                            "id": sl.id,
                            "run": sl.run,
                            "begin": bound(&sl.begin),
                            "end": bound(&sl.end),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "id": k.id,
                "name": k.name,
                "dumped_seqno": k.dumped_seqno,
                "options": k.options,
                "runs": runs,
                "ranges": ranges,
            })
        })
        .collect();
    let state = json!({
        "keyspaces": keyspaces,
        "prepared_runs": meta.state.prepared_runs,
        "dropped_runs": meta.state.dropped_runs,
        "next_run_id": meta.state.next_run_id,
        "next_keyspace_id": meta.state.next_keyspace_id,
    });
    match ctx.format {
        Format::Json => ctx.json(&json!({
            "path": meta.path,
            "frames": meta.frames.len(),
            "torn_tail": meta.torn_tail,
            "records": records,
            "state": state,
        })),
        Format::Jsonl => {
            for r in &records {
                let mut line = r.clone();
                line["type"] = "record".into();
                ctx.json(&line)?;
            }
            let mut line = state.clone();
            line["type"] = "state".into();
            line["torn_tail"] = meta.torn_tail.into();
            ctx.json(&line)
        }
        Format::Text => {
            out(format!(
                "{}: {} frames, {} records{}",
                meta.path.display(),
                meta.frames.len(),
                records.len(),
                meta.torn_tail.map_or(String::new(), |t| format!(
                    ", torn tail at offset {t} (recovery cuts it off)"
                ))
            ))?;
            let mut t = table(["frame", "offset", "record", "fields"]);
            for r in &records {
                t.add_row(vec![
                    num(&r["frame"]),
                    num(&r["offset"]),
                    Cell::new(r["kind"].as_str().unwrap_or_default()),
                    Cell::new(cell_text(&r["fields"])),
                ]);
            }
            out(t)?;
            out("\nresulting state")?;
            let mut t = table(["keyspace id", "name", "dumped seqno", "runs", "options"]);
            for k in &keyspaces {
                t.add_row(vec![
                    num(&k["id"]),
                    Cell::new(k["name"].as_str().unwrap_or_default()),
                    num(&k["dumped_seqno"]),
                    num(k["runs"].as_array().map_or(0, Vec::len)),
                    Cell::new(cell_text(&k["options"])),
                ]);
            }
            out(t)?;
            let mut t = table([
                "keyspace", "run", "file", "entries", "bytes", "seqnos", "min key", "max key",
            ]);
            for k in &keyspaces {
                for r in k["runs"].as_array().into_iter().flatten() {
                    let file = r["file"]
                        .as_str()
                        .and_then(|f| Path::new(f).file_name())
                        .map_or("(missing)".to_string(), |n| n.to_string_lossy().into());
                    t.add_row(vec![
                        Cell::new(k["name"].as_str().unwrap_or_default()),
                        num(&r["id"]),
                        Cell::new(file),
                        num(&r["entries"]),
                        num(&r["file_size"]),
                        Cell::new(format!("{}..={}", r["min_seqno"], r["max_seqno"])),
                        Cell::new(r["min_key"].as_str().unwrap_or_default()),
                        Cell::new(r["max_key"].as_str().unwrap_or_default()),
                    ]);
                }
            }
            out(t)?;
            let list = |ids: &[u64]| {
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            out(format!(
                "prepared runs (recovery deletes their files): {}",
                list(&meta.state.prepared_runs)
            ))?;
            out(format!(
                "dropped runs (recovery deletes their files): {}",
                list(&meta.state.dropped_runs)
            ))?;
            out(format!(
                "next run id {}, next keyspace id {}",
                meta.state.next_run_id, meta.state.next_keyspace_id
            ))?;
            let mut t = table(["keyspace", "range", "begin", "end", "slices (slice:run)"]);
            for k in &keyspaces {
                for r in k["ranges"].as_array().into_iter().flatten() {
                    let text =
                        |v: &Value, unbounded: &str| v.as_str().unwrap_or(unbounded).to_string();
                    let slices: Vec<String> = r["slices"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|sl| format!("{}:{}", sl["id"], sl["run"]))
                        .collect();
                    t.add_row(vec![
                        Cell::new(k["name"].as_str().unwrap_or_default()),
                        num(&r["id"]),
                        Cell::new(text(&r["begin"], "-inf")),
                        Cell::new(text(&r["end"], "+inf")),
                        Cell::new(slices.join(" ")),
                    ]);
                }
            }
            out(t)
        }
    }
}
