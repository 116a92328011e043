//! Atomic batches of writes across keyspaces.

use std::sync::Arc;

use bytes::Bytes;
use strata_sstable::EntryKind;

use crate::batch::BatchEntry;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::keyspace::Keyspace;

/// Puts, deletes and upserts across keyspaces of one database, applied all together or not at all.
///
/// Entries get consecutive seqnos in the order they were added; a later entry for the same key
/// wins. Not thread-safe to build from several threads at once (it is `Send`).
#[derive(Debug)]
pub struct WriteBatch {
    db: Db,
    entries: Vec<BatchEntry>,
    foreign: bool,
    /// An upsert into a keyspace without a merge operator was added.
    invalid: bool,
}

impl WriteBatch {
    pub(crate) fn new(db: Db) -> Self {
        WriteBatch {
            db,
            entries: Vec::new(),
            foreign: false,
            invalid: false,
        }
    }

    fn push(
        &mut self,
        keyspace: &Keyspace,
        kind: EntryKind,
        key: &[u8],
        value: &[u8],
    ) -> &mut Self {
        self.foreign |= !Arc::ptr_eq(&keyspace.db.inner, &self.db.inner);
        self.entries.push(BatchEntry {
            keyspace: keyspace.inner.id,
            kind,
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        });
        self
    }

    /// Adds a put of `key` = `value` in `keyspace`.
    pub fn put(
        &mut self,
        keyspace: &Keyspace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.push(keyspace, EntryKind::Put, key.as_ref(), value.as_ref())
    }

    /// Adds an upsert of `operand` to `key` in `keyspace` (see [`Keyspace::upsert`]). A keyspace
    /// without a merge operator makes [`WriteBatch::commit`] fail with
    /// [`Error::InvalidArgument`].
    pub fn upsert(
        &mut self,
        keyspace: &Keyspace,
        key: impl AsRef<[u8]>,
        operand: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.invalid |= keyspace.inner.check_upsert().is_err();
        self.push(keyspace, EntryKind::Merge, key.as_ref(), operand.as_ref())
    }

    /// Adds a delete of `key` in `keyspace`.
    pub fn delete(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> &mut Self {
        self.push(keyspace, EntryKind::Delete, key.as_ref(), b"")
    }

    /// Number of writes in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Commits every write atomically: after a crash either all of them are present or none.
    /// Durable per the database's WAL mode. An empty batch is a no-op.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a keyspace belongs to another database; otherwise as
    /// [`Keyspace::put`].
    pub fn commit(self) -> Result<()> {
        if self.foreign {
            return Err(Error::InvalidArgument(
                "a write batch mixes keyspaces of different databases".into(),
            ));
        }
        if self.invalid {
            return Err(Error::InvalidArgument(
                "a write batch upserts into a keyspace without a merge operator".into(),
            ));
        }
        if self.entries.is_empty() {
            return Ok(());
        }
        self.db.inner.commit(self.entries, false)
    }
}
