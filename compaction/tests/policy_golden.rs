//! Golden tests of the compaction policy: `testdata/policy/*.txt`.
//!
//! # Fixture format
//!
//! One case per file. Above a line `---`, the input:
//!
//! ```text
//! # Free comment lines start with '#'.
//! runs: 1M 1M 1M 100M      run sizes, newest first (B, K, M, G, T = powers of 1024;
//!                          decimals allowed: 1.5M); an empty list is allowed
//! seeds: 0 0 9 0           optional, one per run (default 0); see keeps_extra_run
//! ratio: 3.5               optional run_size_ratio (default 3.5)
//! count: 2                 optional run_count_per_level (default 2)
//! compacting: true         optional (default false)
//! ```
//!
//! Below it, the expected output: the levels (a `*` marks a run whose seed lets its level keep
//! an extra run), the task the shape asks for and why, the debt, the space amplification, and
//! what `pick` returns. Run with `STRATA_REWRITE_GOLDEN=1` to rewrite every expected part from
//! the current policy (then review the diff).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use strata_compaction::{
    keeps_extra_run, CompactionPolicy, CompactionReason, RangeRuns, RunSlice, VinylPolicy,
};

const SEPARATOR: &str = "---";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/policy")
}

/// Parses `1M`, `1.5G`, `200K`, `17`, `17B`.
fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown unit in size {text:?}")),
    };
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_mul(multiplier)
            .ok_or_else(|| format!("size {text:?} overflows"));
    }
    let n: f64 = number.parse().map_err(|_| format!("bad size {text:?}"))?;
    Ok((n * multiplier as f64).round() as u64)
}

/// Renders a size with the largest binary unit it reaches: exact (`3M`) or with three
/// significant digits (`2.33M`).
fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit {
            if bytes.is_multiple_of(unit) {
                return format!("{}{name}", bytes / unit);
            }
            let value = bytes as f64 / unit as f64;
            let text = if value >= 100.0 {
                format!("{value:.0}")
            } else if value >= 10.0 {
                format!("{value:.1}")
            } else {
                format!("{value:.2}")
            };
            let text = if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                text
            };
            return format!("{text}{name}");
        }
    }
    format!("{bytes}B")
}

struct Case {
    runs: Vec<RunSlice>,
    policy: VinylPolicy,
    compacting: bool,
}

fn parse_case(input: &str) -> Result<Case, String> {
    let mut sizes: Option<Vec<u64>> = None;
    let mut seeds: Option<Vec<u64>> = None;
    let mut ratio = strata_compaction::DEFAULT_RUN_SIZE_RATIO;
    let mut count = strata_compaction::DEFAULT_RUN_COUNT_PER_LEVEL;
    let mut compacting = false;
    for line in input.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("expected `name: value`, got {line:?}"))?;
        let value = value.trim();
        match name.trim() {
            "runs" => {
                sizes = Some(
                    value
                        .split_whitespace()
                        .map(parse_size)
                        .collect::<Result<_, _>>()?,
                )
            }
            "seeds" => {
                seeds = Some(
                    value
                        .split_whitespace()
                        .map(|s| s.parse().map_err(|_| format!("bad seed {s:?}")))
                        .collect::<Result<_, _>>()?,
                )
            }
            "ratio" => ratio = value.parse().map_err(|_| format!("bad ratio {value:?}"))?,
            "count" => count = value.parse().map_err(|_| format!("bad count {value:?}"))?,
            "compacting" => {
                compacting = value
                    .parse()
                    .map_err(|_| format!("bad compacting {value:?}"))?
            }
            other => return Err(format!("unknown input line {other:?}")),
        }
    }
    let sizes = sizes.ok_or("missing `runs:` line")?;
    let seeds = seeds.unwrap_or_else(|| vec![0; sizes.len()]);
    if seeds.len() != sizes.len() {
        return Err(format!("{} seeds for {} runs", seeds.len(), sizes.len()));
    }
    let policy = VinylPolicy::new(ratio, count).map_err(|e| e.to_string())?;
    Ok(Case {
        runs: sizes
            .into_iter()
            .zip(seeds)
            .map(|(bytes, seed)| RunSlice { bytes, seed })
            .collect(),
        policy,
        compacting,
    })
}

