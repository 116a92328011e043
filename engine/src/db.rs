//! The database: opening, keyspaces, the write entry point, dump scheduling and shutdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use strata_sstable::{ClockCache, MAX_KEY_LEN};

use crate::batch::BatchEntry;
use crate::commit::CommitPipeline;
use crate::dump::DumpJob;
use crate::error::{Error, Result};
use crate::fs::{DirLock, Fs};
use crate::keyspace::{Keyspace, KeyspaceInner};
use crate::memtable::Memtable;
use crate::meta::{MetaLog, MetaRecord};
use crate::options::{KeyspaceOptions, Options, WalMode};
use crate::snapshot::{ReadViews, Snapshot};
use crate::stats::DbStats;
use crate::txn::Transaction;
use crate::version::{Range, Reaper, TreeVersion};
use crate::write_batch::WriteBatch;

/// The lock file inside the database directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// An open database. Cheap to clone (`Arc` inside), `Send + Sync`.
///
/// The database closes when the last `Db` or [`Keyspace`] handle is dropped, or explicitly with
/// [`Db::close`]: background dumps finish, the WAL is synced, and the directory lock is
/// released. Nothing acknowledged is lost by a clean close.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
    _handle: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.inner.dir).finish()
    }
}

/// Closes the database when the last user-facing handle goes away.
struct CloseOnDrop {
    inner: Arc<DbInner>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.inner.shutdown() {
            log::error!("strata: closing {}: {e}", self.inner.dir.display());
        }
    }
}

/// Keyspaces by id and by name.
#[derive(Default)]
pub(crate) struct Registry {
    pub by_id: HashMap<u32, Arc<KeyspaceInner>>,
    pub by_name: HashMap<String, u32>,
}

/// Shared state of an open database.
pub(crate) struct DbInner {
    pub dir: PathBuf,
    pub options: Options,
    pub fs: Arc<dyn Fs>,
    lock: Mutex<Option<Box<dyn DirLock>>>,
    pub cache: Arc<ClockCache>,
    pub meta: Mutex<MetaLog>,
    pub keyspaces: RwLock<Registry>,
    pub commit: CommitPipeline,
    pub read_views: ReadViews,
    /// Open transactions' read sets and the commits they must be checked against.
    pub conflicts: crate::txn::ConflictManager,
    /// Loaded space schemas.
    pub spaces: crate::space::SpaceRegistry,
    pub quota: crate::quota::Quota,
    pub regulator: crate::regulator::Regulator,
    pub reaper: Arc<Reaper>,
    dump_tx: Mutex<Option<crossbeam_channel::Sender<DumpJob>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Set when compaction threads must stop.
    stopping: AtomicBool,
    /// Compaction threads sleep here when there is nothing to do; dumps wake them.
    compaction_wakeup: (Mutex<()>, Condvar),
    /// Picking a compaction and marking its range busy is one step.
    compaction_pick: Mutex<()>,
    /// Bumped after every finished dump; `flush` waits on it.
    pub dump_generation: Mutex<u64>,
    pub dump_done: Condvar,
    closed: AtomicBool,
    scheduling: Mutex<()>,
    pub recovered_records: AtomicU64,
}

