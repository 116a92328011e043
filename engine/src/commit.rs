//! The commit pipeline: seqno assignment, group commit to the WAL, memtable inserts, and
//! in-order visibility.
//!
//! Ordering invariants (the reason this module exists):
//! 1. Seqnos are assigned under `state`, in queue order; batches get consecutive seqnos.
//! 2. One committer at a time is the *leader*. It takes everything queued, writes it to the WAL
//!    in one write (and, if any member asked, one sync: group commit), inserts every member's
//!    entries into the memtables, publishes the group's last seqno as *visible*, and fills each
//!    member's result slot. If more commits queued up meanwhile, it hands leadership to the
//!    oldest of them and returns, so it can join the next group instead of writing it. Groups are processed in seqno order, so visibility only moves
//!    forward and never exposes a hole: a reader at the visible seqno sees every earlier batch.
//! 3. A failed WAL write or sync poisons the pipeline. The failing group and every later commit
//!    get an error; the sync is never retried (a retried fsync can succeed after the kernel
//!    dropped the dirty pages, and that success would be a lie).
//! 4. Sealing a memtable happens under `state` ([`CommitPipeline::with_next_seqno`]), so the seal
//!    boundary is exact: every seqno below it was handed out before, every later one after.
//!
//! Committers encode their WAL payload before taking the lock (with a placeholder seqno patched
//! in afterwards), so encoding runs in parallel; the leader's serial part is the write, the
//! sync and the memtable inserts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::batch::{self, BatchEntry};
use crate::error::{Error, Result};
use crate::options::WalMode;
use crate::wal::WalWriter;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, so a panic elsewhere does not
    // make the state unusable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the pipeline failed, cloneable so every waiting committer gets it.
#[derive(Debug, Clone)]
struct Failure {
    path: PathBuf,
    kind: std::io::ErrorKind,
    message: String,
}

impl Failure {
    fn to_error(&self) -> Error {
        Error::Io {
            path: self.path.clone(),
            source: std::io::Error::new(self.kind, self.message.clone()),
        }
    }
}

#[derive(Default)]
struct Slot {
    result: Mutex<Option<std::result::Result<(), Failure>>>,
}

struct Pending {
    first_seqno: u64,
    entries: Vec<BatchEntry>,
    payload: Vec<u8>,
    sync: bool,
    /// Where a leader leaves this commit's result; `None` for the leader's own commit, which
    /// learns its result directly (so an uncontended commit allocates no slot).
    slot: Option<Arc<Slot>>,
}

struct CommitState {
    next_seqno: u64,
    queue: Vec<Pending>,
    leader_active: bool,
    /// Followers waiting for their result: the leader wakes them only if there are any.
    waiting: usize,
    /// The last leader handed leadership to the oldest queued commit (`queue[0]`).
    handoff: bool,
    /// An empty vector with capacity, swapped in for the queue a leader takes, so queueing
    /// does not allocate.
    spare_queue: Vec<Pending>,
}

/// A pending commit as a WAL record: its payload and last seqno.
fn wal_record(pending: &Pending) -> (&[u8], u64) {
    (
        pending.payload.as_slice(),
        pending.first_seqno + pending.entries.len() as u64 - 1,
    )
}

/// The WAL's writer and the closed segments still holding undumped data.
pub(crate) struct WalState {
    pub writer: Option<WalWriter>,
    /// (segment id, last seqno) of closed segments, oldest first.
    pub closed: Vec<(u64, u64)>,
    pub next_segment_id: u64,
}

/// In `Write` mode, a background sync of the WAL is requested after this many bytes (RocksDB:
/// `wal_bytes_per_sync`): the kernel's dirty pages are flushed a little at a time instead of all
/// at once when a segment is rotated, which happens while committers wait.
pub(crate) const WAL_BYTES_PER_SYNC: u64 = 8 << 20;

/// Counters of the pipeline.
#[derive(Debug, Default)]
pub(crate) struct CommitCounters {
    pub commits: AtomicU64,
    pub groups: AtomicU64,
    pub syncs: AtomicU64,
    pub wal_bytes: AtomicU64,
}

