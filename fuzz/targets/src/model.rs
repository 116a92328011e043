//! `engine_model`: a sequence of operations decoded from the bytes, run against the engine on the
//! crash-simulating, fault-injecting `MemFs` and against a `BTreeMap` model per keyspace.
//!
//! The first bytes choose the configuration ([`Config`]); the rest decode, with
//! `arbitrary::Unstructured`, into at most [`MAX_OPS`] operations ([`Op`]). Every read is
//! compared with the model. The durability rules checked are the engine's (see `README.md`):
//!
//! - a clean close (and a successful `flush`, `compact` or `sync`) makes everything acknowledged
//!   durable;
//! - after a crash (power loss, optionally tearing the last unsynced write) the database opens,
//!   and its state is one of `history`: the model after some commit since the last durable point.
//!   In `WalMode::Fsync` every acknowledged commit is a durable point, so nothing acknowledged
//!   may be lost; in `WalMode::Write` the state must be a prefix of the commit order that
//!   includes everything synced; in `WalMode::None` each keyspace is checked on its own;
//! - an operation may fail only after an injected fault fired (`MemFs::fail_at`); then the
//!   harness crashes and reopens, and the state must again be one of `history`, where a commit
//!   that returned an error may or may not be present (whole or not at all).
//!
//! # Extending
//!
//! Keyspace `ks1` ([`COUNTER_KS`]) has the `Counter` merge operator: every put there writes an
//! 8-byte value, so `Upsert` and `BatchUpsert` operands always fold (the model folds them with
//! wrapping addition, a missing value counting as 0). An upsert is a write like a put for every
//! durability rule.
//!
//! Operations are picked from [`OP_TABLE`] (kind and weight), built by [`Op::generate`] and run by
//! [`Harness::apply`]. To add one: add a variant to [`Op`] and [`OpKind`], a row to [`OP_TABLE`], an arm to
//! `Op::generate` and one to `Harness::apply` that updates `self.model` the way the engine must
//! (a merge operand folds into the model's value) and calls [`Harness::committed`] after an
//! acknowledged commit. Appending rows keeps existing corpus inputs meaning roughly what they
//! meant. Transactions checked for serializability are in the separate `txn_model` target.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Result as ArbResult, Unstructured};
use strata::fs::{FaultKind, MemFs};
use strata::merge::Counter;
use strata::{Compression, Db, Keyspace, KeyspaceOptions, Options, Snapshot, WalMode};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Key-value pairs in the order a read returned them.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Keyspaces every database has.
const KEYSPACES: usize = 2;

/// The keyspace with the `Counter` merge operator (its values are all 8 bytes long).
const COUNTER_KS: usize = 1;

/// The model's value after an upsert of `delta` onto `old` (as the `Counter` operator folds).
pub(crate) fn counter_fold(old: Option<&Vec<u8>>, delta: i64) -> Vec<u8> {
    let base = old
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, i64::from_le_bytes);
    base.wrapping_add(delta).to_le_bytes().to_vec()
}

/// Operations per input at most: keeps one input under a few hundred milliseconds.
pub(crate) const MAX_OPS: usize = 200;

/// Snapshots held at once at most.
const MAX_SNAPSHOTS: usize = 4;

const DIR: &str = "/db";

/// Options chosen by the first bytes of the input.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    wal_mode: WalMode,
    page_size_bytes: usize,
    dump_compression: Compression,
    compaction_compression: Compression,
    memory_limit_bytes: u64,
    wal_segment_size_bytes: u64,
    range_size_bytes: Option<u64>,
    bloom_fp_rate: f64,
}

fn compression(u: &mut Unstructured) -> ArbResult<Compression> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => Compression::None,
        1 => Compression::Lz4,
        _ => Compression::Zstd { level: 1 },
    })
}

impl Config {
    /// The durability mode this input runs in.
    pub(crate) fn wal_mode(&self) -> WalMode {
        self.wal_mode
    }

