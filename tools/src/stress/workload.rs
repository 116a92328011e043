//! The mixed workload: worker threads drawing operations from a weighted mix, recording every
//! write in the expected state before and after issuing it, and checking every read.
//!
//! Key ownership: thread `t` of `T` is the only writer of the keys `k` with `k % T == t` (and
//! of the counters `c`, slot `keys + c`, with `c % T == t`), so at
//! most one write per key is in flight and a thread knows its own keys' states exactly. Reads
//! (point, scans, snapshot reads) go to any key and are checked with [`check_read`]: a key of
//! the reading thread must hold exactly its state; another thread's key anything between the
//! state acknowledged before the read and what was in flight after it.
//!
//! # Adding an operation
//!
//! A variant of [`OpKind`], its weight in [`MIX`] and a branch in `Worker::run_op`. A write must
//! be on record before it is issued: [`ExpectedState::begin_write`] for one key, or
//! [`ExpectedState::begin_batch`] for several keys that commit atomically (a transaction's
//! writes are such a batch: record them before the commit, acknowledge after it returns, and
//! the start-up verification checks them all or nothing; see `Worker::transaction`).
//!
//! Upserts go to the counter keyspace (`strata::merge::Counter`), whose slots in the expected
//! state hold totals: an upsert of `delta` (always positive, so totals only grow and a read of
//! another thread's counter is checked against a range) is the write of `total + delta`.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use strata::merge::Counter;
use strata::{Db, Iter, Keyspace, Snapshot};

use super::expected::{BatchKey, ExpectedState, MAX_BATCH};
use super::model::{
    derive_seed, key_name, keyspace_block, keyspace_of, missing_key_name, parse_key, value_of,
    KeyState, Rng, KEYSPACES,
};
use super::verify::{check_read, describe_counter, describe_found, matches, Failure};
use super::StressError;

/// The operations of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Put one key (`Keyspace::put`).
    Put,
    /// Delete one key (`Keyspace::delete`).
    Delete,
    /// A batch of 2..=16 puts and deletes across keyspaces, sometimes with upserts of counters
    /// (`WriteBatch::commit`).
    Batch,
    /// A read-modify-write transaction (`Db::transact`): reads 2..=4 of the thread's keys,
    /// checks them, writes their next generations, sometimes upserts a counter too.
    Transaction,
    /// An upsert of one of the thread's counters (`Keyspace::upsert`, `Counter::operand`).
    Upsert,
    /// A point lookup of any counter.
    CounterGet,
    /// A point lookup of any key, sometimes of a key never written.
    Get,
    /// A forward range scan of up to 64 keys (bounds inclusive, exclusive or open).
    Scan,
    /// A reverse range scan.
    ReverseScan,
    /// A prefix scan of 10 keys.
    PrefixScan,
    /// Take a snapshot (replacing the thread's current one).
    TakeSnapshot,
    /// A point lookup through the thread's snapshot.
    SnapshotGet,
    /// A range scan, either direction, through the thread's snapshot.
    SnapshotScan,
    /// `Db::flush`: dump every memtable.
    Flush,
    /// `Keyspace::compact` of one keyspace.
    Compact,
}

/// Relative weights of the operations.
pub const MIX: &[(OpKind, u32)] = &[
    (OpKind::Put, 300),
    (OpKind::Delete, 60),
    (OpKind::Batch, 100),
    (OpKind::Transaction, 60),
    (OpKind::Upsert, 80),
    (OpKind::CounterGet, 50),
    (OpKind::Get, 250),
    (OpKind::Scan, 60),
    (OpKind::ReverseScan, 50),
    (OpKind::PrefixScan, 20),
    (OpKind::TakeSnapshot, 8),
    (OpKind::SnapshotGet, 80),
    (OpKind::SnapshotScan, 40),
    (OpKind::Flush, 2),
    (OpKind::Compact, 1),
];

