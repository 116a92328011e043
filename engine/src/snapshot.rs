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
    fn register(&self, seqno: u64) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        views.entry(seqno).or_insert((0, Instant::now())).0 += 1;
    }

    fn unregister(&self, seqno: u64) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = views.get_mut(&seqno) {
            entry.0 -= 1;
            if entry.0 == 0 {
                views.remove(&seqno);
            }
        }
    }

    /// Every open read view's seqno, ascending.
    pub fn all(&self) -> Vec<u64> {
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
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
        // Register under the pipeline's lock so no commit becomes visible in between: the view
        // is registered before compaction could see a newer visible seqno.
        let seqno = db.commit.with_next_seqno(|_| {
            let seqno = db.commit.visible_seqno();
            db.read_views.register(seqno);
            seqno
        });
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
