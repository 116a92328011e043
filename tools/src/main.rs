//! The `strata` command line.
//!
//! - `strata bench`: the README's main job, a db_bench-style workload runner with latency
//!   percentiles and the engine's amplification figures; `strata bench report` compares result
//!   files and draws charts (see the `bench` module).
//! - `strata demo`: write a run file per compression into a temporary directory, read it back
//!   every way the format allows, and print a results table.
//!
//! - `strata sst|wal|meta|db`: inspect run files, the WAL and the metadata log, and operate a
//!   database (modules `sst`, `wal`, `meta`, `db`; shared rendering and exit codes in `output`;
//!   JSON schemas in `tools/README.md`).
//!
//! - `strata stress`: a db_stress-style mixed workload that verifies the database against a
//!   crash-proof record of what it must hold; `strata stress crash-loop` kills it with SIGKILL
//!   again and again (see the `stress` module).

mod bench;
mod db;
mod demo;
mod meta;
mod output;
mod sst;
mod stress;
mod wal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// strata: an embedded LSM-tree storage engine in the style of Tarantool's vinyl.
///
/// Inspect, verify and operate strata databases: `sst` (run files), `wal` (write-ahead log),
/// `meta` (metadata log), `db` (a whole database), plus `bench`, `stress` and `demo`. The inspection
/// commands print tables, or JSON with `--format json|jsonl` (schemas: tools/README.md); keys and
/// values print as UTF-8 when printable, otherwise as 0x-prefixed hex (`--hex` forces hex).
/// `--format` and `--hex` go after the command group: `strata db stats DIR --format json`.
///
/// Exit codes: 0 success, 1 corruption found, 2 usage error, 3 not found (missing file, key or
/// keyspace), 4 other error (I/O, database in use by another process, ...).
#[derive(Parser)]
#[command(name = "strata", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run db_bench-style workloads (fillseq, readrandom, ...) on a database and print
    /// throughput, latency percentiles and amplification; `bench report` compares result files.
    Bench(bench::BenchArgs),
    /// Write a run file with each compression into a temporary directory, read it back, and
    /// print sizes and speeds.
    Demo(demo::DemoArgs),
    /// Inspect run files: scan, props, pages, get, verify, identify.
    Sst(sst::SstArgs),
    /// Inspect the write-ahead log: dump.
    Wal(wal::WalArgs),
    /// Inspect the metadata log: dump.
    Meta(meta::MetaArgs),
    /// Operate a database: stats, get, scan, put, delete, compact, verify.
    Db(db::DbArgs),
    /// Run a mixed workload that verifies the database against a crash-proof record of what
    /// it must hold; `stress crash-loop` kills and restarts it again and again.
    Stress(stress::StressArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args).map_err(|e| (e.to_string(), e.exit_code())),
        Command::Demo(args) => {
            demo::run(&args).map_err(|e| (e.to_string(), if e.is_corruption() { 1 } else { 4 }))
        }
        Command::Sst(args) => return output::finish(sst::run(&args)),
        Command::Wal(args) => return output::finish(wal::run(&args)),
        Command::Meta(args) => return output::finish(meta::run(&args)),
        Command::Db(args) => return output::finish(db::run(&args)),
        Command::Stress(args) => stress::run(args).map_err(|e| (e.to_string(), e.exit_code())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((message, code)) => {
            eprintln!("strata: {message}");
            ExitCode::from(code)
        }
    }
}
