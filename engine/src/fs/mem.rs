//! An in-memory file system for tests, with crash simulation and fault injection.
//!
//! The model, crash and fault semantics are documented on [`MemFs`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use super::{DirLock, Fs, ReadAt, WritableFile};

/// The error an injected fault produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// An I/O error: `io::ErrorKind::Other` with the message "injected EIO". Nothing is applied.
    Eio,
    /// The disk is full: `io::ErrorKind::StorageFull`. Nothing is applied.
    NoSpace,
    /// On a `WritableFile::write`: the first half of the buffer (rounded down) is appended, then
    /// an error (`Other`, "injected short write") is returned: a torn write. On any other
    /// operation it behaves like [`FaultKind::Eio`].
    ShortWrite,
    /// On `WritableFile::sync_data`, [`Fs::sync_dir`] and [`Fs::truncate`]: an error (`Other`,
    /// "injected sync failure") and nothing becomes durable (a truncate does not cut either). On
    /// any other operation it behaves like [`FaultKind::Eio`].
    SyncFailure,
}

/// What kind of operation a fault hits, which decides how some fault kinds behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpClass {
    Write,
    Sync,
    Other,
}

impl FaultKind {
    fn error(self, class: OpClass) -> io::Error {
        match (self, class) {
            (FaultKind::NoSpace, _) => {
                io::Error::new(io::ErrorKind::StorageFull, "injected ENOSPC")
            }
            (FaultKind::ShortWrite, OpClass::Write) => io::Error::other("injected short write"),
            (FaultKind::SyncFailure, OpClass::Sync) => io::Error::other("injected sync failure"),
            _ => io::Error::other("injected EIO"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    at: u64,
    kind: FaultKind,
    persistent: bool,
}

/// One operation as recorded by [`MemFs::start_trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedOp {
    /// The operation's number (see [`MemFs::op_count`]).
    pub index: u64,
    /// The [`Fs`] method (`"create_new"`, `"rename"`, ...), or `"write"` / `"sync_data"` for a
    /// [`WritableFile`].
    pub name: &'static str,
    /// The path it was called with (normalized; for `rename`, the source). For a
    /// `WritableFile`, the path the file was opened or created at.
    pub path: PathBuf,
    /// The fault injected into it, if any.
    pub fault: Option<FaultKind>,
    /// The name of the thread that called it (empty for an unnamed thread), to tell apart
    /// operations of concurrent background work.
    pub thread: String,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    /// The current bytes, durable or not.
    data: Vec<u8>,
    /// The file's length after a crash that keeps none of the unsynced writes (as of the last
    /// sync). Always `<= data.len()`.
    durable_len: usize,
    /// What unsynced writes overwrote below `durable_len`, oldest first: an offset and the bytes
    /// there before the write. Undone newest first, they restore the durable bytes.
    undo: Vec<(usize, Vec<u8>)>,
    /// The unsynced writes in order, as (offset, length): a torn crash keeps a prefix of them.
    pending: Vec<(usize, usize)>,
    /// The length [`WritableFile::preallocate`] grew the file to since the last sync (0 if it
    /// did not): a torn crash may keep it, as a journal commit before the crash would.
    preallocated_len: usize,
    /// Live `WritableFile` handles on this inode (keeps an unlinked inode alive).
    open_handles: usize,
}

impl Inode {
    /// Writes `bytes` at `offset` (zero-filling a gap past the end), remembering what a crash
    /// must restore.
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        if offset > self.data.len() {
            self.data.resize(offset, 0);
        }
        let end = offset + bytes.len();
        if offset < self.durable_len {
            let durable_end = end.min(self.durable_len);
            self.undo
                .push((offset, self.data[offset..durable_end].to_vec()));
        }
        let overwritten = end.min(self.data.len()) - offset;
        self.data[offset..offset + overwritten].copy_from_slice(&bytes[..overwritten]);
        self.data.extend_from_slice(&bytes[overwritten..]);
        if !bytes.is_empty() {
            self.pending.push((offset, bytes.len()));
        }
    }

    /// Everything current becomes durable.
    fn sync(&mut self) {
        self.durable_len = self.data.len();
        self.undo.clear();
        self.pending.clear();
        self.preallocated_len = 0;
    }

    fn preallocate(&mut self, len: usize) {
        if len > self.data.len() {
            self.data.resize(len, 0);
            self.preallocated_len = self.preallocated_len.max(len);
        }
    }

    /// `ftruncate` through a handle: a cut is durable at once (undo and pending writes past it
    /// are dropped); an extension is a preallocation.
    fn set_len(&mut self, len: usize) {
        if len >= self.data.len() {
            self.preallocate(len);
            return;
        }
        self.data.truncate(len);
        self.durable_len = self.durable_len.min(len);
        self.undo.retain_mut(|(offset, old)| {
            old.truncate(len.saturating_sub(*offset));
            *offset < len
        });
        self.pending.retain_mut(|(offset, n)| {
            *n = (*n).min(len.saturating_sub(*offset));
            *offset < len
        });
        self.preallocated_len = self.preallocated_len.min(len);
    }

    /// Applies `f` to the byte at `offset` in the current contents and in the durable ones
    /// (media damage). The caller checked `offset < data.len()`.
    fn damage(&mut self, offset: usize, f: impl Fn(&mut u8)) {
        if let Some(byte) = self.data.get_mut(offset) {
            f(byte);
        }
        for (start, old) in &mut self.undo {
            if let Some(byte) = offset.checked_sub(*start).and_then(|i| old.get_mut(i)) {
                f(byte);
            }
        }
    }

    /// Power loss: the durable contents, plus the first `keep` bytes of the unsynced writes,
    /// plus (if `keep_preallocation`) the length an unsynced preallocation set, zero-filled.
    fn crash(&mut self, keep: usize, keep_preallocation: bool) {
        let mut kept = Vec::new();
        let mut budget = keep;
        for &(offset, len) in &self.pending {
            if budget == 0 {
                break;
            }
            let n = len.min(budget);
            budget -= n;
            // The bytes as they read now: strata never overwrites bytes it has not synced, so
            // they are this write's.
            if let Some(bytes) = self.data.get(offset..offset + n) {
                kept.push((offset, bytes.to_vec()));
            }
        }
        for (offset, old) in self.undo.drain(..).rev() {
            if let Some(dst) = self.data.get_mut(offset..offset + old.len()) {
                dst.copy_from_slice(&old);
            }
        }
        let mut len = self.durable_len;
        for (offset, bytes) in &kept {
            len = len.max(offset + bytes.len());
        }
        if keep_preallocation {
            len = len.max(self.preallocated_len);
        }
        self.data.truncate(self.durable_len);
        self.data.resize(len, 0);
        for (offset, bytes) in kept {
            self.data[offset..offset + bytes.len()].copy_from_slice(&bytes);
        }
        self.sync();
        self.open_handles = 0;
    }
}

type Ino = u64;

#[derive(Debug, Default)]
struct State {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    /// The namespace every operation sees.
    current: BTreeMap<PathBuf, Ino>,
    /// The namespace a crash leaves behind.
    durable: BTreeMap<PathBuf, Ino>,
    /// Directories (not crash-simulated), excluding the implicit roots.
    dirs: BTreeSet<PathBuf>,
    /// Held locks: path to the token of the `MemLock` holding it.
    locks: HashMap<PathBuf, u64>,
    next_lock_token: u64,
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    /// Operations so far (the index of the next one).
    ops: u64,
    faults: Vec<Fault>,
    /// Operations recorded since [`MemFs::start_trace`], if tracing.
    trace: Option<Vec<TracedOp>>,
}

impl State {
    /// Counts operation `name` on `path` and returns the fault it must suffer, if any (the
    /// latest matching `fail_at` wins).
    fn tick(&mut self, name: &'static str, path: &Path) -> Option<FaultKind> {
        let op = self.ops;
        self.ops += 1;
        let fault = self
            .faults
            .iter()
            .rev()
            .find(|f| f.at == op || (f.persistent && op >= f.at))
            .map(|f| f.kind);
        if let Some(trace) = self.trace.as_mut() {
            trace.push(TracedOp {
                index: op,
                name,
                path: path.to_path_buf(),
                fault,
                thread: std::thread::current()
                    .name()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        fault
    }

    /// Counts operation `name` on `path` and fails it if a fault is scheduled.
    fn begin(&mut self, class: OpClass, name: &'static str, path: &Path) -> io::Result<()> {
        match self.tick(name, path) {
            Some(kind) => Err(kind.error(class)),
            None => Ok(()),
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        is_root(path) || self.dirs.contains(path)
    }

    /// Checks that `path`'s parent is an existing directory.
    fn check_parent(&self, path: &Path) -> io::Result<()> {
        let Some(parent) = path.parent() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file path", path.display()),
            ));
        };
        if self.is_dir(parent) {
            return Ok(());
        }
        // An ancestor that is a file makes the path invalid rather than missing.
        if parent.ancestors().any(|a| self.current.contains_key(a)) {
            return Err(not_a_directory(parent));
        }
        Err(not_found(parent))
    }

    /// The inode of the current file at `path`, or the error the OS would give.
    fn file(&self, path: &Path) -> io::Result<Ino> {
        match self.current.get(path) {
            Some(&ino) => Ok(ino),
            None if self.is_dir(path) => Err(is_a_directory(path)),
            None => Err(not_found(path)),
        }
    }

    fn inode(&self, ino: Ino) -> io::Result<&Inode> {
        self.inodes.get(&ino).ok_or_else(missing_inode)
    }

    fn inode_mut(&mut self, ino: Ino) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(missing_inode)
    }

