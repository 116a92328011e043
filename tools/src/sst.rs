//! `strata sst`: look inside one run file (scan, properties, page index, point lookup, verify,
//! identify). Everything goes through `strata_sstable`'s own reader.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use comfy_table::Cell;
use serde_json::{json, Map, Value};
use strata::sstable::{
    self, LookupOutcome, ReadOptions, Run, FOOTER_LEN, FORMAT_VERSION, MAX_SEQNO,
};

use crate::output::{
    check_exists, num, parse_key, table, CliError, CliResult, Ctx, GlobalArgs, EXIT_CORRUPTION,
    EXIT_NOT_FOUND, EXIT_OTHER,
};

/// `strata sst`: the subcommand and the output flags.
#[derive(Args, Debug)]
pub struct SstArgs {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: SstCommand,
}

/// `strata sst ...`
#[derive(Subcommand, Debug)]
pub enum SstCommand {
    /// Print the entries of a run: key, seqno, kind, value (every version).
    Scan(ScanArgs),
    /// Print every property the writer recorded, and the footer's block handles.
    Props(FileArg),
    /// Check every checksum, the key order and the properties of runs (exit 1 on a problem).
    Verify(VerifyArgs),
    /// Print the page index: offset, stored and raw size, entries, first key and seqno per page.
    Pages(FileArg),
    /// Point lookup: every version of KEY visible at --seqno, and what the bloom filter said.
    Get(GetArgs),
    /// Say whether files are run files and which format version they claim.
    Identify(IdentifyArgs),
}

/// One run file.
#[derive(Args, Debug)]
pub struct FileArg {
    /// The run file.
    pub file: PathBuf,
}

/// Options of `strata sst scan`.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// The run file.
    pub file: PathBuf,
    /// Start at this key (inclusive).
    #[arg(long)]
    pub from: Option<String>,
    /// Stop before this key (exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Print at most this many entries.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Scan from the last key backwards.
    #[arg(long)]
    pub reverse: bool,
    /// --from and --to are hex.
    #[arg(long)]
    pub key_hex: bool,
}

/// Options of `strata sst verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Run files to verify.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Options of `strata sst get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The run file.
    pub file: PathBuf,
    /// The key (UTF-8, or hex with --key-hex).
    pub key: String,
    /// Read as of this seqno: versions with a higher seqno are invisible (default: all).
    #[arg(long)]
    pub seqno: Option<u64>,
    /// KEY is hex.
    #[arg(long)]
    pub key_hex: bool,
}

/// Options of `strata sst identify`.
#[derive(Args, Debug)]
pub struct IdentifyArgs {
    /// Files to identify.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs a `strata sst` command.
///
/// # Errors
/// Exit code and message for the failure (see [`crate::output`]).
pub fn run(args: &SstArgs) -> CliResult {
    let ctx = &Ctx::new(&args.global);
    match &args.command {
        SstCommand::Scan(args) => scan(ctx, args),
        SstCommand::Props(args) => props(ctx, &args.file),
        SstCommand::Verify(args) => verify(ctx, &args.files),
        SstCommand::Pages(args) => pages(ctx, &args.file),
        SstCommand::Get(args) => get(ctx, args),
        SstCommand::Identify(args) => identify(ctx, &args.paths),
    }
}

fn open(path: &Path) -> CliResult<Run> {
    check_exists(path)?;
    if path.is_dir() {
        return Err(CliError::other(format!(
            "{} is a directory, not a run file",
            path.display()
        )));
    }
    Ok(Run::open(path, ReadOptions::default())?)
}

fn bound(key: Option<&String>, key_hex: bool, included: bool) -> CliResult<Bound<Vec<u8>>> {
    Ok(match key {
        None => Bound::Unbounded,
        Some(k) if included => Bound::Included(parse_key(k, key_hex)?),
        Some(k) => Bound::Excluded(parse_key(k, key_hex)?),
    })
}

fn scan(ctx: &Ctx, args: &ScanArgs) -> CliResult {
    let run = open(&args.file)?;
    let lower = bound(args.from.as_ref(), args.key_hex, true)?;
    let upper = bound(args.to.as_ref(), args.key_hex, false)?;
    let range = run.range(
        lower.as_ref().map(Vec::as_slice),
        upper.as_ref().map(Vec::as_slice),
    );
    let entries: Box<dyn Iterator<Item = sstable::Result<sstable::Entry>>> = if args.reverse {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    let progress = ctx.progress(
        run.properties().entries.min(limit),
        false,
        "scanning entries",
    );
    let mut rows = Vec::new();
    let mut failure = None;
    for entry in entries.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let row = json!({
            "key": ctx.bytes(&entry.key),
            "seqno": entry.seqno,
            "kind": entry.kind.name(),
            "value": ctx.bytes(&entry.value),
        });
        if ctx.format == crate::output::Format::Jsonl {
            ctx.json(&row)?;
        } else {
            rows.push(row);
        }
        progress.inc(1);
    }
    drop(progress);
    if failure.is_none() || !rows.is_empty() {
        print_entries(ctx, &args.file, rows)?;
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn print_entries(ctx: &Ctx, file: &Path, rows: Vec<Value>) -> CliResult {
    match ctx.format {
        crate::output::Format::Jsonl => Ok(()),
        crate::output::Format::Json => ctx.json(&json!({
            "file": file,
            "entries": rows,
        })),
        crate::output::Format::Text => {
            let mut t = table(["key", "seqno", "kind", "value"]);
            let count = rows.len();
            for row in rows {
                t.add_row(vec![
                    Cell::new(str_field(&row, "key")),
                    num(&row["seqno"]),
                    Cell::new(str_field(&row, "kind")),
                    Cell::new(str_field(&row, "value")),
                ]);
            }
            crate::output::out(t)?;
            crate::output::out(format!("{count} entries"))
        }
    }
}

fn str_field<'a>(row: &'a Value, name: &str) -> &'a str {
    row[name].as_str().unwrap_or_default()
}

/// Every property as a JSON object (field names as `Properties` serializes them).
fn properties_json(ctx: &Ctx, run: &Run) -> CliResult<Map<String, Value>> {
    let props = run.properties();
    let mut value = serde_json::to_value(props)
        .map_err(|e| CliError::other(format!("encoding properties: {e}")))?;
    if let Value::Object(map) = &mut value {
        // Byte strings: always strings, even when empty.
        map.insert("min_key".into(), ctx.bytes(&props.min_key).into());
        map.insert("max_key".into(), ctx.bytes(&props.max_key).into());
        let user: Map<String, Value> = props
            .user
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(ctx.bytes(v))))
            .collect();
        map.insert("user".into(), Value::Object(user));
        map.insert(
            "compression".into(),
            props
                .compression
                .map_or(Value::Null, |c| c.to_string().into()),
        );
    }
    crate::output::render_byte_arrays(ctx, &mut value, false);
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(CliError::other("properties did not encode as an object")),
    }
}