impl OpKind {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Delete => "delete",
            OpKind::Batch => "batch",
            OpKind::Transaction => "transaction",
            OpKind::Upsert => "upsert",
            OpKind::CounterGet => "counter_get",
            OpKind::Get => "get",
            OpKind::Scan => "scan",
            OpKind::ReverseScan => "reverse_scan",
            OpKind::PrefixScan => "prefix_scan",
            OpKind::TakeSnapshot => "snapshot",
            OpKind::SnapshotGet => "snapshot_get",
            OpKind::SnapshotScan => "snapshot_scan",
            OpKind::Flush => "flush",
            OpKind::Compact => "compact",
        }
    }

    fn pick(rng: &mut Rng) -> OpKind {
        let total: u64 = MIX.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut x = rng.below(total);
        for &(op, w) in MIX {
            if x < u64::from(w) {
                return op;
            }
            x -= u64::from(w);
        }
        OpKind::Get
    }
}

/// What the workload shares between threads.
pub struct Shared<'a> {
    /// The database.
    pub db: &'a Db,
    /// Keyspace `i` holds the keys of `keyspace_block(i)`.
    pub keyspaces: &'a [Keyspace],
    /// The counter keyspace.
    pub counters: &'a Keyspace,
    /// The expected state.
    pub state: &'a ExpectedState,
    /// Worker threads.
    pub threads: usize,
    /// The run's seed.
    pub seed: u64,
    /// Stop at this instant.
    pub deadline: Instant,
    /// Set to stop every thread (a failure, or an error).
    pub stop: AtomicBool,
    /// Transactions `Db::transact` gave up on (conflicts after every retry).
    pub txn_gave_up: AtomicU64,
    /// Operations done, per [`MIX`] entry.
    pub counts: Vec<AtomicU64>,
    /// Reads checked (keys seen by gets and scans).
    pub reads_checked: AtomicU64,
    /// The first error of any thread.
    pub error: Mutex<Option<StressError>>,
}

