//! # strata-fuzz: the bodies of strata's fuzz targets
//!
//! One plain function per target, taking the fuzzer's bytes. The cargo-fuzz package in `fuzz/`
//! wraps each in a one-line `fuzz_target!`; `tests/corpus.rs` runs each over the checked-in
//! corpus in `fuzz/corpus/<target>/` and deterministic mutations of it, so `cargo test` exercises
//! every target without a fuzzer. `fuzz/README.md` says how to run the real fuzzer.
//!
//! Contract of every body: for any input it returns normally. The code under test may answer
//! `Ok` or a typed error; a panic (including an assertion of the body's own oracle: scans in
//! both directions agree, lookups agree with scans, the engine agrees with a `BTreeMap` model)
//! is a finding. The decoder targets feed each input twice: as it is, and with every checksum
//! the framing locates recomputed (see `fixup`), so mutations reach the decoders behind the
//! checksums.

mod fixup;
mod meta;
mod model;
mod page;
mod run_file;
mod template;
mod txn;
mod wal;

pub mod corpus;

pub use model::ModelStats;
pub use txn::TxnStats;

/// The bytes as a run file (sstable): opened over an in-memory `ReadAt` with and without a page
/// cache, scanned forward and backward, point lookups and seeks for the keys seen and synthetic
/// ones, bounded ranges, and `Run::verify`. When `verify` finds nothing wrong, every read must
/// succeed and agree with the forward scan.
pub fn run_file(data: &[u8]) {
    run_file::run(data);
}

/// The bytes as one data page: decoded forward and backward (which must agree) and sought; if
/// the first byte is a compression type, also as `type | raw_len u24 | payload` decompressed
/// first. See the `page` module documentation for the input format.
pub fn page(data: &[u8]) {
    page::run(data);
}

/// The bytes as a WAL segment next to the template database's metadata log and runs:
/// `inspect::read_wal`, `Db::open` in both recovery modes, every read (which must agree with the
/// records `read_wal` shows), `inspect::verify`, a write, a clean close and a second recovery.
pub fn wal_segment(data: &[u8]) {
    wal::run(data);
}

/// The bytes as the template database's metadata log: `inspect::read_meta`, `inspect::verify`,
/// `Db::open`, every read, a full compaction, a write, a clean close and a second recovery.
pub fn meta_log(data: &[u8]) {
    meta::run(data);
}

/// The bytes as a configuration and a sequence of up to 200 operations (puts, deletes, batches,
/// gets, ranges both ways, snapshots, flushes, compactions, reopens, crashes, injected I/O
/// faults) run against the engine on `MemFs` and checked against a `BTreeMap` model.
pub fn engine_model(data: &[u8]) {
    model::run(data);
}

/// [`engine_model`], returning what the input did (operations, commits, crashes, faults).
pub fn engine_model_stats(data: &[u8]) -> ModelStats {
    model::run(data)
}

/// The bytes as 2 to 4 open transactions and up to 160 interleaved operations on them (gets,
/// scans both ways, puts, deletes, upserts, savepoints, commits, rollbacks) and outside them
/// (plain writes, `Db::transact`, flushes), on one thread on `MemFs`. Committed transactions must
/// replay serially in commit order against a `BTreeMap`, those without writes must fit somewhere
/// in their lifetime, conflicts leave nothing behind, and the database ends in the replayed state.
pub fn txn_model(data: &[u8]) {
    txn::run(data);
}

/// [`txn_model`], returning what the input did (commits, conflicts, savepoint rollbacks).
pub fn txn_model_stats(data: &[u8]) -> TxnStats {
    txn::run(data)
}

/// A target body.
pub type Target = fn(&[u8]);

/// Every target by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("run_file", run_file),
    ("page", page),
    ("wal_segment", wal_segment),
    ("meta_log", meta_log),
    ("engine_model", engine_model),
    ("txn_model", txn_model),
];
