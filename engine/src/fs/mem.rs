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

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    /// The prefix of `data` that survives a crash. Always `<= data.len()`.
    synced_len: usize,
    /// Live `WritableFile` handles on this inode (keeps an unlinked inode alive).
    open_handles: usize,
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

    /// Power loss. `keep_tail(ino, tail_len)` says how many unsynced bytes of each inode survive.
    fn crash(&mut self, mut keep_tail: impl FnMut(Ino, usize) -> usize) {
        self.current = self.durable.clone();
        let live: BTreeSet<Ino> = self.durable.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        for (&ino, inode) in &mut self.inodes {
            let tail = inode.data.len().saturating_sub(inode.synced_len);
            let keep = keep_tail(ino, tail).min(tail);
            inode.data.truncate(inode.synced_len + keep);
            inode.synced_len = inode.data.len();
            inode.open_handles = 0;
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
/// bytes and a `synced_len`: the prefix that would survive a power loss. Writes through a
/// [`WritableFile`] always append at the inode's end; [`WritableFile::sync_data`] makes the whole
/// current content of the inode durable; [`Fs::truncate`] cuts (or zero-extends) the data and
/// makes the new length durable, like `set_len` followed by `sync_all`.
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
/// pseudo-random prefix of every unsynced tail. After a crash, every [`WritableFile`] opened
/// before it is dead (writes and syncs fail) and every lock is released.
///
/// # Fault injection
///
/// Every [`Fs`] method call and every [`WritableFile`] `write` and `sync_data` call is one
/// *operation*, numbered from 0 since [`MemFs::new`] (a global counter shared by clones, not
/// reset by crashes; failed operations count too). [`MemFs::fail_at`] makes a chosen operation
/// fail (and optionally every later one); [`MemFs::op_count`] reads the counter, so
/// `fs.fail_at(fs.op_count() + n, ..)` fails the `n`-th operation from now (0-based).
/// `WritableFile::len`, `flush` and dropping handles or locks are not operations.
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
        self.lock_state().crash(|_, _| 0);
    }

    /// Like [`MemFs::crash`], but every surviving file with an unsynced tail keeps a
    /// pseudo-random prefix of that tail (from none to all of it): a torn write. The kept
    /// lengths are a deterministic function of `seed` and the sequence of operations since
    /// [`MemFs::new`].
    pub fn crash_tearing_last_write(&self, seed: u64) {
        self.lock_state().crash(|ino, tail| {
            let r = splitmix64(seed ^ splitmix64(ino));
            // `tail + 1` cannot overflow: `tail` is a Vec length.
            (r % (tail as u64 + 1)) as usize
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
        let byte = usize::try_from(offset)
            .ok()
            .and_then(|o| inode.data.get_mut(o))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("offset {offset} past the end of {}", path.display()),
                )
            })?;
        *byte ^= xor_mask;
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
        inode.data[start..end].fill(0);
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
                    data: inode.data.clone(),
                    synced_len: inode.synced_len,
                    open_handles: 0,
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

/// A `WritableFile` on a `MemFs` inode. Writes append at the inode's end.
struct MemFile {
    state: Arc<Mutex<State>>,
    /// Where the file was opened, for the operation trace.
    path: PathBuf,
    ino: Ino,
    generation: u64,
    len: u64,
}

impl MemFile {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        st.inode_mut(ino)?.data.extend_from_slice(&buf[..stored]);
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
        let inode = st.inode_mut(self.ino)?;
        inode.synced_len = inode.data.len();
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
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
        inode.synced_len = len;
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
mod tests {
    use super::super::write_atomic;
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A file system with `/db` and a durable, empty file for each name given.
    fn setup(names: &[&str]) -> MemFs {
        let fs = MemFs::new();
        fs.create_dir_all(&p("/db")).unwrap();
        for name in names {
            drop(fs.create_new(&Path::new("/db").join(name)).unwrap());
        }
        fs.sync_dir(&p("/db")).unwrap();
        fs
    }

    /// Creates `path` with `bytes`, synced, and makes the entry durable.
    fn durable_file(fs: &MemFs, path: &str, bytes: &[u8]) {
        let mut f = fs.create_new(&p(path)).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(super::super::parent(&p(path))).unwrap();
    }

    fn inode_count(fs: &MemFs) -> usize {
        fs.lock_state().inodes.len()
    }

    #[test]
    fn unsynced_appends_are_lost_synced_data_stays() {
        let fs = setup(&["wal"]);
        let mut f = fs.open_append(&p("/db/wal")).unwrap();
        f.write_all(b"abc").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"def").unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"abcdef");
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"abc");
        assert_eq!(fs.file_len(&p("/db/wal")).unwrap(), 3);
        // Appending after the crash continues from the durable length.
        let mut g = fs.open_append(&p("/db/wal")).unwrap();
        assert_eq!(g.len(), 3);
        g.write_all(b"xy").unwrap();
        assert_eq!(g.len(), 5);
        assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"abcxy");
    }

    #[test]
    fn create_needs_sync_dir_to_survive_a_crash() {
        let fs = setup(&[]);
        let mut f = fs.create_new(&p("/db/a")).unwrap();
        f.write_all(b"data").unwrap();
        f.sync_data().unwrap();
        drop(f);
        assert!(fs.exists(&p("/db/a")));
        fs.crash();
        assert!(!fs.exists(&p("/db/a")));
        assert_eq!(
            fs.read_file(&p("/db/a")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );

        durable_file(&fs, "/db/b", b"data");
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"data");
        // Dropped inodes are freed.
        assert_eq!(inode_count(&fs), 1);
    }

    #[test]
    fn sync_dir_only_covers_its_own_directory() {
        let fs = MemFs::new();
        fs.create_dir_all(&p("/db/sub")).unwrap();
        durable_file(&fs, "/db/sub/x", b"1");
        drop(fs.create_new(&p("/db/y")).unwrap());
        fs.sync_dir(&p("/db/sub")).unwrap();
        fs.crash();
        assert!(fs.exists(&p("/db/sub/x")));
        assert!(!fs.exists(&p("/db/y")));
    }

    #[test]
    fn rename_without_sync_dir_reverts() {
        let fs = setup(&[]);
        durable_file(&fs, "/db/a", b"new");
        durable_file(&fs, "/db/b", b"old");
        fs.rename(&p("/db/a"), &p("/db/b")).unwrap();
        assert!(!fs.exists(&p("/db/a")));
        assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"new");
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/a")).unwrap(), b"new");
        assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"old");

        // Rename to a fresh name: the new name vanishes.
        fs.rename(&p("/db/a"), &p("/db/c")).unwrap();
        fs.crash();
        assert!(fs.exists(&p("/db/a")));
        assert!(!fs.exists(&p("/db/c")));
    }

    #[test]
    fn rename_with_sync_dir_is_durable_and_replaces_the_target() {
        let fs = setup(&[]);
        durable_file(&fs, "/db/a", b"new");
        durable_file(&fs, "/db/b", b"old");
        fs.rename(&p("/db/a"), &p("/db/b")).unwrap();
        fs.sync_dir(&p("/db")).unwrap();
        fs.crash();
        assert!(!fs.exists(&p("/db/a")));
        assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"new");
        assert_eq!(fs.files(), vec![p("/db/b")]);
        assert_eq!(inode_count(&fs), 1, "the replaced inode is freed");
    }

    #[test]
    fn rename_moves_the_inode_and_open_handles_follow() {
        let fs = setup(&[]);
        let mut f = fs.create_new(&p("/db/a")).unwrap();
        f.write_all(b"12").unwrap();
        fs.rename(&p("/db/a"), &p("/db/b")).unwrap();
        f.write_all(b"34").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/db")).unwrap();
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/b")).unwrap(), b"1234");
    }

    #[test]
    fn cross_directory_rename_is_durable_per_directory() {
        let fs = MemFs::new();
        fs.create_dir_all(&p("/a")).unwrap();
        fs.create_dir_all(&p("/b")).unwrap();
        durable_file(&fs, "/a/f", b"x");
        fs.rename(&p("/a/f"), &p("/b/f")).unwrap();
        fs.sync_dir(&p("/b")).unwrap();
        fs.crash();
        // Only the target was synced: both names survive (like a hard link).
        assert!(fs.exists(&p("/a/f")));
        assert!(fs.exists(&p("/b/f")));
        fs.remove_file(&p("/a/f")).unwrap();
        fs.sync_dir(&p("/a")).unwrap();
        fs.crash();
        assert_eq!(fs.files(), vec![p("/b/f")]);
    }

    #[test]
    fn remove_without_sync_dir_reverts() {
        let fs = setup(&[]);
        durable_file(&fs, "/db/a", b"keep");
        fs.remove_file(&p("/db/a")).unwrap();
        assert!(!fs.exists(&p("/db/a")));
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/a")).unwrap(), b"keep");

        fs.remove_file(&p("/db/a")).unwrap();
        fs.sync_dir(&p("/db")).unwrap();
        fs.crash();
        assert!(!fs.exists(&p("/db/a")));
        assert_eq!(inode_count(&fs), 0);
    }

    #[test]
    fn unlinked_file_stays_writable_until_the_handle_drops() {
        let fs = setup(&[]);
        let mut f = fs.create_new(&p("/db/a")).unwrap();
        fs.remove_file(&p("/db/a")).unwrap();
        f.write_all(b"still fine").unwrap();
        f.sync_data().unwrap();
        assert_eq!(inode_count(&fs), 1);
        drop(f);
        assert_eq!(inode_count(&fs), 0);
    }

    #[test]
    fn write_atomic_survives_a_crash() {
        let fs = setup(&[]);
        write_atomic(&fs, &p("/db/meta"), b"v1").unwrap();
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/meta")).unwrap(), b"v1");
        write_atomic(&fs, &p("/db/meta"), b"v2").unwrap();
        fs.crash_tearing_last_write(7);
        assert_eq!(fs.read_file(&p("/db/meta")).unwrap(), b"v2");
        assert_eq!(fs.files(), vec![p("/db/meta")]);
    }

    #[test]
    fn write_atomic_interrupted_at_any_op_leaves_old_or_new() {
        // Fail each operation of write_atomic in turn, crash, and check all-or-nothing.
        for kind in [
            FaultKind::Eio,
            FaultKind::NoSpace,
            FaultKind::ShortWrite,
            FaultKind::SyncFailure,
        ] {
            for i in 0..20 {
                let fs = setup(&[]);
                write_atomic(&fs, &p("/db/meta"), b"old contents").unwrap();
                fs.fail_at(fs.op_count() + i, kind, false);
                let res = write_atomic(&fs, &p("/db/meta"), b"new contents");
                fs.clear_faults();
                fs.crash_tearing_last_write(i);
                let got = fs.read_file(&p("/db/meta")).unwrap();
                if res.is_ok() {
                    assert_eq!(got, b"new contents", "{kind:?} at {i}");
                } else {
                    assert!(
                        got == b"old contents" || got == b"new contents",
                        "{kind:?} at {i}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn handles_opened_before_a_crash_are_dead() {
        let fs = setup(&["a"]);
        let mut f = fs.open_append(&p("/db/a")).unwrap();
        let mut g = fs.create_new(&p("/db/b")).unwrap();
        fs.crash();
        assert!(f.write_all(b"x").is_err());
        assert!(f.sync_data().is_err());
        assert!(g.write(b"x").is_err());
        assert_eq!(fs.file_len(&p("/db/a")).unwrap(), 0);
        drop(f);
        drop(g);
        // New handles work.
        let mut h = fs.open_append(&p("/db/a")).unwrap();
        h.write_all(b"ok").unwrap();
        h.sync_data().unwrap();
        assert_eq!(fs.read_file(&p("/db/a")).unwrap(), b"ok");
    }

    #[test]
    fn torn_crash_keeps_a_prefix_of_the_unsynced_tail() {
        let run = |seed: u64| {
            let fs = setup(&["wal"]);
            let mut f = fs.open_append(&p("/db/wal")).unwrap();
            f.write_all(b"synced|").unwrap();
            f.sync_data().unwrap();
            f.write_all(b"0123456789abcdefghijklmnopqrstuvwxyz")
                .unwrap();
            fs.crash_tearing_last_write(seed);
            fs.read_file(&p("/db/wal")).unwrap()
        };
        let full = b"synced|0123456789abcdefghijklmnopqrstuvwxyz";
        let mut lens = BTreeSet::new();
        for seed in 0..64 {
            let got = run(seed);
            assert!(got.len() >= 7 && full.starts_with(&got), "{got:?}");
            assert_eq!(got, run(seed), "deterministic for seed {seed}");
            lens.insert(got.len());
        }
        assert!(
            lens.len() > 5,
            "seeds should tear at various points: {lens:?}"
        );
        assert!(lens.iter().any(|&l| l > 7 && l < full.len()));
    }

    #[test]
    fn torn_crash_makes_the_kept_prefix_durable() {
        let fs = setup(&["wal"]);
        let mut f = fs.open_append(&p("/db/wal")).unwrap();
        f.write_all(&[1; 100]).unwrap();
        fs.crash_tearing_last_write(3);
        let len = fs.file_len(&p("/db/wal")).unwrap();
        fs.crash();
        assert_eq!(fs.file_len(&p("/db/wal")).unwrap(), len);
    }

    #[test]
    fn truncate_cuts_and_is_durable() {
        let fs = setup(&["wal"]);
        let mut f = fs.open_append(&p("/db/wal")).unwrap();
        f.write_all(b"good|torn").unwrap();
        drop(f);
        fs.truncate(&p("/db/wal"), 4).unwrap();
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"good");
        fs.truncate(&p("/db/wal"), 6).unwrap();
        assert_eq!(fs.read_file(&p("/db/wal")).unwrap(), b"good\0\0");
    }

    /// Runs `op` with a fault at the next operation and checks it fails with `expect`.
    fn assert_fault<T>(
        fs: &MemFs,
        kind: FaultKind,
        expect: io::ErrorKind,
        op: impl FnOnce() -> io::Result<T>,
    ) {
        fs.fail_at(fs.op_count(), kind, false);
        let Err(err) = op() else {
            panic!("{kind:?} did not fire")
        };
        assert_eq!(err.kind(), expect, "{kind:?}: {err}");
        fs.clear_faults();
    }

    #[test]
    fn each_fault_fires_at_exactly_the_chosen_op() {
        for kind in [
            FaultKind::Eio,
            FaultKind::NoSpace,
            FaultKind::ShortWrite,
            FaultKind::SyncFailure,
        ] {
            let fs = setup(&[]);
            let start = fs.op_count();
            fs.fail_at(start + 2, kind, false);
            let mut f = fs.create_new(&p("/db/f")).unwrap(); // op start
            f.write_all(b"ab").unwrap(); // op start + 1
            assert!(fs.file_len(&p("/db/f")).is_err()); // op start + 2
            assert_eq!(fs.op_count(), start + 3);
            f.write_all(b"cd").unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(&p("/db")).unwrap();
            assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"abcd");
        }
    }

    #[test]
    fn fault_kinds_produce_their_errors() {
        let fs = setup(&["f"]);
        let msg = |e: io::Error| e.to_string();
        fs.fail_at(fs.op_count(), FaultKind::Eio, false);
        let e = fs.read_file(&p("/db/f")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert_eq!(msg(e), "injected EIO");
        assert_fault(&fs, FaultKind::NoSpace, io::ErrorKind::StorageFull, || {
            fs.create_new(&p("/db/g"))
        });
        assert!(!fs.exists(&p("/db/g")), "a failed create applies nothing");
        // ShortWrite and SyncFailure on unrelated ops behave like EIO.
        for kind in [FaultKind::ShortWrite, FaultKind::SyncFailure] {
            fs.fail_at(fs.op_count(), kind, false);
            let e = fs.rename(&p("/db/f"), &p("/db/h")).unwrap_err();
            assert_eq!(msg(e), "injected EIO");
            assert!(fs.exists(&p("/db/f")) && !fs.exists(&p("/db/h")));
        }
        fs.fail_at(fs.op_count(), FaultKind::SyncFailure, false);
        let e = fs.sync_dir(&p("/db")).unwrap_err();
        assert_eq!(msg(e), "injected sync failure");
        // exists turns a fault into `false`, like Path::exists.
        fs.fail_at(fs.op_count(), FaultKind::Eio, false);
        assert!(!fs.exists(&p("/db/f")));
        assert!(fs.exists(&p("/db/f")));
    }

    #[test]
    fn failed_ops_apply_nothing() {
        let fs = setup(&["f", "g"]);
        durable_file(&fs, "/db/d", b"data");
        let eio = io::ErrorKind::Other;
        assert_fault(&fs, FaultKind::Eio, eio, || {
            fs.rename(&p("/db/f"), &p("/db/g"))
        });
        assert_fault(&fs, FaultKind::Eio, eio, || fs.remove_file(&p("/db/f")));
        assert_fault(&fs, FaultKind::Eio, eio, || fs.truncate(&p("/db/d"), 1));
        assert_fault(&fs, FaultKind::Eio, eio, || fs.create_dir_all(&p("/x")));
        assert_fault(&fs, FaultKind::Eio, eio, || fs.lock(&p("/db/LOCK")));
        assert_eq!(fs.files(), vec![p("/db/d"), p("/db/f"), p("/db/g")]);
        assert_eq!(fs.read_file(&p("/db/d")).unwrap(), b"data");
        assert!(!fs.exists(&p("/x")));
        let mut w = fs.open_append(&p("/db/d")).unwrap();
        assert_fault(&fs, FaultKind::NoSpace, io::ErrorKind::StorageFull, || {
            w.write(b"more")
        });
        assert_eq!(w.len(), 4);
        assert_eq!(fs.read_file(&p("/db/d")).unwrap(), b"data");
        drop(w);
        assert!(
            fs.lock(&p("/db/LOCK")).is_ok(),
            "the failed lock held nothing"
        );
    }

    #[test]
    fn short_write_stores_half_the_buffer() {
        let fs = setup(&["f"]);
        let mut f = fs.open_append(&p("/db/f")).unwrap();
        fs.fail_at(fs.op_count(), FaultKind::ShortWrite, false);
        let e = f.write_all(b"0123456789").unwrap_err();
        assert_eq!(e.to_string(), "injected short write");
        assert_eq!(f.len(), 5);
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"01234");
        f.write_all(b"!").unwrap();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"01234!");
    }

    #[test]
    fn sync_failure_makes_nothing_durable() {
        let fs = setup(&["f"]);
        let mut f = fs.open_append(&p("/db/f")).unwrap();
        f.write_all(b"unsynced").unwrap();
        fs.fail_at(fs.op_count(), FaultKind::SyncFailure, false);
        let e = f.sync_data().unwrap_err();
        assert_eq!(e.to_string(), "injected sync failure");
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"");

        // A failed sync_dir leaves the entry non-durable.
        drop(fs.create_new(&p("/db/g")).unwrap());
        assert_fault(&fs, FaultKind::SyncFailure, io::ErrorKind::Other, || {
            fs.sync_dir(&p("/db"))
        });
        fs.crash();
        assert!(!fs.exists(&p("/db/g")));

        // A failed truncate neither cuts nor syncs.
        let mut f = fs.open_append(&p("/db/f")).unwrap();
        f.write_all(b"abcdef").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"gh").unwrap();
        drop(f);
        assert_fault(&fs, FaultKind::SyncFailure, io::ErrorKind::Other, || {
            fs.truncate(&p("/db/f"), 7)
        });
        assert_eq!(fs.file_len(&p("/db/f")).unwrap(), 8);
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"abcdef");
    }

    #[test]
    fn persistent_faults_keep_failing_until_cleared() {
        let fs = setup(&["f"]);
        let at = fs.op_count() + 1;
        fs.fail_at(at, FaultKind::NoSpace, true);
        fs.file_len(&p("/db/f")).unwrap();
        for _ in 0..5 {
            assert_eq!(
                fs.file_len(&p("/db/f")).unwrap_err().kind(),
                io::ErrorKind::StorageFull
            );
        }
        let mut f = fs.open_append(&p("/db/f"));
        assert!(f.is_err());
        // Faults survive a crash.
        fs.crash();
        assert!(fs.read_file(&p("/db/f")).is_err());
        fs.clear_faults();
        f = fs.open_append(&p("/db/f"));
        f.unwrap().write_all(b"ok").unwrap();
        // A persistent fault scheduled in the past fails everything from now on.
        fs.fail_at(0, FaultKind::Eio, true);
        assert!(fs.read_file(&p("/db/f")).is_err());
        fs.clear_faults();
        // A one-shot fault in the past never fires.
        fs.fail_at(0, FaultKind::Eio, false);
        assert!(fs.read_file(&p("/db/f")).is_ok());
    }

    #[test]
    fn every_call_counts_as_one_op() {
        let fs = MemFs::new();
        assert_eq!(fs.op_count(), 0);
        fs.create_dir_all(&p("d")).unwrap();
        let mut f = fs.create_new(&p("d/f")).unwrap();
        f.write_all(b"x").unwrap();
        f.flush().unwrap();
        let _ = f.len();
        f.sync_data().unwrap();
        assert!(fs.exists(&p("d/f")));
        assert!(fs.read_file(&p("d/nope")).is_err());
        assert_eq!(fs.op_count(), 6);
        fs.crash();
        fs.corrupt(&p("d/f"), 0, 1).unwrap_or(());
        let _ = fs.files();
        assert_eq!(fs.op_count(), 6);
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop_and_crash() {
        let fs = setup(&[]);
        let other = fs.clone();
        let lock = fs.lock(&p("/db/LOCK")).unwrap();
        assert_eq!(
            other.lock(&p("/db/LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            other.lock(&p("/db/./LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "same path spelled differently"
        );
        // Another path is another lock.
        let _second = other.lock(&p("/db/LOCK2")).unwrap();
        drop(lock);
        let lock = other.lock(&p("/db/LOCK")).unwrap();
        fs.crash();
        let after = fs.lock(&p("/db/LOCK")).unwrap();
        // Dropping the pre-crash lock must not release the new holder.
        drop(lock);
        assert_eq!(
            fs.lock(&p("/db/LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(after);
        fs.lock(&p("/db/LOCK")).unwrap();
        // A separate MemFs is a separate file system.
        let fresh = MemFs::new();
        fresh.create_dir_all(&p("/db")).unwrap();
        let _l = fresh.lock(&p("/db/LOCK")).unwrap();
        assert!(format!("{_l:?}").contains("LOCK"));
    }

    #[test]
    fn lock_creates_the_file_and_needs_the_parent() {
        let fs = MemFs::new();
        assert_eq!(
            fs.lock(&p("/nope/LOCK")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs.create_dir_all(&p("/db")).unwrap();
        let _l = fs.lock(&p("/db/LOCK")).unwrap();
        assert!(fs.exists(&p("/db/LOCK")));
        assert_eq!(fs.list_dir(&p("/db")).unwrap(), vec!["LOCK".to_string()]);
    }

    #[test]
    fn open_read_is_a_snapshot() {
        let fs = setup(&["run"]);
        let mut f = fs.open_append(&p("/db/run")).unwrap();
        f.write_all(b"hello").unwrap();
        let r = fs.open_read(&p("/db/run")).unwrap();
        f.write_all(b" world").unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(&*r.read_at(1, 3).unwrap(), b"ell");
        assert_eq!(
            r.read_at(3, 5).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        fs.crash();
        assert_eq!(&*r.read_at(0, 5).unwrap(), b"hello");
        let empty = fs.open_read(&p("/db/run")).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn errors_mimic_the_os() {
        let fs = setup(&["f"]);
        let kind = |r: io::Result<()>| r.unwrap_err().kind();
        use io::ErrorKind::*;
        assert_eq!(kind(fs.create_new(&p("/db/f")).map(drop)), AlreadyExists);
        assert_eq!(kind(fs.create_new(&p("/db")).map(drop)), AlreadyExists);
        assert_eq!(kind(fs.create_new(&p("/nope/f")).map(drop)), NotFound);
        assert_eq!(kind(fs.create_new(&p("/db/f/x")).map(drop)), NotADirectory);
        assert_eq!(kind(fs.open_append(&p("/db/g")).map(drop)), NotFound);
        assert_eq!(kind(fs.open_read(&p("/db/g")).map(drop)), NotFound);
        assert_eq!(kind(fs.read_file(&p("/db")).map(drop)), IsADirectory);
        assert_eq!(kind(fs.file_len(&p("/db/g")).map(drop)), NotFound);
        assert_eq!(kind(fs.truncate(&p("/db/g"), 0)), NotFound);
        assert_eq!(kind(fs.remove_file(&p("/db/g"))), NotFound);
        assert_eq!(kind(fs.remove_file(&p("/db"))), IsADirectory);
        assert_eq!(kind(fs.rename(&p("/db/g"), &p("/db/h"))), NotFound);
        assert_eq!(kind(fs.rename(&p("/db/f"), &p("/nope/h"))), NotFound);
        assert_eq!(kind(fs.rename(&p("/db/f"), &p("/db"))), IsADirectory);
        assert_eq!(kind(fs.list_dir(&p("/nope")).map(drop)), NotFound);
        assert_eq!(kind(fs.list_dir(&p("/db/f")).map(drop)), NotADirectory);
        assert_eq!(kind(fs.sync_dir(&p("/nope"))), NotFound);
        assert_eq!(kind(fs.create_dir_all(&p("/db/f"))), AlreadyExists);
        assert_eq!(kind(fs.create_dir_all(&p("/db/f/sub"))), NotADirectory);
        assert!(!fs.exists(&p("/db/g")));
        fs.rename(&p("/db/f"), &p("/db/f")).unwrap();
        assert!(fs.exists(&p("/db/f")));
    }

    #[test]
    fn directories_list_and_paths_normalize() {
        let fs = MemFs::new();
        fs.create_dir_all(&p("db/runs")).unwrap();
        drop(fs.create_new(&p("./db/a")).unwrap());
        drop(fs.create_new(&p("db//b")).unwrap());
        drop(fs.create_new(&p("top")).unwrap());
        assert_eq!(fs.list_dir(&p("db")).unwrap(), vec!["a", "b", "runs"]);
        assert_eq!(fs.list_dir(&p("./db/")).unwrap(), vec!["a", "b", "runs"]);
        assert_eq!(fs.list_dir(&p(".")).unwrap(), vec!["db", "top"]);
        assert!(fs.list_dir(&p("db/runs")).unwrap().is_empty());
        assert!(fs.exists(&p("db/runs")) && fs.exists(&p("/")) && fs.exists(&p(".")));
        // The relative root syncs as `.`, which is what `parent("top")` gives.
        fs.sync_dir(super::super::parent(&p("top"))).unwrap();
        fs.crash();
        assert!(fs.exists(&p("top")));
        assert!(!fs.exists(&p("db/a")));
        assert!(fs.exists(&p("db/runs")), "directories survive crashes");
        assert_eq!(fs.files(), vec![p("top")]);
    }

    #[test]
    fn zero_range_wipes_durably_and_stops_at_the_end() {
        let fs = setup(&[]);
        durable_file(&fs, "/db/f", b"abcdef");
        fs.zero_range(&p("/db/f"), 1, 2).unwrap();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"a\0\0def");
        fs.zero_range(&p("/db/f"), 4, 4096).unwrap();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"a\0\0d\0\0");
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"a\0\0d\0\0");
        fs.zero_range(&p("/db/f"), 6, 1).unwrap();
        assert_eq!(
            fs.zero_range(&p("/db/f"), 7, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            fs.zero_range(&p("/db/g"), 0, 1).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn trace_names_each_operation_and_its_fault() {
        let fs = setup(&[]);
        let start = fs.op_count();
        fs.start_trace();
        let mut f = fs.create_new(&p("/db/./f")).unwrap();
        fs.fail_at(fs.op_count() + 1, FaultKind::SyncFailure, false);
        f.write_all(b"x").unwrap();
        assert!(f.sync_data().is_err());
        fs.rename(&p("/db/f"), &p("/db/g")).unwrap();
        assert!(fs.exists(&p("/db/g")));
        let trace = fs.trace();
        let got: Vec<_> = trace
            .iter()
            .map(|t| (t.index - start, t.name, t.path.to_str().unwrap(), t.fault))
            .collect();
        let thread = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        assert!(trace.iter().all(|t| t.thread == thread));
        assert_eq!(
            got,
            vec![
                (0, "create_new", "/db/f", None),
                (1, "write", "/db/f", None),
                (2, "sync_data", "/db/f", Some(FaultKind::SyncFailure)),
                (3, "rename", "/db/f", None),
                (4, "exists", "/db/g", None),
            ]
        );
        fs.file_len(&p("/db/g")).unwrap();
        assert_eq!(fs.trace().len(), 6, "recording goes on");
        fs.stop_trace();
        fs.file_len(&p("/db/g")).unwrap();
        assert!(fs.trace().is_empty());
    }

    #[test]
    fn fork_is_an_independent_copy() {
        let fs = setup(&[]);
        durable_file(&fs, "/db/synced", b"durable");
        let mut open = fs.create_new(&p("/db/open")).unwrap();
        open.write_all(b"unsynced").unwrap();
        let _lock = fs.lock(&p("/db/LOCK")).unwrap();
        fs.fail_at(fs.op_count() + 3, FaultKind::Eio, true);
        let ops = fs.op_count();

        let copy = fs.fork();
        assert_eq!(copy.op_count(), ops);
        assert_eq!(copy.files(), fs.files());
        // No lock and no fault carried over; crash semantics did.
        let _copy_lock = copy.lock(&p("/db/LOCK")).unwrap();
        for _ in 0..5 {
            assert_eq!(copy.read_file(&p("/db/synced")).unwrap(), b"durable");
        }
        // Writes through a handle of the original do not show in the copy, and back.
        open.write_all(b"+more").unwrap();
        assert_eq!(copy.read_file(&p("/db/open")).unwrap(), b"unsynced");
        copy.corrupt(&p("/db/synced"), 0, 0xff).unwrap();
        fs.clear_faults();
        assert_eq!(fs.read_file(&p("/db/synced")).unwrap(), b"durable");
        copy.crash();
        assert!(
            !copy.exists(&p("/db/open")),
            "the copy keeps durability state"
        );
        assert!(fs.exists(&p("/db/open")));
        assert!(copy.exists(&p("/db")), "directories are copied");
    }

    #[test]
    fn corrupt_flips_bits_durably() {
        let fs = setup(&[]);
        durable_file(&fs, "/db/f", b"\x00\x0f");
        fs.corrupt(&p("/db/f"), 1, 0xff).unwrap();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"\x00\xf0");
        fs.crash();
        assert_eq!(fs.read_file(&p("/db/f")).unwrap(), b"\x00\xf0");
        assert_eq!(
            fs.corrupt(&p("/db/f"), 2, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            fs.corrupt(&p("/db/g"), 0, 1).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn clones_share_state_and_work_as_dyn_fs() {
        let fs = MemFs::new();
        let db: Arc<dyn Fs> = Arc::new(fs.clone());
        db.create_dir_all(&p("/db")).unwrap();
        write_atomic(&*db, &p("/db/x"), b"1").unwrap();
        assert_eq!(fs.read_file(&p("/db/x")).unwrap(), b"1");
        // create_dir_all, six ops in write_atomic, read_file: one counter for both handles.
        assert_eq!(db.list_dir(&p("/db")).unwrap(), vec!["x"]);
        assert_eq!(fs.op_count(), 9);
        let dbg = format!("{db:?}");
        assert!(dbg.contains("MemFs") && dbg.contains("files: 1"), "{dbg}");
    }

    #[test]
    fn concurrent_use_is_safe() {
        let fs = setup(&[]);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let fs = fs.clone();
                std::thread::spawn(move || {
                    let path = PathBuf::from(format!("/db/{t}"));
                    let mut f = fs.create_new(&path).unwrap();
                    for _ in 0..100 {
                        f.write_all(&[t as u8; 3]).unwrap();
                    }
                    f.sync_data().unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        fs.sync_dir(&p("/db")).unwrap();
        fs.crash();
        for t in 0..4u8 {
            let data = fs.read_file(&PathBuf::from(format!("/db/{t}"))).unwrap();
            assert_eq!(data, vec![t; 300]);
        }
    }
}
