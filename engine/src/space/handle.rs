//! Spaces on a database: the schema catalogue, the [`Space`] handle and its operations.
//!
//! # Storage
//! - The system keyspace `_schema` maps `space:<name>` to a [`SpaceRecord`] (the space's id,
//!   a version bumped on every schema change, its [`SpaceDef`], and the indexes still being
//!   built), and `next_space_id` to the next id.
//! - Index `i` of space `id` is the keyspace `_space.<id>.<index name>`. The primary index maps
//!   the encoded primary key to the tuple; a secondary index maps secondary key ++ primary key
//!   to the covered fields (or nothing). The primary keyspace has a merge operator
//!   (`strata.space_upsert`) so upserts into a space without secondary indexes are stored blind.
//!
//! # Consistency
//! Every operation runs in a transaction and reads the space's record in it. A schema change
//! (new or dropped index, dropped space) writes the record, so it conflicts with every
//! operation in flight, which then retries with the new schema: an index never misses a write.
//! Building an index on a non-empty space first publishes it as *building* (writers maintain
//! it from then on, selects refuse it), then backfills it from the primary in small
//! transactions (which conflict with concurrent writes of the same keys, so no stale entry is
//! ever written), then marks it ready.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::key::{IteratorType, KeyRange};
use super::schema::{IndexDef, SpaceDef, SpaceSchema};
use super::tuple::{decode_tuple, encode_tuple, from_fields, to_fields};
use super::update::{decode_ops, encode_ops, UpdateOp, UpsertOutcome};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::keyspace::{Keyspace, KeyspaceInner};
use crate::merge::MergeOperator;
use crate::options::KeyspaceOptions;
use crate::txn::Transaction;

/// The system keyspace holding space definitions.
pub(crate) const SCHEMA_KEYSPACE: &str = "_schema";
const NEXT_ID_KEY: &[u8] = b"next_space_id";
/// Rows per backfill transaction when an index is built.
const BACKFILL_BATCH: usize = 256;

fn record_key(name: &str) -> Vec<u8> {
    let mut key = b"space:".to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

fn index_keyspace(id: u32, index: &str) -> String {
    format!("_space.{id}.{index}")
}

/// A space's entry in `_schema`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SpaceRecord {
    id: u32,
    version: u64,
    #[serde(with = "serde_bytes")]
    def: Vec<u8>,
    /// Indexes published but not yet backfilled.
    building: Vec<String>,
}

impl SpaceRecord {
    fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<SpaceRecord> {
        rmp_serde::from_slice(bytes).map_err(|e| {
            Error::corruption(SCHEMA_KEYSPACE, 0, format!("malformed space record: {e}"))
        })
    }
}

/// The upsert of a space without secondary indexes, stored blind: operands are
/// `[tuple, ops]` pairs, folded with Tarantool's upsert rule (insert the tuple if there is no
/// tuple, else apply the operations; operations that fail on the tuple are skipped whole, as
/// Tarantool skips them with a warning).
struct SpaceUpsert {
    schema: Arc<SpaceSchema>,
}

impl MergeOperator for SpaceUpsert {
    fn name(&self) -> &str {
        "strata.space_upsert"
    }

    fn full_merge(
        &self,
        _key: &[u8],
        base: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> std::result::Result<Vec<u8>, String> {
        let mut current = base
            .map(|b| decode_tuple(b).map_err(|e| e.to_string()))
            .transpose()?;
        for operand in operands {
            let (tuple, ops): (serde_bytes::ByteBuf, serde_bytes::ByteBuf) =
                rmp_serde::from_slice(operand).map_err(|e| format!("upsert operand: {e}"))?;
            let tuple = decode_tuple(&tuple).map_err(|e| e.to_string())?;
            let ops = decode_ops(&ops).map_err(|e| e.to_string())?;
            let outcome = self
                .schema
                .upsert(current.as_deref(), &tuple, &ops)
                .map_err(|e| e.to_string())?;
            match outcome {
                UpsertOutcome::Inserted(t) | UpsertOutcome::Updated(t) => current = Some(t),
                UpsertOutcome::Skipped(error) => {
                    log::warn!("strata: upsert skipped on an existing tuple: {error}");
                }
            }
        }
        Ok(current.map(|t| encode_tuple(&t)).unwrap_or_default())
    }
}

/// A loaded version of a space's schema and its index keyspaces.
struct Loaded {
    version: u64,
    schema: Arc<SpaceSchema>,
    /// Per index, in definition order.
    indexes: Vec<Arc<KeyspaceInner>>,
    building: Vec<bool>,
}

/// The loaded schema of one space, shared by its handles (`None` until first loaded).
type SpaceCache = Arc<RwLock<Option<Arc<Loaded>>>>;

/// Per-database cache of loaded spaces.
#[derive(Default)]
pub(crate) struct SpaceRegistry {
    loaded: Mutex<HashMap<String, SpaceCache>>,
}

impl std::fmt::Debug for SpaceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceRegistry").finish()
    }
}

