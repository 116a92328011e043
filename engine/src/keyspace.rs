//! Keyspaces: one LSM tree each. `KeyspaceInner` is the engine's state of a tree; `Keyspace`
//! is the user's handle to it.

use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use strata_sstable::{EntryKind, RunCounters};

use crate::batch::BatchEntry;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::iter::Iter;
use crate::memtable::Memtable;
use crate::merge::MergeOperator;
use crate::options::KeyspaceOptions;
use crate::read;
use crate::version::{Range, TreeVersion};

/// A user key: a cheaply cloneable shared buffer.
pub type Key = Bytes;
/// A value: a cheaply cloneable shared buffer (often a slice of a cached page).
pub type Value = Bytes;

/// Counters of one keyspace.
#[derive(Debug, Default)]
pub(crate) struct KeyspaceCounters {
    pub user_bytes_written: AtomicU64,
    pub writes: AtomicU64,
    pub dumps: AtomicU64,
    pub dump_bytes_in: AtomicU64,
    pub dump_bytes_out: AtomicU64,
    pub dump_micros: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_bytes_in: AtomicU64,
    pub compaction_bytes_out: AtomicU64,
    /// Of `compaction_bytes_out`, what major compactions (output at a range's bottom) wrote.
    pub compaction_bytes_out_bottom: AtomicU64,
    pub compaction_micros: AtomicU64,
    pub versions_dropped: AtomicU64,
    pub splits: AtomicU64,
    /// Bytes written by compactions, by the level their output lands on.
    pub compaction_bytes_by_level: Mutex<Vec<u64>>,
    /// Compactions per range id: (count, bytes in, bytes out, microseconds).
    pub compactions_by_range: Mutex<std::collections::BTreeMap<u64, [u64; 4]>>,
    pub coalesces: AtomicU64,
    pub gets: AtomicU64,
    pub gets_from_memtable: AtomicU64,
    pub runs_probed: AtomicU64,
    /// Upsert chains folded by background squashes.
    pub squashes: AtomicU64,
}

/// The engine's state of one keyspace. Thread-safe.
pub(crate) struct KeyspaceInner {
    pub id: u32,
    pub name: String,
    pub options: KeyspaceOptions,
    version: RwLock<Arc<TreeVersion>>,
    /// One dump of this keyspace at a time, oldest sealed memtable first (so `Dumped` only
    /// moves forward).
    pub dump_lock: Mutex<()>,
    /// Held for the short moments the tree's shape changes: a dump assigning its run's slices,
    /// a compaction installing its output, a split or a coalesce. Never held while writing files.
    pub shape: Mutex<()>,
    /// Ranges being compacted.
    compacting: Mutex<BTreeSet<u64>>,
    /// Ranges whose background compaction met damaged data: not compacted again until the
    /// database is reopened (reads of the damaged pages keep reporting the corruption).
    quarantined: Mutex<BTreeSet<u64>>,
    pub dropped: AtomicBool,
    pub run_counters: Arc<RunCounters>,
    pub counters: KeyspaceCounters,
    /// The merge operator's name as stored with the keyspace.
    stored_merge_operator: Option<String>,
    /// The operator itself, once a handle was opened with it (it is code: it cannot come from
    /// disk). Until then compaction leaves operand chains unfolded.
    merge_operator: OnceLock<Arc<dyn MergeOperator>>,
    /// Bloom filter size of each new memtable (`memtable::bloom_bytes_for_budget`).
    pub memtable_bloom_bytes: usize,
}