/// See the module documentation. Thread-safe.
pub(crate) struct CommitPipeline {
    state: Mutex<CommitState>,
    member_done: Condvar,
    pub wal: Mutex<WalState>,
    mode: WalMode,
    segment_size_bytes: u64,
    visible: AtomicU64,
    /// Guards the visibility condvar; holds the number of threads waiting on it, so a commit
    /// only makes the wake-up syscall when someone waits.
    visible_lock: Mutex<usize>,
    visible_changed: Condvar,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    /// Every WAL record with a seqno at or below this is durable.
    synced_seqno: AtomicU64,
    /// Bytes appended since the last sync; past [`WAL_BYTES_PER_SYNC`] a background sync is
    /// requested, so no later sync (a rotation's, under the WAL lock) has much to flush.
    unsynced_bytes: AtomicU64,
    /// A background sync was requested and has not finished yet.
    background_sync_pending: AtomicBool,
    /// A request the next committer must hand to a background thread.
    background_sync_requested: AtomicBool,
    pub counters: CommitCounters,
    fs: std::sync::Arc<dyn crate::fs::Fs>,
}

impl CommitPipeline {
    /// A pipeline whose next seqno is `next_seqno` (everything below is visible).
    pub fn new(
        next_seqno: u64,
        mode: WalMode,
        segment_size_bytes: u64,
        wal: WalState,
        fs: std::sync::Arc<dyn crate::fs::Fs>,
    ) -> Self {
        CommitPipeline {
            state: Mutex::new(CommitState {
                next_seqno,
                queue: Vec::new(),
                leader_active: false,
                waiting: 0,
                handoff: false,
                spare_queue: Vec::new(),
            }),
            member_done: Condvar::new(),
            wal: Mutex::new(wal),
            mode,
            segment_size_bytes,
            visible: AtomicU64::new(next_seqno.saturating_sub(1)),
            visible_lock: Mutex::new(0),
            visible_changed: Condvar::new(),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(None),
            // Everything recovered from disk before this pipeline existed is durable already.
            synced_seqno: AtomicU64::new(next_seqno.saturating_sub(1)),
            unsynced_bytes: AtomicU64::new(0),
            background_sync_pending: AtomicBool::new(false),
            background_sync_requested: AtomicBool::new(false),
            counters: CommitCounters::default(),
            fs,
        }
    }

