//! Transactions: serializable and optimistic, in the manner of vinyl.
//!
//! A [`Transaction`] buffers its writes in memory (they count against the memory quota) and
//! commits them as one atomic batch through the WAL. Its reads see its own writes on top of the
//! newest committed state, and are recorded as key intervals in the conflict manager
//! (`conflict`), which dooms or freezes transactions whose reads a later commit overwrote:
//! see that module for the rules and why they are race-free. Read-only transactions
//! ([`crate::Db::begin_read_only`]) read one snapshot and never abort.
//!
//! Savepoints mark a point in the write log; rolling back to one drops the writes after it
//! (reads stay recorded: what the transaction saw still decides its fate).

mod conflict;
mod iter;

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_sstable::{EntryKind, MAX_KEY_LEN};

pub(crate) use conflict::ConflictManager;
use conflict::{Interval, ReadAt};
pub use iter::TxnIter;

use crate::batch::BatchEntry;
use crate::db::{Db, DbInner};
use crate::error::{Error, Result};
use crate::keyspace::{map_bound, prefix_bounds, Keyspace, KeyspaceInner, Value};
use crate::read::{self, resolve_operands, Chain};

/// Bytes charged per buffered write on top of its key and value.
const WRITE_OVERHEAD_BYTES: u64 = 64;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A read-write transaction and its conflict-manager slot.
    ReadWrite { slot: u64 },
    /// A read-only transaction and its registered read view.
    ReadOnly { seqno: u64 },
}

/// A position in a transaction's writes, to roll back to with
/// [`Transaction::rollback_to`]. Valid only for the transaction that made it, and only while
/// that transaction has not rolled back past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint {
    txn: u64,
    writes: usize,
}

/// A serializable optimistic transaction: begun by [`crate::Db::begin`] or
/// [`crate::Db::begin_read_only`]. It buffers its writes (charged to the memory quota) and commits
/// them as one batch; its reads see its own writes over the newest committed state and are
/// recorded, so a commit that overwrites them makes this transaction fail with
/// [`Error::Conflict`] if it wrote, or keep reading the view from before that commit if it only
/// read. Savepoints mark positions in its writes.
///
/// `Send + Sync`: reads take `&self`, writes `&mut self`. Dropping it without committing rolls
/// it back.
pub struct Transaction {
    db: Db,
    kind: Kind,
    /// Buffered writes, in order (committed as one batch in this order).
    log: Vec<BatchEntry>,
    /// Positions in `log` per keyspace and key.
    index: HashMap<u32, BTreeMap<Bytes, Vec<usize>>>,
    /// Bytes charged to the memory quota for the buffered writes.
    charged: u64,
    finished: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("kind", &self.kind)
            .field("writes", &self.log.len())
            .finish()
    }
}

/// The seqno a read of `interval` must use for conflict-manager slot `slot`, waiting for
/// commits the read must not slip under.
fn tracked_read_seqno(
    db: &DbInner,
    slot: u64,
    keyspace: u32,
    interval: Interval,
    scan: bool,
) -> Result<(u64, Option<u64>)> {
    let visible = || db.commit.visible_seqno();
    loop {
        let (at, scan_id) = if scan {
            db.conflicts
                .begin_scan(slot, keyspace, interval.clone(), &visible)?
        } else {
            (
                db.conflicts
                    .read(slot, keyspace, interval.clone(), &visible)?,
                None,
            )
        };
        match at {
            ReadAt::Seqno(seqno) => return Ok((seqno, scan_id)),
            ReadAt::WaitFor(seqno) => db.commit.wait_visible(seqno, db.options.quota_timeout)?,
        }
    }
}

impl Transaction {
    pub(crate) fn begin(db: Db) -> Transaction {
        let slot = db.inner.conflicts.begin(&db.inner.commit);
        Transaction::new(db, Kind::ReadWrite { slot })
    }

    pub(crate) fn begin_read_only(db: Db) -> Transaction {
        let inner = &db.inner;
        let seqno = inner
            .read_views
            .register_current(|| inner.commit.visible_seqno());
        Transaction::new(db, Kind::ReadOnly { seqno })
    }

