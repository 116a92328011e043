//! Shared by the `cli_*` tests: build databases through the library, run the `strata` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata::{Db, KeyspaceOptions, Options};

/// Result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Parses stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Parses stdout as JSON lines.
    pub fn jsonl(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l} ({e})")))
            .collect()
    }
}

/// Runs `strata args...`.
pub fn strata<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("run strata");
    let run = Run {
        code: status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "strata panicked: {}",
        run.stderr
    );
    run
}

/// Asserts the exit code, showing the output if it differs.
#[track_caller]
pub fn expect_code(run: &Run, code: i32) {
    assert_eq!(
        run.code, code,
        "exit code {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
}

/// Opens the database in `dir`, retrying while it reads as locked: a child process that another
/// test thread is spawning holds a copy of our lock file descriptor between fork and exec.
pub fn open(dir: &Path) -> Db {
    for _ in 0..100 {
        match Db::open(dir, Options::default()) {
            Err(strata::Error::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.expect("open the database"),
        }
    }
    panic!("{} stays locked", dir.display());
}

/// Builds a database in `dir`:
/// - keyspace `users`: `user000`..`user199` = `value-NNN` and the binary key `00 ff 01` = `01 02`,
///   dumped into a run; then `user000` is overwritten (`new-000`) and `user001` deleted, in the WAL;
/// - keyspace `logs`: `log1` = `hello`, then (in a later session, so in a later WAL segment)
///   `log2` = `world`.
///
/// The WAL ends with at least two segments holding data (one per session after the flush).
pub fn build_db(dir: &Path) {
    {
        let db = open(dir);
        let users = db
            .keyspace("users", KeyspaceOptions::default())
            .expect("test setup");
        for i in 0..200 {
            users
                .put(format!("user{i:03}"), format!("value-{i:03}"))
                .expect("test setup");
        }
        users.put([0u8, 0xff, 1], [1u8, 2]).expect("test setup");
        db.flush().expect("test setup");
        db.close().expect("test setup");
    }
    {
        let db = open(dir);
        let users = db
            .keyspace("users", KeyspaceOptions::default())
            .expect("test setup");
        let logs = db
            .keyspace("logs", KeyspaceOptions::default())
            .expect("test setup");
        users.put("user000", "new-000").expect("test setup");
        users.delete("user001").expect("test setup");
        logs.put("log1", "hello").expect("test setup");
        db.close().expect("test setup");
    }
    {
        let db = open(dir);
        let logs = db
            .keyspace("logs", KeyspaceOptions::default())
            .expect("test setup");
        logs.put("log2", "world").expect("test setup");
        db.close().expect("test setup");
    }
}

/// A fresh temporary directory holding [`build_db`]'s database at `<tmp>/db`.
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("test setup");
    let dir = tmp.path().join("db");
    build_db(&dir);
    (tmp, dir)
}

/// Files in `dir` with extension `ext`, sorted.
pub fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("test setup")
        .map(|e| e.expect("test setup").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// The first run file in `dir`.
pub fn a_run(dir: &Path) -> PathBuf {
    files_with(dir, "run")
        .into_iter()
        .next()
        .expect("the database has a run")
}

/// XORs the byte at `offset` of `path` with 0xff.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("test setup");
    bytes[offset] ^= 0xff;
    std::fs::write(path, bytes).expect("test setup");
}

/// (name, size, contents) of every file in `dir`, for "nothing changed" checks.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("test setup")
        .map(|e| {
            let e = e.expect("test setup");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("test setup"),
            )
        })
        .collect();
    files.sort();
    files
}