impl SpaceRegistry {
    fn slot(&self, name: &str) -> SpaceCache {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(loaded.entry(name.to_string()).or_default())
    }
}

fn schema_keyspace(db: &Db) -> Result<Keyspace> {
    db.keyspace(SCHEMA_KEYSPACE, KeyspaceOptions::default())
}

/// Creates a space (see [`Db::create_space`]).
pub(crate) fn create_space(db: &Db, name: &str, def: SpaceDef) -> Result<Space> {
    if name.is_empty() || name.len() > 200 {
        return Err(Error::InvalidArgument(format!(
            "space name {name:?} must be 1..=200 bytes"
        )));
    }
    SpaceSchema::new(def.clone())?;
    let catalogue = schema_keyspace(db)?;
    db.transact(|tx| {
        if tx.get(&catalogue, record_key(name))?.is_some() {
            return Err(Error::SpaceExists(name.to_string()));
        }
        let id =
            match tx.get(&catalogue, NEXT_ID_KEY)? {
                Some(bytes) => u32::from_le_bytes(bytes[..].try_into().map_err(|_| {
                    Error::corruption(SCHEMA_KEYSPACE, 0, "malformed next_space_id")
                })?),
                None => 1,
            };
        tx.put(&catalogue, NEXT_ID_KEY, (id + 1).to_le_bytes())?;
        let record = SpaceRecord {
            id,
            version: 1,
            def: def.to_msgpack(),
            building: Vec::new(),
        };
        tx.put(&catalogue, record_key(name), record.encode())
    })?;
    open_space(db, name)
}

/// A handle to an existing space (see [`Db::space`]).
pub(crate) fn open_space(db: &Db, name: &str) -> Result<Space> {
    let catalogue = schema_keyspace(db)?;
    if catalogue.get(record_key(name))?.is_none() {
        return Err(Error::SpaceNotFound(name.to_string()));
    }
    Ok(Space {
        db: db.clone(),
        name: name.to_string(),
        catalogue,
        cache: db.inner.spaces.slot(name),
    })
}

/// Drops a space and its index keyspaces (see [`Db::drop_space`]).
pub(crate) fn drop_space(db: &Db, name: &str) -> Result<()> {
    let catalogue = schema_keyspace(db)?;
    let record = db.transact(|tx| {
        let bytes = tx
            .get(&catalogue, record_key(name))?
            .ok_or_else(|| Error::SpaceNotFound(name.to_string()))?;
        tx.delete(&catalogue, record_key(name))?;
        SpaceRecord::decode(&bytes)
    })?;
    *db.inner
        .spaces
        .slot(name)
        .write()
        .unwrap_or_else(|p| p.into_inner()) = None;
    let def = SpaceDef::from_msgpack(&record.def)?;
    for index in &def.indexes {
        match db.drop_keyspace(&index_keyspace(record.id, &index.name)) {
            Ok(()) | Err(Error::KeyspaceNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Names of every space, sorted.
pub(crate) fn space_names(db: &Db) -> Result<Vec<String>> {
    let catalogue = schema_keyspace(db)?;
    let mut names = Vec::new();
    for item in catalogue.prefix(b"space:") {
        let (key, _) = item?;
        names.push(String::from_utf8_lossy(&key[b"space:".len()..]).into_owned());
    }
    Ok(names)
}

/// A stored tuple: MessagePack bytes, decoded on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple(Bytes);

impl Tuple {
    /// The tuple's MessagePack bytes (an array).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The tuple's fields.
    ///
    /// # Errors
    /// [`Error::Tuple`] if the bytes are not a MessagePack array.
    pub fn fields(&self) -> Result<Vec<Value>> {
        Ok(decode_tuple(&self.0)?)
    }

    /// The tuple as a typed value (a struct that serializes as an array, a tuple, a `Vec`).
    ///
    /// # Errors
    /// [`Error::Tuple`] if the tuple does not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(from_fields(&self.fields()?)?)
    }
}

/// A handle to a space: tuples validated against a format, with a primary and any number of
/// secondary indexes kept consistent in every operation. Cheap to clone, `Send + Sync`.
///
/// The methods here run in their own transaction (retried on conflict); [`Space::with`] runs
/// the same operations inside a caller's transaction. Keys and tuples are anything that
/// serializes to a MessagePack array: a struct (fields in order), a Rust tuple like `(42,)`,
/// or a `Vec<rmpv::Value>`.
#[derive(Clone)]
pub struct Space {
    db: Db,
    name: String,
    catalogue: Keyspace,
    cache: SpaceCache,
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space").field("name", &self.name).finish()
    }
}

/// A space's operations inside a transaction (see [`Space::with`]).
pub struct SpaceTx<'a> {
    space: &'a Space,
    tx: &'a mut Transaction,
}

impl std::fmt::Debug for SpaceTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceTx")
            .field("space", &self.space.name)
            .finish()
    }
}