fn props(ctx: &Ctx, file: &Path) -> CliResult {
    let run = open(file)?;
    let properties = properties_json(ctx, &run)?;
    let footer = run.footer();
    let handle = |h: sstable::BlockHandle| json!({"offset": h.offset, "len": h.len});
    let doc = json!({
        "file": file,
        "file_size": run.file_size(),
        "footer": {
            "format_version": footer.format_version,
            "index": handle(footer.index),
            "bloom": handle(footer.bloom),
            "properties": handle(footer.properties),
        },
        "properties": properties,
    });
    if !ctx.text() {
        return ctx.json(&doc);
    }
    let mut t = table(["property", "value"]);
    let mut add = |name: &str, value: &Value| {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        t.add_row(vec![Cell::new(name), Cell::new(shown)]);
    };
    add("file", &doc["file"]);
    add("file_size", &doc["file_size"]);
    for (name, value) in &properties {
        if name == "user" {
            continue;
        }
        add(name, value);
    }
    for (name, value) in properties
        .get("user")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        add(&format!("user.{name}"), value);
    }
    for block in ["index", "bloom", "properties"] {
        let h = &doc["footer"][block];
        add(
            &format!("footer.{block}"),
            &Value::String(format!("offset {} len {}", h["offset"], h["len"])),
        );
    }
    crate::output::out(t)
}

fn pages(ctx: &Ctx, file: &Path) -> CliResult {
    let run = open(file)?;
    let rows: Vec<Value> = run
        .pages()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "page": i,
                "offset": p.offset,
                "stored_bytes": p.stored_len,
                "raw_bytes": p.raw_len,
                "entries": p.entries,
                "first_key": ctx.bytes(&p.first_key),
                "first_seqno": p.first_seqno,
            })
        })
        .collect();
    match ctx.format {
        crate::output::Format::Jsonl => rows.iter().try_for_each(|r| ctx.json(r)),
        crate::output::Format::Json => ctx.json(&json!({"file": file, "pages": rows})),
        crate::output::Format::Text => {
            let mut t = table([
                "page",
                "offset",
                "stored bytes",
                "raw bytes",
                "entries",
                "first key",
                "first seqno",
            ]);
            for r in &rows {
                t.add_row(vec![
                    num(&r["page"]),
                    num(&r["offset"]),
                    num(&r["stored_bytes"]),
                    num(&r["raw_bytes"]),
                    num(&r["entries"]),
                    Cell::new(str_field(r, "first_key")),
                    num(&r["first_seqno"]),
                ]);
            }
            crate::output::out(t)?;
            let props = run.properties();
            crate::output::out(format!(
                "{} pages, {} entries, {} data bytes stored ({} raw); stored sizes exclude the {}-byte block trailer",
                props.pages,
                props.entries,
                props.stored_data_bytes,
                props.raw_data_bytes,
                sstable::BLOCK_TRAILER_LEN
            ))
        }
    }
}