    fn new_inode(&mut self) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        ino
    }

    /// Frees `ino` if no namespace refers to it and no handle has it open.
    fn maybe_free(&mut self, ino: Ino) {
        let open = self.inodes.get(&ino).is_some_and(|i| i.open_handles > 0);
        if !open
            && !self.current.values().any(|&i| i == ino)
            && !self.durable.values().any(|&i| i == ino)
        {
            self.inodes.remove(&ino);
        }
    }

    /// Power loss. `tear(ino, unsynced_len)` says how many bytes of each inode's unsynced writes
    /// survive (a prefix, in write order) and whether an unsynced preallocation does.
    fn crash(&mut self, mut tear: impl FnMut(Ino, usize) -> (usize, bool)) {
        self.current = self.durable.clone();
        let live: BTreeSet<Ino> = self.durable.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        for (&ino, inode) in &mut self.inodes {
            let unsynced = inode.pending.iter().map(|&(_, n)| n).sum();
            let (keep, keep_preallocation) = tear(ino, unsynced);
            inode.crash(keep.min(unsynced), keep_preallocation);
        }
        self.locks.clear();
        self.generation += 1;
    }
}

fn is_root(path: &Path) -> bool {
    path.parent().is_none()
}

/// Drops `.` components and redundant separators so equal paths compare equal.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn is_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("{}: is a directory", path.display()),
    )
}