    fn generate(u: &mut Unstructured) -> ArbResult<Config> {
        Ok(Config {
            wal_mode: match u.int_in_range(0..=2u8)? {
                0 => WalMode::Write,
                1 => WalMode::Fsync,
                _ => WalMode::None,
            },
            page_size_bytes: if u.arbitrary()? { 4096 } else { 512 },
            dump_compression: compression(u)?,
            compaction_compression: compression(u)?,
            memory_limit_bytes: if u.arbitrary()? { 256 << 10 } else { 64 << 10 },
            wal_segment_size_bytes: if u.arbitrary()? { 64 << 10 } else { 4096 },
            range_size_bytes: match u.int_in_range(0..=2u8)? {
                0 => Some(1024),
                1 => Some(8192),
                _ => None,
            },
            bloom_fp_rate: if u.arbitrary()? { 1.0 } else { 0.01 },
        })
    }

    fn options(&self, fs: &MemFs) -> Options {
        Options {
            wal_mode: self.wal_mode,
            memory_limit_bytes: self.memory_limit_bytes,
            wal_segment_size_bytes: self.wal_segment_size_bytes,
            range_size_min_bytes: 1024,
            meta_rewrite_threshold_bytes: 8 * 1024,
            cache_size_bytes: 1 << 20,
            dump_threads: 1,
            compaction_threads: 1,
            // Long enough never to fire on a loaded machine unless dumps really stopped (which
            // is a finding: an error without an injected fault).
            quota_timeout: Duration::from_secs(30),
            fs: Arc::new(fs.clone()),
            ..Options::default()
        }
    }

    fn keyspace_options(&self, ks: usize) -> KeyspaceOptions {
        KeyspaceOptions {
            merge_operator: (ks == COUNTER_KS).then(|| Arc::new(Counter) as _),
            page_size_bytes: self.page_size_bytes,
            bloom_fp_rate: self.bloom_fp_rate,
            dump_compression: self.dump_compression,
            compaction_compression: self.compaction_compression,
            range_size_bytes: self.range_size_bytes,
            ..KeyspaceOptions::default()
        }
    }
}

/// One of 52 keys: 50 short ones, the empty key and a long one.
fn key(k: u8) -> Vec<u8> {
    match k % 52 {
        50 => Vec::new(),
        51 => [&b"long-"[..], &[b'L'; 400]].concat(),
        n => format!("key{n:03}").into_bytes(),
    }
}

/// A value: its length class (0 empty, 15 larger than a small page) and a seed for its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueSpec {
    seed: u16,
    class: u8,
}

impl ValueSpec {
    fn generate(u: &mut Unstructured) -> ArbResult<ValueSpec> {
        Ok(ValueSpec {
            seed: u.arbitrary()?,
            class: u.int_in_range(0..=15)?,
        })
    }

    /// The value's bytes in keyspace `ks`: 8 bytes (a counter value) in [`COUNTER_KS`].
    fn bytes_in(self, ks: usize) -> Vec<u8> {
        if ks == COUNTER_KS {
            (i64::from(self.seed) - 1000 * i64::from(self.class))
                .to_le_bytes()
                .to_vec()
        } else {
            self.bytes()
        }
    }

    fn bytes(self) -> Vec<u8> {
        let len = match self.class {
            15 => 1500 + usize::from(self.seed % 1500),
            c => usize::from(c) * 13,
        };
        (0..len)
            .map(|i| (usize::from(self.seed) + i * 7) as u8)
            .collect()
    }
}

/// A range bound over a target's key set (key `k` is `key(k)` of the target using it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyBound {
    Unbounded,
    Included(u8),
    Excluded(u8),
}

impl KeyBound {
    pub(crate) fn generate(u: &mut Unstructured) -> ArbResult<KeyBound> {
        Ok(match u.int_in_range(0..=2u8)? {
            0 => KeyBound::Unbounded,
            1 => KeyBound::Included(u.arbitrary()?),
            _ => KeyBound::Excluded(u.arbitrary()?),
        })
    }

    /// The bound over the keys `key` names.
    pub(crate) fn bound_with(self, key: fn(u8) -> Vec<u8>) -> Bound<Vec<u8>> {
        match self {
            KeyBound::Unbounded => Bound::Unbounded,
            KeyBound::Included(k) => Bound::Included(key(k)),
            KeyBound::Excluded(k) => Bound::Excluded(key(k)),
        }
    }

