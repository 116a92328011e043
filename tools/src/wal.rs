//! `strata wal dump`: the batches and entries of WAL segments, read with
//! `strata::inspect::read_wal` (the reader recovery uses) without modifying anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use comfy_table::Cell;
use serde_json::{json, Value};
use strata::fs::RealFs;
use strata::inspect::{self, WalSegmentView};

use crate::output::{check_exists, num, out, table, CliError, CliResult, Ctx, Format, GlobalArgs};

/// `strata wal`: the subcommand and the output flags.
#[derive(Args, Debug)]
pub struct WalArgs {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: WalCommand,
}

/// `strata wal ...`
#[derive(Subcommand, Debug)]
pub enum WalCommand {
    /// Print the batches and entries of a database's WAL segments, or of one segment file.
    Dump(DumpArgs),
}

/// Options of `strata wal dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// A database directory (every segment, keyspace names resolved) or one `.wal` file.
    pub path: PathBuf,
    /// Only entries with a seqno at or above this.
    #[arg(long)]
    pub from_seqno: Option<u64>,
    /// Only entries with a seqno at or below this.
    #[arg(long)]
    pub to_seqno: Option<u64>,
    /// Only entries of this keyspace (name, or numeric id).
    #[arg(long)]
    pub keyspace: Option<String>,
    /// Print values (otherwise only their length).
    #[arg(long)]
    pub values: bool,
}

/// Runs a `strata wal` command.
///
/// # Errors
/// Exit code and message for the failure (see [`crate::output`]).
pub fn run(args: &WalArgs) -> CliResult {
    let ctx = &Ctx::new(&args.global);
    match &args.command {
        WalCommand::Dump(args) => dump(ctx, args),
    }
}