fn not_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{}: not a directory", path.display()),
    )
}

fn already_exists(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: file exists", path.display()),
    )
}

fn missing_inode() -> io::Error {
    io::Error::other("MemFs: directory entry without an inode (internal error)")
}

fn dead_handle() -> io::Error {
    io::Error::other("MemFs: file handle invalidated by a simulated crash")
}

/// SplitMix64: a tiny, good-enough deterministic mixer for torn-write lengths.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// An in-memory [`Fs`] for tests that remembers what is durable, so it can simulate crashes, and
/// can fail chosen operations.
///
/// # Model
///
/// File contents live in *inodes*, separate from directory entries. Each inode has its current
/// bytes and its *durable* bytes, what a power loss leaves; in between are the unsynced writes,
/// in order. A [`WritableFile`] from [`Fs::create_new`] writes at its own position (overwriting,
/// or growing the file), one from [`Fs::open_append`] at the inode's end.
/// [`WritableFile::sync_data`] makes the whole current content of the inode durable, through any
/// handle. [`WritableFile::preallocate`] grows the current content with zeros (durable at the
/// next sync); [`WritableFile::set_len`] does the same, or cuts the file, current and durable
/// contents at once. [`Fs::truncate`] cuts (or zero-extends) the data and makes all of it
/// durable, like `set_len` followed by `sync_all`.
///
/// So a preallocated range reads as zeros after a crash unless a synced write filled it, and an
/// unsynced write into it (or over any durable bytes) is undone by a crash.
///
/// Directory entries (path to inode) exist in two namespaces: the *current* one, which every
/// operation sees, and the *durable* one, which is what a crash leaves behind. [`Fs::create_new`],
/// [`Fs::rename`] and [`Fs::remove_file`] change only the current namespace; [`Fs::sync_dir`]
/// copies the current state of the entries directly inside that directory (including removals
/// and renames away) into the durable namespace. A rename between two directories is therefore
/// durable in the target only after syncing the target, and the old name disappears durably only
/// after syncing the source (syncing just the target leaves both names durable, like a hard
/// link).
///
/// Directories themselves are not crash-simulated: [`Fs::create_dir_all`] records them and they
/// survive every crash. The relative root (`""` or `.`) and `/` always exist. A file's parent
/// directory must exist, as on a real file system.
///
/// Paths are compared component-wise after dropping `.` components (so `./db/x`, `db/x` and
/// `db//x/` are the same path); `..` is not resolved. Relative and absolute paths are distinct.
///
/// # Crashes
///
/// [`MemFs::crash`] simulates power loss; [`MemFs::crash_tearing_last_write`] also keeps a
/// pseudo-random prefix of every file's unsynced writes, and maybe an unsynced preallocation.
/// After a crash, every [`WritableFile`] opened before it is dead (writes and syncs fail) and
/// every lock is released.
///
/// # Fault injection
///
/// Every [`Fs`] method call and every [`WritableFile`] `write` and `sync_data` call is one
/// *operation*, numbered from 0 since [`MemFs::new`] (a global counter shared by clones, not
/// reset by crashes; failed operations count too). [`MemFs::fail_at`] makes a chosen operation
/// fail (and optionally every later one); [`MemFs::op_count`] reads the counter, so
/// `fs.fail_at(fs.op_count() + n, ..)` fails the `n`-th operation from now (0-based).
/// `WritableFile::len`, `flush`, `preallocate` and `set_len` and dropping handles or locks are
/// not operations: strata treats preallocation as advisory and trims a preallocated tail only
/// where it cannot report an error (closing a WAL segment), absorbing both failures, so
/// injecting faults there would test nothing but that (`wal/tests.rs` does, with a failing
/// file of its own).
/// [`Fs::exists`] cannot return an error: a fault on it makes it return `false` (as `Path::exists`
/// does for I/O errors). [`FaultKind`] describes what each kind of fault does.
///
/// # Sharing
///
/// Clones share the same file system: a test keeps one handle to crash it or inject faults while
/// the database holds another. Independent `MemFs::new()` instances share nothing.
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `try_lock`: formatting must not deadlock if the caller holds the state (it never
        // should, but a Debug impl is a bad place to find out).
        let st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return f.debug_struct("MemFs").finish_non_exhaustive();
            }
        };
        f.debug_struct("MemFs")
            .field("files", &st.current.len())
            .field("dirs", &st.dirs.len())
            .field("ops", &st.ops)
            .field("generation", &st.generation)
            .finish_non_exhaustive()
    }
}