    fn bound(self) -> Bound<Vec<u8>> {
        self.bound_with(key)
    }
}

/// How an iterator is consumed: forward, backward, or alternating ends by the bits of a pattern.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Forward,
    Reverse,
    Mixed(u8),
}

impl Direction {
    fn generate(u: &mut Unstructured) -> ArbResult<Direction> {
        Ok(match u.int_in_range(0..=2u8)? {
            0 => Direction::Forward,
            1 => Direction::Reverse,
            _ => Direction::Mixed(u.arbitrary()?),
        })
    }
}

/// A range read: keyspace, bounds and direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RangeRead {
    ks: usize,
    lower: KeyBound,
    upper: KeyBound,
    direction: Direction,
}

impl RangeRead {
    fn generate(u: &mut Unstructured) -> ArbResult<RangeRead> {
        Ok(RangeRead {
            ks: u.int_in_range(0..=KEYSPACES - 1)?,
            lower: KeyBound::generate(u)?,
            upper: KeyBound::generate(u)?,
            direction: Direction::generate(u)?,
        })
    }
}

/// A write inside a batch: keyspace, key, value (or delete).
pub(crate) type BatchWrite = (usize, u8, Option<ValueSpec>);

/// A write inside a batch with upserts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MixedWrite {
    Write(BatchWrite),
    /// An upsert of a delta to a key of [`COUNTER_KS`].
    Upsert(u8, i64),
}

/// A counter delta: mostly small, sometimes any `i64` (so sums wrap).
fn delta(u: &mut Unstructured) -> ArbResult<i64> {
    Ok(if u.ratio(1, 8)? {
        u.arbitrary()?
    } else {
        i64::from(u.arbitrary::<i8>()?)
    })
}

/// One operation of the model test.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put {
        ks: usize,
        key: u8,
        value: ValueSpec,
    },
    Delete {
        ks: usize,
        key: u8,
    },
    Batch(Vec<BatchWrite>),
    Get {
        ks: usize,
        key: u8,
    },
    Range(RangeRead),
    Prefix {
        ks: usize,
        key: u8,
        len: u8,
    },
    TakeSnapshot,
    SnapshotGet {
        which: u8,
        ks: usize,
        key: u8,
    },
    SnapshotRange {
        which: u8,
        read: RangeRead,
    },
    ReleaseSnapshot {
        which: u8,
    },
    Flush,
    /// Compact one keyspace, or (`None`) all of them.
    Compact {
        ks: Option<usize>,
    },
    Sync,
    Reopen,
    /// Power loss; `Some(seed)` also tears the last unsynced write of each file.
    Crash {
        tear: Option<u64>,
    },
    /// Fail file-system operation number `after` from now on with `kind` (and every one after
    /// it when `persistent`).
    FailAt {
        after: u16,
        kind: FaultKind,
        persistent: bool,
    },
    /// An upsert of a delta to a key of [`COUNTER_KS`].
    Upsert {
        key: u8,
        delta: i64,
    },
    /// A batch of upserts, puts and deletes (several may hit the same key: order matters).
    BatchUpsert(Vec<MixedWrite>),
}

/// The kinds of [`Op`], for the weight table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Put,
    Delete,
    Batch,
    Get,
    Range,
    Prefix,
    TakeSnapshot,
    SnapshotGet,
    SnapshotRange,
    ReleaseSnapshot,
    Flush,
    Compact,
    Sync,
    Reopen,
    Crash,
    FailAt,
    Upsert,
    BatchUpsert,
}

/// Operation kinds and their relative weights. Append new kinds at the end.
pub(crate) const OP_TABLE: &[(OpKind, u32)] = &[
    (OpKind::Put, 30),
    (OpKind::Delete, 8),
    (OpKind::Batch, 8),
    (OpKind::Get, 10),
    (OpKind::Range, 6),
    (OpKind::Prefix, 2),
    (OpKind::TakeSnapshot, 3),
    (OpKind::SnapshotGet, 3),
    (OpKind::SnapshotRange, 2),
    (OpKind::ReleaseSnapshot, 1),
    (OpKind::Flush, 2),
    (OpKind::Compact, 2),
    (OpKind::Sync, 2),
    (OpKind::Reopen, 2),
    (OpKind::Crash, 3),
    (OpKind::FailAt, 2),
    (OpKind::Upsert, 12),
    (OpKind::BatchUpsert, 5),
];