    fn new(db: Db, kind: Kind) -> Transaction {
        Transaction {
            db,
            kind,
            log: Vec::new(),
            index: HashMap::new(),
            charged: 0,
            finished: false,
        }
    }

    /// True for a read-only transaction ([`crate::Db::begin_read_only`]).
    pub fn is_read_only(&self) -> bool {
        matches!(self.kind, Kind::ReadOnly { .. })
    }

    /// Number of buffered writes.
    pub fn len(&self) -> usize {
        self.log.len()
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    fn check_keyspace(&self, keyspace: &Keyspace) -> Result<()> {
        if !Arc::ptr_eq(&keyspace.db.inner, &self.db.inner) {
            return Err(Error::InvalidArgument(
                "the keyspace belongs to another database than the transaction".into(),
            ));
        }
        keyspace.inner.check_live()
    }

    /// The seqno to read `interval` at (tracked for a read-write transaction).
    fn read_seqno(&self, keyspace: &KeyspaceInner, interval: Interval) -> Result<u64> {
        match self.kind {
            Kind::ReadOnly { seqno } => Ok(seqno),
            Kind::ReadWrite { slot } => {
                tracked_read_seqno(&self.db.inner, slot, keyspace.id, interval, false)
                    .map(|(seqno, _)| seqno)
            }
        }
    }

    /// The transaction's own versions of `key`, newest first.
    fn local_chain(&self, keyspace: u32, key: &[u8]) -> Chain {
        let mut chain = Chain::default();
        if let Some(positions) = self.index.get(&keyspace).and_then(|keys| keys.get(key)) {
            for &position in positions.iter().rev() {
                let entry = &self.log[position];
                if !chain.push(entry.kind, entry.value.clone()) {
                    break;
                }
            }
        }
        chain
    }

    /// The value of `key`: the transaction's own writes on top of the committed state (a
    /// read-write transaction reads the newest committed state, a read-only one its snapshot).
    ///
    /// # Errors
    /// [`Error::Conflict`] if the transaction is doomed; [`Error::Merge`] if an upsert operand
    /// is rejected; I/O and corruption errors; [`Error::InvalidArgument`] for a keyspace of
    /// another database; [`Error::KeyspaceNotFound`] if it was dropped.
    pub fn get(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.check_keyspace(keyspace)?;
        let key = key.as_ref();
        let ks = &keyspace.inner;
        let local = self.local_chain(ks.id, key);
        if local.base.is_some() {
            // Decided by the transaction's own Put or Delete: nothing committed matters.
            return local.resolve(ks, key);
        }
        let seqno = self.read_seqno(ks, Interval::point(key))?;
        let committed = read::get(ks, key, seqno)?;
        if local.operands.is_empty() {
            return Ok(committed);
        }
        resolve_operands(ks, key, committed, &local.operands).map(Some)
    }

    /// True if `key` has a value (see [`Transaction::get`]).
    pub fn contains_key(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(keyspace, key)?.is_some())
    }