impl MemFs {
    /// An empty file system: only the roots (`/` and the relative root `.`) exist; no faults are
    /// scheduled and the operation counter is 0.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Simulates power loss: the durable namespace becomes the current one, every file is cut to
    /// its durable length, all locks are released and every `WritableFile` opened before the
    /// crash becomes dead (its writes and syncs fail; dropping it is harmless). Directories,
    /// the operation counter and scheduled faults are kept. Not an operation (never fails).
    pub fn crash(&self) {
        self.lock_state().crash(|_, _| (0, false));
    }

    /// Like [`MemFs::crash`], but every surviving file with unsynced writes keeps a
    /// pseudo-random prefix of them, in write order (from none to all of it): a torn write. A
    /// file preallocated since its last sync keeps the preallocated length (zero-filled past
    /// what it keeps) or not, pseudo-randomly. The outcome is a deterministic function of `seed`
    /// and the sequence of operations since [`MemFs::new`].
    pub fn crash_tearing_last_write(&self, seed: u64) {
        self.lock_state().crash(|ino, unsynced| {
            let r = splitmix64(seed ^ splitmix64(ino));
            // `unsynced + 1` cannot overflow: `unsynced` is a sum of buffer lengths.
            let keep = (r % (unsynced as u64 + 1)) as usize;
            (keep, splitmix64(r) & 1 == 1)
        });
    }

