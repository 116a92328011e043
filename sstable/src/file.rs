//! The two I/O traits the crate needs, so the engine can put its own file system (real,
//! in-memory, fault-injecting) underneath.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Read access to an immutable run file's bytes.
///
/// Implementations must be safe to share across threads. The returned slice is valid for the
/// borrow of `self`; a memory map hands out a borrowed slice (zero copy), `pread` an owned one.
pub trait ReadAt: Send + Sync {
    /// The file's length in bytes.
    fn len(&self) -> u64;

    /// True if the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads exactly `len` bytes at `offset`.
    ///
    /// # Errors
    /// An I/O error, or `UnexpectedEof` if the range runs past the end.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>>;
}

fn slice_range(bytes: &[u8], offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(len)?))
        .and_then(|range| bytes.get(range))
        .map(Cow::Borrowed)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {len} bytes at {offset} past the end ({})",
                    bytes.len()
                ),
            )
        })
}

impl ReadAt for memmap2::Mmap {
    fn len(&self) -> u64 {
        self[..].len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        slice_range(self, offset, len)
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self[..].len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        slice_range(self, offset, len)
    }
}

impl ReadAt for bytes::Bytes {
    fn len(&self) -> u64 {
        self[..].len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        slice_range(self, offset, len)
    }
}

/// `pread`-based access to a file, for when memory maps are unwanted (no page-fault stalls, I/O
/// errors as `Result`s instead of SIGBUS).
pub struct PreadFile {
    file: File,
    len: u64,
}

impl PreadFile {
    /// Opens `path` for positional reads.
    ///
    /// # Errors
    /// The operating system's error opening or inspecting the file.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(PreadFile { file, len })
    }
}

impl ReadAt for PreadFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the run",
            ));
        }
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(Cow::Owned(buf))
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        (**self).read_at(offset, len)
    }
}

/// Memory-maps a run file read-only.
///
/// # Errors
/// The operating system's error opening or mapping the file.
pub fn map_file(path: &Path) -> io::Result<memmap2::Mmap> {
    let file = File::open(path)?;
    // SAFETY: run files are immutable once written (the engine never modifies or truncates a
    // finished run; it only deletes it after the last reader is gone), so the mapped bytes cannot
    // change underneath the map. Another process truncating the file would be outside strata's
    // contract (the directory is locked) and would surface as SIGBUS, like any mmap reader.
    unsafe { memmap2::Mmap::map(&file) }
}

/// A file the writer appends a run to.
pub trait WriteFile: Write + Send {
    /// Makes everything written so far durable (`fdatasync` or stronger).
    ///
    /// # Errors
    /// The operating system's error; after one, the file's durable contents are unknown.
    fn sync_data(&mut self) -> io::Result<()>;
}

impl WriteFile for File {
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

impl WriteFile for Vec<u8> {
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: WriteFile + ?Sized> WriteFile for Box<W> {
    fn sync_data(&mut self) -> io::Result<()> {
        (**self).sync_data()
    }
}
