//! The file-system seam: every byte the engine reads or writes goes through [`Fs`].
//!
//! Three implementations: [`RealFs`] (the operating system; runs are memory-mapped), and for
//! tests [`MemFs`], an in-memory file system that remembers what was synced, so it can simulate a
//! crash (dropping unsynced data and unsynced directory changes, optionally tearing the last
//! write) and fail the N-th operation with a chosen error.
//!
//! Durability contract the engine relies on, which `MemFs` enforces in tests:
//! - data written to a file is durable only after [`WritableFile::sync_data`] on it;
//! - a created, renamed or removed directory entry is durable only after [`Fs::sync_dir`] on its
//!   parent directory;
//! - `rename` atomically replaces the target.

mod mem;
mod real;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use mem::{FaultKind, MemFs, TracedOp};
pub use real::RealFs;
pub use strata_sstable::ReadAt;

/// A file open for sequential writing.
///
/// A handle from [`Fs::create_new`] writes at its own position, which starts at 0 and moves
/// past every byte written: [`WritableFile::preallocate`] and [`WritableFile::set_len`] change
/// the file's length without moving it, so writes below a preallocated length overwrite zeros
/// instead of growing the file. A handle from [`Fs::open_append`] always writes at the file's
/// current end (`O_APPEND`) and supports neither.
pub trait WritableFile: Write + Send {
    /// Makes everything written so far durable (data and the size needed to read it back),
    /// including a length set by [`WritableFile::preallocate`].
    ///
    /// # Errors
    /// The operating system's error. After a failure the durable contents are unknown; callers
    /// must not retry and pretend success (the engine poisons itself).
    fn sync_data(&mut self) -> io::Result<()>;

    /// The write position: where the next write goes, that is the bytes written through this
    /// handle plus the length the file had when an append handle opened it. It is the file's
    /// length unless [`WritableFile::preallocate`] or [`WritableFile::set_len`] changed that.
    fn len(&self) -> u64;

    /// True if nothing has been written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the file at least `len` bytes long without moving the write position; the bytes
    /// past the old end read as zeros. Later writes below `len` then overwrite instead of
    /// extending the file, so a `sync_data` after them need not commit a new file size (on
    /// ext4 that is the difference between about 0.1 and 0.15 ms per small write and sync,
    /// see `engine/WAL.md` §10). Nothing is durable until the next `sync_data`. A `len` at or
    /// below the current length changes nothing. An implementation may make writes into the
    /// preallocated range cheaper (the real file system maps it and copies into the page cache);
    /// they must stay exactly as durable as plain writes.
    ///
    /// # Errors
    /// `Unsupported` for an append handle and for implementations that cannot preallocate (the
    /// default): callers treat preallocation as advisory and write on without it. Otherwise the
    /// operating system's error (`StorageFull`, ...).
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this file does not support preallocation",
        ))
    }

    /// Cuts (or zero-extends) the file to `len` bytes without moving the write position, like
    /// `ftruncate`: the WAL writer drops the unwritten preallocated tail of a segment it closes.
    /// Not synced: after a power loss the file may still have its old length.
    ///
    /// # Errors
    /// `Unsupported` for an append handle and by default; otherwise the operating system's
    /// error.
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this file does not support set_len",
        ))
    }
}

impl strata_sstable::WriteFile for Box<dyn WritableFile> {
    fn sync_data(&mut self) -> io::Result<()> {
        WritableFile::sync_data(&mut **self)
    }
}

/// An exclusive lock on a database directory, released when dropped.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// Everything the engine needs from a file system. Implementations are thread-safe.
///
/// Paths are absolute or relative to the process's working directory, as given.
pub trait Fs: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` for writing at a position of its own, starting at 0 (see
    /// [`WritableFile`]); fails with `AlreadyExists` if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;

    /// Opens an existing file for appending: every write goes to the file's current end
    /// (`O_APPEND`), so the handle supports neither [`WritableFile::preallocate`] nor
    /// [`WritableFile::set_len`].
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;

    /// Opens an immutable file for random reads (runs). The real file system memory-maps it.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>>;

    /// Reads a whole file (WAL segments and the metadata log at recovery).
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Cuts `path` to `len` bytes and makes the new length durable (used to drop a torn WAL tail).
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing `to`. Durable after [`Fs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file. Durable after [`Fs::sync_dir`].
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Creates a directory and its parents (mode 0700 on the real file system).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Names of the entries of a directory (not full paths), in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// The length of a file.
    fn file_len(&self, path: &Path) -> io::Result<u64>;

    /// True if `path` exists.
    fn exists(&self, path: &Path) -> bool;

    /// Takes an exclusive lock on `path` (created if missing); `WouldBlock` if someone holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>>;
}

/// Writes `bytes` to a new file at `path` through a temporary name, syncs it, renames it into
/// place and syncs the directory: after this returns, either the old or the new contents are
/// durable, never a mix.
///
/// # Errors
/// The first I/O error; the temporary file may be left behind (recovery removes strays).
pub fn write_atomic(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    // Not `Fs::exists` first: it answers `false` for any error.
    match fs.remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = fs.create_new(&tmp)?;
    file.write_all(bytes)?;
    file.flush()?;
    file.sync_data()?;
    drop(file);
    fs.rename(&tmp, path)?;
    fs.sync_dir(parent(path))
}

/// The temporary name used while writing `path`: `path` with `.tmp` appended.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