/// Runs a background thread's body; a panic poisons the database (so waiters get an error
/// instead of waiting forever for work the dead thread would have done) and is logged.
fn guard_thread(db: &Arc<DbInner>, what: &str, body: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        db.commit
            .poison(format!("{what} thread panicked: {message}"));
        db.quota.wake_all();
        db.signal_progress();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Opens (creating if needed) the database in directory `path`: replays the metadata log,
    /// opens every live run, replays the WAL past each keyspace's dumped seqno, and starts the
    /// background dump threads.
    ///
    /// # Errors
    /// [`Error::Locked`] if another process or handle holds the directory;
    /// [`Error::Corruption`] (file and offset) for damaged metadata, runs or WAL records (a torn
    /// last WAL record is not damage: it is dropped); [`Error::InvalidArgument`] for bad options;
    /// I/O errors.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        options.validate()?;
        let inner = crate::recovery::open(path.as_ref(), options)?;
        let inner = Arc::new(inner);
        DbInner::start_workers(&inner);
        Ok(Db {
            _handle: Arc::new(CloseOnDrop {
                inner: Arc::clone(&inner),
            }),
            inner,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Opens the keyspace `name`, creating it with `options` if it does not exist. An existing
    /// keyspace keeps the options it was created with.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or over-long name or bad options;
    /// [`Error::Poisoned`] when creating after an earlier failure; I/O errors writing the
    /// metadata log.
    pub fn keyspace(&self, name: &str, options: KeyspaceOptions) -> Result<Keyspace> {
        self.inner.check_open()?;
        if name.is_empty() || name.len() > 255 {
            return Err(Error::InvalidArgument(format!(
                "keyspace name {name:?} must be 1..=255 bytes"
            )));
        }
        if let Some(inner) = self.inner.keyspace_by_name(name) {
            inner.attach_merge_operator(&options)?;
            return Ok(Keyspace {
                db: self.clone(),
                inner,
            });
        }
        options.validate()?;
        self.inner.commit.check_poisoned()?;
        let mut meta = lock(&self.inner.meta);
        // Re-check under the metadata lock: another thread may have created it meanwhile.
        if let Some(inner) = self.inner.keyspace_by_name(name) {
            inner.attach_merge_operator(&options)?;
            return Ok(Keyspace {
                db: self.clone(),
                inner,
            });
        }
        let id = meta.state().next_keyspace_id;
        let range = meta.state().next_range_id;
        meta.commit(vec![
            MetaRecord::CreateKeyspace {
                id,
                name: name.to_string(),
                options: options.encode(),
            },
            MetaRecord::InsertRange {
                keyspace: id,
                range,
                begin: None,
                end: None,
            },
        ])?;
        // The metadata lock is held until the keyspace is registered, so a concurrent creator
        // of the same name finds it in the registry instead of in the log only.
        let bloom_bytes =
            crate::memtable::bloom_bytes_for_budget(self.inner.options.memory_limit_bytes);
        let version = TreeVersion {
            active: Arc::new(Memtable::new(0, bloom_bytes)),
            sealed: Vec::new(),
            ranges: vec![Arc::new(Range {
                id: range,
                begin: None,
                end: None,
                slices: Vec::new(),
            })],
        };
        let merge_operator = options.merge_operator_name();
        let inner = Arc::new(KeyspaceInner::new(
            id,
            name.to_string(),
            options,
            merge_operator,
            version,
            bloom_bytes,
        ));
        let mut registry = self
            .inner
            .keyspaces
            .write()
            .unwrap_or_else(|p| p.into_inner());
        registry.by_name.insert(name.to_string(), id);
        registry.by_id.insert(id, Arc::clone(&inner));
        drop(registry);
        drop(meta);
        self.inner.propagate_meta_poison();
        Ok(Keyspace {
            db: self.clone(),
            inner,
        })
    }

    /// Drops the keyspace `name` and all its data. Open handles to it fail with
    /// [`Error::KeyspaceNotFound`] from then on; its runs are deleted once no iterator reads them.
    ///
    /// # Errors
    /// [`Error::KeyspaceNotFound`]; [`Error::Poisoned`]; I/O errors writing the metadata log.
    pub fn drop_keyspace(&self, name: &str) -> Result<()> {
        self.inner.check_open()?;
        self.inner.commit.check_poisoned()?;
        let Some(ks) = self.inner.keyspace_by_name(name) else {
            return Err(Error::KeyspaceNotFound(name.to_string()));
        };
        let _dumping = lock(&ks.dump_lock);
        let _shape = lock(&ks.shape);
        let mut meta = lock(&self.inner.meta);
        meta.commit(vec![MetaRecord::DropKeyspace { id: ks.id }])?;
        drop(meta);
        self.inner.propagate_meta_poison();
        ks.dropped.store(true, Ordering::Release);
        let version = ks.current();
        for run in version.runs().values() {
            run.mark_obsolete();
        }
        let memory: u64 = version.memtables().map(|m| m.size_bytes()).sum();
        ks.clear();
        self.inner.quota.release(memory);
        let mut registry = self
            .inner
            .keyspaces
            .write()
            .unwrap_or_else(|p| p.into_inner());
        registry.by_name.remove(name);
        registry.by_id.remove(&ks.id);
        Ok(())
    }

    /// Names of all keyspaces, sorted.
    pub fn keyspace_names(&self) -> Vec<String> {
        let registry = self
            .inner
            .keyspaces
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = registry.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// A new, empty batch of writes across keyspaces, applied atomically by
    /// [`WriteBatch::commit`].
    pub fn batch(&self) -> WriteBatch {
        WriteBatch::new(self.clone())
    }

    /// A handle to an existing keyspace whatever its options, for tools that inspect databases
    /// they did not create. A built-in merge operator ([`crate::merge::builtin`]) is attached
    /// automatically; with any other, reads of keys holding upsert operands fail with
    /// [`Error::Merge`] (plain values read normally).
    ///
    /// # Errors
    /// [`Error::KeyspaceNotFound`].
    pub fn existing_keyspace(&self, name: &str) -> Result<Keyspace> {
        self.inner.check_open()?;
        let inner = self
            .inner
            .keyspace_by_name(name)
            .ok_or_else(|| Error::KeyspaceNotFound(name.to_string()))?;
        if let Some(operator) = inner.merge_operator_name().and_then(crate::merge::builtin) {
            inner.attach_merge_operator(&KeyspaceOptions {
                merge_operator: Some(operator),
                ..KeyspaceOptions::default()
            })?;
        }
        Ok(Keyspace {
            db: self.clone(),
            inner,
        })
    }

    /// Begins a serializable read-write transaction (see [`Transaction`]): it reads the newest
    /// committed state plus its own writes, and commits atomically or fails with
    /// [`Error::Conflict`] if another commit overwrote something it read.
    pub fn begin(&self) -> Transaction {
        Transaction::begin(self.clone())
    }

    /// Begins a read-only transaction: a consistent snapshot that never conflicts. Writes through
    /// it fail with [`Error::InvalidArgument`].
    pub fn begin_read_only(&self) -> Transaction {
        Transaction::begin_read_only(self.clone())
    }

    /// Runs `body` in a transaction and commits it, retrying the whole transaction on
    /// [`Error::Conflict`] (after a short random backoff that doubles each time, up to 20 ms)
    /// until `Options::transaction_attempts` attempts were made. Other errors return at once.
    /// `body` may run several times: keep side effects out of it.
    ///
    /// # Errors
    /// The last attempt's error; whatever `body` returns.
    pub fn transact<T>(&self, body: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        crate::txn::transact(self, self.inner.options.transaction_attempts, body)
    }

    /// Creates a space of MessagePack tuples with the indexes `def` lists (the first is the
    /// primary); its schema is stored in the `_schema` keyspace.
    ///
    /// # Errors
    /// [`Error::SpaceExists`]; [`Error::Tuple`] for a wrong definition (naming what is wrong).
    pub fn create_space(&self, name: &str, def: crate::SpaceDef) -> Result<crate::Space> {
        crate::space::create_space(self, name, def)
    }

    /// A handle to an existing space.
    ///
    /// # Errors
    /// [`Error::SpaceNotFound`].
    pub fn space(&self, name: &str) -> Result<crate::Space> {
        crate::space::open_space(self, name)
    }

    /// Drops a space, its tuples and its indexes.
    ///
    /// # Errors
    /// [`Error::SpaceNotFound`].
    pub fn drop_space(&self, name: &str) -> Result<()> {
        crate::space::drop_space(self, name)
    }

    /// The names of every space, sorted.
    pub fn space_names(&self) -> Result<Vec<String>> {
        crate::space::space_names(self)
    }

    /// A read view of everything committed so far. Reads through it never see later commits.
    /// It pins only a seqno (compaction keeps the versions it needs), not files or memory.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(Arc::clone(&self.inner))
    }

    /// Makes every commit so far durable (syncs the WAL), whatever the WAL mode.
    ///
    /// # Errors
    /// The sync's I/O error (which poisons the database), or [`Error::Poisoned`].
    pub fn sync(&self) -> Result<()> {
        self.inner.check_open()?;
        if self.inner.options.wal_mode == WalMode::None {
            // Without a log, the only durable place is a run.
            return self.inner.flush();
        }
        self.inner.commit.sync()
    }

    /// Dumps every memtable to runs and waits until they are written.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a dump failed; [`Error::Closed`].
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Compacts every keyspace fully (see [`Keyspace::compact`]) and waits.
    ///
    /// # Errors
    /// As [`Keyspace::compact`].
    pub fn compact_all(&self) -> Result<()> {
        for name in self.keyspace_names() {
            if let Some(inner) = self.inner.keyspace_by_name(&name) {
                Keyspace {
                    db: self.clone(),
                    inner,
                }
                .compact()?;
            }
        }
        Ok(())
    }

    /// Counters and gauges of the database and each keyspace.
    pub fn stats(&self) -> DbStats {
        crate::stats::collect(&self.inner)
    }

    /// Closes the database: waits for in-flight dumps, syncs the WAL, stops background threads
    /// and releases the directory lock. Other handles fail with [`Error::Closed`] afterwards.
    ///
    /// # Errors
    /// The final WAL sync's (or, without a WAL, the final dump's) error; [`Error::Poisoned`] if
    /// an earlier failure poisoned the database (it is closed all the same).
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}

/// What recovery hands to [`DbInner::new`].
pub(crate) struct Parts {
    pub lock: Box<dyn DirLock>,
    pub meta: MetaLog,
    pub registry: Registry,
    pub commit: CommitPipeline,
    pub quota_used: u64,
    pub reaper: Arc<Reaper>,
    pub cache: Arc<ClockCache>,
}

impl DbInner {
    pub fn new(dir: PathBuf, options: Options, parts: Parts) -> Self {
        let quota = crate::quota::Quota::new(options.memory_limit_bytes);
        quota.charge(parts.quota_used);
        DbInner {
            dir,
            fs: Arc::clone(&options.fs),
            cache: parts.cache,
            options,
            lock: Mutex::new(Some(parts.lock)),
            meta: Mutex::new(parts.meta),
            keyspaces: RwLock::new(parts.registry),
            commit: parts.commit,
            read_views: ReadViews::default(),
            conflicts: crate::txn::ConflictManager::default(),
            spaces: crate::space::SpaceRegistry::default(),
            quota,
            regulator: crate::regulator::Regulator::new(),
            reaper: parts.reaper,
            dump_tx: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            compaction_wakeup: (Mutex::new(()), Condvar::new()),
            compaction_pick: Mutex::new(()),
            dump_generation: Mutex::new(0),
            dump_done: Condvar::new(),
            closed: AtomicBool::new(false),
            scheduling: Mutex::new(()),
            recovered_records: AtomicU64::new(0),
        }
    }

    fn start_workers(inner: &Arc<DbInner>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut workers = lock(&inner.workers);
        for i in 0..inner.options.dump_threads {
            let db = Arc::clone(inner);
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("strata-dump-{i}"))
                .spawn(move || guard_thread(&db, "dump", || crate::dump::worker(&db, &rx)));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => inner
                    .commit
                    .poison(format!("cannot start a dump thread: {e}")),
            }
        }
        for i in 0..inner.options.compaction_threads {
            let db = Arc::clone(inner);
            let spawned = std::thread::Builder::new()
                .name(format!("strata-compact-{i}"))
                .spawn(move || guard_thread(&db, "compaction", || db.compaction_worker()));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => inner
                    .commit
                    .poison(format!("cannot start a compaction thread: {e}")),
            }
        }
        *lock(&inner.dump_tx) = Some(tx);
        drop(workers);
        // Memtables recovered from the WAL may already be over the watermark.
        inner.maybe_schedule_dump();
    }

    /// Wakes the compaction threads (after a dump added runs).
    pub fn wake_compaction(&self) {
        let _guard = lock(&self.compaction_wakeup.0);
        self.compaction_wakeup.1.notify_all();
    }

    /// Wakes everyone waiting for background work (flush, manual compaction).
    pub fn signal_progress(&self) {
        let mut generation = lock(&self.dump_generation);
        *generation += 1;
        self.dump_done.notify_all();
    }

    /// A compaction thread: run the most urgent compaction across all keyspaces, then look
    /// again; sleep when there is none.
    fn compaction_worker(self: &Arc<Self>) {
        while !self.stopping.load(Ordering::Acquire) {
            if self.commit.check_poisoned().is_err() {
                break;
            }
            self.reaper.process();
            let picked = {
                let _pick = lock(&self.compaction_pick);
                crate::compact::pick(&self.all_keyspaces())
                    .filter(|(ks, range, _)| ks.try_mark_busy(*range))
            };
            let Some((ks, range, run_count)) = picked else {
                let guard = lock(&self.compaction_wakeup.0);
                let _ = self
                    .compaction_wakeup
                    .1
                    .wait_timeout(guard, Duration::from_millis(200));
                continue;
            };
            let result =
                crate::compact::compact_range(self, &ks, range, run_count).and_then(|done| {
                    if done {
                        crate::compact::reshape(self, &ks, range)
                    } else {
                        Ok(())
                    }
                });
            ks.clear_busy(range);
            match result {
                Ok(()) => {}
                // Damaged input is not a durability problem: reads of it keep failing with the
                // corruption, but writes and every other range go on.
                Err(e) if e.is_corruption() => {
                    log::error!(
                        "strata: compaction of keyspace {:?} met damaged data; range {range} \
                         is not compacted again until reopened: {e}",
                        ks.name
                    );
                    ks.quarantine(range);
                }
                Err(e) => self
                    .commit
                    .poison(format!("compaction of keyspace {:?} failed: {e}", ks.name)),
            }
            self.propagate_meta_poison();
            self.update_regulator();
            if let Err(e) = crate::dump::trim_wal(self) {
                log::warn!("strata: trimming the WAL: {e}");
            }
            self.signal_progress();
        }
    }

    /// Recomputes the compaction debt and the regulator's write limit.
    pub fn update_regulator(&self) {
        let debt = crate::compact::total_debt(&self.all_keyspaces());
        self.regulator.update(
            debt,
            4 * self.options.memory_limit_bytes,
            self.options.compaction_threads,
        );
    }

    /// Major compaction of every range of `ks` that holds more than one slice, or one slice
    /// whose run may hold garbage (deletes or several versions of a key; rewritten at most once
    /// per call, so versions a snapshot still needs cannot make it loop). Waits for ranges busy
    /// with background compactions, and repeats until nothing is left (ranges may split
    /// meanwhile).
    pub fn compact_keyspace(&self, ks: &Arc<KeyspaceInner>) -> Result<()> {
        let mut rewritten = std::collections::BTreeSet::new();
        for _round in 0..256 {
            let mut pending = false;
            for range in ks.current().ranges.clone() {
                let garbage = |r: &Range| {
                    r.slices.len() == 1 && !rewritten.contains(&r.id) && {
                        let p = r.slices[0].run.run.properties();
                        p.deletes > 0 || p.merges > 0 || p.entries > p.distinct_keys
                    }
                };
                if range.slices.len() < 2 && !garbage(&range) {
                    continue;
                }
                pending = true;
                if !ks.try_mark_busy(range.id) {
                    continue; // a background compaction has it; look again next round
                }
                let now = ks
                    .current()
                    .ranges
                    .iter()
                    .find(|r| r.id == range.id)
                    .cloned();
                let result = match now {
                    Some(r) if r.slices.len() >= 2 || garbage(&r) => {
                        // Split or coalesce afterwards, as a background compaction would.
                        crate::compact::compact_range(self, ks, r.id, r.slices.len())
                            .and_then(|done| {
                                if done {
                                    crate::compact::reshape(self, ks, r.id)
                                } else {
                                    Ok(())
                                }
                            })
                            .map(|()| true)
                    }
                    _ => Ok(false),
                };
                ks.clear_busy(range.id);
                rewritten.insert(range.id);
                if let Err(e) = result {
                    if !e.is_corruption() {
                        self.commit
                            .poison(format!("compaction of keyspace {:?} failed: {e}", ks.name));
                    }
                    return Err(e);
                }
            }
            self.commit.check_poisoned()?;
            if !pending {
                return Ok(());
            }
            let generation = lock(&self.dump_generation);
            let _ = self
                .dump_done
                .wait_timeout(generation, Duration::from_millis(5));
        }
        Ok(())
    }

    /// A metadata log poisoned by a failed automatic rewrite (after its commit succeeded)
    /// poisons the database too: the log's durable name is uncertain, so nothing more may be
    /// recorded in it (METADATA.md, section 7).
    pub fn propagate_meta_poison(&self) {
        let reason = lock(&self.meta).poisoned().map(str::to_string);
        if let Some(reason) = reason {
            self.commit.poison(format!("metadata log: {reason}"));
        }
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub fn keyspace_by_name(&self, name: &str) -> Option<Arc<KeyspaceInner>> {
        let registry = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
        registry
            .by_name
            .get(name)
            .and_then(|id| registry.by_id.get(id))
            .cloned()
    }

    pub fn all_keyspaces(&self) -> Vec<Arc<KeyspaceInner>> {
        let registry = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = registry.by_id.values().cloned().collect();
        all.sort_by_key(|k| k.id);
        all
    }

    /// Validates and commits a batch of plain (non-transactional) writes.
    pub fn commit(&self, entries: Vec<BatchEntry>, sync: bool) -> Result<()> {
        self.commit_with(entries, sync, None)
    }

    /// Validates and commits a batch: the writes of transaction `txn` (its conflict-manager
    /// slot) or plain writes (`None`). Every commit goes through the conflict manager, because
    /// plain writes also invalidate what open transactions read.
    pub fn commit_with(
        &self,
        entries: Vec<BatchEntry>,
        sync: bool,
        txn: Option<u64>,
    ) -> Result<()> {
        self.check_open()?;
        let encoded_len: usize = entries
            .iter()
            .map(|e| e.key.len() + e.value.len() + 24)
            .sum();
        if encoded_len > crate::wal::MAX_PAYLOAD_LEN {
            return Err(Error::InvalidArgument(format!(
                "batch of {encoded_len} bytes exceeds the WAL record limit of {} bytes",
                crate::wal::MAX_PAYLOAD_LEN
            )));
        }
        for e in &entries {
            if e.key.len() > MAX_KEY_LEN {
                return Err(Error::KeyTooLarge {
                    len: e.key.len(),
                    max: MAX_KEY_LEN,
                });
            }
            if e.value.len() > self.options.max_value_len {
                return Err(Error::ValueTooLarge {
                    len: e.value.len(),
                    max: self.options.max_value_len,
                });
            }
        }
        {
            let registry = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
            for e in &entries {
                if !registry.by_id.contains_key(&e.keyspace) {
                    return Err(Error::KeyspaceNotFound(format!("#{}", e.keyspace)));
                }
            }
        }
        self.regulator.admit(encoded_len as u64);
        self.quota.throttle(self.options.quota_timeout, || {
            self.check_open()?;
            self.commit.check_poisoned()
        })?;
        let apply = |first_seqno: u64, entries: &[BatchEntry]| self.apply(first_seqno, entries);
        let mut committing = None;
        let mut gate = |first_seqno: u64, entries: &[BatchEntry]| {
            committing = self.conflicts.check_commit(
                txn,
                first_seqno,
                entries,
                &self.read_views,
                &self.commit,
            )?;
            Ok(())
        };
        let result = self.commit.commit(entries, sync, &apply, &mut gate);
        if let Some(id) = committing {
            self.conflicts.committed(id);
        }
        result?;
        if self.commit.take_background_sync_request() {
            if let Some(tx) = lock(&self.dump_tx).as_ref() {
                let _ = tx.send(DumpJob::SyncWal);
            }
        }
        self.maybe_schedule_dump();
        Ok(())
    }

    /// Inserts committed entries into memtables (called by the commit leader, in seqno order).
    fn apply(&self, first_seqno: u64, entries: &[BatchEntry]) {
        let registry = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
        let mut charged = 0;
        for (i, entry) in entries.iter().enumerate() {
            if let Some(ks) = registry.by_id.get(&entry.keyspace) {
                let seqno = first_seqno + i as u64;
                let (charge, chain) = ks.insert(seqno, entry);
                charged += charge;
                if chain > 0 && chain % crate::merge::SQUASH_CHAIN_LENGTH == 0 {
                    // A hot key's operand chain: fold it in the background so reads stay short.
                    if let Some(tx) = lock(&self.dump_tx).as_ref() {
                        let _ = tx.send(DumpJob::Squash(Arc::clone(ks), entry.key.clone(), seqno));
                    }
                }
                ks.counters.writes.fetch_add(1, Ordering::Relaxed);
                ks.counters.user_bytes_written.fetch_add(
                    (entry.key.len() + entry.value.len()) as u64,
                    Ordering::Relaxed,
                );
            }
        }
        self.quota.charge(charged);
    }

    /// The memory above which active memtables are sealed and dumped: half the limit. (vinyl
    /// derives it from measured dump bandwidth and the write rate; a fixed half keeps one
    /// memtable generation filling while the previous one is written.)
    fn dump_watermark(&self) -> u64 {
        self.quota.limit_bytes() / 2
    }

    /// Seals the largest active memtables while active memory is above the watermark, and
    /// queues their dumps.
    pub fn maybe_schedule_dump(&self) {
        if self.quota.used_bytes() < self.dump_watermark() {
            return;
        }
        let Ok(_guard) = self.scheduling.try_lock() else {
            return;
        };
        loop {
            let keyspaces = self.all_keyspaces();
            let active: u64 = keyspaces
                .iter()
                .map(|k| k.current().active.size_bytes())
                .sum();
            if active < self.dump_watermark() {
                return;
            }
            let Some(largest) = keyspaces
                .iter()
                .max_by_key(|k| k.current().active.size_bytes())
            else {
                return;
            };
            if !self.seal_and_queue(largest) {
                return;
            }
        }
    }

    /// Seals `ks`'s active memtable and queues its dump; false if there was nothing to seal.
    pub fn seal_and_queue(&self, ks: &Arc<KeyspaceInner>) -> bool {
        let sealed = self.commit.with_next_seqno(|next| ks.seal(next));
        if sealed.is_none() {
            return false;
        }
        if let Some(tx) = lock(&self.dump_tx).as_ref() {
            let _ = tx.send(DumpJob::Dump(Arc::clone(ks)));
        }
        true
    }

    pub fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.flush_unchecked()
    }

    /// `flush` without the closed check (used by `shutdown` itself).
    fn flush_unchecked(&self) -> Result<()> {
        self.commit.check_poisoned()?;
        let mut waiting = Vec::new();
        for ks in self.all_keyspaces() {
            self.seal_and_queue(&ks);
            if let Some(newest) = ks.current().sealed.first() {
                waiting.push((Arc::clone(&ks), Arc::clone(newest)));
            }
        }
        let mut generation = lock(&self.dump_generation);
        for (ks, memtable) in waiting {
            while ks
                .current()
                .sealed
                .iter()
                .any(|m| Arc::ptr_eq(m, &memtable))
            {
                self.commit.check_poisoned()?;
                if ks.dropped.load(Ordering::Acquire) {
                    break;
                }
                generation = match self
                    .dump_done
                    .wait_timeout(generation, Duration::from_millis(50))
                {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
        }
        drop(generation);
        self.commit.check_poisoned()
    }

    /// Stops background work and releases the directory. Idempotent.
    pub fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // New writes are refused from here on. Without a WAL, memtables must reach runs before
        // the threads stop, or a clean close would lose acknowledged writes.
        // A poisoned database closes (threads stop, the lock is released) but says so: in
        // particular without a WAL, writes that a failed dump did not save are lost.
        self.propagate_meta_poison();
        let mut result = self.commit.check_poisoned();
        if result.is_ok() && self.options.wal_mode == WalMode::None {
            result = self.flush_unchecked();
        }
        if let Some(tx) = lock(&self.dump_tx).take() {
            for _ in 0..self.options.dump_threads {
                let _ = tx.send(DumpJob::Shutdown);
            }
        }
        self.stopping.store(true, Ordering::Release);
        self.wake_compaction();
        let workers = std::mem::take(&mut *lock(&self.workers));
        for worker in workers {
            if worker.thread().id() != std::thread::current().id() {
                let _ = worker.join();
            }
        }
        self.quota.wake_all();
        self.reaper.process();
        if result.is_ok() {
            result = self.commit.sync();
        }
        lock(&self.commit.wal).writer = None;
        *lock(&self.lock) = None;
        result
    }
}