impl std::fmt::Debug for KeyspaceInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyspaceInner")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl KeyspaceInner {
    pub fn new(
        id: u32,
        name: String,
        options: KeyspaceOptions,
        stored_merge_operator: Option<String>,
        version: TreeVersion,
        memtable_bloom_bytes: usize,
    ) -> Self {
        let merge_operator = OnceLock::new();
        if let Some(operator) = &options.merge_operator {
            if Some(operator.name()) == stored_merge_operator.as_deref() {
                let _ = merge_operator.set(Arc::clone(operator));
            }
        }
        KeyspaceInner {
            memtable_bloom_bytes,
            stored_merge_operator,
            merge_operator,
            id,
            name,
            options,
            version: RwLock::new(Arc::new(version)),
            dump_lock: Mutex::new(()),
            shape: Mutex::new(()),
            compacting: Mutex::new(BTreeSet::new()),
            quarantined: Mutex::new(BTreeSet::new()),
            dropped: AtomicBool::new(false),
            run_counters: Arc::new(RunCounters::default()),
            counters: KeyspaceCounters::default(),
        }
    }

    /// The current tree; cheap (one `Arc` clone under a read lock).
    pub fn current(&self) -> Arc<TreeVersion> {
        Arc::clone(&self.version.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the tree with `f(current)`.
    pub fn update(&self, f: impl FnOnce(&TreeVersion) -> TreeVersion) {
        let mut guard = self.version.write().unwrap_or_else(|p| p.into_inner());
        let next = f(&guard);
        #[cfg(feature = "invariants")]
        next.check_invariants();
        *guard = Arc::new(next);
    }

    /// Installs new ranges (computed by the caller from the current ones while holding `shape`)
    /// and, for a dump, removes the dumped memtable. Applied to the *latest* tree: memtables may
    /// have been sealed since the caller looked, and only `shape` holders change ranges.
    pub fn install_ranges(&self, ranges: Vec<Arc<Range>>, dumped: Option<&Arc<Memtable>>) {
        self.update(|current| {
            let mut next = current.clone();
            next.ranges = ranges;
            if let Some(memtable) = dumped {
                next.sealed.retain(|m| !Arc::ptr_eq(m, memtable));
            }
            next
        });
    }

    /// Empties the tree of a dropped keyspace.
    pub fn clear(&self) {
        let mut guard = self.version.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(TreeVersion {
            active: Arc::new(Memtable::new(0, 0)),
            sealed: Vec::new(),
            ranges: Vec::new(),
        });
    }

    /// Inserts a committed entry into the memtable that owns its seqno; returns the bytes charged.
    /// Inserts a committed entry into the memtable its seqno belongs to; returns the quota
    /// charge and the Merge chain length (see [`Memtable::insert`]).
    pub fn insert(&self, seqno: u64, entry: &BatchEntry) -> (u64, u32) {
        let guard = self.version.read().unwrap_or_else(|p| p.into_inner());
        let target = guard
            .memtables()
            .find(|m| m.accepts(seqno))
            .unwrap_or(&guard.active);
        target.insert(&entry.key, seqno, entry.kind, &entry.value)
    }

    /// Seals the active memtable at `limit` (called under the commit lock) and returns it, or
    /// `None` if it is empty.
    pub fn seal(&self, limit: u64) -> Option<Arc<Memtable>> {
        let mut guard = self.version.write().unwrap_or_else(|p| p.into_inner());
        if guard.active.is_empty() {
            return None;
        }
        let sealed = Arc::clone(&guard.active);
        sealed.seal(limit);
        let mut next = TreeVersion::clone(&guard);
        next.sealed.insert(0, Arc::clone(&sealed));
        next.active = Arc::new(Memtable::new(limit, self.memtable_bloom_bytes));
        #[cfg(feature = "invariants")]
        next.check_invariants();
        *guard = Arc::new(next);
        Some(sealed)
    }

    /// Marks a range busy; false if it already was.
    pub fn try_mark_busy(&self, range: u64) -> bool {
        self.compacting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(range)
    }

    pub fn clear_busy(&self, range: u64) {
        self.compacting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&range);
    }

    /// Stops background compaction of a range whose data is damaged.
    pub fn quarantine(&self, range: u64) {
        self.quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(range);
    }

    /// The ranges background compaction leaves alone.
    pub fn quarantined_ranges(&self) -> BTreeSet<u64> {
        self.quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The ranges being compacted.
    pub fn busy_ranges(&self) -> BTreeSet<u64> {
        self.compacting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks that `options` name the stored merge operator and attaches it.
    ///
    /// # Errors
    /// [`Error::MergeOperatorMismatch`] if the names differ (or only one side has an operator).
    pub fn attach_merge_operator(&self, options: &KeyspaceOptions) -> Result<()> {
        let given = options.merge_operator_name();
        if given != self.stored_merge_operator {
            return Err(Error::MergeOperatorMismatch {
                keyspace: self.name.clone(),
                stored: self.stored_merge_operator.clone(),
                given,
            });
        }
        if let Some(operator) = &options.merge_operator {
            let _ = self.merge_operator.set(Arc::clone(operator));
        }
        Ok(())
    }

    /// The merge operator, if the keyspace has one and it is attached.
    pub fn merge_operator(&self) -> Option<&Arc<dyn MergeOperator>> {
        self.merge_operator.get()
    }

    /// The name of the keyspace's merge operator, if it has one.
    pub fn merge_operator_name(&self) -> Option<&str> {
        self.stored_merge_operator.as_deref()
    }

    /// Checks that the keyspace can take upserts.
    pub fn check_upsert(&self) -> Result<()> {
        if self.merge_operator().is_none() {
            return Err(Error::InvalidArgument(format!(
                "keyspace {:?} has no merge operator (KeyspaceOptions::merge_operator), so it \
                 cannot take upserts",
                self.name
            )));
        }
        Ok(())
    }

    pub fn check_live(&self) -> Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::KeyspaceNotFound(self.name.clone()));
        }
        Ok(())
    }
}

/// A handle to one keyspace (one LSM tree) of a database.
///
/// Cheap to clone, `Send + Sync`; keeps the database open while it lives. Every read sees a
/// consistent state: the newest committed one, or a snapshot's.
#[derive(Clone, Debug)]
pub struct Keyspace {
    pub(crate) db: Db,
    pub(crate) inner: Arc<KeyspaceInner>,
}

impl Keyspace {
    /// The keyspace's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The options the keyspace was created with.
    pub fn options(&self) -> &KeyspaceOptions {
        &self.inner.options
    }

