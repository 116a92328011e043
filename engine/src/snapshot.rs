//! Read views: snapshots, and the registry compaction consults to keep the versions they need.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::db::DbInner;
use crate::error::Result;
use crate::iter::Iter;
use crate::keyspace::{map_bound, prefix_bounds, Keyspace, Value};

/// Open read views by seqno: how many, and when the first of them was opened.
#[derive(Debug, Default)]
pub(crate) struct ReadViews {
    views: Mutex<BTreeMap<u64, (usize, Instant)>>,
}

impl ReadViews {
    /// Registers a read view at the current visible seqno (read by `visible` under this
    /// registry's lock) and returns it.
    ///
    /// Compaction reads the views and the visible seqno under the same lock
    /// ([`ReadViews::all_and_visible`]), so either it sees this view, or this view is at or
    /// above the visible seqno it used, where it keeps every version a reader can need.
    pub fn register_current(&self, visible: impl FnOnce() -> u64) -> u64 {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        let seqno = visible();
        views.entry(seqno).or_insert((0, Instant::now())).0 += 1;
        seqno
    }

    pub fn unregister(&self, seqno: u64) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = views.get_mut(&seqno) {
            entry.0 -= 1;
            if entry.0 == 0 {
                views.remove(&seqno);
            }
        }
    }

    /// Every open read view's seqno, ascending, then the visible seqno read by `visible` under
    /// the same lock (see [`ReadViews::register_current`]): the views a compaction must keep.
    pub fn all_and_visible(&self, visible: impl FnOnce() -> u64) -> Vec<u64> {
        let views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<u64> = views.keys().copied().collect();
        all.push(visible());
        all
    }

    /// Number of open read views and the age of the oldest one.
    pub fn summary(&self) -> (usize, Option<std::time::Duration>) {
        let views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        let count = views.values().map(|v| v.0).sum();
        let oldest = views.values().map(|v| v.1).min().map(|t| t.elapsed());
        (count, oldest)
    }
}

/// A read view: everything committed before it was taken, nothing after.
///
/// Pins only its seqno: dumps, compaction and file deletion go on, keeping just the versions this
/// view can see. `Send + Sync`; release it by dropping.
pub struct Snapshot {
    db: Arc<DbInner>,
    seqno: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seqno", &self.seqno)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(db: Arc<DbInner>) -> Snapshot {
        let seqno = db.read_views.register_current(|| db.commit.visible_seqno());
        Snapshot { db, seqno }
    }

    /// The seqno this view reads at.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// The value `key` had when the snapshot was taken.
    ///
    /// # Errors
    /// As [`Keyspace::get`].
    pub fn get(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        keyspace.inner.check_live()?;
        crate::read::get(&keyspace.inner, key.as_ref(), self.seqno)
    }

    /// True if `key` had a value when the snapshot was taken. Errors as for [`Snapshot::get`].
    pub fn contains_key(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(keyspace, key)?.is_some())
    }

    /// The pairs in `range` as of the snapshot (see [`Keyspace::range`]).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, keyspace: &Keyspace, range: R) -> Iter {
        Iter::new(
            &keyspace.inner,
            self.seqno,
            map_bound(range.start_bound()),
            map_bound(range.end_bound()),
        )
    }

    /// Every pair as of the snapshot, in key order.
    pub fn iter(&self, keyspace: &Keyspace) -> Iter {
        Iter::new(
            &keyspace.inner,
            self.seqno,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
        )
    }

    /// The pairs whose key starts with `prefix`, as of the snapshot.
    pub fn prefix(&self, keyspace: &Keyspace, prefix: impl AsRef<[u8]>) -> Iter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        Iter::new(&keyspace.inner, self.seqno, lower, upper)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.db.read_views.unregister(self.seqno);
    }
}
