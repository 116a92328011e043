//! End-to-end tests of `strata bench` and `strata bench report`: the binary runs with tiny
//! sizes, and its output, JSON lines, charts and exit codes are checked.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const ALL: &str = "fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,readreverse,\
                   seekrandom,readwhilewriting,fillsync,updaterandom,deleterandom,upsertrandom,\
                   txnrandom";

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("the strata binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn tiny<'a>(benchmarks: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "bench",
        "--num",
        "2000",
        "--reads",
        "500",
        "--benchmarks",
        benchmarks,
    ];
    args.extend_from_slice(extra);
    args
}

/// The workload's db_bench line: its name padded, then a colon.
fn workload_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })
}

#[test]
fn every_workload_runs_and_prints_its_line() {
    let output = strata(&tiny(ALL, &[]));
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}\nstdout: {text}",
        output.status.code(),
        stderr(&output)
    );
    for name in ALL.split(',') {
        let line =
            workload_line(&text, name).unwrap_or_else(|| panic!("no line for {name} in:\n{text}"));
        for part in ["micros/op", "ops/sec;", "MB/s"] {
            assert!(line.contains(part), "{name}: {line}");
        }
    }
    assert!(
        text.contains("readrandom   :"),
        "db_bench's 12-wide name column"
    );
    assert!(
        text.contains("(500 of 500 found)"),
        "readrandom after fillseq finds all"
    );
    assert!(text.contains("(0 of 500 found)"), "readmissing finds none");
    for part in [
        "latency us: p50",
        "p99.9",
        "write amp",
        "space amp",
        "stalls",
        "total ",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    assert!(
        text.contains("reopened with WAL mode fsync"),
        "fillsync reopens with fsync"
    );
}

fn check_result(line: &Value) {
    assert_eq!(line["schema"], "strata-bench/1");
    for field in [
        "run_id",
        "strata_version",
        "workload",
        "status",
        "wal_mode",
        "threads",
        "ops",
        "bytes",
        "elapsed_s",
        "micros_per_op",
        "ops_per_sec",
        "mb_per_sec",
        "timeline",
        "config",
    ] {
        assert!(!line[field].is_null(), "{field} missing in {line}");
    }
    assert_eq!(line["config"]["num"], 2000);
    assert_eq!(line["config"]["reads"], 500);
    if line["status"] == "skipped" {
        assert!(line["skip_reason"].is_string());
        return;
    }
    assert!(line["ops"].as_u64().is_some_and(|ops| ops > 0), "{line}");
    for field in ["min", "mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(
            line["latency_us"][field].is_number(),
            "latency {field}: {line}"
        );
    }
    let engine = &line["engine"];
    for field in [
        "user_bytes_written",
        "run_bytes_written",
        "run_bytes_on_disk",
        "live_keys",
        "logical_bytes",
        "runs",
        "stalls",
        "stall_ms",
        "longest_stall_ms",
        "cache_hits",
        "bloom_checks",
        "bloom_negatives",
        "commits",
    ] {
        assert!(engine[field].is_u64(), "engine.{field}: {line}");
    }
    for field in ["write_amp", "os_write_amp", "space_amp", "cache_hit_rate"] {
        assert!(
            engine.get(field).is_some(),
            "engine.{field} (number or null): {line}"
        );
    }
}

