//! `txn_model`: a few transactions interleaved deterministically on one thread, checked for
//! serializability against a `BTreeMap` replay.
//!
//! The first byte chooses how many transactions start open (2 to 4) and which of them are
//! read-only; the rest decode, with `arbitrary::Unstructured`, into at most [`MAX_OPS`]
//! operations ([`Op`]): begin (up to [`MAX_OPEN`] open at once), get, scans (bounded ranges,
//! whole keyspace, prefixes; forward or backward; whole or the first few pairs), put, delete,
//! upsert, savepoint, rollback to a savepoint, commit, rollback; and outside transactions: plain
//! puts, deletes and upserts, `Db::transact`, flush and compaction. Keyspace `ks0` holds 4-byte
//! values, `ks1` has the `Counter` merge operator (8-byte values).
//!
//! Every transaction's observations (what each read returned, its writes, its savepoints and
//! rollbacks to them) are recorded. On one thread the commit order is the order of successful
//! commits (a plain write is a one-write transaction). The checks:
//!
//! - a read-write transaction that committed writes, replayed at its commit point against the
//!   model, observes exactly what it observed; its writes then make the next model state;
//! - a read-only transaction, and a read-write one that committed without writes, fits at some
//!   state of the commit order between its begin and its end;
//! - `Error::Conflict` is the only error a transaction may get (besides writing through a
//!   read-only one, which must fail with `InvalidArgument`); it never comes to a read-only
//!   transaction or to one during whose life nothing else committed; a conflicted transaction
//!   left nothing behind (the database equals the model right after);
//! - after every commit, at the end, and after a clean reopen the database equals the model.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arbitrary::{Result as ArbResult, Unstructured};
use strata::fs::MemFs;
use strata::merge::Counter;
use strata::{Db, Error, Keyspace, KeyspaceOptions, Options, Savepoint, Transaction};

use crate::model::{bounds_valid, counter_fold, pick_weighted, KeyBound};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Key-value pairs in the order a read returned them.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Operations per input at most.
pub(crate) const MAX_OPS: usize = 160;

/// Transactions open at once at most.
const MAX_OPEN: usize = 4;

/// Keyspaces: `ks0` plain, `ks1` ([`COUNTER_KS`]) with the `Counter` operator.
const KEYSPACES: usize = 2;

/// The keyspace with the `Counter` merge operator.
const COUNTER_KS: usize = 1;

const DIR: &str = "/db";

/// Few keys, so transactions collide; some are prefixes of others (and one is empty).
const KEYS: [&[u8]; 8] = [b"", b"a", b"aa", b"ab", b"b", b"ba", b"c", b"cc"];

fn key(k: u8) -> Vec<u8> {
    KEYS[usize::from(k) % KEYS.len()].to_vec()
}

/// What a scan covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Range(KeyBound, KeyBound),
    /// `Transaction::iter`.
    All,
    /// `Transaction::prefix` with the first `len` bytes of a key.
    Prefix(u8, u8),
}

/// A scan: keyspace, shape, direction, and how many pairs to take (`None`: all).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scan {
    ks: usize,
    shape: Shape,
    reverse: bool,
    limit: Option<u8>,
}

impl Scan {
    fn generate(u: &mut Unstructured) -> ArbResult<Scan> {
        Ok(Scan {
            ks: u.int_in_range(0..=KEYSPACES - 1)?,
            shape: match u.int_in_range(0..=4u8)? {
                0 => Shape::All,
                1 => Shape::Prefix(u.arbitrary()?, u.int_in_range(0..=2)?),
                _ => Shape::Range(KeyBound::generate(u)?, KeyBound::generate(u)?),
            },
            reverse: u.arbitrary()?,
            limit: if u.ratio(1, 3)? {
                Some(u.int_in_range(0..=3)?)
            } else {
                None
            },
        })
    }