impl<'a> Shared<'a> {
    /// Everything zeroed.
    pub fn new(
        db: &'a Db,
        keyspaces: &'a [Keyspace],
        counters: &'a Keyspace,
        state: &'a ExpectedState,
        threads: usize,
        seed: u64,
        deadline: Instant,
    ) -> Self {
        Shared {
            db,
            keyspaces,
            counters,
            state,
            threads,
            seed,
            deadline,
            stop: AtomicBool::new(false),
            txn_gave_up: AtomicU64::new(0),
            counts: MIX.iter().map(|_| AtomicU64::new(0)).collect(),
            reads_checked: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    /// Total operations so far.
    pub fn ops(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn fail(&self, error: StressError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A key's acknowledged state and the state of the write in flight, if any, loaded together.
type Post = (KeyState, Option<KeyState>);

/// A snapshot and the expected states around its creation (for every key).
struct HeldSnapshot {
    snapshot: Snapshot,
    pre: Vec<KeyState>,
    post: Vec<Post>,
    ops_left: u64,
}

/// One worker thread's state.
struct Worker<'s, 'a> {
    shared: &'s Shared<'a>,
    thread: usize,
    rng: Rng,
    own: Vec<u64>,
    own_counters: Vec<u64>,
    snapshot: Option<HeldSnapshot>,
}

/// Runs worker `thread` until the deadline, a stop, or an error (recorded in `shared`).
pub fn run_worker(shared: &Shared<'_>, thread: usize) {
    let keys = shared.state.keys();
    let own = (thread as u64..keys).step_by(shared.threads).collect();
    let own_counters = (keys + thread as u64..shared.state.slots())
        .step_by(shared.threads)
        .collect();
    let mut worker = Worker {
        shared,
        thread,
        rng: Rng::new(derive_seed(shared.seed, thread as u64 + 1)),
        own,
        own_counters,
        snapshot: None,
    };
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < shared.deadline {
        let op = OpKind::pick(&mut worker.rng);
        if let Err(e) = worker.run_op(op) {
            shared.fail(e);
            return;
        }
        if let Some(i) = MIX.iter().position(|&(o, _)| o == op) {
            shared.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A read the workload checks: the key, the expected states around it, and what it returned.
struct Observed<'v> {
    key: u64,
    pre: KeyState,
    post: Post,
    found: Option<&'v [u8]>,
}

impl Worker<'_, '_> {
    fn keys(&self) -> u64 {
        self.shared.state.keys()
    }

    fn engine<T>(&self, what: &str, r: strata::Result<T>) -> Result<T, StressError> {
        r.map_err(|e| StressError::Other(format!("thread {}: {what}: {e}", self.thread)))
    }

    fn state_err<T>(r: Result<T, super::expected::StateError>) -> Result<T, StressError> {
        r.map_err(StressError::State)
    }

    fn post(&self, key: u64) -> Post {
        // Pending first: a write clears it only after setting current (see expected.rs).
        let pending = self.shared.state.pending(key);
        (self.shared.state.current(key), pending)
    }

    fn check(&self, what: &str, seen: &Observed<'_>) -> Result<(), StressError> {
        self.shared.reads_checked.fetch_add(1, Ordering::Relaxed);
        check_read(seen.key, seen.pre, seen.post.0, seen.post.1, seen.found).map_err(|expected| {
            StressError::Failed(vec![Failure {
                key: seen.key,
                what: format!("{what} by thread {}", self.thread),
                expected,
                found: describe_found(seen.key, seen.found),
            }])
        })
    }

    fn run_op(&mut self, op: OpKind) -> Result<(), StressError> {
        if let Some(held) = &mut self.snapshot {
            held.ops_left = held.ops_left.saturating_sub(1);
            if held.ops_left == 0 {
                self.snapshot = None;
            }
        }
        match op {
            OpKind::Put | OpKind::Delete => self.write_one(op == OpKind::Put),
            OpKind::Batch => self.batch(),
            OpKind::Transaction => self.transaction(),
            OpKind::Upsert => self.upsert(),
            OpKind::CounterGet => self.counter_get(),
            OpKind::Get => self.get(),
            OpKind::Scan | OpKind::ReverseScan | OpKind::PrefixScan => self.scan(op, false),
            OpKind::TakeSnapshot => {
                self.take_snapshot();
                Ok(())
            }
            OpKind::SnapshotGet => self.snapshot_get(),
            OpKind::SnapshotScan => {
                let op = if self.rng.chance(1, 2) {
                    OpKind::Scan
                } else {
                    OpKind::ReverseScan
                };
                self.scan(op, true)
            }
            OpKind::Flush => {
                let r = self.shared.db.flush();
                self.engine("flush", r)
            }
            OpKind::Compact => {
                let ks = self.rng.below(KEYSPACES) as usize;
                let r = self.shared.keyspaces[ks].compact();
                self.engine("compact", r)
            }
        }
    }

    fn keyspace(&self, key: u64) -> &Keyspace {
        &self.shared.keyspaces[keyspace_of(key, self.keys()) as usize]
    }

    fn write_one(&mut self, put: bool) -> Result<(), StressError> {
        if self.own.is_empty() {
            return Ok(());
        }
        let key = *self.rng.pick(&self.own);
        let state = self.shared.state;
        let new = state.current(key).next(put);
        Self::state_err(state.begin_write(key, new))?;
        let ks = self.keyspace(key);
        let r = if put {
            ks.put(key_name(key), value_of(key, new.gen()))
        } else {
            ks.delete(key_name(key))
        };
        self.engine(if put { "put" } else { "delete" }, r)?;
        Self::state_err(state.ack_write(key, new))
    }

    fn batch(&mut self) -> Result<(), StressError> {
        if self.own.len() < 2 {
            return self.write_one(true);
        }
        let n = self.rng.between(2, MAX_BATCH.min(self.own.len()) as u64) as usize;
        let mut keys: Vec<u64> = Vec::with_capacity(n + 1);
        while keys.len() < n {
            let key = *self.rng.pick(&self.own);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let state = self.shared.state;
        let mut batch = self.shared.db.batch();
        let mut record = Vec::with_capacity(n + 1);
        for &key in &keys {
            let old = state.current(key);
            let new = old.next(self.rng.chance(4, 5));
            let ks = self.keyspace(key);
            if new.present() {
                batch.put(ks, key_name(key), value_of(key, new.gen()));
            } else {
                batch.delete(ks, key_name(key));
            }
            record.push(BatchKey { key, old, new });
        }
        if n < MAX_BATCH && !self.own_counters.is_empty() && self.rng.chance(1, 3) {
            let (key, old, new, operand) = self.next_upsert();
            batch.upsert(self.shared.counters, key_name(key), operand);
            record.push(BatchKey { key, old, new });
        }
        Self::state_err(state.begin_batch(self.thread, &record))?;
        let r = batch.commit();
        self.engine("batch commit", r)?;
        Self::state_err(state.ack_batch(self.thread, &record))
    }

    /// One of the thread's counters, its total now and after an upsert of a random positive
    /// delta, and that upsert's operand.
    fn next_upsert(&mut self) -> (u64, KeyState, KeyState, [u8; 8]) {
        let key = *self.rng.pick(&self.own_counters);
        let delta = self.rng.between(1, 1000);
        let old = self.shared.state.current(key);
        (
            key,
            old,
            KeyState(old.0 + delta),
            Counter::operand(delta as i64),
        )
    }

    fn upsert(&mut self) -> Result<(), StressError> {
        if self.own_counters.is_empty() {
            return Ok(());
        }
        let (key, _, new, operand) = self.next_upsert();
        let state = self.shared.state;
        Self::state_err(state.begin_write(key, new))?;
        let r = self.shared.counters.upsert(key_name(key), operand);
        self.engine("upsert", r)?;
        Self::state_err(state.ack_write(key, new))
    }

    fn counter_get(&mut self) -> Result<(), StressError> {
        let state = self.shared.state;
        if state.counters() == 0 {
            return Ok(());
        }
        let key = state.keys() + self.rng.below(state.counters());
        let pre = state.current(key).0;
        let r = self.shared.counters.get(key_name(key));
        let found = self.engine("counter get", r)?;
        let (post, pending) = self.post(key);
        let hi = pending.map_or(post.0, |p| p.0.max(post.0));
        self.shared.reads_checked.fetch_add(1, Ordering::Relaxed);
        let total = super::model::counter_total(found.as_deref());
        // Totals only grow: the read sees the total acknowledged before it or a later one.
        if total.is_ok_and(|t| (pre..=hi).contains(&t)) {
            return Ok(());
        }
        Err(StressError::Failed(vec![Failure {
            key,
            what: format!("counter lookup by thread {}", self.thread),
            expected: if pre == hi {
                format!("total {pre}")
            } else {
                format!("a total of {pre}..={hi}")
            },
            found: describe_counter(found.as_deref()),
        }]))
    }

    /// Reads 2..=4 of the thread's keys in a transaction, checks each holds its state (nobody
    /// else writes them), writes their next generations and sometimes upserts a counter; all
    /// recorded as a batch, so the verifier checks all or nothing. The writes are chosen before
    /// `transact` so every retry of the body writes the same ones.
    fn transaction(&mut self) -> Result<(), StressError> {
        if self.own.len() < 2 {
            return self.write_one(true);
        }
        let n = self.rng.between(2, 4.min(self.own.len() as u64)) as usize;
        let mut record: Vec<BatchKey> = Vec::with_capacity(n + 1);
        let state = self.shared.state;
        while record.len() < n {
            let key = *self.rng.pick(&self.own);
            if record.iter().all(|k| k.key != key) {
                let old = state.current(key);
                let new = old.next(self.rng.chance(4, 5));
                record.push(BatchKey { key, old, new });
            }
        }
        let mut upsert = None;
        if !self.own_counters.is_empty() && self.rng.chance(1, 2) {
            let (key, old, new, operand) = self.next_upsert();
            record.push(BatchKey { key, old, new });
            upsert = Some((key, operand));
        }
        Self::state_err(state.begin_batch(self.thread, &record))?;
        let keys = self.keys();
        let keyspaces = self.shared.keyspaces;
        let counters = self.shared.counters;
        let mut wrong: Option<Failure> = None;
        let r = self.shared.db.transact(|tx| {
            for k in record.iter().filter(|k| k.key < keys) {
                let ks = &keyspaces[keyspace_of(k.key, keys) as usize];
                let name = key_name(k.key);
                let found = tx.get(ks, &name)?;
                if !matches(k.key, k.old, found.as_deref()) && wrong.is_none() {
                    wrong = Some(Failure {
                        key: k.key,
                        what: "read in a transaction".into(),
                        expected: k.old.to_string(),
                        found: describe_found(k.key, found.as_deref()),
                    });
                }
                if k.new.present() {
                    tx.put(ks, &name, value_of(k.key, k.new.gen()))?;
                } else {
                    tx.delete(ks, &name)?;
                }
            }
            if let Some((key, operand)) = upsert {
                tx.upsert(counters, key_name(key), operand)?;
            }
            Ok(())
        });
        if let Some(failure) = wrong {
            return Err(StressError::Failed(vec![failure]));
        }
        match r {
            Ok(()) => Self::state_err(state.ack_batch(self.thread, &record)),
            Err(e) if e.is_conflict() => {
                // Gave up after every retry: nothing was written.
                self.shared.txn_gave_up.fetch_add(1, Ordering::Relaxed);
                Self::state_err(state.abort_batch(self.thread, &record))
            }
            Err(e) => self.engine("transaction", Err(e)),
        }
    }

    fn get(&mut self) -> Result<(), StressError> {
        let key = self.rng.below(self.keys());
        let missing = self.rng.chance(1, 8);
        let ks = self.keyspace(key);
        if missing {
            let r = ks.get(missing_key_name(key));
            if let Some(v) = self.engine("get", r)? {
                return Err(StressError::Failed(vec![Failure {
                    key,
                    what: "lookup of a key never written (the key with '~' appended)".into(),
                    expected: "absent".into(),
                    found: describe_found(key, Some(&v)),
                }]));
            }
            return Ok(());
        }
        let pre = self.shared.state.current(key);
        let r = ks.get(key_name(key));
        let found = self.engine("get", r)?;
        let seen = Observed {
            key,
            pre,
            post: self.post(key),
            found: found.as_deref(),
        };
        match self.check("get", &seen) {
            Err(StressError::Failed(mut failures)) => {
                // Read again: a wrong value that goes away points at a race in the engine's
                // read path rather than at what it stores.
                let name = key_name(key);
                let again = ks.get(&name).ok().flatten();
                let scan = ks
                    .range(name.clone()..=name)
                    .next()
                    .and_then(|r| r.ok())
                    .map(|(_, v)| v);
                for f in &mut failures {
                    f.found += &format!(
                        " (read again: lookup {}, one-key scan {})",
                        describe_found(key, again.as_deref()),
                        describe_found(key, scan.as_deref())
                    );
                }
                Err(StressError::Failed(failures))
            }
            other => other,
        }
    }

    fn take_snapshot(&mut self) {
        self.snapshot = None;
        let state = self.shared.state;
        let keys = self.keys();
        let pre = (0..keys).map(|k| state.current(k)).collect();
        let snapshot = self.shared.db.snapshot();
        let post = (0..keys).map(|k| self.post(k)).collect();
        let ops_left = self.rng.between(20, 2000);
        self.snapshot = Some(HeldSnapshot {
            snapshot,
            pre,
            post,
            ops_left,
        });
    }

    fn snapshot_get(&mut self) -> Result<(), StressError> {
        let key = self.rng.below(self.keys());
        let Some(held) = &self.snapshot else {
            self.take_snapshot();
            return Ok(());
        };
        let r = held.snapshot.get(self.keyspace(key), key_name(key));
        let found = self.engine("snapshot get", r)?;
        let seen = Observed {
            key,
            pre: held.pre[key as usize],
            post: held.post[key as usize],
            found: found.as_deref(),
        };
        self.check("get through a snapshot", &seen)
    }

    /// A scan over the key indexes `start..end` of one keyspace, with randomly chosen bounds
    /// that select exactly those keys (or, open-ended, at least those: the scan then stops at
    /// the first key past them).
    fn scan(&mut self, op: OpKind, through_snapshot: bool) -> Result<(), StressError> {
        let keys = self.keys();
        let ks_index = self.rng.below(KEYSPACES);
        let (block_lo, block_hi) = keyspace_block(ks_index, keys);
        if block_lo >= block_hi {
            return Ok(());
        }
        let (start, end) = if op == OpKind::PrefixScan {
            // `k` + all digits but the last: the 10 keys sharing them (clipped to the block).
            let first = self.rng.between(block_lo, block_hi - 1) / 10 * 10;
            (first.max(block_lo), (first + 10).min(block_hi))
        } else {
            let start = self.rng.between(block_lo, block_hi - 1);
            (start, (start + self.rng.between(1, 64)).min(block_hi))
        };
        let reverse = op == OpKind::ReverseScan;
        let name = |k: u64| key_name(k);
        let lower = match self.rng.below(3) {
            _ if op == OpKind::PrefixScan => Bound::Unbounded,
            0 if reverse => Bound::Unbounded,
            1 if start > 0 => Bound::Excluded(missing_key_name(start - 1)),
            _ => Bound::Included(name(start)),
        };
        let upper = match self.rng.below(3) {
            _ if op == OpKind::PrefixScan => Bound::Unbounded,
            0 if !reverse => Bound::Unbounded,
            1 => Bound::Included(name(end - 1)),
            _ => Bound::Excluded(name(end)),
        };
        let ks = &self.shared.keyspaces[ks_index as usize];
        let state = self.shared.state;
        let (pre, post, iter): (Vec<KeyState>, Vec<Post>, Iter);
        if through_snapshot {
            let Some(held) = &self.snapshot else {
                self.take_snapshot();
                return Ok(());
            };
            pre = (start..end).map(|k| held.pre[k as usize]).collect();
            post = (start..end).map(|k| held.post[k as usize]).collect();
            iter = held.snapshot.range(ks, (lower, upper));
        } else {
            pre = (start..end).map(|k| state.current(k)).collect();
            iter = if op == OpKind::PrefixScan {
                let mut prefix = name(start);
                prefix.pop();
                ks.prefix(prefix)
            } else {
                ks.range((lower, upper))
            };
            post = (start..end).map(|k| self.post(k)).collect();
        }
        let what = format!(
            "{}{} of k{start:08}..k{end:08}",
            if through_snapshot { "snapshot " } else { "" },
            op.name()
        );
        let mut found: Vec<Option<strata::Bytes>> = vec![None; (end - start) as usize];
        let mut last: Option<u64> = None;
        let mut step = |item: Option<strata::Result<(strata::Key, strata::Value)>>| {
            let Some(item) = item else { return Ok(false) };
            let (k, v) = item.map_err(|e| StressError::Other(format!("{what}: {e}")))?;
            let key = parse_key(&k).filter(|k| (block_lo..block_hi).contains(k));
            let ordered = match (key, last) {
                (Some(key), Some(last)) => (key > last) != reverse && key != last,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let Some(key) = key.filter(|_| ordered) else {
                return Err(StressError::Failed(vec![Failure {
                    key: key.unwrap_or(u64::MAX),
                    what: what.clone(),
                    expected: format!(
                        "keys of this keyspace in {} order after {:?}",
                        if reverse { "descending" } else { "ascending" },
                        last.map(|l| String::from_utf8_lossy(&key_name(l)).into_owned())
                    ),
                    found: format!("key {}", super::model::preview(&k)),
                }]));
            };
            last = Some(key);
            if !(start..end).contains(&key) {
                return Ok(false); // past the keys of interest (open-ended bound)
            }
            found[(key - start) as usize] = Some(v);
            Ok(true)
        };
        let mut iter = iter;
        if reverse {
            while step(iter.next_back())? {}
        } else {
            while step(iter.next())? {}
        }
        for (i, key) in (start..end).enumerate() {
            let seen = Observed {
                key,
                pre: pre[i],
                post: post[i],
                found: found[i].as_deref(),
            };
            self.check(&what, &seen)?;
        }
        Ok(())
    }
}
