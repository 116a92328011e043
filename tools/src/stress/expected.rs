//! The expected-state file: what the database must hold, kept crash-proof across process kills.
//!
//! A process kill loses nothing the process handed to the kernel, so every change here is one
//! `pwrite` into the page cache, made in an order that leaves a readable state at every point
//! (the file need not survive an OS crash, and is never synced). Each change of a key state is
//! one aligned 8-byte write, which a kill cannot tear. An in-memory mirror of the key slots lets
//! every thread read every key's state without a system call.
//!
//! # Layout (all integers `u64` little-endian)
//!
//! ```text
//! 0       header (4 KiB): magic "STRSTRS1", format version 1, keys, last WAL mode, clean flag,
//!                         start-ups
//! 4096    64 batch records of 512 bytes, one per worker thread:
//!           0  status: 0 idle, 1 committing, 2 acknowledged
//!           8  count (1..=16)
//!           16 count x (key, old state, new state)
//! 36864   (keys + counters) x 16-byte slots: current state, pending state (0: no write in
//!         flight); the slots of counter `c` follow the keys' at index `keys + c`, and hold the
//!         counter's total (and the total after the upsert in flight) instead of a key state
//! ```
//!
//! # Protocols
//!
//! One key (put, delete): `pending = new`; write; `current = new` (from here the verifier
//! knows the write was acknowledged: `current == pending`); `pending = 0`.
//!
//! A batch: the batch record (keys with old and new states), then its status 1, then `pending =
//! new` on each key; commit; status 2 (acknowledged: all new); each key `current = new`,
//! `pending = 0`; status 0. The verifier resolves a non-idle record as a whole before looking at
//! single keys: all keys old or all new (status 1), all new (status 2).
//!
//! A transaction is recorded as a batch. One that `Db::transact` gives up on (a conflict after
//! every retry) wrote nothing: its pending marks are cleared, then its record
//! ([`ExpectedState::abort_batch`]).
//!
//! An upsert of a counter follows the one-key protocol with totals: `pending = total + delta`;
//! upsert; `current = total + delta`; `pending = 0`. Deltas are positive, so a pending total is
//! never 0 and a total of 0 means "never upserted" (the key is absent).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use strata::WalMode;

use super::model::{counter_keys, KeyState};

const MAGIC: &[u8; 8] = b"STRSTRS1";
const VERSION: u64 = 2;
const HEADER_BYTES: u64 = 4096;
/// Worker threads a file has batch records for.
pub const MAX_THREADS: usize = 64;
/// Keys a batch writes at most.
pub const MAX_BATCH: usize = 16;
const RECORD_BYTES: u64 = 512;
const SLOTS_OFFSET: u64 = HEADER_BYTES + MAX_THREADS as u64 * RECORD_BYTES;
const SLOT_BYTES: u64 = 16;

const H_KEYS: u64 = 16;
const H_WAL_MODE: u64 = 24;
const H_CLEAN: u64 = 32;
const H_STARTS: u64 = 40;

/// Status of a batch record that is not idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    /// Being committed: after a crash, all its keys are old or all are new.
    Committing,
    /// The commit returned: all its keys are new.
    Acknowledged,
}

/// One key of a batch record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchKey {
    /// The key index.
    pub key: u64,
    /// Its state before the batch.
    pub old: KeyState,
    /// Its state after the batch.
    pub new: KeyState,
}

/// An error of the expected-state file.
#[derive(Debug)]
pub struct StateError(pub String);