    /// The number of operations performed so far since [`MemFs::new`], which is also the index
    /// of the next operation (see [Fault injection](MemFs#fault-injection) for what counts).
    pub fn op_count(&self) -> u64 {
        self.lock_state().ops
    }

    /// Makes operation number `op` (0-based, absolute since [`MemFs::new`]; see
    /// [`MemFs::op_count`]) fail with `kind`, and with `persistent` also every operation after it.
    /// An index already passed never fires unless `persistent`, in which case every following
    /// operation fails. Adds to earlier `fail_at` calls; where several apply, the latest wins.
    /// Faults survive crashes; remove them with [`MemFs::clear_faults`].
    pub fn fail_at(&self, op: u64, kind: FaultKind, persistent: bool) {
        self.lock_state().faults.push(Fault {
            at: op,
            kind,
            persistent,
        });
    }

    /// Removes every scheduled fault.
    pub fn clear_faults(&self) {
        self.lock_state().faults.clear();
    }

    /// Starts recording every operation (name, path, injected fault), dropping anything recorded
    /// before; [`MemFs::trace`] returns the record. Tests use it to tell which operation a fault
    /// hit when background threads make the numbering vary from run to run. Not an operation.
    pub fn start_trace(&self) {
        self.lock_state().trace = Some(Vec::new());
    }

    /// The operations recorded since [`MemFs::start_trace`], in order (empty if not tracing).
    /// Recording goes on. Not an operation.
    pub fn trace(&self) -> Vec<TracedOp> {
        self.lock_state().trace.clone().unwrap_or_default()
    }

    /// Stops recording operations and drops the record. Not an operation.
    pub fn stop_trace(&self) {
        self.lock_state().trace = None;
    }

