//! The `strata` command line.
//!
//! Today it carries `strata demo`, the README's main job: write a run file per compression into
//! a temporary directory, read it back every way the format allows, and print a results table.
//! Later issues add `bench`, `sst`, `wal`, `meta`, `db` and `stress`.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// strata: an embedded LSM-tree storage engine in the style of Tarantool's vinyl.
///
/// Exit codes: 0 success, 1 corruption found, 2 usage error, 3 not found, 4 other error.
#[derive(Parser)]
#[command(name = "strata", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a run file with each compression into a temporary directory, read it back, and
    /// print sizes and speeds.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("strata: {error}");
            ExitCode::from(if error.is_corruption() { 1 } else { 4 })
        }
    }
}