impl StateError {
    /// True if the file was made for other flags (a usage error, not damage).
    pub fn is_mismatch(&self) -> bool {
        self.0.contains("was made for")
    }
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The open expected-state file and its in-memory mirror. `Sync`: threads write disjoint keys
/// and their own batch record.
pub struct ExpectedState {
    path: PathBuf,
    file: File,
    keys: u64,
    counters: u64,
    current: Vec<AtomicU64>,
    pending: Vec<AtomicU64>,
}

fn wal_mode_code(mode: Option<WalMode>) -> u64 {
    match mode {
        None => 0,
        Some(WalMode::None) => 1,
        Some(WalMode::Write) => 2,
        Some(WalMode::Fsync) => 3,
    }
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

impl ExpectedState {
    /// Opens the file at `path`, or creates it for `keys` keys (all never written) if it does
    /// not exist. Returns the state and whether it was created.
    ///
    /// # Errors
    /// I/O errors; a file that is not an expected-state file, or was made for another number
    /// of keys.
    pub fn open_or_create(path: &Path, keys: u64) -> Result<(ExpectedState, bool), StateError> {
        let io =
            |what: &str, e: std::io::Error| StateError(format!("{what} {}: {e}", path.display()));
        let created = !path.exists();
        if created {
            // Written in full under a temporary name, then renamed: a kill while creating leaves
            // no half-made file that would later be taken for a real one.
            let tmp = path.with_extension("creating");
            let file = File::create(&tmp).map_err(|e| io("creating", e))?;
            let mut header = vec![0u8; HEADER_BYTES as usize];
            header[..8].copy_from_slice(MAGIC);
            header[8..16].copy_from_slice(&VERSION.to_le_bytes());
            header[16..24].copy_from_slice(&keys.to_le_bytes());
            header[40..48].copy_from_slice(&0u64.to_le_bytes());
            file.write_all_at(&header, 0)
                .map_err(|e| io("writing", e))?;
            file.set_len(SLOTS_OFFSET + (keys + counter_keys(keys)) * SLOT_BYTES)
                .map_err(|e| io("sizing", e))?;
            drop(file);
            std::fs::rename(&tmp, path).map_err(|e| io("renaming to", e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("opening", e))?;
        let mut header = vec![0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| io("reading the header of", e))?;
        if &header[..8] != MAGIC || read_u64(&header, 8) != VERSION {
            return Err(StateError(format!(
                "{} is not a strata stress expected-state file (version {VERSION})",
                path.display()
            )));
        }
        let file_keys = read_u64(&header, H_KEYS as usize);
        if file_keys != keys {
            return Err(StateError(format!(
                "{} was made for --keys {file_keys}, not {keys}",
                path.display()
            )));
        }
        let counters = counter_keys(keys);
        let mut slots = vec![0u8; ((keys + counters) * SLOT_BYTES) as usize];
        file.read_exact_at(&mut slots, SLOTS_OFFSET)
            .map_err(|e| io("reading the key slots of", e))?;
        let current = (0..(keys + counters) as usize)
            .map(|k| AtomicU64::new(read_u64(&slots, k * 16)))
            .collect();
        let pending = (0..(keys + counters) as usize)
            .map(|k| AtomicU64::new(read_u64(&slots, k * 16 + 8)))
            .collect();
        let state = ExpectedState {
            path: path.to_path_buf(),
            file,
            keys,
            counters,
            current,
            pending,
        };
        Ok((state, created))
    }

    fn write(&self, offset: u64, bytes: &[u8]) -> Result<(), StateError> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| StateError(format!("writing {}: {e}", self.path.display())))
    }

    fn read_header_word(&self, offset: u64) -> Result<u64, StateError> {
        let mut word = [0u8; 8];
        self.file
            .read_exact_at(&mut word, offset)
            .map_err(|e| StateError(format!("reading {}: {e}", self.path.display())))?;
        Ok(u64::from_le_bytes(word))
    }

    /// Keys the file holds (key indexes `0..keys`).
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Counters the file holds: slot indexes `keys..keys + counters`.
    pub fn counters(&self) -> u64 {
        self.counters
    }

    /// Key and counter slots together.
    pub fn slots(&self) -> u64 {
        self.keys + self.counters
    }

    /// The WAL mode of the last run that wrote (None: no run wrote yet), and whether it closed
    /// the database cleanly.
    pub fn last_run(&self) -> Result<(Option<WalMode>, bool), StateError> {
        let mode = match self.read_header_word(H_WAL_MODE)? {
            1 => Some(WalMode::None),
            2 => Some(WalMode::Write),
            3 => Some(WalMode::Fsync),
            _ => None,
        };
        Ok((mode, self.read_header_word(H_CLEAN)? == 1))
    }

    /// Records that a run in `mode` is about to write (not clean until [`Self::mark_clean`]).
    pub fn mark_running(&self, mode: WalMode) -> Result<(), StateError> {
        self.write(H_CLEAN, &0u64.to_le_bytes())?;
        self.write(H_WAL_MODE, &wal_mode_code(Some(mode)).to_le_bytes())
    }

    /// Records that the run closed the database cleanly: everything is in runs.
    pub fn mark_clean(&self) -> Result<(), StateError> {
        self.write(H_CLEAN, &1u64.to_le_bytes())
    }

    /// Counts a start-up; returns how many there were, this one included.
    pub fn count_start(&self) -> Result<u64, StateError> {
        let starts = self.read_header_word(H_STARTS)? + 1;
        self.write(H_STARTS, &starts.to_le_bytes())?;
        Ok(starts)
    }

    /// The acknowledged state of `key`.
    pub fn current(&self, key: u64) -> KeyState {
        KeyState(self.current[key as usize].load(Ordering::SeqCst))
    }

    /// The state of the write in flight on `key`, if any.
    pub fn pending(&self, key: u64) -> Option<KeyState> {
        let p = self.pending[key as usize].load(Ordering::SeqCst);
        (p != 0).then_some(KeyState(p))
    }

    fn slot_offset(key: u64) -> u64 {
        SLOTS_OFFSET + key * SLOT_BYTES
    }

    fn set_current(&self, key: u64, state: KeyState) -> Result<(), StateError> {
        self.current[key as usize].store(state.0, Ordering::SeqCst);
        self.write(Self::slot_offset(key), &state.0.to_le_bytes())
    }

    fn set_pending(&self, key: u64, state: Option<KeyState>) -> Result<(), StateError> {
        let word = state.map_or(0, |s| s.0);
        // The file first when setting (a write must never start before it is on record), the
        // mirror first when clearing (readers must not think a settled key is still pending
        // for longer than it is; either order is safe for them).
        if state.is_some() {
            self.write(Self::slot_offset(key) + 8, &word.to_le_bytes())?;
            self.pending[key as usize].store(word, Ordering::SeqCst);
            Ok(())
        } else {
            self.pending[key as usize].store(word, Ordering::SeqCst);
            self.write(Self::slot_offset(key) + 8, &word.to_le_bytes())
        }
    }

    /// Before writing `new` to `key`: marks it pending.
    pub fn begin_write(&self, key: u64, new: KeyState) -> Result<(), StateError> {
        self.set_pending(key, Some(new))
    }

    /// After the write of `new` to `key` was acknowledged.
    pub fn ack_write(&self, key: u64, new: KeyState) -> Result<(), StateError> {
        self.set_current(key, new)?;
        self.set_pending(key, None)
    }

    /// Settles `key` to `state` after verification found it (clears any pending mark).
    pub fn settle(&self, key: u64, state: KeyState) -> Result<(), StateError> {
        if self.current(key) != state {
            self.set_current(key, state)?;
        }
        if self.pending(key).is_some() {
            self.set_pending(key, None)?;
        }
        Ok(())
    }

    fn record_offset(thread: usize) -> u64 {
        HEADER_BYTES + thread as u64 * RECORD_BYTES
    }

    /// Before committing a batch of thread `thread`: records it and marks its keys pending.
    ///
    /// # Panics
    /// If `thread >= MAX_THREADS` or the batch is empty or above [`MAX_BATCH`] keys (the
    /// workload never builds such batches).
    pub fn begin_batch(&self, thread: usize, keys: &[BatchKey]) -> Result<(), StateError> {
        assert!(thread < MAX_THREADS && !keys.is_empty() && keys.len() <= MAX_BATCH);
        let base = Self::record_offset(thread);
        let mut body = Vec::with_capacity(8 + keys.len() * 24);
        body.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for k in keys {
            for word in [k.key, k.old.0, k.new.0] {
                body.extend_from_slice(&word.to_le_bytes());
            }
        }
        self.write(base + 8, &body)?;
        self.write(base, &1u64.to_le_bytes())?;
        for k in keys {
            self.set_pending(k.key, Some(k.new))?;
        }
        Ok(())
    }

    /// After the batch's commit returned: every key takes its new state.
    pub fn ack_batch(&self, thread: usize, keys: &[BatchKey]) -> Result<(), StateError> {
        let base = Self::record_offset(thread);
        self.write(base, &2u64.to_le_bytes())?;
        for k in keys {
            self.ack_write(k.key, k.new)?;
        }
        self.clear_batch(thread)
    }

    /// After `Db::transact` gave up on a batch recorded by [`Self::begin_batch`]: nothing was
    /// written, so the keys keep their states.
    pub fn abort_batch(&self, thread: usize, keys: &[BatchKey]) -> Result<(), StateError> {
        for k in keys {
            self.set_pending(k.key, None)?;
        }
        self.clear_batch(thread)
    }

    /// Marks thread `thread`'s batch record idle.
    pub fn clear_batch(&self, thread: usize) -> Result<(), StateError> {
        self.write(Self::record_offset(thread), &0u64.to_le_bytes())
    }

    /// Every batch record that is not idle: (thread, status, keys).
    ///
    /// # Errors
    /// I/O errors; a record with an unknown status, a bad count or a key out of range.
    pub fn open_batches(&self) -> Result<Vec<(usize, BatchStatus, Vec<BatchKey>)>, StateError> {
        let mut records = vec![0u8; MAX_THREADS * RECORD_BYTES as usize];
        self.file
            .read_exact_at(&mut records, HEADER_BYTES)
            .map_err(|e| StateError(format!("reading {}: {e}", self.path.display())))?;
        let mut open = Vec::new();
        for thread in 0..MAX_THREADS {
            let at = thread * RECORD_BYTES as usize;
            let status = match read_u64(&records, at) {
                0 => continue,
                1 => BatchStatus::Committing,
                2 => BatchStatus::Acknowledged,
                other => {
                    return Err(StateError(format!(
                        "batch record {thread} of {} has status {other}",
                        self.path.display()
                    )))
                }
            };
            let count = read_u64(&records, at + 8) as usize;
            if count == 0 || count > MAX_BATCH {
                return Err(StateError(format!(
                    "batch record {thread} of {} has {count} keys",
                    self.path.display()
                )));
            }
            let mut keys = Vec::with_capacity(count);
            for i in 0..count {
                let e = at + 16 + i * 24;
                let key = read_u64(&records, e);
                if key >= self.slots() {
                    return Err(StateError(format!(
                        "batch record {thread} of {} names slot {key} of {}",
                        self.path.display(),
                        self.slots()
                    )));
                }
                keys.push(BatchKey {
                    key,
                    old: KeyState(read_u64(&records, e + 8)),
                    new: KeyState(read_u64(&records, e + 16)),
                });
            }
            open.push((thread, status, keys));
        }
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_batches_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("expected");
        let (state, created) = ExpectedState::open_or_create(&path, 100).unwrap();
        assert!(created);
        assert_eq!(state.last_run().unwrap(), (None, false));
        state.mark_running(WalMode::Fsync).unwrap();
        let put = KeyState::NEW.next(true);
        state.begin_write(3, put).unwrap();
        state.ack_write(3, put).unwrap();
        state.begin_write(4, put).unwrap();
        let batch = [
            BatchKey {
                key: 7,
                old: KeyState::NEW,
                new: put,
            },
            BatchKey {
                key: 99,
                old: KeyState::NEW,
                new: put.next(false),
            },
        ];
        state.begin_batch(5, &batch).unwrap();
        drop(state);

        let (state, created) = ExpectedState::open_or_create(&path, 100).unwrap();
        assert!(!created);
        assert_eq!(state.last_run().unwrap(), (Some(WalMode::Fsync), false));
        assert_eq!(state.current(3), put);
        assert_eq!(state.pending(3), None);
        assert_eq!(state.pending(4), Some(put));
        assert_eq!(state.pending(99), Some(put.next(false)));
        let open = state.open_batches().unwrap();
        assert_eq!(open, vec![(5, BatchStatus::Committing, batch.to_vec())]);
        state.ack_batch(5, &batch).unwrap();
        assert!(state.open_batches().unwrap().is_empty());
        assert_eq!(state.current(99), put.next(false));
        // A transaction given up on: the keys keep their states, the record is idle.
        let txn = [BatchKey {
            key: 99,
            old: put.next(false),
            new: put.next(false).next(true),
        }];
        state.begin_batch(5, &txn).unwrap();
        state.abort_batch(5, &txn).unwrap();
        assert!(state.open_batches().unwrap().is_empty());
        assert_eq!(state.pending(99), None);
        assert_eq!(state.current(99), put.next(false));
        // Counter slots follow the keys' (100 keys: 12 counters, slots 100..112).
        assert_eq!((state.counters(), state.slots()), (12, 112));
        state.begin_write(111, KeyState(7)).unwrap();
        state.ack_write(111, KeyState(7)).unwrap();
        state.mark_clean().unwrap();
        assert_eq!(state.count_start().unwrap(), 1);
        drop(state);

        let (state, _) = ExpectedState::open_or_create(&path, 100).unwrap();
        assert_eq!(state.last_run().unwrap(), (Some(WalMode::Fsync), true));
        assert_eq!(state.current(7), put);
        assert_eq!(state.current(111), KeyState(7));
        assert!(
            ExpectedState::open_or_create(&path, 101).is_err(),
            "another key count"
        );
    }
}