    /// The pairs in `range`, the transaction's writes merged over the committed state, in key
    /// order both ways. A read-write transaction's scan counts as a read of the whole range
    /// while the iterator lives, and of what it returned (from the start of the range to the
    /// last key returned, gaps included; the whole range once exhausted) after it is dropped.
    ///
    /// Errors (as for [`Transaction::get`]) come out of the iterator.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        keyspace: &Keyspace,
        range: R,
    ) -> TxnIter {
        self.scan(
            keyspace,
            map_bound(range.start_bound()),
            map_bound(range.end_bound()),
        )
    }

    /// Every pair of `keyspace` (see [`Transaction::range`]).
    pub fn iter(&self, keyspace: &Keyspace) -> TxnIter {
        self.scan(keyspace, Bound::Unbounded, Bound::Unbounded)
    }

    /// The pairs whose key starts with `prefix` (see [`Transaction::range`]).
    pub fn prefix(&self, keyspace: &Keyspace, prefix: impl AsRef<[u8]>) -> TxnIter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        self.scan(keyspace, lower, upper)
    }

    fn scan(&self, keyspace: &Keyspace, lower: Bound<Bytes>, upper: Bound<Bytes>) -> TxnIter {
        if let Err(e) = self.check_keyspace(keyspace) {
            return TxnIter::failed(e);
        }
        let ks = &keyspace.inner;
        let (seqno, scan) = match self.kind {
            Kind::ReadOnly { seqno } => (seqno, None),
            Kind::ReadWrite { slot } => {
                let interval = Interval::from_bounds(&lower, &upper);
                match tracked_read_seqno(&self.db.inner, slot, ks.id, interval, true) {
                    Ok((seqno, scan_id)) => (seqno, scan_id.map(|id| (slot, id))),
                    Err(e) => return TxnIter::failed(e),
                }
            }
        };
        let mut local = Vec::new();
        if let Some(keys) = self.index.get(&ks.id) {
            // `BTreeMap::range` panics on an inverted or empty-excluded range; such a range
            // simply holds nothing.
            if !is_empty_range(&lower, &upper) {
                for (key, _) in keys.range::<Bytes, _>((lower.as_ref(), upper.as_ref())) {
                    local.push((key.clone(), self.local_chain(ks.id, key)));
                }
            }
        }
        let committed = crate::iter::Iter::new(ks, seqno, lower.clone(), upper.clone());
        TxnIter::new(
            Arc::clone(&self.db.inner),
            Arc::clone(ks),
            committed,
            local,
            (lower, upper),
            scan,
        )
    }

    fn buffer(
        &mut self,
        keyspace: &Keyspace,
        kind: EntryKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        self.check_keyspace(keyspace)?;
        let slot = match self.kind {
            Kind::ReadOnly { .. } => {
                return Err(Error::InvalidArgument(
                    "a read-only transaction cannot write".into(),
                ))
            }
            Kind::ReadWrite { slot } => slot,
        };
        if key.len() > MAX_KEY_LEN {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        let max_value_len = self.db.inner.options.max_value_len;
        if value.len() > max_value_len {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: max_value_len,
            });
        }
        if kind == EntryKind::Merge {
            keyspace.inner.check_upsert()?;
        }
        let charge = (key.len() + value.len()) as u64 + WRITE_OVERHEAD_BYTES;
        let limit = self.db.inner.options.max_transaction_bytes;
        if self.charged + charge > limit {
            return Err(Error::TransactionTooLarge {
                bytes: self.charged + charge,
                limit,
            });
        }
        self.db.inner.conflicts.write(slot)?;
        let key = Bytes::copy_from_slice(key);
        self.index
            .entry(keyspace.inner.id)
            .or_default()
            .entry(key.clone())
            .or_default()
            .push(self.log.len());
        self.log.push(BatchEntry {
            keyspace: keyspace.inner.id,
            kind,
            key,
            value: Bytes::copy_from_slice(value),
        });
        self.charged += charge;
        self.db.inner.quota.charge(charge);
        Ok(())
    }

    /// Buffers a put of `key` = `value`.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the transaction is doomed or was sent to a read view (it read
    /// something another commit overwrote); [`Error::TransactionTooLarge`];
    /// [`Error::KeyTooLarge`], [`Error::ValueTooLarge`]; [`Error::InvalidArgument`] in a
    /// read-only transaction or for a keyspace of another database.
    pub fn put(
        &mut self,
        keyspace: &Keyspace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.buffer(keyspace, EntryKind::Put, key.as_ref(), value.as_ref())
    }

    /// Buffers a delete of `key`. Errors as for [`Transaction::put`].
    pub fn delete(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<()> {
        self.buffer(keyspace, EntryKind::Delete, key.as_ref(), b"")
    }

    /// Buffers an upsert of `operand` to `key` (see [`Keyspace::upsert`]): a blind write that
    /// never conflicts. Errors as for [`Transaction::put`], and [`Error::InvalidArgument`] if
    /// the keyspace has no merge operator.
    pub fn upsert(
        &mut self,
        keyspace: &Keyspace,
        key: impl AsRef<[u8]>,
        operand: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.buffer(keyspace, EntryKind::Merge, key.as_ref(), operand.as_ref())
    }

    fn id(&self) -> u64 {
        match self.kind {
            Kind::ReadWrite { slot } => slot,
            Kind::ReadOnly { seqno } => u64::MAX - seqno,
        }
    }

    /// The current position in the writes, to come back to with [`Transaction::rollback_to`].
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            txn: self.id(),
            writes: self.log.len(),
        }
    }

    /// Drops every write buffered after `savepoint`. Reads made since stay recorded.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the savepoint belongs to another transaction or lies after
    /// the current position (it was rolled back past).
    pub fn rollback_to(&mut self, savepoint: Savepoint) -> Result<()> {
        if savepoint.txn != self.id() || savepoint.writes > self.log.len() {
            return Err(Error::InvalidArgument(
                "the savepoint is not one of this transaction's current positions".into(),
            ));
        }
        for entry in self.log.drain(savepoint.writes..) {
            let charge = (entry.key.len() + entry.value.len()) as u64 + WRITE_OVERHEAD_BYTES;
            self.charged -= charge;
            self.db.inner.quota.release(charge);
            if let Some(keys) = self.index.get_mut(&entry.keyspace) {
                if let Some(positions) = keys.get_mut(&entry.key) {
                    positions.retain(|&p| p < savepoint.writes);
                    if positions.is_empty() {
                        keys.remove(&entry.key);
                    }
                }
            }
        }
        Ok(())
    }

    fn release(&mut self) {
        self.finished = true;
        self.db
            .inner
            .quota
            .release(std::mem::take(&mut self.charged));
        match self.kind {
            Kind::ReadWrite { slot } => self
                .db
                .inner
                .conflicts
                .finish(slot, &self.db.inner.read_views),
            Kind::ReadOnly { seqno } => self.db.inner.read_views.unregister(seqno),
        }
    }

    /// Commits the buffered writes as one atomic batch, durable per the database's WAL mode.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another commit overwrote something this transaction read (retry
    /// it from the start; [`crate::Db::transact`] does); otherwise as
    /// [`crate::WriteBatch::commit`]. The transaction is finished either way.
    pub fn commit(mut self) -> Result<()> {
        let db = Arc::clone(&self.db.inner);
        let result = match self.kind {
            Kind::ReadOnly { .. } => Ok(()),
            Kind::ReadWrite { slot } => {
                let log = std::mem::take(&mut self.log);
                if log.is_empty() {
                    db.conflicts.finish_checked(slot, &db.read_views)
                } else {
                    db.commit_with(log, false, Some(slot))
                }
            }
        };
        self.release();
        match &result {
            Ok(()) => db
                .conflicts
                .counters
                .commits
                .fetch_add(1, Ordering::Relaxed),
            Err(_) => db
                .conflicts
                .counters
                .rollbacks
                .fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// Discards the transaction (as dropping it does).
    pub fn rollback(mut self) {
        self.rollback_in_place();
    }

    fn rollback_in_place(&mut self) {
        if !self.finished {
            self.release();
            self.db
                .inner
                .conflicts
                .counters
                .rollbacks
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.rollback_in_place();
    }
}

/// True if no key lies between the bounds (including inverted bounds).
fn is_empty_range(lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u))
        | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
        _ => false,
    }
}

/// Retry policy of [`crate::Db::transact`]: `attempts` tries at most, sleeping a random time
/// below an exponentially growing bound between them.
pub(crate) fn transact<T>(
    db: &Db,
    attempts: u32,
    mut body: impl FnMut(&mut Transaction) -> Result<T>,
) -> Result<T> {
    let mut bound = Duration::from_micros(50);
    let mut attempt = 1;
    loop {
        let mut tx = db.begin();
        let result = body(&mut tx).and_then(|value| tx.commit().map(|()| value));
        match result {
            Err(e) if e.is_conflict() && attempt < attempts.max(1) => {
                std::thread::sleep(jitter(bound));
                bound = (bound * 2).min(Duration::from_millis(20));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A random duration in `[bound / 2, bound)`: spreads retries of transactions that conflicted
/// with each other so they do not collide again in lockstep.
fn jitter(bound: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(bound.as_nanos() as u64);
    let nanos = bound.as_nanos() as u64;
    let half = nanos / 2;
    Duration::from_nanos(half + hasher.finish() % half.max(1))
}
