//! The operating system's file system.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::{DirLock, Fs, ReadAt, WritableFile};

/// The real file system. Files are created 0600 and directories 0700: a database is private to
/// its owner. Runs are opened through read-only memory maps.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile {
    file: File,
    /// The write position.
    len: u64,
    /// The file's length as this handle left it (at least `len`); unused for append handles.
    size: u64,
    /// Opened with `O_APPEND`: writes go to the end whatever the length, so the length must
    /// not be changed behind them.
    append: bool,
    /// A shared writable map of `[0, size)`, present while every block of it is allocated
    /// (see [`WritableFile::preallocate`] below): writes inside it are memory copies.
    map: Option<memmap2::MmapMut>,
}

impl RealFile {
    fn positional_only(&self, what: &str) -> io::Result<()> {
        if self.append {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{what} on a file opened for appending"),
            ));
        }
        Ok(())
    }

    /// Maps `[0, size)` for writing; on failure writes simply stay system calls.
    fn remap(&mut self) {
        self.map = None;
        let Ok(len) = usize::try_from(self.size) else {
            return;
        };
        // SAFETY: the mapping is of a file this handle created (`create_new`, mode 0600, in the
        // database's locked 0700 directory), so no other process changes its length behind
        // it. This handle only shrinks the file after dropping the map (`set_len`); the WAL
        // writer's rotation cuts the file by path (`Fs::truncate`) only as its last act before
        // dropping this handle, with no write in between. So every access through the map lies
        // inside the file, and all of `[0, size)` has blocks allocated, so a write cannot fault
        // for lack of space. The map's bytes are only touched through `&mut self`.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&self.file) };
        match map {
            Ok(map) => self.map = Some(map),
            Err(e) => {
                log::debug!("strata: mapping a preallocated file failed, writing instead: {e}")
            }
        }
    }
}

impl Write for RealFile {
    /// Inside a mapped (preallocated) range a write is a copy into the page cache: like a
    /// `write(2)`, the bytes survive the process's crash at once and a power loss after
    /// `sync_data`. Elsewhere it is a `pwrite` at the position (`write` for append handles).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(map) = self.map.as_mut() {
            let start = usize::try_from(self.len).unwrap_or(usize::MAX);
            if let Some(target) = start
                .checked_add(buf.len())
                .and_then(|end| map.get_mut(start..end))
            {
                target.copy_from_slice(buf);
                self.len += buf.len() as u64;
                return Ok(buf.len());
            }
        }
        let n = if self.append {
            self.file.write(buf)?
        } else {
            self.file.write_at(buf, self.len)?
        };
        self.len += n as u64;
        self.size = self.size.max(self.len);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl WritableFile for RealFile {
    /// `fdatasync`: it writes back the pages dirtied through the map too (they are the file's
    /// page cache pages).
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> u64 {
        self.len
    }

    /// Extends the file with `fallocate` (blocks reserved, reading as zeros) and maps all of it,
    /// so that writes below `len` become memory copies: a small commit then costs a copy instead
    /// of a `write(2)` (about a microsecond of kernel time on ext4), and a `sync_data` after it
    /// commits no new file size. Where `fallocate` is unsupported the file is extended with
    /// `ftruncate` instead (a hole, costing the same per `fdatasync`, see `engine/WAL.md` §10)
    /// and not mapped: a write into a hole through a map could fault for lack of space.
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.positional_only("preallocate")?;
        if len <= self.size {
            return Ok(());
        }
        let flags = rustix::fs::FallocateFlags::empty();
        let mapped = self.map.is_some() || self.size == self.len;
        match rustix::fs::fallocate(&self.file, flags, self.size, len - self.size) {
            Ok(()) => {
                self.size = len;
                // Only a file whose every block is allocated may be mapped (see `remap`).
                if mapped {
                    self.remap();
                }
            }
            Err(rustix::io::Errno::OPNOTSUPP) => {
                self.map = None;
                self.file.set_len(len)?;
                self.size = len;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.positional_only("set_len")?;
        // Unmapped first: the map must never reach past the end of the file.
        self.map = None;
        self.file.set_len(len)?;
        self.size = len;
        Ok(())
    }
}

#[derive(Debug)]
struct RealLock {
    // The lock is held for as long as the file stays open.
    _file: File,
}

impl DirLock for RealLock {}

impl Fs for RealFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        // Readable too: a shared writable map needs a descriptor open for reading and writing.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(RealFile {
            file,
            len: 0,
            size: 0,
            append: false,
            map: None,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(RealFile {
            file,
            len,
            size: len,
            append: true,
            map: None,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        if fs::metadata(path)?.len() == 0 {
            // An empty file cannot be mapped; an empty buffer reads the same.
            return Ok(Arc::new(Vec::<u8>::new()));
        }
        Ok(Arc::new(strata_sstable::map_file(path)?))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o700).create(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "locked by another process or handle",
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let first = RealFs.lock(&path).unwrap();
        assert_eq!(
            RealFs.lock(&path).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(first);
        RealFs.lock(&path).unwrap();
    }

    #[test]
    fn writes_into_the_preallocated_range_go_through_the_map_and_past_it_through_pwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = RealFs.create_new(&path).unwrap();
        f.write_all(b"hdr").unwrap();
        f.preallocate(8192).unwrap();
        let mut expected = b"hdr".to_vec();
        // Records straddling the mapped end continue with pwrite at the right offset.
        for i in 0..100u8 {
            let record = vec![i.wrapping_add(1); 97];
            f.write_all(&record).unwrap();
            expected.extend_from_slice(&record);
            // Visible to another reader at once, without a sync (the page cache is shared).
            let on_disk = fs::read(&path).unwrap();
            assert_eq!(
                &on_disk[..expected.len()],
                expected.as_slice(),
                "after record {i}"
            );
        }
        assert_eq!(f.len(), expected.len() as u64);
        assert!(
            expected.len() > 8192,
            "the test writes past the preallocated range"
        );
        f.preallocate(16384).unwrap();
        f.write_all(b"end").unwrap();
        expected.extend_from_slice(b"end");
        f.sync_data().unwrap();
        f.set_len(f.len()).unwrap();
        drop(f);
        assert_eq!(fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn preallocate_extends_with_zeros_and_writes_overwrite_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = RealFs.create_new(&path).unwrap();
        f.write_all(b"head").unwrap();
        f.preallocate(4096).unwrap();
        assert_eq!(f.len(), 4, "the write position does not move");
        assert_eq!(fs::metadata(&path).unwrap().len(), 4096);
        f.write_all(b"+tail").unwrap();
        f.preallocate(100).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 4096, "never shrinks");
        f.sync_data().unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(&data[..9], b"head+tail");
        assert!(data[9..].iter().all(|&b| b == 0));
        f.set_len(f.len()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"head+tail");

        // An append handle writes at the end, so it refuses both.
        let mut a = RealFs.open_append(&path).unwrap();
        assert_eq!(a.len(), 9);
        let unsupported = io::ErrorKind::Unsupported;
        assert_eq!(a.preallocate(1 << 20).unwrap_err().kind(), unsupported);
        assert_eq!(a.set_len(0).unwrap_err().kind(), unsupported);
        assert_eq!(fs::metadata(&path).unwrap().len(), 9);
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("db");
        RealFs.create_dir_all(&sub).unwrap();
        let path = sub.join("f");
        drop(RealFs.create_new(&path).unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