    /// Sets `key` to `value`, atomically and durably per the database's WAL mode.
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`], [`Error::ValueTooLarge`], [`Error::KeyspaceNotFound`] (dropped),
    /// [`Error::QuotaTimeout`], [`Error::Poisoned`], [`Error::Closed`], or the WAL's I/O error.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.write(EntryKind::Put, key.as_ref(), value.as_ref())
    }

    /// Removes `key` (a no-op if absent). Errors as for [`Keyspace::put`].
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.write(EntryKind::Delete, key.as_ref(), b"")
    }

    /// Applies `operand` to `key` with the keyspace's merge operator, without reading: the
    /// operand is stored as is and folded by later reads and compactions (for example a
    /// [`crate::merge::Counter`] increment). Durable like [`Keyspace::put`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the keyspace has no merge operator; otherwise as
    /// [`Keyspace::put`]. An operand the operator rejects is not detected here: reads of the key
    /// then fail with [`Error::Merge`].
    pub fn upsert(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.inner.check_upsert()?;
        self.write(EntryKind::Merge, key.as_ref(), operand.as_ref())
    }

    fn write(&self, kind: EntryKind, key: &[u8], value: &[u8]) -> Result<()> {
        let entry = BatchEntry {
            keyspace: self.inner.id,
            kind,
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        };
        self.db.inner.commit(vec![entry], false)
    }

    /// The newest committed value of `key`.
    ///
    /// # Errors
    /// I/O or corruption errors reading a run; [`Error::KeyspaceNotFound`] if dropped.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.inner.check_live()?;
        read::get(
            &self.inner,
            key.as_ref(),
            self.db.inner.commit.visible_seqno(),
        )
    }

    /// True if `key` has a committed value. Errors as for [`Keyspace::get`].
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// A double-ended iterator over the committed pairs whose key lies in `range`, in key
    /// order. The iterator is a consistent read view for its whole life: later commits, dumps and
    /// compactions do not change what it returns.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let lower = map_bound(range.start_bound());
        let upper = map_bound(range.end_bound());
        Iter::new(
            &self.inner,
            self.db.inner.commit.visible_seqno(),
            lower,
            upper,
        )
    }

    /// Every committed pair, in key order (see [`Keyspace::range`]).
    pub fn iter(&self) -> Iter {
        Iter::new(
            &self.inner,
            self.db.inner.commit.visible_seqno(),
            Bound::Unbounded,
            Bound::Unbounded,
        )
    }

    /// The committed pairs whose key starts with `prefix` (see [`Keyspace::range`]).
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        Iter::new(
            &self.inner,
            self.db.inner.commit.visible_seqno(),
            lower,
            upper,
        )
    }

    /// Dumps every memtable, then compacts every range of this keyspace into a single run
    /// (major compaction), waiting for completion: afterwards a keyspace without overwrites or
    /// deletes has a space amplification of exactly 1.
    ///
    /// # Errors
    /// I/O errors (which poison the database), [`Error::Poisoned`], [`Error::Closed`].
    pub fn compact(&self) -> Result<()> {
        self.inner.check_live()?;
        self.db.flush()?;
        self.db.inner.compact_keyspace(&self.inner)
    }

    /// The pair with the smallest key. Errors as for [`Keyspace::get`].
    pub fn first(&self) -> Result<Option<(Key, Value)>> {
        self.iter().next().transpose()
    }

    /// The pair with the largest key. Errors as for [`Keyspace::get`].
    pub fn last(&self) -> Result<Option<(Key, Value)>> {
        self.iter().next_back().transpose()
    }
}

pub(crate) fn map_bound<K: AsRef<[u8]>>(bound: Bound<&K>) -> Bound<Bytes> {
    match bound {
        Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k.as_ref())),
        Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k.as_ref())),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Bounds covering exactly the keys that start with `prefix`.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Bytes>, Bound<Bytes>) {
    let lower = Bound::Included(Bytes::copy_from_slice(prefix));
    // The smallest key above every key with this prefix: drop trailing 0xff bytes, increment
    // the last one. A prefix of only 0xff bytes has no upper bound.
    let mut upper = prefix.to_vec();
    while let Some(&last) = upper.last() {
        if last == 0xff {
            upper.pop();
        } else {
            if let Some(byte) = upper.last_mut() {
                *byte += 1;
            }
            return (lower, Bound::Excluded(Bytes::from(upper)));
        }
    }
    (lower, Bound::Unbounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_cover_exactly_the_prefix() {
        assert_eq!(
            prefix_bounds(b"ab").1,
            Bound::Excluded(Bytes::from_static(b"ac"))
        );
        assert_eq!(
            prefix_bounds(b"a\xff").1,
            Bound::Excluded(Bytes::from_static(b"b"))
        );
        assert_eq!(prefix_bounds(b"\xff\xff").1, Bound::Unbounded);
        assert_eq!(prefix_bounds(b"").1, Bound::Unbounded);
    }
}