/// Keyspace names by id from the metadata log of `dir`, if it has a readable one. Keyspaces
/// dropped since are not in it; their entries show the id only.
fn keyspace_names(dir: &Path) -> BTreeMap<u32, String> {
    match inspect::read_meta(&RealFs, dir) {
        Ok(meta) => meta
            .state
            .keyspaces
            .into_iter()
            .map(|k| (k.id, k.name))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// Reads the segments. On damage in the middle of the log, shows what can be read before the
/// damage (each segment read on its own, so the damaged one stops where the damage starts) and
/// then reports the damage.
fn read(path: &Path) -> (Vec<WalSegmentView>, Option<strata::Error>) {
    match inspect::read_wal(&RealFs, path) {
        Ok(segments) => (segments, None),
        Err(error) if error.is_corruption() && path.is_dir() => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wal"))
                .collect();
            files.sort();
            let mut segments = Vec::new();
            for file in files {
                let damaged =
                    matches!(&error, strata::Error::Corruption { path, .. } if *path == file);
                if let Ok(mut views) = inspect::read_wal(&RealFs, &file) {
                    if damaged {
                        // Read on its own, damage reads as a torn tail; it is not one.
                        for view in &mut views {
                            view.torn_tail = None;
                        }
                    }
                    segments.extend(views);
                }
                if damaged {
                    break;
                }
            }
            (segments, Some(error))
        }
        Err(error) => (Vec::new(), Some(error)),
    }
}

fn dump(ctx: &Ctx, args: &DumpArgs) -> CliResult {
    check_exists(&args.path)?;
    if !args.path.is_dir() && args.path.extension().is_none_or(|e| e != "wal") {
        return Err(CliError::usage(format!(
            "{} is neither a database directory nor a WAL segment (*.wal)",
            args.path.display()
        )));
    }
    let names = if args.path.is_dir() {
        keyspace_names(&args.path)
    } else {
        args.path.parent().map(keyspace_names).unwrap_or_default()
    };
    let keyspace_filter = match &args.keyspace {
        None => None,
        Some(wanted) => match names.iter().find(|(_, name)| *name == wanted) {
            Some((&id, _)) => Some(id),
            None => match wanted.parse::<u32>() {
                Ok(id) => Some(id),
                Err(_) => {
                    return Err(CliError::not_found(format!(
                        "keyspace {wanted:?} is not in the metadata log of {} (give its numeric id instead)",
                        args.path.display()
                    )))
                }
            },
        },
    };
    let (segments, damage) = read(&args.path);
    let wanted = |seqno: u64, keyspace: u32| {
        args.from_seqno.is_none_or(|f| seqno >= f)
            && args.to_seqno.is_none_or(|t| seqno <= t)
            && keyspace_filter.is_none_or(|k| k == keyspace)
    };
    let mut seg_docs = Vec::new();
    let mut entry_count = 0u64;
    let mut batch_count = 0u64;
    for segment in &segments {
        let mut batches = Vec::new();
        for batch in &segment.batches {
            let entries: Vec<Value> = batch
                .entries
                .iter()
                .filter(|e| wanted(e.seqno, e.keyspace))
                .map(|e| {
                    let mut entry = json!({
                        "seqno": e.seqno,
                        "keyspace_id": e.keyspace,
                        "keyspace": names.get(&e.keyspace),
                        "kind": e.kind,
                        "key": ctx.bytes(&e.key),
                        "value_len": e.value.len(),
                    });
                    if args.values {
                        entry["value"] = ctx.bytes(&e.value).into();
                    }
                    entry
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            batch_count += 1;
            entry_count += entries.len() as u64;
            batches.push(json!({
                "offset": batch.offset,
                "first_seqno": batch.first_seqno,
                "entries": entries,
            }));
        }
        seg_docs.push(json!({
            "id": segment.id,
            "path": segment.path,
            "size": segment.size,
            "torn_tail": segment.torn_tail,
            "batches": batches,
        }));
    }
    let damage_json = damage.as_ref().map(|e| match e {
        strata::Error::Corruption { path, offset, what } => {
            json!({"path": path, "offset": offset, "what": what})
        }
        other => json!({"path": args.path, "offset": null, "what": other.to_string()}),
    });
    match ctx.format {
        Format::Json => ctx.json(&json!({
            "path": args.path,
            "segments": seg_docs,
            "batches": batch_count,
            "entries": entry_count,
            "damage": damage_json,
        }))?,
        Format::Jsonl => {
            for seg in &seg_docs {
                for batch in seg["batches"].as_array().into_iter().flatten() {
                    for entry in batch["entries"].as_array().into_iter().flatten() {
                        let mut line = entry.clone();
                        line["segment"] = seg["id"].clone();
                        line["offset"] = batch["offset"].clone();
                        ctx.json(&line)?;
                    }
                }
            }
        }
        Format::Text => {
            for seg in &seg_docs {
                let torn = seg["torn_tail"].as_u64().map_or(String::new(), |t| {
                    format!(", torn tail at offset {t} (a crash mid-write; recovery drops it)")
                });
                out(format!(
                    "segment {} ({}, {} bytes{torn})",
                    seg["id"],
                    seg["path"].as_str().unwrap_or_default(),
                    seg["size"],
                ))?;
                let batches = seg["batches"].as_array().cloned().unwrap_or_default();
                if batches.is_empty() {
                    continue;
                }
                let mut header = vec!["offset", "seqno", "keyspace", "kind", "key"];
                header.push(if args.values { "value" } else { "value bytes" });
                let mut t = table(header);
                for batch in &batches {
                    for entry in batch["entries"].as_array().into_iter().flatten() {
                        let keyspace = match entry["keyspace"].as_str() {
                            Some(name) => format!("{name} ({})", entry["keyspace_id"]),
                            None => entry["keyspace_id"].to_string(),
                        };
                        let value = if args.values {
                            Cell::new(entry["value"].as_str().unwrap_or_default())
                        } else {
                            num(&entry["value_len"])
                        };
                        t.add_row(vec![
                            num(&batch["offset"]),
                            num(&entry["seqno"]),
                            Cell::new(keyspace),
                            Cell::new(entry["kind"].as_str().unwrap_or_default()),
                            Cell::new(entry["key"].as_str().unwrap_or_default()),
                            value,
                        ]);
                    }
                }
                out(t)?;
            }
            if damage.is_none() || !segments.is_empty() {
                out(format!(
                    "{} segments, {batch_count} batches, {entry_count} entries shown",
                    segments.len()
                ))?;
            }
        }
    }
    match damage {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}