    /// XORs the byte at `offset` of the file at `path` with `xor_mask` (a bit flip in both the
    /// current and the durable contents, as media corruption would be). Not an operation.
    ///
    /// # Errors
    /// `NotFound` (or `IsADirectory`) if `path` is not a file, `InvalidInput` if `offset` is
    /// past the end of the file.
    pub fn corrupt(&self, path: &Path, offset: u64, xor_mask: u8) -> io::Result<()> {
        let path = normalize(path);
        let mut st = self.lock_state();
        let ino = st.file(&path)?;
        let inode = st.inode_mut(ino)?;
        let at = usize::try_from(offset)
            .ok()
            .filter(|&o| o < inode.data.len())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("offset {offset} past the end of {}", path.display()),
                )
            })?;
        inode.damage(at, |byte| *byte ^= xor_mask);
        Ok(())
    }

    /// Sets `len` bytes of the file at `path` from `offset` on to zero (cut at the end of the
    /// file), in both the current and the durable contents, as a lost or wiped sector would.
    /// Not an operation.
    ///
    /// # Errors
    /// `NotFound` (or `IsADirectory`) if `path` is not a file, `InvalidInput` if `offset` is
    /// past the end of the file.
    pub fn zero_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let path = normalize(path);
        let mut st = self.lock_state();
        let ino = st.file(&path)?;
        let inode = st.inode_mut(ino)?;
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= inode.data.len())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("offset {offset} past the end of {}", path.display()),
                )
            })?;
        let end = usize::try_from(len)
            .map_or(usize::MAX, |len| start.saturating_add(len))
            .min(inode.data.len());
        for at in start..end {
            inode.damage(at, |byte| *byte = 0);
        }
        Ok(())
    }

    /// An independent copy of this file system as it is now: files (current and durable
    /// contents and names) and directories. The copy shares nothing with `self`: no open file
    /// handle or lock carries over (every lock is free in the copy), no fault is scheduled, and
    /// data reachable only through an open handle (a removed file still being written) is not
    /// copied. The operation counter continues from this file system's value. Not an operation.
    ///
    /// Cheap enough to run a test case per copy of a pristine file system (one memcpy of every
    /// file), where rebuilding the files each time would dominate.
    pub fn fork(&self) -> MemFs {
        let st = self.lock_state();
        let named: BTreeSet<Ino> = st
            .current
            .values()
            .chain(st.durable.values())
            .copied()
            .collect();
        let inodes = st
            .inodes
            .iter()
            .filter(|(ino, _)| named.contains(ino))
            .map(|(&ino, inode)| {
                let copy = Inode {
                    open_handles: 0,
                    ..inode.clone()
                };
                (ino, copy)
            })
            .collect();
        let copy = State {
            inodes,
            next_ino: st.next_ino,
            current: st.current.clone(),
            durable: st.durable.clone(),
            dirs: st.dirs.clone(),
            locks: HashMap::new(),
            next_lock_token: st.next_lock_token,
            generation: st.generation,
            ops: st.ops,
            faults: Vec::new(),
            trace: None,
        };
        MemFs {
            state: Arc::new(Mutex::new(copy)),
        }
    }

    /// Every file in the current namespace (normalized paths), sorted. Not an operation.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock_state().current.keys().cloned().collect()
    }
}

/// A `WritableFile` on a `MemFs` inode: writes go to its position, or to the inode's end for
/// an append handle (like `O_APPEND`).
struct MemFile {
    state: Arc<Mutex<State>>,
    /// Where the file was opened, for the operation trace.
    path: PathBuf,
    ino: Ino,
    generation: u64,
    len: u64,
    append: bool,
}

impl MemFile {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the inode for [`WritableFile::preallocate`] and [`WritableFile::set_len`]:
    /// not operations (never counted or failed), refused on append handles and dead handles.
    fn resize(&self, what: &str, len: u64, f: impl FnOnce(&mut Inode, usize)) -> io::Result<()> {
        if self.append {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{what} on a file opened for appending"),
            ));
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let mut st = self.lock_state();
        if st.generation != self.generation {
            return Err(dead_handle());
        }
        f(st.inode_mut(self.ino)?, len);
        Ok(())
    }
}

impl Write for MemFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let generation = self.generation;
        let ino = self.ino;
        let mut st = self.lock_state();
        let fault = st.tick("write", &self.path);
        if st.generation != generation {
            return Err(dead_handle());
        }
        let (stored, result) = match fault {
            None => (buf.len(), Ok(buf.len())),
            Some(FaultKind::ShortWrite) => (
                buf.len() / 2,
                Err(FaultKind::ShortWrite.error(OpClass::Write)),
            ),
            Some(kind) => (0, Err(kind.error(OpClass::Write))),
        };
        let inode = st.inode_mut(ino)?;
        let offset = if self.append {
            inode.data.len()
        } else {
            usize::try_from(self.len)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?
        };
        inode.write_at(offset, &buf[..stored]);
        drop(st);
        self.len += stored as u64;
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WritableFile for MemFile {
    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.lock_state();
        let fault = st.tick("sync_data", &self.path);
        if st.generation != self.generation {
            return Err(dead_handle());
        }
        if let Some(kind) = fault {
            return Err(kind.error(OpClass::Sync));
        }
        st.inode_mut(self.ino)?.sync();
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    /// See [`WritableFile::preallocate`]. Not an operation (see [`MemFs`]).
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.resize("preallocate", len, Inode::preallocate)
    }

    /// See [`WritableFile::set_len`]. A cut is durable at once; not an operation (see
    /// [`MemFs`]).
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.resize("set_len", len, Inode::set_len)
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let generation = self.generation;
        let ino = self.ino;
        let mut st = self.lock_state();
        if st.generation != generation {
            return;
        }
        if let Some(inode) = st.inodes.get_mut(&ino) {
            inode.open_handles = inode.open_handles.saturating_sub(1);
        }
        st.maybe_free(ino);
    }
}