/// One entry of a weighted table, chosen by the input (`fallback` if the table is empty).
pub(crate) fn pick_weighted<K: Copy>(
    u: &mut Unstructured,
    table: &[(K, u32)],
    fallback: K,
) -> ArbResult<K> {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return Ok(fallback);
    }
    let mut roll = u.int_in_range(0..=total - 1)?;
    for (kind, weight) in table {
        if roll < *weight {
            return Ok(*kind);
        }
        roll -= weight;
    }
    Ok(fallback)
}

fn pick_kind(u: &mut Unstructured) -> ArbResult<OpKind> {
    pick_weighted(u, OP_TABLE, OpKind::Get)
}

impl Op {
    /// Decodes one operation.
    pub(crate) fn generate(u: &mut Unstructured) -> ArbResult<Op> {
        let ks = |u: &mut Unstructured| u.int_in_range(0..=KEYSPACES - 1);
        Ok(match pick_kind(u)? {
            OpKind::Put => Op::Put {
                ks: ks(u)?,
                key: u.arbitrary()?,
                value: ValueSpec::generate(u)?,
            },
            OpKind::Delete => Op::Delete {
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::Batch => {
                let len = u.int_in_range(1..=8)?;
                let mut writes = Vec::with_capacity(len);
                for _ in 0..len {
                    let value = if u.ratio(1, 4)? {
                        None
                    } else {
                        Some(ValueSpec::generate(u)?)
                    };
                    writes.push((ks(u)?, u.arbitrary()?, value));
                }
                Op::Batch(writes)
            }
            OpKind::Get => Op::Get {
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::Range => Op::Range(RangeRead::generate(u)?),
            OpKind::Prefix => Op::Prefix {
                ks: ks(u)?,
                key: u.arbitrary()?,
                len: u.int_in_range(0..=6)?,
            },
            OpKind::TakeSnapshot => Op::TakeSnapshot,
            OpKind::SnapshotGet => Op::SnapshotGet {
                which: u.arbitrary()?,
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::SnapshotRange => Op::SnapshotRange {
                which: u.arbitrary()?,
                read: RangeRead::generate(u)?,
            },
            OpKind::ReleaseSnapshot => Op::ReleaseSnapshot {
                which: u.arbitrary()?,
            },
            OpKind::Flush => Op::Flush,
            OpKind::Compact => Op::Compact {
                ks: if u.arbitrary()? { Some(ks(u)?) } else { None },
            },
            OpKind::Sync => Op::Sync,
            OpKind::Reopen => Op::Reopen,
            OpKind::Crash => Op::Crash {
                tear: if u.arbitrary()? {
                    Some(u.arbitrary()?)
                } else {
                    None
                },
            },
            OpKind::FailAt => Op::FailAt {
                // Mostly soon (a few commits or one flush ahead), sometimes much later.
                after: if u.ratio(1, 4)? {
                    u.int_in_range(0..=400)?
                } else {
                    u.int_in_range(0..=24)?
                },
                kind: match u.int_in_range(0..=3u8)? {
                    0 => FaultKind::Eio,
                    1 => FaultKind::NoSpace,
                    2 => FaultKind::ShortWrite,
                    _ => FaultKind::SyncFailure,
                },
                persistent: u.arbitrary()?,
            },
            OpKind::Upsert => Op::Upsert {
                key: u.arbitrary()?,
                delta: delta(u)?,
            },
            OpKind::BatchUpsert => {
                let len = u.int_in_range(1..=8)?;
                let mut writes = Vec::with_capacity(len);
                for _ in 0..len {
                    // Keys from a small set, so writes to one key in one batch are common.
                    let k = u.int_in_range(0..=7)?;
                    writes.push(match u.int_in_range(0..=5u8)? {
                        0 => MixedWrite::Write((ks(u)?, k, Some(ValueSpec::generate(u)?))),
                        1 => MixedWrite::Write((ks(u)?, k, None)),
                        _ => MixedWrite::Upsert(k, delta(u)?),
                    });
                }
                Op::BatchUpsert(writes)
            }
        })
    }
}

/// Decodes the configuration and operations of an input.
pub(crate) fn decode(data: &[u8]) -> (Config, Vec<Op>) {
    let mut u = Unstructured::new(data);
    let Ok(config) = Config::generate(&mut u) else {
        unreachable!("Config::generate only reads integers, which never fail")
    };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::generate(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    (config, ops)
}

/// What one `engine_model` input did, so tests can check that a corpus reaches crashes and
/// fault recovery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Operations decoded and run.
    pub ops: usize,
    /// Commits the engine acknowledged.
    pub commits: usize,
    /// Crashes simulated (by an operation or after a failure).
    pub crashes: usize,
    /// Faults set with `MemFs::fail_at`.
    pub faults_set: usize,
    /// Operations that failed after an injected fault fired (each followed by a recovery).
    pub failures_recovered: usize,
    /// Clean close-and-open cycles that completed.
    pub reopens: usize,
}

/// Body of the `engine_model` target; see [`crate::engine_model`].
pub(crate) fn run(data: &[u8]) -> ModelStats {
    let (config, ops) = decode(data);
    let mut harness = Harness::new(config);
    for op in ops {
        harness.stats.ops += 1;
        harness.apply(op);
    }
    harness.finish();
    harness.stats
}

/// What an operation failed with, and the model state it would have produced had it succeeded
/// (for a commit), which recovery may or may not show.
struct Failure {
    what: &'static str,
    error: strata::Error,
    attempted: Option<Vec<Model>>,
}

type Step = Result<(), Failure>;

fn fail(
    what: &'static str,
    attempted: Option<Vec<Model>>,
) -> impl FnOnce(strata::Error) -> Failure {
    move |error| Failure {
        what,
        error,
        attempted,
    }
}

/// Runs the operations against the engine and the model.
pub(crate) struct Harness {
    fs: MemFs,
    config: Config,
    db: Option<Db>,
    keyspaces: Vec<Keyspace>,
    model: Vec<Model>,
    /// The model after each commit since the last durable point (the first is durable).
    history: Vec<Vec<Model>>,
    snapshots: Vec<(Snapshot, Vec<Model>)>,
    /// The absolute index of the file-system operation an injected fault is set for.
    fault: Option<u64>,
    stats: ModelStats,
}

impl Harness {
    fn new(config: Config) -> Harness {
        let fs = MemFs::new();
        let mut harness = Harness {
            fs,
            config,
            db: None,
            keyspaces: Vec::new(),
            model: vec![Model::new(); KEYSPACES],
            history: Vec::new(),
            snapshots: Vec::new(),
            fault: None,
            stats: ModelStats::default(),
        };
        harness.history = vec![harness.model.clone()];
        if let Err(e) = harness.open() {
            panic!("opening a new database failed: {e}");
        }
        harness
    }

    fn open(&mut self) -> strata::Result<()> {
        let db = Db::open(Path::new(DIR), self.config.options(&self.fs))?;
        let keyspaces = (0..KEYSPACES)
            .map(|i| db.keyspace(&format!("ks{i}"), self.config.keyspace_options(i)))
            .collect::<strata::Result<Vec<_>>>()?;
        self.db = Some(db);
        self.keyspaces = keyspaces;
        Ok(())
    }

    fn fault_fired(&self) -> bool {
        self.fault.is_some_and(|at| self.fs.op_count() > at)
    }

    /// Records an acknowledged commit whose result is `self.model`.
    fn committed(&mut self) {
        self.stats.commits += 1;
        if self.config.wal_mode == WalMode::Fsync {
            self.history = vec![self.model.clone()];
        } else {
            self.history.push(self.model.clone());
        }
    }

    fn made_durable(&mut self) {
        self.history = vec![self.model.clone()];
    }

    fn apply(&mut self, op: Op) {
        if self.db.is_none() {
            return;
        }
        if let Err(failure) = self.step(op) {
            self.recover_from(failure);
        }
    }

    fn step(&mut self, op: Op) -> Step {
        match op {
            Op::Put { ks, key: k, value } => {
                let mut next = self.model.clone();
                next[ks].insert(key(k), value.bytes_in(ks));
                self.keyspaces[ks]
                    .put(key(k), value.bytes_in(ks))
                    .map_err(fail("put", Some(next.clone())))?;
                self.model = next;
                self.committed();
            }
            Op::Delete { ks, key: k } => {
                let mut next = self.model.clone();
                next[ks].remove(&key(k));
                self.keyspaces[ks]
                    .delete(key(k))
                    .map_err(fail("delete", Some(next.clone())))?;
                self.model = next;
                self.committed();
            }
            Op::Batch(writes) => {
                let mut next = self.model.clone();
                let mut batch = self.db().batch();
                for (ks, k, value) in &writes {
                    match value {
                        Some(v) => {
                            batch.put(&self.keyspaces[*ks], key(*k), v.bytes_in(*ks));
                            next[*ks].insert(key(*k), v.bytes_in(*ks));
                        }
                        None => {
                            batch.delete(&self.keyspaces[*ks], key(*k));
                            next[*ks].remove(&key(*k));
                        }
                    }
                }
                batch.commit().map_err(fail("batch", Some(next.clone())))?;
                self.model = next;
                self.committed();
            }
            Op::Upsert { key: k, delta } => {
                let mut next = self.model.clone();
                let folded = counter_fold(next[COUNTER_KS].get(&key(k)), delta);
                next[COUNTER_KS].insert(key(k), folded);
                self.keyspaces[COUNTER_KS]
                    .upsert(key(k), Counter::operand(delta))
                    .map_err(fail("upsert", Some(next.clone())))?;
                self.model = next;
                self.committed();
            }
            Op::BatchUpsert(writes) => {
                let mut next = self.model.clone();
                let mut batch = self.db().batch();
                for write in &writes {
                    match *write {
                        MixedWrite::Write((ks, k, Some(v))) => {
                            batch.put(&self.keyspaces[ks], key(k), v.bytes_in(ks));
                            next[ks].insert(key(k), v.bytes_in(ks));
                        }
                        MixedWrite::Write((ks, k, None)) => {
                            batch.delete(&self.keyspaces[ks], key(k));
                            next[ks].remove(&key(k));
                        }
                        MixedWrite::Upsert(k, delta) => {
                            batch.upsert(
                                &self.keyspaces[COUNTER_KS],
                                key(k),
                                Counter::operand(delta),
                            );
                            let folded = counter_fold(next[COUNTER_KS].get(&key(k)), delta);
                            next[COUNTER_KS].insert(key(k), folded);
                        }
                    }
                }
                batch
                    .commit()
                    .map_err(fail("batch with upserts", Some(next.clone())))?;
                self.model = next;
                self.committed();
            }
            Op::Get { ks, key: k } => {
                let got = self.keyspaces[ks].get(key(k)).map_err(fail("get", None))?;
                assert_eq!(
                    got.as_deref(),
                    self.model[ks].get(&key(k)).map(Vec::as_slice),
                    "get of key {k} in keyspace {ks} disagrees with the model"
                );
            }
            Op::Range(read) => {
                let iter = self.keyspaces[read.ks].range((read.lower.bound(), read.upper.bound()));
                check_range(iter, &self.model[read.ks], read)?;
            }
            Op::Prefix { ks, key: k, len } => {
                let prefix: Vec<u8> = key(k).into_iter().take(usize::from(len)).collect();
                let got = collect(self.keyspaces[ks].prefix(&prefix), Direction::Forward)?;
                let want: Pairs = self.model[ks]
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, want, "prefix {prefix:?} disagrees with the model");
            }
            Op::TakeSnapshot => {
                if self.snapshots.len() == MAX_SNAPSHOTS {
                    self.snapshots.remove(0);
                }
                let snapshot = self.db().snapshot();
                self.snapshots.push((snapshot, self.model.clone()));
            }
            Op::SnapshotGet { which, ks, key: k } => {
                let Some((snapshot, model)) = self.pick_snapshot(which) else {
                    return Ok(());
                };
                let got = snapshot
                    .get(&self.keyspaces[ks], key(k))
                    .map_err(fail("snapshot get", None))?;
                assert_eq!(
                    got.as_deref(),
                    model[ks].get(&key(k)).map(Vec::as_slice),
                    "snapshot get of key {k} in keyspace {ks} disagrees with the model"
                );
            }
            Op::SnapshotRange { which, read } => {
                let Some((snapshot, model)) = self.pick_snapshot(which) else {
                    return Ok(());
                };
                let iter = snapshot.range(
                    &self.keyspaces[read.ks],
                    (read.lower.bound(), read.upper.bound()),
                );
                check_range(iter, &model[read.ks], read)?;
            }
            Op::ReleaseSnapshot { which } => {
                if !self.snapshots.is_empty() {
                    let i = usize::from(which) % self.snapshots.len();
                    self.snapshots.remove(i);
                }
            }
            Op::Flush => {
                self.db().flush().map_err(fail("flush", None))?;
                self.made_durable();
            }
            Op::Compact { ks } => {
                match ks {
                    Some(ks) => self.keyspaces[ks].compact(),
                    None => self.db().compact_all(),
                }
                .map_err(fail("compact", None))?;
                self.made_durable();
            }
            Op::Sync => {
                self.db().sync().map_err(fail("sync", None))?;
                self.made_durable();
            }
            Op::Reopen => self.reopen()?,
            Op::Crash { tear } => self.crash_and_check(tear),
            Op::FailAt {
                after,
                kind,
                persistent,
            } => {
                if self.fault.is_none() {
                    let at = self.fs.op_count() + u64::from(after);
                    self.fs.fail_at(at, kind, persistent);
                    self.fault = Some(at);
                    self.stats.faults_set += 1;
                }
            }
        }
        Ok(())
    }

    fn db(&self) -> &Db {
        match &self.db {
            Some(db) => db,
            None => unreachable!("operations run only while the database is open"),
        }
    }

    fn pick_snapshot(&self, which: u8) -> Option<&(Snapshot, Vec<Model>)> {
        if self.snapshots.is_empty() {
            return None;
        }
        self.snapshots
            .get(usize::from(which) % self.snapshots.len())
    }

    /// Reads every keyspace whole.
    fn read_state(&self) -> Result<Vec<Model>, Failure> {
        self.keyspaces
            .iter()
            .map(|ks| {
                ks.iter()
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                    .collect::<strata::Result<Model>>()
                    .map_err(fail("scan", None))
            })
            .collect()
    }

    /// A clean close and open: nothing acknowledged may change.
    fn reopen(&mut self) -> Step {
        self.snapshots.clear();
        self.keyspaces.clear();
        if let Some(db) = self.db.take() {
            db.close().map_err(fail("close", None))?;
        }
        self.made_durable();
        self.open().map_err(fail("open", None))?;
        let state = self.read_state()?;
        assert_eq!(
            state, self.model,
            "the database differs from the model after a clean close and reopen"
        );
        self.stats.reopens += 1;
        Ok(())
    }

    /// An operation failed: that is allowed only after the injected fault fired. The harness
    /// then crashes and recovers, and the state must be one the durability rules allow.
    fn recover_from(&mut self, failure: Failure) {
        assert!(
            self.fault_fired(),
            "{} failed without an injected fault: {}",
            failure.what,
            failure.error
        );
        if let Some(attempted) = failure.attempted {
            self.history.push(attempted);
        }
        self.stats.failures_recovered += 1;
        self.crash_and_check(None);
    }

    /// Power loss, then recovery: the database must open and hold a state of `history`.
    fn crash_and_check(&mut self, tear: Option<u64>) {
        self.stats.crashes += 1;
        self.snapshots.clear();
        self.keyspaces.clear();
        // Freeze the file system first: nothing the closing database does may reach it.
        self.fs.clear_faults();
        self.fs.fail_at(self.fs.op_count(), FaultKind::Eio, true);
        drop(self.db.take());
        match tear {
            Some(seed) => self.fs.crash_tearing_last_write(seed),
            None => self.fs.crash(),
        }
        self.fs.clear_faults();
        self.fault = None;
        if let Err(e) = self.open() {
            panic!("the database does not open after a crash: {e}");
        }
        let actual = match self.read_state() {
            Ok(state) => state,
            Err(f) => panic!("reading after a crash failed: {}", f.error),
        };
        if self.config.wal_mode == WalMode::None {
            // Without a WAL each keyspace is durable up to its own last dump.
            for (ks, state) in actual.iter().enumerate() {
                assert!(
                    self.history.iter().any(|candidate| candidate[ks] == *state),
                    "after a crash keyspace {ks} matches no state since the last durable point"
                );
            }
            self.model = actual;
        } else {
            let Some(position) = self.history.iter().rposition(|c| *c == actual) else {
                panic!(
                    "after a crash ({:?} mode) the database matches none of the {} states since \
                     the last durable point",
                    self.config.wal_mode,
                    self.history.len()
                );
            };
            self.model = self.history[position].clone();
        }
        self.made_durable();
    }

    /// The end of the input: every keyspace must equal the model, then through a clean reopen.
    fn finish(&mut self) {
        if self.db.is_none() {
            return;
        }
        // A fault set for an operation not reached yet would only fire during the checks below.
        // One that fired stays recorded in `self.fault`, so its errors remain allowed.
        self.fs.clear_faults();
        let checked = self.read_state().map(|state| {
            assert_eq!(state, self.model, "the database differs from the model");
        });
        let result = checked.and_then(|()| self.reopen());
        if let Err(failure) = result {
            self.recover_from(failure);
        }
        self.snapshots.clear();
        self.keyspaces.clear();
        if let Some(db) = self.db.take() {
            if let Err(e) = db.close() {
                panic!("closing at the end failed without an injected fault: {e}");
            }
        }
    }
}

fn collect(iter: strata::Iter, direction: Direction) -> Result<Pairs, Failure> {
    let pair = |r: strata::Result<(strata::Key, strata::Value)>| {
        r.map(|(k, v)| (k.to_vec(), v.to_vec()))
            .map_err(fail("range", None))
    };
    match direction {
        Direction::Forward => iter.map(pair).collect(),
        Direction::Reverse => iter.rev().map(pair).collect(),
        Direction::Mixed(_) => unreachable!("mixed reads are compared step by step"),
    }
}

/// True if `BTreeMap::range` accepts these bounds (it panics on an inverted or empty-excluded
/// pair); the engine must return nothing for the others.
pub(crate) fn bounds_valid(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a), Bound::Excluded(b)) | (Bound::Excluded(a), Bound::Included(b)) => {
            a <= b
        }
        (Bound::Excluded(a), Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

fn check_range(iter: strata::Iter, model: &Model, read: RangeRead) -> Step {
    let (lower, upper) = (read.lower.bound(), read.upper.bound());
    let mut want: VecDeque<(Vec<u8>, Vec<u8>)> = if bounds_valid(&lower, &upper) {
        model
            .range((lower, upper))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        VecDeque::new()
    };
    match read.direction {
        Direction::Forward | Direction::Reverse => {
            let got = collect(iter, read.direction)?;
            if matches!(read.direction, Direction::Reverse) {
                want.make_contiguous().reverse();
            }
            assert!(
                got.iter().eq(want.iter()),
                "range {read:?} disagrees with the model: {} pairs, expected {}",
                got.len(),
                want.len()
            );
        }
        Direction::Mixed(pattern) => {
            let mut iter = iter;
            for step in 0.. {
                let from_back = pattern >> (step % 8) & 1 == 1;
                let got = if from_back {
                    iter.next_back()
                } else {
                    iter.next()
                };
                let got = got
                    .transpose()
                    .map_err(fail("range", None))?
                    .map(|(k, v)| (k.to_vec(), v.to_vec()));
                let expected = if from_back {
                    want.pop_back()
                } else {
                    want.pop_front()
                };
                assert_eq!(
                    got, expected,
                    "step {step} of the mixed-direction range {read:?} disagrees with the model"
                );
                if expected.is_none() {
                    break;
                }
            }
        }
    }
    Ok(())
}
