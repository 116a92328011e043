//! # strata-sstable: the sorted-run file format
//!
//! The bottom layer of strata. A *run* is an immutable file of entries — (user key, seqno, kind,
//! value) — sorted by user key ascending and seqno descending. This crate writes runs
//! ([`RunWriter`]) and reads them ([`Run`]): point lookups of every version visible at a seqno,
//! bidirectional cursors with bounds ([`RunIter`], [`RunRange`]), and full verification
//! ([`Run::verify`]). It knows files, not databases: no WAL, no memtables, no levels. The
//! `compaction` crate merges runs and the `engine` crate (`strata`) decides when to write them.
//!
//! A run is a sequence of checksummed, optionally compressed (lz4 or zstd) data pages of about
//! 8 KiB with prefix-compressed keys and a restart array, followed by a page index, a bloom
//! filter over user keys, a properties block and a fixed 64-byte footer. `sstable/FORMAT.md`
//! describes every byte.
//!
//! Reads go through two seams the engine fills in: [`ReadAt`] (memory map, `pread`, or the
//! engine's in-memory test file system) and [`PageCache`] (a shared cache of decompressed pages;
//! [`ClockCache`] is a byte-budgeted default). Damaged bytes always surface as
//! [`Error::Corruption`] naming the file and offset, never as a panic or an unbounded allocation.
//!
//! ```
//! use strata_sstable::{EntryKind, ReadOptions, Run, RunWriter, WriterOptions};
//! # fn main() -> Result<(), strata_sstable::Error> {
//! let dir = tempfile::tempdir().map_err(|e| strata_sstable::Error::io("tmp", e))?;
//! let path = dir.path().join("000001.run");
//! let mut writer = RunWriter::create(&path, WriterOptions::default())?;
//! writer.add(b"apple", 7, EntryKind::Put, b"red")?;
//! writer.add(b"apple", 3, EntryKind::Put, b"green")?;
//! writer.add(b"pear", 5, EntryKind::Delete, b"")?;
//! writer.finish()?;
//!
//! let run = Run::open(&path, ReadOptions::default())?;
//! let mut newest_at_5 = None;
//! run.get(b"apple", 5, |version| { newest_at_5 = Some(version.value); false })?;
//! assert_eq!(newest_at_5.as_deref(), Some(&b"green"[..]));
//! assert_eq!(run.iter().count(), 3);
//! # Ok(()) }
//! ```

#[doc(hidden)]
pub mod bench_support;
mod block;
mod bloom;
mod cache;
mod coding;
mod compression;
mod counters;
mod entry;
mod error;
mod file;
mod footer;
#[doc(hidden)]
pub mod fuzz_support;
mod index;
mod iter;
mod page;
mod prefetch;
mod properties;
mod reader;
mod verify;
mod writer;

pub use block::BLOCK_TRAILER_LEN;
pub use bloom::key_fingerprint;
pub use cache::{CacheStats, ClockCache, NoCache, PageCache, PageKey};
pub use compression::Compression;
pub use counters::{CountersSnapshot, RunCounters};
pub use entry::{
    compare_internal, compare_keys, display_key, Entry, EntryKind, DEFAULT_MAX_VALUE_LEN,
    MAX_KEY_LEN, MAX_PAGE_RAW_LEN, MAX_SEQNO, MAX_VALUE_LEN_LIMIT,
};
pub use error::{Error, Result};
pub use file::{map_file, PreadFile, ReadAt, WriteFile};
pub use footer::{BlockHandle, Footer, FOOTER_LEN, FORMAT_VERSION, RUN_MAGIC};
pub use index::PageHandle;
pub use iter::{RunIter, RunRange};
pub use properties::Properties;
pub use reader::{LookupOutcome, ReadOptions, Run, Version};
pub use verify::{verify_file, Problem, VerifyReport};
pub use writer::{RunWriter, WriterOptions};

/// Says whether `bytes` (a whole file) looks like a run and which format version it claims,
/// reading only the footer. `None` when the magic is absent.
pub fn identify(bytes_tail: &[u8]) -> Option<u32> {
    let footer = bytes_tail.get(bytes_tail.len().checked_sub(FOOTER_LEN)?..)?;
    let magic = u64::from_le_bytes(footer.get(56..64)?.try_into().ok()?);
    if magic != RUN_MAGIC {
        return None;
    }
    Some(u32::from_le_bytes(footer.get(48..52)?.try_into().ok()?))
}