/// A held `MemFs` lock; dropping it releases the lock unless a crash already did.
struct MemLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    token: u64,
}

impl fmt::Debug for MemLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemLock")
            .field("path", &self.path)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl DirLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // After a crash the path may be locked by someone else: release only our own lock.
        if st.locks.get(&self.path) == Some(&self.token) {
            st.locks.remove(&self.path);
        }
    }
}

impl Fs for MemFs {
    /// See [`Fs::create_new`]. `AlreadyExists` if a file or directory is at `path`; `NotFound`
    /// if the parent directory does not exist. The new entry is durable after `sync_dir`.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "create_new", &path)?;
        if st.current.contains_key(&path) || st.is_dir(&path) {
            return Err(already_exists(&path));
        }
        st.check_parent(&path)?;
        let ino = st.new_inode();
        st.inode_mut(ino)?.open_handles += 1;
        st.current.insert(path.clone(), ino);
        Ok(Box::new(MemFile {
            state: Arc::clone(&self.state),
            path,
            ino,
            generation: st.generation,
            len: 0,
            append: false,
        }))
    }

    /// See [`Fs::open_append`]. `NotFound` if no file is at `path`.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "open_append", &path)?;
        let ino = st.file(&path)?;
        let inode = st.inode_mut(ino)?;
        inode.open_handles += 1;
        let len = inode.data.len() as u64;
        Ok(Box::new(MemFile {
            state: Arc::clone(&self.state),
            path,
            ino,
            generation: st.generation,
            len,
            append: true,
        }))
    }

    /// See [`Fs::open_read`]. Returns a snapshot of the current bytes: later writes, truncates,
    /// crashes or corruption do not show through it.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "open_read", &path)?;
        let ino = st.file(&path)?;
        Ok(Arc::new(st.inode(ino)?.data.clone()))
    }

    /// See [`Fs::read_file`]. A copy of the current bytes (durable or not).
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "read_file", &path)?;
        let ino = st.file(&path)?;
        Ok(st.inode(ino)?.data.clone())
    }

    /// See [`Fs::truncate`]. Cuts or zero-extends the file to `len` and makes all of its data
    /// durable (not its directory entry). Under [`FaultKind::SyncFailure`] nothing changes.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Sync, "truncate", &path)?;
        let ino = st.file(&path)?;
        let len = usize::try_from(len).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "truncate length too large")
        })?;
        let inode = st.inode_mut(ino)?;
        inode.data.resize(len, 0);
        inode.sync();
        Ok(())
    }

    /// See [`Fs::rename`]. Moves the inode (open handles keep writing to it) and replaces the
    /// target. `NotFound` if `from` is missing or `to`'s parent is; `IsADirectory` if `to` is a
    /// directory; `Unsupported` if `from` is a directory. Renaming a file onto itself is a no-op.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let from = normalize(from);
        let to = normalize(to);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "rename", &from)?;
        let ino = match st.file(&from) {
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "MemFs cannot rename directories",
                ))
            }
            other => other?,
        };
        if st.is_dir(&to) {
            return Err(is_a_directory(&to));
        }
        st.check_parent(&to)?;
        if from == to {
            return Ok(());
        }
        st.current.remove(&from);
        if let Some(old) = st.current.insert(to, ino) {
            st.maybe_free(old);
        }
        Ok(())
    }

    /// See [`Fs::remove_file`]. `NotFound` if missing, `IsADirectory` for a directory. Open
    /// handles keep working on the unlinked data.
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "remove_file", &path)?;
        let ino = st.file(&path)?;
        st.current.remove(&path);
        st.maybe_free(ino);
        Ok(())
    }

    /// See [`Fs::create_dir_all`]. Directories are not crash-simulated: they survive every crash.
    /// `AlreadyExists` if a file is at `path`, `NotADirectory` if a file is at an ancestor.
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "create_dir_all", &path)?;
        if st.current.contains_key(&path) {
            return Err(already_exists(&path));
        }
        if let Some(file) = path.ancestors().find(|a| st.current.contains_key(*a)) {
            return Err(not_a_directory(file));
        }
        for dir in path.ancestors().filter(|a| !is_root(a)) {
            st.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// See [`Fs::list_dir`]. Names of the current files and subdirectories directly in `path`,
    /// sorted (lock files included). `NotFound` if missing, `NotADirectory` for a file.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "list_dir", &path)?;
        if !st.is_dir(&path) {
            return Err(if st.current.contains_key(&path) {
                not_a_directory(&path)
            } else {
                not_found(&path)
            });
        }
        let mut names: Vec<String> = st
            .current
            .keys()
            .chain(st.dirs.iter())
            .filter(|p| p.parent() == Some(path.as_path()))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// See [`Fs::sync_dir`]. Copies the current entries directly in `path` (creates, renames in
    /// and out, removes) into the durable namespace. Under [`FaultKind::SyncFailure`] nothing
    /// becomes durable. `NotFound` if missing, `NotADirectory` for a file (the real file system
    /// would sync a file here; the engine never means to).
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Sync, "sync_dir", &path)?;
        if !st.is_dir(&path) {
            return Err(if st.current.contains_key(&path) {
                not_a_directory(&path)
            } else {
                not_found(&path)
            });
        }
        let in_dir = |p: &Path| p.parent() == Some(path.as_path());
        let mut dropped = Vec::new();
        let st = &mut *st;
        st.durable.retain(|p, ino| {
            let keep = !in_dir(p);
            if !keep {
                dropped.push(*ino);
            }
            keep
        });
        for (p, &ino) in &st.current {
            if in_dir(p) {
                st.durable.insert(p.clone(), ino);
            }
        }
        for ino in dropped {
            st.maybe_free(ino);
        }
        Ok(())
    }

    /// See [`Fs::file_len`]. The current length, durable or not. `NotFound` if missing,
    /// `IsADirectory` for a directory.
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "file_len", &path)?;
        let ino = st.file(&path)?;
        Ok(st.inode(ino)?.data.len() as u64)
    }

    /// See [`Fs::exists`]. True for a current file or directory. Like `Path::exists`, which turns
    /// errors into `false`, an injected fault makes it return `false`.
    fn exists(&self, path: &Path) -> bool {
        let path = normalize(path);
        let mut st = self.lock_state();
        if st.tick("exists", &path).is_some() {
            return false;
        }
        st.current.contains_key(&path) || st.is_dir(&path)
    }

    /// See [`Fs::lock`]. An exclusive lock keyed by the (normalized) path, shared by all clones
    /// of this `MemFs`: `WouldBlock` while another lock on the path is held. Creates an empty
    /// file at `path` if missing (in the current namespace only, like the real file system
    /// without a `sync_dir`). Released when the returned lock is dropped, or by a crash.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let path = normalize(path);
        let mut st = self.lock_state();
        st.begin(OpClass::Other, "lock", &path)?;
        if st.is_dir(&path) {
            return Err(is_a_directory(&path));
        }
        if !st.current.contains_key(&path) {
            st.check_parent(&path)?;
        }
        if st.locks.contains_key(&path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "locked by another process or handle",
            ));
        }
        if !st.current.contains_key(&path) {
            let ino = st.new_inode();
            st.current.insert(path.clone(), ino);
        }
        let token = st.next_lock_token;
        st.next_lock_token += 1;
        st.locks.insert(path.clone(), token);
        Ok(Box::new(MemLock {
            state: Arc::clone(&self.state),
            path,
            token,
        }))
    }
}

#[cfg(test)]
#[path = "mem_tests.rs"]
mod tests;