    /// What the scan returns from `view`.
    fn expected(self, view: &[Model]) -> Pairs {
        let model = &view[self.ks];
        let mut pairs: Pairs = match self.shape {
            Shape::All => model.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Shape::Prefix(k, len) => {
                let prefix: Vec<u8> = key(k).into_iter().take(usize::from(len)).collect();
                model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
            Shape::Range(lower, upper) => {
                let (lower, upper) = (lower.bound_with(key), upper.bound_with(key));
                if bounds_valid(&lower, &upper) {
                    model
                        .range((lower, upper))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    Vec::new()
                }
            }
        };
        if self.reverse {
            pairs.reverse();
        }
        if let Some(limit) = self.limit {
            pairs.truncate(usize::from(limit));
        }
        pairs
    }
}

/// Which open transaction an operation addresses (modulo the number open).
type Which = u8;

/// One operation of the test.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Begin {
        read_only: bool,
    },
    Get {
        t: Which,
        ks: usize,
        key: u8,
    },
    Scan {
        t: Which,
        scan: Scan,
    },
    Put {
        t: Which,
        ks: usize,
        key: u8,
    },
    Delete {
        t: Which,
        ks: usize,
        key: u8,
    },
    Upsert {
        t: Which,
        key: u8,
        delta: i64,
    },
    Savepoint {
        t: Which,
    },
    RollbackTo {
        t: Which,
        which: u8,
    },
    Commit {
        t: Which,
    },
    Rollback {
        t: Which,
    },
    PlainPut {
        ks: usize,
        key: u8,
    },
    PlainDelete {
        ks: usize,
        key: u8,
    },
    PlainUpsert {
        key: u8,
        delta: i64,
    },
    /// `Db::transact`: reads counter `from`, adds it plus one to counter `to`, puts `to` in ks0.
    Transact {
        from: u8,
        to: u8,
    },
    /// `Db::flush`, or with `true` `Db::compact_all`.
    Flush {
        compact: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum OpKind {
    Begin,
    Get,
    Scan,
    Put,
    Delete,
    Upsert,
    Savepoint,
    RollbackTo,
    Commit,
    Rollback,
    PlainPut,
    PlainDelete,
    PlainUpsert,
    Transact,
    Flush,
}

/// Operation kinds and their relative weights. Append new kinds at the end.
const OP_TABLE: &[(OpKind, u32)] = &[
    (OpKind::Begin, 7),
    (OpKind::Get, 14),
    (OpKind::Scan, 12),
    (OpKind::Put, 14),
    (OpKind::Delete, 5),
    (OpKind::Upsert, 8),
    (OpKind::Savepoint, 4),
    (OpKind::RollbackTo, 3),
    (OpKind::Commit, 9),
    (OpKind::Rollback, 2),
    (OpKind::PlainPut, 6),
    (OpKind::PlainDelete, 2),
    (OpKind::PlainUpsert, 4),
    (OpKind::Transact, 2),
    (OpKind::Flush, 2),
];

fn pick_kind(u: &mut Unstructured) -> ArbResult<OpKind> {
    pick_weighted(u, OP_TABLE, OpKind::Get)
}

/// A counter delta: mostly small, sometimes any `i64` (so sums wrap).
fn delta(u: &mut Unstructured) -> ArbResult<i64> {
    Ok(if u.ratio(1, 8)? {
        u.arbitrary()?
    } else {
        i64::from(u.arbitrary::<i8>()?)
    })
}

impl Op {
    fn generate(u: &mut Unstructured) -> ArbResult<Op> {
        let ks = |u: &mut Unstructured| u.int_in_range(0..=KEYSPACES - 1);
        Ok(match pick_kind(u)? {
            OpKind::Begin => Op::Begin {
                read_only: u.ratio(1, 3)?,
            },
            OpKind::Get => Op::Get {
                t: u.arbitrary()?,
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::Scan => Op::Scan {
                t: u.arbitrary()?,
                scan: Scan::generate(u)?,
            },
            OpKind::Put => Op::Put {
                t: u.arbitrary()?,
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::Delete => Op::Delete {
                t: u.arbitrary()?,
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::Upsert => Op::Upsert {
                t: u.arbitrary()?,
                key: u.arbitrary()?,
                delta: delta(u)?,
            },
            OpKind::Savepoint => Op::Savepoint { t: u.arbitrary()? },
            OpKind::RollbackTo => Op::RollbackTo {
                t: u.arbitrary()?,
                which: u.arbitrary()?,
            },
            OpKind::Commit => Op::Commit { t: u.arbitrary()? },
            OpKind::Rollback => Op::Rollback { t: u.arbitrary()? },
            OpKind::PlainPut => Op::PlainPut {
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::PlainDelete => Op::PlainDelete {
                ks: ks(u)?,
                key: u.arbitrary()?,
            },
            OpKind::PlainUpsert => Op::PlainUpsert {
                key: u.arbitrary()?,
                delta: delta(u)?,
            },
            OpKind::Transact => Op::Transact {
                from: u.arbitrary()?,
                to: u.arbitrary()?,
            },
            OpKind::Flush => Op::Flush {
                compact: u.arbitrary()?,
            },
        })
    }
}

/// Decodes the transactions open at the start (`true`: read-only) and the operations.
pub(crate) fn decode(data: &[u8]) -> (Vec<bool>, Vec<Op>) {
    let mut u = Unstructured::new(data);
    let first: u8 = u.arbitrary().unwrap_or(0);
    let initial = (0..2 + usize::from(first % 3))
        .map(|i| first >> (2 + i) & 1 == 1 && i > 0)
        .collect();
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::generate(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    (initial, ops)
}

/// One observation of a transaction, for the replay.
#[derive(Debug, Clone)]
enum Obs {
    Get(usize, u8, Option<Vec<u8>>),
    Scan(Scan, Pairs),
    Put(usize, u8, Vec<u8>),
    Delete(usize, u8),
    Upsert(u8, i64),
    Savepoint,
    /// Back to the savepoint with this index among those still valid.
    RollbackTo(usize),
}

/// Replays `obs` over `state`: the state with the transaction's writes if every read matches,
/// else what differed.
fn replay(state: &[Model], obs: &[Obs]) -> Result<Vec<Model>, String> {
    let mut view = state.to_vec();
    let mut savepoints: Vec<Vec<Model>> = Vec::new();
    for (i, o) in obs.iter().enumerate() {
        match o {
            Obs::Get(ks, k, seen) => {
                let want = view[*ks].get(&key(*k));
                if want != seen.as_ref() {
                    return Err(format!("step {i}: {o:?}, the replay reads {want:?}"));
                }
            }
            Obs::Scan(scan, seen) => {
                let want = scan.expected(&view);
                if &want != seen {
                    return Err(format!("step {i}: {o:?}, the replay reads {want:?}"));
                }
            }
            Obs::Put(ks, k, v) => {
                view[*ks].insert(key(*k), v.clone());
            }
            Obs::Delete(ks, k) => {
                view[*ks].remove(&key(*k));
            }
            Obs::Upsert(k, delta) => {
                let folded = counter_fold(view[COUNTER_KS].get(&key(*k)), *delta);
                view[COUNTER_KS].insert(key(*k), folded);
            }
            Obs::Savepoint => savepoints.push(view.clone()),
            Obs::RollbackTo(index) => {
                let Some(saved) = savepoints.get(*index) else {
                    return Err(format!("step {i}: no savepoint {index}"));
                };
                view = saved.clone();
                savepoints.truncate(*index + 1);
            }
        }
    }
    Ok(view)
}

/// What one `txn_model` input did, so tests can check that a corpus reaches conflicts and
/// commits of both kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Operations decoded and run.
    pub ops: usize,
    /// Transactions begun.
    pub begun: usize,
    /// Read-write transactions that committed writes (checked by replay at their commit point).
    pub writer_commits: usize,
    /// Transactions that committed without writes (checked to fit somewhere in their lifetime).
    pub reader_commits: usize,
    /// Transactions that ended with `Error::Conflict`.
    pub conflicts: usize,
    /// Rollbacks to a savepoint.
    pub savepoint_rollbacks: usize,
    /// Plain (non-transactional) writes.
    pub plain_writes: usize,
}

struct Open {
    tx: Transaction,
    /// Order of `begin`, for messages.
    id: usize,
    read_only: bool,
    obs: Vec<Obs>,
    savepoints: Vec<Savepoint>,
    /// `states.len() - 1` when it began: the state it started from.
    begun_at: usize,
}

struct Harness {
    fs: MemFs,
    db: Db,
    keyspaces: Vec<Keyspace>,
    model: Vec<Model>,
    /// The model after each commit, the empty database first.
    states: Vec<Vec<Model>>,
    open: Vec<Open>,
    begun: usize,
    /// Makes every written value distinct, so a read tells which write it saw.
    next_value: u32,
    stats: TxnStats,
}

fn options(fs: &MemFs) -> Options {
    Options {
        memory_limit_bytes: 256 << 10,
        range_size_min_bytes: 1024,
        cache_size_bytes: 1 << 20,
        dump_threads: 1,
        compaction_threads: 1,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

fn open(fs: &MemFs) -> (Db, Vec<Keyspace>) {
    let db = Db::open(Path::new(DIR), options(fs))
        .unwrap_or_else(|e| panic!("opening the database failed: {e}"));
    let keyspaces = (0..KEYSPACES)
        .map(|i| {
            let ks_options = KeyspaceOptions {
                page_size_bytes: 512,
                merge_operator: (i == COUNTER_KS).then(|| Arc::new(Counter) as _),
                ..KeyspaceOptions::default()
            };
            db.keyspace(&format!("ks{i}"), ks_options)
                .unwrap_or_else(|e| panic!("opening keyspace ks{i} failed: {e}"))
        })
        .collect();
    (db, keyspaces)
}

/// Body of the `txn_model` target; see [`crate::txn_model`].
pub(crate) fn run(data: &[u8]) -> TxnStats {
    let (initial, ops) = decode(data);
    let fs = MemFs::new();
    let (db, keyspaces) = open(&fs);
    let mut h = Harness {
        fs,
        db,
        keyspaces,
        model: vec![Model::new(); KEYSPACES],
        states: vec![vec![Model::new(); KEYSPACES]],
        open: Vec::new(),
        begun: 0,
        next_value: 0,
        stats: TxnStats::default(),
    };
    for read_only in initial {
        h.begin(read_only);
    }
    for op in ops {
        h.stats.ops += 1;
        h.apply(op);
    }
    h.finish()
}

impl Harness {
    fn begin(&mut self, read_only: bool) {
        if self.open.len() == MAX_OPEN {
            return;
        }
        let tx = if read_only {
            self.db.begin_read_only()
        } else {
            self.db.begin()
        };
        assert_eq!(tx.is_read_only(), read_only);
        self.open.push(Open {
            tx,
            id: self.begun,
            read_only,
            obs: Vec::new(),
            savepoints: Vec::new(),
            begun_at: self.states.len() - 1,
        });
        self.begun += 1;
        self.stats.begun += 1;
    }

    fn value(&mut self, ks: usize) -> Vec<u8> {
        self.next_value += 1;
        if ks == COUNTER_KS {
            (i64::from(self.next_value) << 20).to_le_bytes().to_vec()
        } else {
            self.next_value.to_le_bytes().to_vec()
        }
    }

    fn pick(&self, t: Which) -> Option<usize> {
        (!self.open.is_empty()).then(|| usize::from(t) % self.open.len())
    }

    /// Reads the whole database.
    fn read_state(&self) -> Vec<Model> {
        self.keyspaces
            .iter()
            .map(|ks| {
                ks.iter()
                    .map(|r| {
                        r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                            .unwrap_or_else(|e| panic!("scanning the database failed: {e}"))
                    })
                    .collect()
            })
            .collect()
    }

    fn check_state(&self, when: &str) {
        assert!(
            self.read_state() == self.model,
            "the database differs from the model {when}"
        );
    }

    /// A commit (of a transaction with writes, or a plain write) made `next` the state.
    fn committed(&mut self, next: Vec<Model>) {
        self.model = next;
        self.states.push(self.model.clone());
        self.check_state("after a commit");
    }

    /// Transaction `i` failed with `error` in `what`: it must be a conflict the transaction
    /// could have; the transaction ends and must leave nothing behind.
    fn failed(&mut self, i: usize, what: &str, error: &Error) {
        let o = self.open.remove(i);
        let (id, read_only, begun_at) = (o.id, o.read_only, o.begun_at);
        drop(o);
        self.conflicted(id, read_only, begun_at, what, error);
    }

    /// Transaction `id` (already finished) failed with `error`; see [`Harness::failed`].
    fn conflicted(
        &mut self,
        id: usize,
        read_only: bool,
        begun_at: usize,
        what: &str,
        error: &Error,
    ) {
        assert!(
            error.is_conflict(),
            "{what} in transaction #{id} failed with something else than a conflict: {error}"
        );
        assert!(
            !read_only,
            "{what} in read-only transaction #{id} conflicted"
        );
        assert!(
            self.states.len() - 1 > begun_at,
            "{what} in transaction #{id} conflicted though nothing committed during its life"
        );
        self.stats.conflicts += 1;
        self.check_state("after a conflict");
    }

    /// A write through transaction `i`: a read-only one must refuse it.
    fn write(&mut self, i: usize, what: &str, result: strata::Result<()>, obs: Obs) {
        let read_only = self.open[i].read_only;
        match result {
            Ok(()) => {
                assert!(
                    !read_only,
                    "{what} through a read-only transaction succeeded"
                );
                self.open[i].obs.push(obs);
            }
            Err(Error::InvalidArgument(_)) if read_only => {}
            Err(e) => self.failed(i, what, &e),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Begin { read_only } => self.begin(read_only),
            Op::Get { t, ks, key: k } => {
                let Some(i) = self.pick(t) else { return };
                match self.open[i].tx.get(&self.keyspaces[ks], key(k)) {
                    Ok(v) => self.open[i]
                        .obs
                        .push(Obs::Get(ks, k, v.map(|v| v.to_vec()))),
                    Err(e) => self.failed(i, "get", &e),
                }
            }
            Op::Scan { t, scan } => {
                let Some(i) = self.pick(t) else { return };
                let tx = &self.open[i].tx;
                let ks = &self.keyspaces[scan.ks];
                let iter = match scan.shape {
                    Shape::All => tx.iter(ks),
                    Shape::Prefix(k, len) => {
                        let prefix: Vec<u8> = key(k).into_iter().take(usize::from(len)).collect();
                        tx.prefix(ks, prefix)
                    }
                    Shape::Range(lower, upper) => {
                        tx.range(ks, (lower.bound_with(key), upper.bound_with(key)))
                    }
                };
                let limit = scan.limit.map_or(usize::MAX, usize::from);
                let pair = |r: strata::Result<(strata::Key, strata::Value)>| {
                    r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                };
                let seen: strata::Result<Pairs> = if scan.reverse {
                    iter.rev().take(limit).map(pair).collect()
                } else {
                    iter.take(limit).map(pair).collect()
                };
                match seen {
                    Ok(seen) => self.open[i].obs.push(Obs::Scan(scan, seen)),
                    Err(e) => self.failed(i, "scan", &e),
                }
            }
            Op::Put { t, ks, key: k } => {
                let Some(i) = self.pick(t) else { return };
                let value = self.value(ks);
                let result = self.open[i].tx.put(&self.keyspaces[ks], key(k), &value);
                self.write(i, "put", result, Obs::Put(ks, k, value));
            }
            Op::Delete { t, ks, key: k } => {
                let Some(i) = self.pick(t) else { return };
                let result = self.open[i].tx.delete(&self.keyspaces[ks], key(k));
                self.write(i, "delete", result, Obs::Delete(ks, k));
            }
            Op::Upsert { t, key: k, delta } => {
                let Some(i) = self.pick(t) else { return };
                let result = self.open[i].tx.upsert(
                    &self.keyspaces[COUNTER_KS],
                    key(k),
                    Counter::operand(delta),
                );
                self.write(i, "upsert", result, Obs::Upsert(k, delta));
            }
            Op::Savepoint { t } => {
                let Some(i) = self.pick(t) else { return };
                let o = &mut self.open[i];
                let savepoint = o.tx.savepoint();
                o.savepoints.push(savepoint);
                o.obs.push(Obs::Savepoint);
            }
            Op::RollbackTo { t, which } => {
                let Some(i) = self.pick(t) else { return };
                let o = &mut self.open[i];
                if o.savepoints.is_empty() {
                    return;
                }
                let index = usize::from(which) % o.savepoints.len();
                let before = o.tx.len();
                if let Err(e) = o.tx.rollback_to(o.savepoints[index]) {
                    panic!(
                        "rollback to savepoint {index} of transaction #{} failed: {e}",
                        o.id
                    );
                }
                assert!(
                    o.tx.len() <= before,
                    "a rollback to a savepoint added writes"
                );
                // Later savepoints lie after the position now: they are rolled back past.
                o.savepoints.truncate(index + 1);
                o.obs.push(Obs::RollbackTo(index));
                self.stats.savepoint_rollbacks += 1;
            }
            Op::Commit { t } => {
                let Some(i) = self.pick(t) else { return };
                self.commit(i);
            }
            Op::Rollback { t } => {
                let Some(i) = self.pick(t) else { return };
                let o = self.open.remove(i);
                o.tx.rollback();
                self.check_state("after a rollback");
            }
            Op::PlainPut { ks, key: k } => {
                let value = self.value(ks);
                if let Err(e) = self.keyspaces[ks].put(key(k), &value) {
                    panic!("plain put failed: {e}");
                }
                let mut next = self.model.clone();
                next[ks].insert(key(k), value);
                self.stats.plain_writes += 1;
                self.committed(next);
            }
            Op::PlainDelete { ks, key: k } => {
                if let Err(e) = self.keyspaces[ks].delete(key(k)) {
                    panic!("plain delete failed: {e}");
                }
                let mut next = self.model.clone();
                next[ks].remove(&key(k));
                self.stats.plain_writes += 1;
                self.committed(next);
            }
            Op::PlainUpsert { key: k, delta } => {
                if let Err(e) = self.keyspaces[COUNTER_KS].upsert(key(k), Counter::operand(delta)) {
                    panic!("plain upsert failed: {e}");
                }
                let mut next = self.model.clone();
                let folded = counter_fold(next[COUNTER_KS].get(&key(k)), delta);
                next[COUNTER_KS].insert(key(k), folded);
                self.stats.plain_writes += 1;
                self.committed(next);
            }
            Op::Transact { from, to } => self.transact(from, to),
            Op::Flush { compact } => {
                let result = if compact {
                    self.db.compact_all()
                } else {
                    self.db.flush()
                };
                if let Err(e) = result {
                    panic!("flush or compaction failed: {e}");
                }
            }
        }
    }

    fn commit(&mut self, i: usize) {
        let o = self.open.remove(i);
        let writes = o.tx.len();
        match o.tx.commit() {
            Ok(()) if writes > 0 => {
                assert!(!o.read_only, "a read-only transaction buffered writes");
                match replay(&self.model, &o.obs) {
                    Ok(next) => {
                        self.stats.writer_commits += 1;
                        self.committed(next);
                    }
                    Err(why) => panic!(
                        "committed transaction #{} does not replay at its commit point ({} \
                         commits in): {why}; observations {:?}",
                        o.id,
                        self.states.len() - 1,
                        o.obs
                    ),
                }
            }
            Ok(()) => {
                let fits = self.states[o.begun_at..]
                    .iter()
                    .any(|s| replay(s, &o.obs).is_ok());
                assert!(
                    fits,
                    "transaction #{} (read-only: {}) committed without writes but fits at no \
                     state from its begin (state {}) to its commit (state {}); observations {:?}",
                    o.id,
                    o.read_only,
                    o.begun_at,
                    self.states.len() - 1,
                    o.obs
                );
                self.stats.reader_commits += 1;
                self.check_state("after a commit without writes");
            }
            Err(e) => self.conflicted(o.id, o.read_only, o.begun_at, "commit", &e),
        }
    }

    /// `Db::transact` with nothing interleaved: it must commit at the first attempt and replay.
    fn transact(&mut self, from: u8, to: u8) {
        let value = self.value(0);
        let counters = &self.keyspaces[COUNTER_KS];
        let plain = &self.keyspaces[0];
        let mut obs = Vec::new();
        let mut attempts = 0;
        let result = self.db.transact(|tx| {
            attempts += 1;
            obs.clear();
            let seen = tx.get(counters, key(from))?.map(|v| v.to_vec());
            let current = seen
                .as_deref()
                .and_then(|v| Counter::decode(v).ok())
                .unwrap_or(0);
            obs.push(Obs::Get(COUNTER_KS, from, seen));
            let delta = current.wrapping_add(1);
            tx.upsert(counters, key(to), Counter::operand(delta))?;
            obs.push(Obs::Upsert(to, delta));
            tx.put(plain, key(to), &value)?;
            obs.push(Obs::Put(0, to, value.clone()));
            Ok(())
        });
        if let Err(e) = result {
            panic!("a transaction with nothing interleaved failed: {e}");
        }
        assert_eq!(
            attempts, 1,
            "a transaction with nothing interleaved was retried"
        );
        match replay(&self.model, &obs) {
            Ok(next) => {
                self.stats.writer_commits += 1;
                self.committed(next);
            }
            Err(why) => panic!("Db::transact does not replay: {why}"),
        }
    }

    /// Commits what is still open, in order, then compares the database with the model, also
    /// after a clean reopen.
    fn finish(mut self) -> TxnStats {
        while !self.open.is_empty() {
            self.commit(0);
        }
        self.check_state("at the end");
        let Harness {
            fs,
            db,
            keyspaces,
            model,
            stats,
            ..
        } = self;
        drop(keyspaces);
        if let Err(e) = db.close() {
            panic!("closing the database failed: {e}");
        }
        let (db, keyspaces) = open(&fs);
        let reopened = Harness {
            fs,
            db,
            keyspaces,
            model,
            states: Vec::new(),
            open: Vec::new(),
            begun: 0,
            next_value: 0,
            stats,
        };
        reopened.check_state("after a clean reopen");
        if let Err(e) = reopened.db.close() {
            panic!("closing the database failed: {e}");
        }
        stats
    }
}