fn get(ctx: &Ctx, args: &GetArgs) -> CliResult {
    let run = open(&args.file)?;
    let key = parse_key(&args.key, args.key_hex)?;
    let seqno = args.seqno.unwrap_or(MAX_SEQNO);
    let mut versions = Vec::new();
    let outcome = run.get(&key, seqno, |v| {
        versions.push(json!({
            "seqno": v.seqno,
            "kind": v.kind.name(),
            "value": ctx.bytes(&v.value),
        }));
        true
    })?;
    let (lookup, bloom) = match outcome {
        LookupOutcome::OutOfRange => ("out_of_range", "not_consulted"),
        LookupOutcome::BloomNegative => ("bloom_negative", "negative"),
        LookupOutcome::Searched { .. } if run.has_bloom() => ("searched", "maybe_present"),
        LookupOutcome::Searched { .. } => ("searched", "no_filter"),
    };
    let doc = json!({
        "file": args.file,
        "key": ctx.bytes(&key),
        "read_seqno": seqno,
        "lookup": lookup,
        "bloom": bloom,
        "found": !versions.is_empty(),
        "versions": versions,
    });
    if ctx.text() {
        let explain = match outcome {
            LookupOutcome::OutOfRange => {
                "out of range: the key lies outside the run's [min key, max key]; nothing read"
                    .to_string()
            }
            LookupOutcome::BloomNegative => {
                "bloom negative: the filter rules the key out; nothing read".to_string()
            }
            LookupOutcome::Searched { visited } => format!(
                "searched: {} ({visited} versions visible{})",
                if run.has_bloom() {
                    "the bloom filter says maybe present, pages were read"
                } else {
                    "the run has no bloom filter, pages were read"
                },
                args.seqno
                    .map_or(String::new(), |s| format!(" at seqno {s}"))
            ),
        };
        crate::output::out(format!("key {}: {explain}", ctx.bytes(&key)))?;
        if !versions.is_empty() {
            let mut t = table(["seqno", "kind", "value"]);
            for v in &versions {
                t.add_row(vec![
                    num(&v["seqno"]),
                    Cell::new(str_field(v, "kind")),
                    Cell::new(str_field(v, "value")),
                ]);
            }
            crate::output::out(t)?;
        }
    } else {
        ctx.json(&doc)?;
    }
    if versions.is_empty() {
        return Err(CliError::not_found(format!(
            "key {} not found in {}",
            ctx.bytes(&key),
            args.file.display()
        )));
    }
    Ok(())
}

fn verify(ctx: &Ctx, files: &[PathBuf]) -> CliResult {
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let progress = ctx.progress(total, true, "verifying runs");
    let mut results = Vec::new();
    let (mut corrupt, mut missing, mut failed) = (false, false, false);
    let mut done = 0;
    for file in files {
        let mut result = json!({
            "file": file,
            "status": "ok",
            "pages": 0,
            "entries": 0,
            "bytes": 0,
            "problem_count": 0,
            "problems": [],
        });
        let opened = if file.exists() {
            Run::open(file, ReadOptions::default()).map_err(strata::Error::from)
        } else {
            Err(strata::Error::io(
                file,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ))
        };
        match opened {
            Ok(run) => {
                let report = run.verify();
                result["pages"] = report.pages.into();
                result["entries"] = report.entries.into();
                result["bytes"] = report.bytes.into();
                result["problem_count"] = report.problem_count.into();
                result["problems"] = report
                    .problems
                    .iter()
                    .map(|p| json!({"offset": p.offset, "what": p.what}))
                    .collect();
                if !report.is_ok() {
                    result["status"] = "corrupt".into();
                    corrupt = true;
                }
                done += run.file_size();
            }
            Err(e) => {
                let offset = match &e {
                    strata::Error::Corruption { offset, .. } => Some(*offset),
                    _ => None,
                };
                let what = match &e {
                    strata::Error::Corruption { what, .. } => what.clone(),
                    other => other.to_string(),
                };
                let status = match CliError::from(e).code {
                    EXIT_CORRUPTION => {
                        corrupt = true;
                        "corrupt"
                    }
                    EXIT_NOT_FOUND => {
                        missing = true;
                        "missing"
                    }
                    _ => {
                        failed = true;
                        "error"
                    }
                };
                result["status"] = status.into();
                result["problem_count"] = 1.into();
                result["problems"] = json!([{"offset": offset, "what": what}]);
            }
        }
        progress.set(done);
        results.push(result);
    }
    drop(progress);
    match ctx.format {
        crate::output::Format::Jsonl => results.iter().try_for_each(|r| ctx.json(r))?,
        crate::output::Format::Json => ctx.json(&json!({"files": results}))?,
        crate::output::Format::Text => {
            let mut t = table(["file", "status", "pages", "entries", "problems"]);
            for r in &results {
                t.add_row(vec![
                    Cell::new(str_field(r, "file")),
                    Cell::new(str_field(r, "status")),
                    num(&r["pages"]),
                    num(&r["entries"]),
                    num(&r["problem_count"]),
                ]);
            }
            crate::output::out(t)?;
            for r in &results {
                for p in r["problems"].as_array().into_iter().flatten() {
                    let at = p["offset"]
                        .as_u64()
                        .map_or(String::new(), |o| format!(" at offset {o}"));
                    crate::output::out(format!(
                        "{}{at}: {}",
                        str_field(r, "file"),
                        str_field(p, "what")
                    ))?;
                }
            }
        }
    }
    // Corruption outranks a missing file, which outranks other errors.
    if corrupt {
        Err(CliError::silent(EXIT_CORRUPTION))
    } else if missing {
        Err(CliError::silent(EXIT_NOT_FOUND))
    } else if failed {
        Err(CliError::silent(EXIT_OTHER))
    } else {
        Ok(())
    }
}