#[test]
fn jsonl_results_follow_the_schema_and_report_compares_them() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let results = dir.path().join("results.jsonl");
    let results_arg = results.to_str().expect("UTF-8 path");
    let output = strata(&tiny(
        "fillseq,readrandom,seekrandom,upsertrandom",
        &["--format", "jsonl", "--jsonl-out", results_arg],
    ));
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each stdout line is JSON"))
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["workload"].as_str())
        .collect();
    assert_eq!(
        names,
        ["fillseq", "readrandom", "seekrandom", "upsertrandom"]
    );
    lines.iter().for_each(check_result);
    assert_eq!(lines[0]["engine"]["live_keys"], 2000);
    assert_eq!(lines[1]["found"], 500);
    assert_eq!(lines[3]["status"], "ok");
    assert!(lines[3]["ops"].as_u64().is_some_and(|ops| ops > 0));
    let appended = std::fs::read_to_string(&results).expect("--jsonl-out file");
    assert_eq!(appended, text, "--jsonl-out holds the same lines");

    // A second run appends; the report shows medians of both.
    let again = strata(&tiny(
        "fillseq,readrandom",
        &["--format", "jsonl", "--jsonl-out", results_arg],
    ));
    assert!(again.status.success(), "stderr: {}", stderr(&again));
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, &again.stdout).expect("write other.jsonl");

    let svg = dir.path().join("chart.svg");
    let report = strata(&[
        "bench",
        "report",
        results_arg,
        other.to_str().expect("UTF-8 path"),
        "--chart",
        svg.to_str().expect("UTF-8 path"),
    ]);
    let table = stdout(&report);
    assert!(
        report.status.success(),
        "stderr: {}\n{table}",
        stderr(&report)
    );
    for part in [
        "results ops/sec",
        "results p99 us",
        "other ops/sec",
        "other / results",
        "(n=2)",
    ] {
        assert!(table.contains(part), "missing {part:?} in:\n{table}");
    }
    for name in ["fillseq", "readrandom", "seekrandom", "upsertrandom"] {
        assert!(table.contains(name), "{name} row in:\n{table}");
    }
    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    assert!(chart.contains("<svg"), "an SVG document");
    assert!(
        chart.contains("Throughput") && chart.contains("readrandom"),
        "labels"
    );

    if Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        let png = dir.path().join("chart.png");
        let report = strata(&[
            "bench",
            "report",
            results_arg,
            "--chart",
            png.to_str().expect("UTF-8"),
        ]);
        assert!(report.status.success(), "stderr: {}", stderr(&report));
        let bytes = std::fs::read(&png).expect("the PNG was written");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG file");
    }
}

#[test]
fn json_format_prints_one_document() {
    let output = strata(&tiny("fillrandom,readmissing", &["--format", "json"]));
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let document: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(document["schema"], "strata-bench/1");
    assert!(document["total_s"].is_number());
    let results = document["results"].as_array().expect("results array");
    assert_eq!(results.len(), 2);
    results.iter().for_each(check_result);
    assert_eq!(results[1]["found"], 0);
}

#[test]
fn an_existing_database_is_reused_only_when_asked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("db");
    let db_arg = db.to_str().expect("UTF-8 path");
    let fill = strata(&tiny("fillseq", &["--db", db_arg]));
    assert!(fill.status.success(), "stderr: {}", stderr(&fill));
    assert!(db.exists(), "--db is kept afterwards");

    let refused = strata(&tiny("readrandom", &["--db", db_arg]));
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a non-empty --db needs --use-existing"
    );
    assert!(
        stderr(&refused).contains("--use-existing"),
        "{}",
        stderr(&refused)
    );

    let read = strata(&tiny(
        "readrandom",
        &["--db", db_arg, "--use-existing", "--format", "jsonl"],
    ));
    assert!(read.status.success(), "stderr: {}", stderr(&read));
    let line: Value = serde_json::from_slice(&read.stdout).expect("one JSON line");
    assert_eq!(line["found"], 500, "the filled keys are found");
    assert_eq!(
        line["engine"]["live_keys"], 2000,
        "live keys counted at open"
    );
}

#[test]
fn usage_errors_exit_with_code_2() {
    let unknown = strata(&["bench", "--benchmarks", "fillseq,nosuchload"]);
    assert_eq!(unknown.status.code(), Some(2));
    let message = stderr(&unknown);
    assert!(
        message.starts_with("strata: unknown benchmark \"nosuchload\""),
        "{message}"
    );
    assert!(
        message.contains("readwhilewriting"),
        "lists the known names: {message}"
    );

    let existing = strata(&["bench", "--use-existing"]);
    assert_eq!(existing.status.code(), Some(2));
    assert!(stderr(&existing).contains("--db"));

    let keys = strata(&["bench", "--num", "100000", "--key-size", "4"]);
    assert_eq!(keys.status.code(), Some(2));

    let chart = strata(&["bench", "report", "missing.jsonl"]);
    assert_eq!(
        chart.status.code(),
        Some(4),
        "an unreadable file is not a usage error"
    );
    assert!(stderr(&chart).starts_with("strata: "));
}