    /// The highest seqno whose batch (and every earlier one) is visible to readers.
    pub fn visible_seqno(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Runs `f` with the next seqno to be assigned, holding the commit lock so no seqno is
    /// assigned meanwhile (used to seal memtables at an exact boundary).
    pub fn with_next_seqno<R>(&self, f: impl FnOnce(u64) -> R) -> R {
        let state = lock(&self.state);
        f(state.next_seqno)
    }

    /// Blocks until `seqno` is visible, or the pipeline is poisoned, or `timeout` passes.
    pub fn wait_visible(&self, seqno: u64, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let mut guard = lock(&self.visible_lock);
        *guard += 1;
        while self.visible_seqno() < seqno {
            if let Err(e) = self.check_poisoned() {
                *guard -= 1;
                return Err(e);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                *guard -= 1;
                return Err(Error::InvalidArgument(format!(
                    "timed out waiting for seqno {seqno} to become visible"
                )));
            }
            guard = match self
                .visible_changed
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(50)))
            {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        *guard -= 1;
        Ok(())
    }

    /// Marks the database poisoned (first reason wins).
    pub fn poison(&self, reason: String) {
        let mut slot = lock(&self.poison_reason);
        if slot.is_none() {
            log::error!("strata: database poisoned: {reason}");
            *slot = Some(reason);
        }
        self.poisoned.store(true, Ordering::Release);
        drop(slot);
        let _guard = lock(&self.visible_lock);
        self.visible_changed.notify_all();
    }

    /// `Err(Poisoned)` once the pipeline is poisoned.
    pub fn check_poisoned(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = lock(&self.poison_reason).clone().unwrap_or_default();
        Err(Error::Poisoned { reason })
    }

    /// Commits one batch: assigns its seqnos, makes it durable per the WAL mode (or per `sync`),
    /// applies it with `apply(first_seqno, entries)` and makes it visible. Returns the last seqno.
    ///
    /// `apply` must be the same function for every committer (the leader applies the whole
    /// group) and must not fail. `gate(first_seqno, entries)` runs under the commit lock just
    /// before the seqnos are assigned, so it is ordered with every other commit (transaction
    /// conflict checks); an error from it cancels the commit.
    ///
    /// # Errors
    /// [`Error::Poisoned`] after an earlier failure; the I/O error of a failed WAL write or sync
    /// (which poisons the pipeline); the gate's error.
    pub fn commit(
        &self,
        entries: Vec<BatchEntry>,
        sync: bool,
        apply: &dyn Fn(u64, &[BatchEntry]),
        gate: &mut dyn FnMut(u64, &[BatchEntry]) -> Result<()>,
    ) -> Result<u64> {
        self.check_poisoned()?;
        let count = entries.len() as u64;
        if count == 0 {
            return Ok(self.visible_seqno());
        }
        let mut payload = Vec::new();
        if self.mode != WalMode::None {
            payload.reserve(batch::encoded_len(&entries));
            batch::encode(0, &entries, &mut payload);
        }
        let mut state = lock(&self.state);
        let first_seqno = state.next_seqno;
        gate(first_seqno, &entries)?;
        state.next_seqno += count;
        batch::set_first_seqno(&mut payload, first_seqno);
        let sync = sync || self.mode == WalMode::Fsync;
        let follower = state.leader_active;
        let slot = follower.then(|| Arc::new(Slot::default()));
        state.queue.push(Pending {
            first_seqno,
            entries,
            payload,
            sync,
            slot: slot.clone(),
        });

        if let Some(slot) = &slot {
            state.waiting += 1;
            loop {
                if let Some(result) = lock(&slot.result).clone() {
                    state.waiting -= 1;
                    return result
                        .map(|()| first_seqno + count - 1)
                        .map_err(|f| f.to_error());
                }
                // Promoted: the previous leader handed over to the oldest queued commit.
                if state.handoff
                    && state
                        .queue
                        .first()
                        .and_then(|p| p.slot.as_ref())
                        .is_some_and(|s| Arc::ptr_eq(s, slot))
                {
                    state.handoff = false;
                    state.waiting -= 1;
                    break;
                }
                state = match self.member_done.wait(state) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
        } else {
            state.leader_active = true;
        }

        // Leader: write everything queued, which includes this commit.
        let spare = std::mem::take(&mut state.spare_queue);
        let mut group = std::mem::replace(&mut state.queue, spare);
        drop(state);
        let outcome = self.write_group(&group, apply);
        for member in &group {
            if let Some(member_slot) = &member.slot {
                *lock(&member_slot.result) = Some(outcome.clone());
            }
        }
        group.clear();
        state = lock(&self.state);
        if state.spare_queue.capacity() == 0 {
            state.spare_queue = group;
        }
        if state.queue.is_empty() {
            state.leader_active = false;
        } else {
            // Hand leadership to the oldest queued commit and return at once: this caller gets
            // back to work (and into the next group) while that group is written and synced,
            // instead of writing it too and missing the group after.
            state.handoff = true;
        }
        if state.waiting > 0 {
            self.member_done.notify_all();
        }
        drop(state);
        match outcome {
            Ok(()) => Ok(first_seqno + count - 1),
            Err(failure) => Err(failure.to_error()),
        }
    }

    fn write_group(
        &self,
        group: &[Pending],
        apply: &dyn Fn(u64, &[BatchEntry]),
    ) -> std::result::Result<(), Failure> {
        if let Err(e) = self.check_poisoned() {
            return Err(Failure {
                path: PathBuf::new(),
                kind: std::io::ErrorKind::Other,
                message: e.to_string(),
            });
        }
        let Some(last) = group.last() else {
            return Ok(());
        };
        let last_seqno = last.first_seqno + last.entries.len() as u64 - 1;
        if self.mode != WalMode::None {
            self.write_wal(group).inspect_err(|failure| {
                self.poison(format!(
                    "WAL write failed on {}: {}",
                    failure.path.display(),
                    failure.message
                ));
            })?;
        }
        for member in group {
            apply(member.first_seqno, &member.entries);
        }
        self.counters
            .commits
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.counters.groups.fetch_add(1, Ordering::Relaxed);
        self.visible.store(last_seqno, Ordering::Release);
        // A waiter registers under this lock before it checks the visible seqno, so either it
        // sees the new value or it is counted here.
        if *lock(&self.visible_lock) > 0 {
            self.visible_changed.notify_all();
        }
        Ok(())
    }

    fn write_wal(&self, group: &[Pending]) -> std::result::Result<(), Failure> {
        let mut wal = lock(&self.wal);
        let fail = |e: Error| {
            let (path, kind, message) = match e {
                Error::Io { path, source } => (path, source.kind(), source.to_string()),
                other => (PathBuf::new(), std::io::ErrorKind::Other, other.to_string()),
            };
            Failure {
                path,
                kind,
                message,
            }
        };
        let Some(writer) = wal.writer.as_mut() else {
            return Err(Failure {
                path: PathBuf::new(),
                kind: std::io::ErrorKind::Other,
                message: "WAL is closed".into(),
            });
        };
        // A group of one (every uncontended commit) needs no vector.
        let written = match group {
            [only] => writer.append(&[wal_record(only)]),
            _ => writer.append(&group.iter().map(wal_record).collect::<Vec<_>>()),
        }
        .map_err(fail)?;
        self.counters
            .wal_bytes
            .fetch_add(written, Ordering::Relaxed);
        let unsynced = self.unsynced_bytes.fetch_add(written, Ordering::Relaxed) + written;
        // One request at a time: it stays pending until the background sync is done, so a slow
        // sync cannot queue up a request per commit.
        if unsynced >= WAL_BYTES_PER_SYNC
            && self
                .background_sync_pending
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.background_sync_requested
                .store(true, Ordering::Release);
        }
        if group.iter().any(|m| m.sync) {
            writer.sync().map_err(fail)?;
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            self.synced_seqno
                .fetch_max(writer.last_seqno(), Ordering::AcqRel);
        }
        if writer.len() >= self.segment_size_bytes {
            let next_id = wal.next_segment_id;
            if let Some(old) = wal.writer.take() {
                let closed = (old.segment_id(), old.last_seqno());
                match old.rotate(next_id) {
                    Ok(new) => {
                        wal.writer = Some(new);
                        wal.closed.push(closed);
                        wal.next_segment_id += 1;
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        Ok(())
    }

    /// Makes every commit so far durable (syncs the WAL segment).
    ///
    /// # Errors
    /// The sync's I/O error, which poisons the pipeline.
    pub fn sync(&self) -> Result<()> {
        self.check_poisoned()?;
        let mut wal = lock(&self.wal);
        if let Some(writer) = wal.writer.as_mut() {
            let last = writer.last_seqno();
            if let Err(e) = writer.sync() {
                self.poison(format!("WAL sync failed: {e}"));
                return Err(e);
            }
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            self.synced_seqno.fetch_max(last, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Makes every WAL record with a seqno at or below `seqno` durable, syncing only if needed.
    /// Closed segments were synced when they were rotated, so syncing the current one suffices.
    ///
    /// A dump calls this before it logs `Dumped`: otherwise one keyspace could become durable
    /// up to a seqno while another keyspace's writes below it sit in an unsynced WAL, and a
    /// power loss would leave a state that is no prefix of the commit order.
    ///
    /// # Errors
    /// The sync's I/O error, which poisons the pipeline.
    pub fn sync_through(&self, seqno: u64) -> Result<()> {
        self.check_poisoned()?;
        if self.mode == WalMode::None || self.synced_seqno.load(Ordering::Acquire) >= seqno {
            return Ok(());
        }
        // Sync through a second handle, outside the WAL lock: an fdatasync of a segment written
        // without syncs can take hundreds of milliseconds, and committers must not wait for it
        // (fsync is per file, so any handle makes the segment's data durable). A segment rotated
        // meanwhile was synced by the rotation.
        let (path, last) = {
            let wal = lock(&self.wal);
            match wal.writer.as_ref() {
                Some(writer) => (writer.path().to_path_buf(), writer.last_seqno()),
                None => return Ok(()),
            }
        };
        let result = self
            .fs
            .open_append(&path)
            .and_then(|mut handle| handle.sync_data());
        if let Err(e) = result {
            self.poison(format!("WAL sync of {} failed: {e}", path.display()));
            return Err(Error::io(&path, e));
        }
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.synced_seqno.fetch_max(last, Ordering::AcqRel);
        self.unsynced_bytes.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// True once (then false until the next request) if enough unsynced WAL bytes piled up that
    /// a background thread should call [`CommitPipeline::sync_through`].
    pub fn take_background_sync_request(&self) -> bool {
        self.mode == WalMode::Write && self.background_sync_requested.swap(false, Ordering::AcqRel)
    }

    /// The background sync of the current segment, run by a dump thread on request.
    pub fn background_sync(&self) {
        // A failure poisons the pipeline inside sync_through.
        let _ = self.sync_through(u64::MAX);
        self.background_sync_pending.store(false, Ordering::Release);
    }
}
