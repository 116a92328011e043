//! What one keyspace's tree holds at a moment: memtables and runs, as an immutable snapshot.
//!
//! Readers clone the current `Arc<TreeVersion>` and read it without locks; writers of the tree
//! shape (seal, dump, compaction) build a new version and swap it in. A run's file is deleted
//! when its [`RunHandle`] is dropped after being marked obsolete, which happens only when no
//! version (and so no iterator) refers to it any more.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use strata_sstable::Run;

use crate::fs::{self, Fs};
use crate::memtable::Memtable;
use crate::meta::RunInfo;

/// Deletes obsolete run files and remembers them so the next metadata commit can log
/// `ForgetRun`.
#[derive(Debug)]
pub(crate) struct Reaper {
    fs: Arc<dyn Fs>,
    forgotten: Mutex<Vec<u64>>,
}

impl Reaper {
    pub fn new(fs: Arc<dyn Fs>) -> Self {
        Reaper {
            fs,
            forgotten: Mutex::new(Vec::new()),
        }
    }

    fn delete(&self, run: u64, path: &Path) {
        match self
            .fs
            .remove_file(path)
            .and_then(|()| self.fs.sync_dir(fs::parent(path)))
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                // The file stays; recovery deletes it (the metadata log says it was dropped).
                log::warn!(
                    "strata: could not delete obsolete run {}: {e}",
                    path.display()
                );
                return;
            }
        }
        self.forgotten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(run);
    }

    /// Run ids deleted since the last call.
    pub fn take_forgotten(&self) -> Vec<u64> {
        std::mem::take(&mut *self.forgotten.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A run in a keyspace's tree.
pub(crate) struct RunHandle {
    pub id: u64,
    pub run: Run,
    pub info: RunInfo,
    path: PathBuf,
    obsolete: AtomicBool,
    reaper: Arc<Reaper>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish()
    }
}

impl RunHandle {
    pub fn new(id: u64, run: Run, info: RunInfo, path: PathBuf, reaper: Arc<Reaper>) -> Self {
        RunHandle {
            id,
            run,
            info,
            path,
            obsolete: AtomicBool::new(false),
            reaper,
        }
    }

    /// Marks the run as no longer part of the tree: its file is deleted when the last reader
    /// lets go.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            self.reaper.delete(self.id, &self.path);
        }
    }
}

/// An immutable picture of a keyspace's tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeVersion {
    /// The memtable taking writes.
    pub active: Arc<Memtable>,
    /// Sealed memtables waiting to be dumped, newest first.
    pub sealed: Vec<Arc<Memtable>>,
    /// Runs, newest first: for any key, a version in an earlier run is newer than every version
    /// of that key in a later run.
    pub runs: Vec<Arc<RunHandle>>,
}

impl TreeVersion {
    /// Checks the tree's shape (with the `invariants` feature, after every change): sealed
    /// memtables tile the seqno space below the active one, newest first, and runs are ordered
    /// newest first.
    #[cfg(feature = "invariants")]
    pub fn check_invariants(&self) {
        let mut start = self.active.start_seqno;
        assert_eq!(
            self.active.limit_seqno(),
            u64::MAX,
            "invariant: the active memtable is unsealed"
        );
        for sealed in &self.sealed {
            assert_eq!(
                sealed.limit_seqno(),
                start,
                "invariant: sealed memtables tile the seqnos below the active one"
            );
            start = sealed.start_seqno;
        }
        for pair in self.runs.windows(2) {
            assert!(
                pair[0].info.max_seqno >= pair[1].info.max_seqno,
                "invariant: runs newest first ({} before {})",
                pair[0].id,
                pair[1].id
            );
        }
    }

    /// Memtables newest first: the active one, then the sealed ones.
    pub fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.sealed.iter())
    }
}

/// The file name of a run.
pub(crate) fn run_file_name(run: u64) -> String {
    format!("{run:012}.run")
}

/// Parses a run file name back into its id.
pub(crate) fn parse_run_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".run")?;
    (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}