/// Reads the last `FOOTER_LEN` bytes (or the whole file if shorter).
fn read_tail(path: &Path) -> std::io::Result<(u64, Vec<u8>)> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let start = size.saturating_sub(FOOTER_LEN as u64);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity(FOOTER_LEN);
    file.read_to_end(&mut tail)?;
    Ok((size, tail))
}

fn identify(ctx: &Ctx, paths: &[PathBuf]) -> CliResult {
    let mut rows = Vec::new();
    let mut missing = false;
    for path in paths {
        let mut row = json!({
            "path": path,
            "is_run": false,
            "format_version": null,
            "supported": false,
            "size": null,
            "what": "",
        });
        if !path.exists() {
            missing = true;
            row["what"] = "no such file or directory".into();
        } else if path.is_dir() {
            row["what"] = "a directory".into();
        } else {
            match read_tail(path) {
                Err(e) => row["what"] = format!("cannot read: {e}").into(),
                Ok((size, tail)) => {
                    row["size"] = size.into();
                    match sstable::identify(&tail) {
                        Some(version) => {
                            row["is_run"] = true.into();
                            row["format_version"] = version.into();
                            row["supported"] = (version == FORMAT_VERSION).into();
                            row["what"] = if version == FORMAT_VERSION {
                                format!("strata run file, format version {version}")
                            } else {
                                format!(
                                    "strata run file, format version {version} (this build reads version {FORMAT_VERSION})"
                                )
                            }
                            .into();
                        }
                        None => {
                            row["what"] = not_a_run(path).into();
                        }
                    }
                }
            }
        }
        rows.push(row);
    }
    match ctx.format {
        crate::output::Format::Jsonl => rows.iter().try_for_each(|r| ctx.json(r))?,
        crate::output::Format::Json => ctx.json(&json!({"paths": rows}))?,
        crate::output::Format::Text => {
            let mut t = table(["path", "run file", "format version", "size", "what"]);
            for r in &rows {
                t.add_row(vec![
                    Cell::new(str_field(r, "path")),
                    Cell::new(if r["is_run"] == true { "yes" } else { "no" }),
                    num(r["format_version"]
                        .as_u64()
                        .map_or(String::new(), |v| v.to_string())),
                    num(r["size"].as_u64().map_or(String::new(), |v| v.to_string())),
                    Cell::new(str_field(r, "what")),
                ]);
            }
            crate::output::out(t)?;
        }
    }
    if missing {
        return Err(CliError::not_found("some paths do not exist"));
    }
    Ok(())
}

/// What a file that is not a run may be instead, asking the engine's own readers.
fn not_a_run(path: &Path) -> String {
    let fs = strata::fs::RealFs;
    if path.extension().is_some_and(|e| e == "wal") {
        return match strata::inspect::read_wal(&fs, path) {
            Ok(segments) => format!(
                "not a run file: a WAL segment ({} batches)",
                segments.iter().map(|s| s.batches.len()).sum::<usize>()
            ),
            Err(e) => format!("not a run file (named like a WAL segment, but: {e})"),
        };
    }
    if path.file_name().is_some_and(|n| n == "meta.log") {
        if let Some(dir) = path.parent() {
            if let Ok(meta) = strata::inspect::read_meta(&fs, dir) {
                return format!(
                    "not a run file: a metadata log ({} frames)",
                    meta.frames.len()
                );
            }
        }
    }
    "not a run file (no run magic in the footer)".to_string()
}