/// A search key's parts. `()` (which MessagePack encodes as nil) is the empty key.
fn key_values<K: Serialize + ?Sized>(key: &K) -> Result<Vec<Value>> {
    if rmp_serde::to_vec(key).is_ok_and(|bytes| bytes == [0xc0]) {
        return Ok(Vec::new());
    }
    Ok(to_fields(key)?)
}

fn bound(b: Bound<Vec<u8>>) -> Bound<Bytes> {
    match b {
        Bound::Included(k) => Bound::Included(Bytes::from(k)),
        Bound::Excluded(k) => Bound::Excluded(Bytes::from(k)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Space {
    /// The space's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn keyspace(&self, inner: &Arc<KeyspaceInner>) -> Keyspace {
        Keyspace {
            db: self.db.clone(),
            inner: Arc::clone(inner),
        }
    }

    /// The space's schema as `tx` sees it, loading index keyspaces on a change.
    fn load(&self, tx: &Transaction) -> Result<Arc<Loaded>> {
        let bytes = tx
            .get(&self.catalogue, record_key(&self.name))?
            .ok_or_else(|| Error::SpaceNotFound(self.name.clone()))?;
        let record = SpaceRecord::decode(&bytes)?;
        if let Some(loaded) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if loaded.version == record.version {
                return Ok(Arc::clone(loaded));
            }
        }
        let def = SpaceDef::from_msgpack(&record.def)?;
        let schema = Arc::new(SpaceSchema::new(def.clone())?);
        let mut indexes = Vec::new();
        for (i, index) in def.indexes.iter().enumerate() {
            let mut options = KeyspaceOptions::default();
            if i == 0 {
                options.merge_operator = Some(Arc::new(SpaceUpsert {
                    schema: Arc::clone(&schema),
                }));
            }
            let ks = self
                .db
                .keyspace(&index_keyspace(record.id, &index.name), options)?;
            indexes.push(ks.inner);
        }
        let building = def
            .indexes
            .iter()
            .map(|i| record.building.contains(&i.name))
            .collect();
        let loaded = Arc::new(Loaded {
            version: record.version,
            schema,
            indexes,
            building,
        });
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&loaded));
        Ok(loaded)
    }

    /// The space's current schema (definition and resolved indexes).
    ///
    /// # Errors
    /// [`Error::SpaceNotFound`] if it was dropped; I/O errors.
    pub fn schema(&self) -> Result<Arc<SpaceSchema>> {
        let tx = self.db.begin_read_only();
        Ok(Arc::clone(&self.load(&tx)?.schema))
    }

    /// The operations of this space inside `tx`, with its isolation and atomicity.
    pub fn with<'a>(&'a self, tx: &'a mut Transaction) -> SpaceTx<'a> {
        SpaceTx { space: self, tx }
    }

    /// Inserts `tuple`.
    ///
    /// # Errors
    /// [`Error::DuplicateKey`] if the primary key or a unique secondary key is taken;
    /// [`Error::Tuple`] if the tuple breaks the format (the error names the field). Nothing
    /// changes on error.
    pub fn insert<T: Serialize + ?Sized>(&self, tuple: &T) -> Result<()> {
        let fields = to_fields(tuple)?;
        self.db.transact(|tx| self.with(tx).insert_fields(&fields))
    }

    /// Inserts `tuple` or replaces the tuple with the same primary key.
    ///
    /// # Errors
    /// As [`Space::insert`], for unique secondary keys only.
    pub fn replace<T: Serialize + ?Sized>(&self, tuple: &T) -> Result<()> {
        let fields = to_fields(tuple)?;
        self.db.transact(|tx| self.with(tx).replace_fields(&fields))
    }

    /// Applies update operations to the tuple with primary key `key`; returns the new tuple, or
    /// `None` if there was none.
    ///
    /// # Errors
    /// [`Error::Tuple`] for a bad operation or a result that breaks the format (naming the
    /// operation and field), or an update of the primary key; as [`Space::insert`] for unique
    /// secondary keys. Nothing changes on error.
    pub fn update<K: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        key: &K,
        ops: &[UpdateOp],
    ) -> Result<Option<T>> {
        let key = key_values(key)?;
        self.db
            .transact(|tx| self.with(tx).update_fields(&key, ops))?
            .map(|t| t.decode())
            .transpose()
    }

    /// Inserts `tuple` if its primary key is free, else applies `ops` to the existing tuple
    /// (operations that fail on it are skipped, as in Tarantool). Stored blind, without a read,
    /// when the space has no secondary index.
    ///
    /// # Errors
    /// [`Error::Tuple`] if the tuple or the operations are malformed.
    pub fn upsert<T: Serialize + ?Sized>(&self, tuple: &T, ops: &[UpdateOp]) -> Result<()> {
        let fields = to_fields(tuple)?;
        self.db
            .transact(|tx| self.with(tx).upsert_fields(&fields, ops))
    }

    /// Deletes the tuple with primary key `key`; returns it, if there was one.
    ///
    /// # Errors
    /// [`Error::Tuple`] if `key` does not fit the primary index.
    pub fn delete<K: Serialize + ?Sized, T: DeserializeOwned>(&self, key: &K) -> Result<Option<T>> {
        let key = key_values(key)?;
        self.db
            .transact(|tx| self.with(tx).delete_fields(&key))?
            .map(|t| t.decode())
            .transpose()
    }

    /// The tuple with primary key `key` (a full key).
    ///
    /// # Errors
    /// [`Error::Tuple`] if `key` does not fit the primary index or the tuple does not fit `T`.
    pub fn get<K: Serialize + ?Sized, T: DeserializeOwned>(&self, key: &K) -> Result<Option<T>> {
        let mut tx = self.db.begin_read_only();
        let tuple = self.with(&mut tx).get_tuple(&key_values(key)?)?;
        tuple.map(|t| t.decode()).transpose()
    }

    /// Up to `limit` tuples that `iterator` selects on index `index` for the (possibly partial)
    /// `key`, skipping the first `offset`. Read from one snapshot.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; [`Error::Tuple`] for a key that does not fit the index; read
    /// errors.
    pub fn select<K: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        index: &str,
        key: &K,
        iterator: IteratorType,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<T>> {
        self.pairs(index, key, iterator, None)?
            .skip(offset)
            .take(limit)
            .collect()
    }

    /// A page of at most `limit` tuples after the continuation token `after` (from the previous
    /// page), and the token for the next page (`None` when this was the last). Pages through
    /// large results without offsets; each page is its own snapshot.
    pub fn select_page<K: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        index: &str,
        key: &K,
        iterator: IteratorType,
        limit: usize,
        after: Option<&[u8]>,
    ) -> Result<(Vec<T>, Option<Vec<u8>>)> {
        let mut pairs = self.pairs(index, key, iterator, after)?;
        let mut page = Vec::new();
        while page.len() < limit {
            match pairs.next() {
                Some(item) => page.push(item?),
                None => return Ok((page, None)),
            }
        }
        Ok((page, pairs.last_key.clone()))
    }

    /// A streaming iterator over what `iterator` selects (see [`Space::select`]), from one
    /// snapshot, starting after the continuation token `after` if given.
    pub fn pairs<K: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        index: &str,
        key: &K,
        iterator: IteratorType,
        after: Option<&[u8]>,
    ) -> Result<Pairs<T>> {
        let tx = self.db.begin_read_only();
        let loaded = self.load(&tx)?;
        let index_no = readable_index(&self.name, &loaded, index)?;
        let range = key_range(&loaded, index_no, &key_values(key)?, iterator, after)?;
        let ks = self.keyspace(&loaded.indexes[index_no]);
        let scan = tx.range(&ks, (bound(range.lower), bound(range.upper)));
        let entries: Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send> = if range.reverse {
            Box::new(scan.rev())
        } else {
            Box::new(scan)
        };
        Ok(Pairs {
            primary: self.keyspace(&loaded.indexes[0]),
            loaded,
            index_no,
            entries,
            tx,
            last_key: None,
            _tuple: PhantomData,
        })
    }

    /// The number of index entries `iterator` selects for `key`, counted without fetching any
    /// tuple (cheaper than [`Space::select`] on a secondary index).
    pub fn count<K: Serialize + ?Sized>(
        &self,
        index: &str,
        key: &K,
        iterator: IteratorType,
    ) -> Result<u64> {
        let tx = self.db.begin_read_only();
        let loaded = self.load(&tx)?;
        let index_no = readable_index(&self.name, &loaded, index)?;
        let range = key_range(&loaded, index_no, &key_values(key)?, iterator, None)?;
        let ks = self.keyspace(&loaded.indexes[index_no]);
        let mut count = 0;
        for item in tx.range(&ks, (bound(range.lower), bound(range.upper))) {
            item?;
            count += 1;
        }
        Ok(count)
    }

    /// The number of tuples.
    pub fn len(&self) -> Result<u64> {
        let tx = self.db.begin_read_only();
        let loaded = self.load(&tx)?;
        let name = loaded.schema.primary().name().to_string();
        drop(tx);
        self.count(&name, &(), IteratorType::All)
    }

    /// True if the space holds no tuple.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Like [`Space::select`], but returns only `fields` of each tuple. When index `index`
    /// covers them (its key, the primary key and its covering fields), the primary index is
    /// never read: a covered query.
    pub fn select_fields<K: Serialize + ?Sized>(
        &self,
        index: &str,
        key: &K,
        iterator: IteratorType,
        limit: usize,
        fields: &[&str],
    ) -> Result<Vec<Vec<Value>>> {
        let tx = self.db.begin_read_only();
        let loaded = self.load(&tx)?;
        let schema = &loaded.schema;
        let index_no = readable_index(&self.name, &loaded, index)?;
        let mut positions = Vec::new();
        for field in fields {
            positions.push(schema.field_position(field).ok_or_else(|| {
                Error::InvalidArgument(format!("space {:?} has no field {field:?}", self.name))
            })?);
        }
        let covered = schema.covers(index_no, &positions);
        let range = key_range(&loaded, index_no, &key_values(key)?, iterator, None)?;
        let ks = self.keyspace(&loaded.indexes[index_no]);
        let primary = self.keyspace(&loaded.indexes[0]);
        let scan = tx.range(&ks, (bound(range.lower), bound(range.upper)));
        let entries: Box<dyn Iterator<Item = Result<(Bytes, Bytes)>>> = if range.reverse {
            Box::new(scan.rev())
        } else {
            Box::new(scan)
        };
        let mut out = Vec::new();
        for item in entries.take(limit) {
            let (key, value) = item?;
            let row = if covered && index_no != 0 {
                let found = schema.covered_fields(index_no, &key, &value)?;
                positions
                    .iter()
                    .map(|p| {
                        found
                            .iter()
                            .find(|(q, _)| q == p)
                            .map(|(_, v)| v.clone())
                            .unwrap_or(Value::Nil)
                    })
                    .collect()
            } else {
                let tuple = fetch(&tx, &primary, &loaded, index_no, &key, value)?;
                let all = tuple.fields()?;
                positions
                    .iter()
                    .map(|&p| all.get(p).cloned().unwrap_or(Value::Nil))
                    .collect()
            };
            out.push(row);
        }
        Ok(out)
    }

    /// Adds an index, building it from the primary index while writes go on (see the module
    /// documentation). Returns once the index is ready for selects.
    ///
    /// A writer that keeps changing exactly the rows the backfill is about to read (say, deleting
    /// the oldest row in a tight loop) wins every race and holds the build back until it pauses;
    /// after 10,000 conflicts in a row the build gives up with [`Error::Conflict`].
    ///
    /// # Errors
    /// [`Error::Tuple`] for a bad definition; [`Error::DuplicateKey`] if a unique index finds two
    /// tuples with one key (the index is then removed again).
    pub fn create_index(&self, index: IndexDef) -> Result<()> {
        let name = index.name.clone();
        self.change_schema(|def, record| {
            def.indexes.push(index.clone());
            record.building.push(index.name.clone());
            Ok(())
        })?;
        match self.backfill(&name) {
            Ok(()) => self.change_schema(|_, record| {
                record.building.retain(|b| *b != name);
                Ok(())
            }),
            Err(e) => {
                let _ = self.drop_index(&name);
                Err(e)
            }
        }
    }

    /// Removes a secondary index and its keyspace.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; [`Error::InvalidArgument`] for the primary index.
    pub fn drop_index(&self, name: &str) -> Result<()> {
        let mut id = 0;
        self.change_schema(|def, record| {
            id = record.id;
            let position = def
                .indexes
                .iter()
                .position(|i| i.name == name)
                .ok_or_else(|| Error::IndexNotFound {
                    space: self.name.clone(),
                    index: name.to_string(),
                })?;
            if position == 0 {
                return Err(Error::InvalidArgument(
                    "the primary index cannot be dropped (drop the space)".into(),
                ));
            }
            def.indexes.remove(position);
            record.building.retain(|b| b != name);
            Ok(())
        })?;
        match self.db.drop_keyspace(&index_keyspace(id, name)) {
            Ok(()) | Err(Error::KeyspaceNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Rewrites the space's record with `change`, bumping its version (which makes every
    /// operation in flight conflict and retry with the new schema).
    fn change_schema(
        &self,
        mut change: impl FnMut(&mut SpaceDef, &mut SpaceRecord) -> Result<()>,
    ) -> Result<()> {
        self.db.transact(|tx| {
            let bytes = tx
                .get(&self.catalogue, record_key(&self.name))?
                .ok_or_else(|| Error::SpaceNotFound(self.name.clone()))?;
            let mut record = SpaceRecord::decode(&bytes)?;
            let mut def = SpaceDef::from_msgpack(&record.def)?;
            change(&mut def, &mut record)?;
            SpaceSchema::new(def.clone())?;
            record.def = def.to_msgpack();
            record.version += 1;
            tx.put(&self.catalogue, record_key(&self.name), record.encode())
        })
    }

    /// Writes index `name`'s entries for every tuple, a batch of primary keys per transaction.
    /// A batch that conflicts with concurrent writes is retried at half the size (down to one
    /// tuple, which only conflicts with a write of that very tuple), and grows back after a
    /// success, so the build makes progress however busy the space is.
    fn backfill(&self, name: &str) -> Result<()> {
        let mut after: Option<Bytes> = None;
        let mut batch = BACKFILL_BATCH;
        let mut conflicts_in_a_row = 0u32;
        loop {
            let mut tx = self.db.begin();
            let attempt = self.backfill_batch(&mut tx, name, after.clone(), batch);
            let attempt = attempt.and_then(|next| tx.commit().map(|()| next));
            match attempt {
                Ok(Some(last)) => {
                    after = Some(last);
                    batch = (batch * 2).min(BACKFILL_BATCH);
                    conflicts_in_a_row = 0;
                }
                Ok(None) => return Ok(()),
                Err(e) if e.is_conflict() && conflicts_in_a_row < 10_000 => {
                    batch = (batch / 2).max(1);
                    conflicts_in_a_row += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One backfill transaction: entries for up to `batch` tuples after `after`. Returns the
    /// last primary key done, or `None` at the end.
    fn backfill_batch(
        &self,
        tx: &mut Transaction,
        name: &str,
        after: Option<Bytes>,
        batch: usize,
    ) -> Result<Option<Bytes>> {
        let loaded = self.load(tx)?;
        let index_no = loaded
            .schema
            .index_no(name)
            .ok_or_else(|| Error::IndexNotFound {
                space: self.name.clone(),
                index: name.to_string(),
            })?;
        let primary = self.keyspace(&loaded.indexes[0]);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let rows: Vec<(Bytes, Bytes)> = tx
            .range(&primary, (lower, Bound::<Bytes>::Unbounded))
            .take(batch)
            .collect::<Result<_>>()?;
        let mut space_tx = self.with(tx);
        for (_, tuple) in &rows {
            let fields = decode_tuple(tuple)?;
            space_tx.put_entry(&loaded, index_no, &fields)?;
        }
        Ok((rows.len() == batch)
            .then(|| rows.last().map(|r| r.0.clone()))
            .flatten())
    }
}

/// The position of index `name`, if selects may use it.
fn readable_index(space: &str, loaded: &Loaded, name: &str) -> Result<usize> {
    let index_no = loaded
        .schema
        .index_no(name)
        .ok_or_else(|| Error::IndexNotFound {
            space: space.to_string(),
            index: name.to_string(),
        })?;
    if loaded.building[index_no] {
        return Err(Error::InvalidArgument(format!(
            "index {name:?} of space {space:?} is still being built"
        )));
    }
    Ok(index_no)
}

fn key_range(
    loaded: &Loaded,
    index_no: usize,
    key: &[Value],
    iterator: IteratorType,
    after: Option<&[u8]>,
) -> Result<KeyRange> {
    let encoded = loaded.schema.search_key(index_no, key)?;
    let range = KeyRange::new(iterator, &encoded);
    Ok(match after {
        Some(last) => range.after(last),
        None => range,
    })
}

/// The tuple an index entry refers to: the entry's value for the primary index, else the
/// primary index's tuple for the entry's primary key.
fn fetch(
    tx: &Transaction,
    primary: &Keyspace,
    loaded: &Loaded,
    index_no: usize,
    entry_key: &[u8],
    entry_value: Bytes,
) -> Result<Tuple> {
    if index_no == 0 {
        return Ok(Tuple(entry_value));
    }
    let (_, pk) = loaded.schema.split_entry_key(index_no, entry_key)?;
    match tx.get(primary, pk)? {
        Some(tuple) => Ok(Tuple(tuple)),
        None => Err(Error::corruption(
            index_keyspace(0, loaded.schema.index(index_no)?.name()),
            0,
            "a secondary index entry refers to a missing tuple",
        )),
    }
}

/// A streaming select (see [`Space::pairs`]): yields typed tuples; reads one snapshot.
pub struct Pairs<T> {
    tx: Transaction,
    loaded: Arc<Loaded>,
    primary: Keyspace,
    index_no: usize,
    entries: Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send>,
    last_key: Option<Vec<u8>>,
    _tuple: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Pairs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairs")
            .field("index_no", &self.index_no)
            .finish()
    }
}

impl<T> Pairs<T> {
    /// The continuation token of the last tuple returned: pass it as `after` to continue there.
    pub fn continuation(&self) -> Option<&[u8]> {
        self.last_key.as_deref()
    }
}

impl<T: DeserializeOwned> Iterator for Pairs<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let (key, value) = match self.entries.next()? {
            Ok(pair) => pair,
            Err(e) => return Some(Err(e)),
        };
        self.last_key = Some(key.to_vec());
        Some(
            fetch(
                &self.tx,
                &self.primary,
                &self.loaded,
                self.index_no,
                &key,
                value,
            )
            .and_then(|t| t.decode()),
        )
    }
}

impl SpaceTx<'_> {
    fn ks(&self, inner: &Arc<KeyspaceInner>) -> Keyspace {
        self.space.keyspace(inner)
    }

    /// Writes index `index_no`'s entry for `fields`, checking uniqueness.
    fn put_entry(&mut self, loaded: &Loaded, index_no: usize, fields: &[Value]) -> Result<()> {
        let entry = loaded.schema.entry(index_no, fields)?;
        let ks = self.ks(&loaded.indexes[index_no]);
        let def = loaded.schema.index(index_no)?;
        if def.is_unique() && !entry.key_has_null {
            let (own, pk) = loaded.schema.split_entry_key(index_no, &entry.key)?;
            if let Some(item) = self.tx.prefix(&ks, own).next() {
                let (existing, _) = item?;
                if !existing.ends_with(pk) || existing.len() != entry.key.len() {
                    return Err(Error::DuplicateKey {
                        space: self.space.name.clone(),
                        index: def.name().to_string(),
                    });
                }
            }
        }
        self.tx.put(&ks, &entry.key, &entry.value)
    }

    /// Replaces `old` (if any) by `new` (if any) in every index.
    fn write(
        &mut self,
        loaded: &Loaded,
        old: Option<&[Value]>,
        new: Option<&[Value]>,
    ) -> Result<()> {
        let schema = Arc::clone(&loaded.schema);
        for index_no in 0..loaded.indexes.len() {
            let ks = self.ks(&loaded.indexes[index_no]);
            if index_no == 0 {
                match (new, old) {
                    (Some(new), _) => self.tx.put(&ks, schema.key(0, new)?, encode_tuple(new))?,
                    (None, Some(old)) => self.tx.delete(&ks, schema.key(0, old)?)?,
                    (None, None) => {}
                }
                continue;
            }
            let old_entry = old.map(|o| schema.entry(index_no, o)).transpose()?;
            let new_entry = new.map(|n| schema.entry(index_no, n)).transpose()?;
            match (&old_entry, &new_entry) {
                (Some(o), Some(n)) if o.key == n.key => {
                    if o.value != n.value {
                        self.tx.put(&ks, &n.key, &n.value)?;
                    }
                }
                _ => {
                    if let Some(o) = &old_entry {
                        self.tx.delete(&ks, &o.key)?;
                    }
                    if let Some(new) = new {
                        self.put_entry(loaded, index_no, new)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn get_loaded(&self, loaded: &Loaded, key: &[Value]) -> Result<Option<Vec<Value>>> {
        let schema = &loaded.schema;
        if key.len() != schema.primary().parts().len() {
            return Err(Error::InvalidArgument(format!(
                "a primary key of space {:?} has {} parts, got {}",
                self.space.name,
                schema.primary().parts().len(),
                key.len()
            )));
        }
        let encoded = schema.search_key(0, key)?;
        let primary = self.ks(&loaded.indexes[0]);
        self.tx
            .get(&primary, encoded)?
            .map(|t| Ok(decode_tuple(&t)?))
            .transpose()
    }

    fn insert_fields(&mut self, fields: &[Value]) -> Result<()> {
        let loaded = self.space.load(self.tx)?;
        loaded.schema.validate_tuple(fields)?;
        let primary = self.ks(&loaded.indexes[0]);
        if self
            .tx
            .get(&primary, loaded.schema.key(0, fields)?)?
            .is_some()
        {
            return Err(Error::DuplicateKey {
                space: self.space.name.clone(),
                index: loaded.schema.primary().name().to_string(),
            });
        }
        self.write(&loaded, None, Some(fields))
    }

    fn replace_fields(&mut self, fields: &[Value]) -> Result<()> {
        let loaded = self.space.load(self.tx)?;
        loaded.schema.validate_tuple(fields)?;
        let primary = self.ks(&loaded.indexes[0]);
        let old = self
            .tx
            .get(&primary, loaded.schema.key(0, fields)?)?
            .map(|t| decode_tuple(&t))
            .transpose()?;
        self.write(&loaded, old.as_deref(), Some(fields))
    }

    fn update_fields(&mut self, key: &[Value], ops: &[UpdateOp]) -> Result<Option<Tuple>> {
        let loaded = self.space.load(self.tx)?;
        let Some(old) = self.get_loaded(&loaded, key)? else {
            return Ok(None);
        };
        let new = loaded.schema.update(&old, ops)?;
        self.write(&loaded, Some(&old), Some(&new))?;
        Ok(Some(Tuple(Bytes::from(encode_tuple(&new)))))
    }

    fn upsert_fields(&mut self, fields: &[Value], ops: &[UpdateOp]) -> Result<()> {
        let loaded = self.space.load(self.tx)?;
        let schema = Arc::clone(&loaded.schema);
        // Checks the tuple and the operations' form now, so a stored upsert is well-formed.
        schema.upsert(None, fields, ops)?;
        if loaded.indexes.len() == 1 {
            let operand = rmp_serde::to_vec(&(
                serde_bytes::Bytes::new(&encode_tuple(fields)),
                serde_bytes::Bytes::new(&encode_ops(ops)),
            ))
            .map_err(|e| Error::InvalidArgument(format!("upsert operand: {e}")))?;
            let primary = self.ks(&loaded.indexes[0]);
            return self.tx.upsert(&primary, schema.key(0, fields)?, operand);
        }
        let old = self.get_loaded(&loaded, &primary_key_values(&schema, fields))?;
        match schema.upsert(old.as_deref(), fields, ops)? {
            UpsertOutcome::Inserted(new) | UpsertOutcome::Updated(new) => {
                self.write(&loaded, old.as_deref(), Some(&new))
            }
            UpsertOutcome::Skipped(error) => {
                log::warn!("strata: upsert skipped on an existing tuple: {error}");
                Ok(())
            }
        }
    }

    fn delete_fields(&mut self, key: &[Value]) -> Result<Option<Tuple>> {
        let loaded = self.space.load(self.tx)?;
        let Some(old) = self.get_loaded(&loaded, key)? else {
            return Ok(None);
        };
        self.write(&loaded, Some(&old), None)?;
        Ok(Some(Tuple(Bytes::from(encode_tuple(&old)))))
    }

    fn get_tuple(&self, key: &[Value]) -> Result<Option<Tuple>> {
        let loaded = self.space.load(self.tx)?;
        Ok(self
            .get_loaded(&loaded, key)?
            .map(|t| Tuple(Bytes::from(encode_tuple(&t)))))
    }

    /// Inserts `tuple` (see [`Space::insert`]).
    pub fn insert<T: Serialize + ?Sized>(&mut self, tuple: &T) -> Result<()> {
        self.insert_fields(&to_fields(tuple)?)
    }

    /// Inserts or replaces `tuple` (see [`Space::replace`]).
    pub fn replace<T: Serialize + ?Sized>(&mut self, tuple: &T) -> Result<()> {
        self.replace_fields(&to_fields(tuple)?)
    }

    /// Updates the tuple with primary key `key` (see [`Space::update`]).
    pub fn update<K: Serialize + ?Sized, T: DeserializeOwned>(
        &mut self,
        key: &K,
        ops: &[UpdateOp],
    ) -> Result<Option<T>> {
        self.update_fields(&key_values(key)?, ops)?
            .map(|t| t.decode())
            .transpose()
    }

    /// Upserts `tuple` with `ops` (see [`Space::upsert`]).
    pub fn upsert<T: Serialize + ?Sized>(&mut self, tuple: &T, ops: &[UpdateOp]) -> Result<()> {
        self.upsert_fields(&to_fields(tuple)?, ops)
    }

    /// Deletes the tuple with primary key `key`, returning it (see [`Space::delete`]).
    pub fn delete<K: Serialize + ?Sized, T: DeserializeOwned>(
        &mut self,
        key: &K,
    ) -> Result<Option<T>> {
        self.delete_fields(&key_values(key)?)?
            .map(|t| t.decode())
            .transpose()
    }

    /// The tuple with primary key `key`, as the transaction sees it.
    pub fn get<K: Serialize + ?Sized, T: DeserializeOwned>(&self, key: &K) -> Result<Option<T>> {
        self.get_tuple(&key_values(key)?)?
            .map(|t| t.decode())
            .transpose()
    }

    /// Up to `limit` tuples that `iterator` selects on `index` for `key`, as the transaction
    /// sees them (its own writes included); the scan is part of its read set.
    pub fn select<K: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        index: &str,
        key: &K,
        iterator: IteratorType,
        limit: usize,
    ) -> Result<Vec<T>> {
        let loaded = self.space.load(self.tx)?;
        let index_no = readable_index(&self.space.name, &loaded, index)?;
        let range = key_range(&loaded, index_no, &key_values(key)?, iterator, None)?;
        let ks = self.ks(&loaded.indexes[index_no]);
        let primary = self.ks(&loaded.indexes[0]);
        let scan = self.tx.range(&ks, (bound(range.lower), bound(range.upper)));
        let entries: Box<dyn Iterator<Item = Result<(Bytes, Bytes)>>> = if range.reverse {
            Box::new(scan.rev())
        } else {
            Box::new(scan)
        };
        let mut out = Vec::new();
        for item in entries.take(limit) {
            let (key, value) = item?;
            out.push(fetch(self.tx, &primary, &loaded, index_no, &key, value)?.decode()?);
        }
        Ok(out)
    }
}

/// The primary key of a tuple as values (for lookups by tuple).
fn primary_key_values(schema: &SpaceSchema, fields: &[Value]) -> Vec<Value> {
    schema
        .primary()
        .parts()
        .iter()
        .map(|p| fields.get(p.position).cloned().unwrap_or(Value::Nil))
        .collect()
}