fn render(case: &Case) -> String {
    let range = RangeRuns::new(&case.runs).with_compacting(case.compacting);
    let shape = case.policy.analyze(&range);
    let mut out = String::new();
    if shape.levels.is_empty() {
        out.push_str("levels: none\n");
    } else {
        out.push_str("levels:\n");
    }
    for level in &shape.levels {
        let runs: Vec<String> = case.runs[level.runs.clone()]
            .iter()
            .map(|run| {
                let star = if keeps_extra_run(run.seed) { "*" } else { "" };
                format!("{}{star}", format_size(run.bytes))
            })
            .collect();
        let _ = writeln!(
            out,
            "  L{} target {}: {} = {}{}",
            level.index,
            format_size(level.target_bytes),
            runs.join(" "),
            format_size(level.bytes),
            if level.is_bottom { " (bottom)" } else { "" },
        );
    }
    match shape.task {
        None => out.push_str("task: none\n"),
        Some(task) => {
            let _ = writeln!(
                out,
                "task: merge the newest {} of {} runs ({}), priority {}, output {}",
                task.run_count,
                case.runs.len(),
                format_size(task.input_bytes),
                task.priority,
                if task.output_is_bottom {
                    "at the bottom"
                } else {
                    "above the bottom"
                },
            );
            let reason = match task.reason {
                CompactionReason::LevelOverfull {
                    level,
                    runs,
                    limit,
                    planned_output,
                } => format!(
                    "level {level} holds {runs} runs{}, over its limit of {limit}",
                    if planned_output {
                        " counting the output of the merge above"
                    } else {
                        ""
                    }
                ),
                CompactionReason::BottomOverfull { runs } => {
                    format!("the bottom level holds {runs} runs (major compaction)")
                }
                CompactionReason::Manual => "manual".to_string(),
            };
            let _ = writeln!(out, "reason: {reason}");
        }
    }
    let _ = writeln!(out, "debt: {}", format_size(shape.debt_bytes()));
    match shape.space_amplification() {
        Some(amp) => {
            let _ = writeln!(out, "space amplification: {amp:.2}");
        }
        None => out.push_str("space amplification: n/a\n"),
    }
    let pick = case.policy.pick(&range);
    let _ = writeln!(
        out,
        "pick: {}",
        match pick {
            Some(task) if Some(task) == shape.task => "the task".to_string(),
            Some(task) => format!("{task:?} (differs from the shape's task!)"),
            None if case.compacting => "none (a compaction is running)".to_string(),
            None => "none".to_string(),
        }
    );
    out
}

#[test]
fn golden_policy_fixtures() {
    let rewrite = std::env::var("STRATA_REWRITE_GOLDEN").is_ok_and(|v| v == "1");
    let mut paths: Vec<PathBuf> = fs::read_dir(fixture_dir())
        .expect("testdata/policy exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 15,
        "expected at least 15 fixtures, found {}",
        paths.len()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let text = fs::read_to_string(path).expect("readable fixture");
        let (input, expected) = match text.split_once(&format!("\n{SEPARATOR}\n")) {
            Some((input, expected)) => (input.to_string(), Some(expected.to_string())),
            None => (text.trim_end().to_string(), None),
        };
        let case = match parse_case(&input) {
            Ok(case) => case,
            Err(error) => {
                failures.push(format!("{name}: bad input: {error}"));
                continue;
            }
        };
        let actual = render(&case);
        if rewrite {
            if expected.as_deref() != Some(actual.as_str()) {
                fs::write(path, format!("{input}\n{SEPARATOR}\n{actual}"))
                    .expect("writable fixture");
                eprintln!("rewrote {name}");
            }
        } else if expected.as_deref() != Some(actual.as_str()) {
            failures.push(format!(
                "{name}:\n--- expected\n{}\n--- actual\n{actual}",
                expected
                    .as_deref()
                    .unwrap_or("(no `---` separator: no expected output)"),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ (rerun with STRATA_REWRITE_GOLDEN=1 to accept):\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}

#[test]
fn sizes_parse_and_render() {
    assert_eq!(parse_size("1M"), Ok(1 << 20));
    assert_eq!(parse_size("1.5K"), Ok(1536));
    assert_eq!(parse_size("17"), Ok(17));
    assert_eq!(parse_size("17B"), Ok(17));
    assert!(parse_size("3Q").is_err());
    assert!(parse_size("99999999T").is_err());
    assert_eq!(format_size(3 << 20), "3M");
    assert_eq!(format_size(1536), "1.5K");
    assert_eq!(format_size(17), "17B");
    assert_eq!(format_size((2.333 * (1 << 20) as f64) as u64), "2.33M");
    assert_eq!(format_size(100 * (1 << 20) + 1), "100M");
}
