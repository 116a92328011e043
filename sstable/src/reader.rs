//! Opening a run and reading pages from it.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use bytes::Bytes;

use crate::block::{decode_block, decode_plain_block, BLOCK_TRAILER_LEN};
use crate::bloom::{key_fingerprint, RunBloom};
use crate::cache::{NoCache, PageCache, PageKey};
use crate::counters::RunCounters;
use crate::entry::{compare_internal, EntryKind, MAX_PAGE_RAW_LEN};
use crate::error::{Error, Result};
use crate::file::{map_file, ReadAt};
use crate::footer::{BlockHandle, Footer, FOOTER_LEN, FORMAT_VERSION};
use crate::index::{decode_index, PageHandle, PageSearch};
use crate::page::{Page, PageCursor};
use crate::properties::Properties;

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// Shared resources a run reads through.
#[derive(Clone)]
pub struct ReadOptions {
    /// Where decoded pages are cached (default: [`NoCache`]).
    pub cache: Arc<dyn PageCache>,
    /// Counters to update (default: a fresh set per run).
    pub counters: Arc<RunCounters>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            cache: Arc::new(NoCache::default()),
            counters: Arc::new(RunCounters::default()),
        }
    }
}

struct RunInner {
    path: PathBuf,
    data: Box<dyn ReadAt>,
    footer: Footer,
    pages: Vec<PageHandle>,
    search: PageSearch,
    bloom: Option<RunBloom>,
    props: Properties,
    cache: Arc<dyn PageCache>,
    cache_id: u64,
    counters: Arc<RunCounters>,
}

impl Drop for RunInner {
    fn drop(&mut self) {
        self.cache.evict_run(self.cache_id);
    }
}

/// An open, immutable run file.
///
/// Cheap to clone (shared); `Send + Sync`, so any number of threads may read it at once. The
/// footer, page index, bloom filter and properties are verified and kept in memory at open; data
/// pages are read (and their checksums verified) on demand, through the page cache.
#[derive(Clone)]
pub struct Run {
    inner: Arc<RunInner>,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("path", &self.inner.path)
            .field("pages", &self.inner.pages.len())
            .finish()
    }
}

/// What a point lookup learned besides the versions it visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The key is outside the run's key range; nothing was read.
    OutOfRange,
    /// The bloom filter ruled the key out; nothing was read.
    BloomNegative,
    /// Pages were searched; `visited` versions were handed to the visitor.
    Searched {
        /// Versions passed to the visitor.
        visited: usize,
    },
}

/// A version found by a point lookup, borrowed from the page it lives in.
#[derive(Debug, Clone)]
pub struct Version {
    /// Commit sequence number.
    pub seqno: u64,
    /// What the version does.
    pub kind: EntryKind,
    /// The value (a slice of the cached page; cheap to keep).
    pub value: Bytes,
}

impl Run {
    /// Opens the run at `path` through a read-only memory map.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened or mapped, [`Error::Corruption`] or
    /// [`Error::UnsupportedVersion`] if its footer or metadata blocks are bad.
    pub fn open(path: &Path, options: ReadOptions) -> Result<Run> {
        let map = map_file(path).map_err(|e| Error::io(path, e))?;
        Run::open_with(path, Box::new(map), options)
    }

    /// Opens a run over any [`ReadAt`] source. `path` names it in errors and is not opened.
    ///
    /// # Errors
    /// As for [`Run::open`].
    pub fn open_with(path: &Path, data: Box<dyn ReadAt>, options: ReadOptions) -> Result<Run> {
        let size = data.len();
        let read = |offset: u64, len: u64| -> Result<Vec<u8>> {
            let len = usize::try_from(len)
                .map_err(|_| Error::corruption(path, offset, "block larger than memory"))?;
            data.read_at(offset, len)
                .map(|b| b.into_owned())
                .map_err(|e| Error::io(path, e))
        };
        let footer_offset = size.checked_sub(FOOTER_LEN as u64).ok_or_else(|| {
            Error::corruption(
                path,
                0,
                format!("file of {size} bytes is too small for a run footer"),
            )
        })?;
        let footer = Footer::decode(&read(footer_offset, FOOTER_LEN as u64)?)
            .map_err(|e| e.at(path, footer_offset))?;
        if footer.format_version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version: footer.format_version,
                supported: FORMAT_VERSION,
            });
        }
        // The layout is strict: data, index, bloom, properties, footer, back to back.
        let data_end = footer.index.offset;
        let contiguous = footer.index.end_checked() == Some(footer.bloom.offset)
            && footer.bloom.end_checked() == Some(footer.properties.offset)
            && footer.properties.end_checked() == Some(footer_offset)
            && footer.index.len >= BLOCK_TRAILER_LEN as u64
            && footer.properties.len >= BLOCK_TRAILER_LEN as u64;
        if !contiguous {
            return Err(Error::corruption(
                path,
                footer_offset,
                format!("footer block handles do not tile the file: {footer:?}"),
            ));
        }
        let props_bytes = read(footer.properties.offset, footer.properties.len)?;
        let props = decode_plain_block(&props_bytes)
            .and_then(Properties::decode)
            .map_err(|e| e.at(path, footer.properties.offset))?;
        if props.format_version != footer.format_version {
            let what = format!(
                "properties say format version {}, the footer {}",
                props.format_version, footer.format_version
            );
            return Err(Error::corruption(path, footer.properties.offset, what));
        }
        if props.max_page_raw_len as usize > MAX_PAGE_RAW_LEN {
            let what = format!(
                "largest page claims {} raw bytes, above the format limit {MAX_PAGE_RAW_LEN}",
                props.max_page_raw_len
            );
            return Err(Error::corruption(path, footer.properties.offset, what));
        }
        let index_bytes = read(footer.index.offset, footer.index.len)?;
        let pages = decode_plain_block(&index_bytes)
            .and_then(|payload| decode_index(payload, data_end, props.max_page_raw_len))
            .map_err(|e| e.at(path, footer.index.offset))?;
        let bloom = if footer.bloom.len == 0 {
            None
        } else {
            let bloom_bytes = read(footer.bloom.offset, footer.bloom.len)?;
            Some(
                decode_plain_block(&bloom_bytes)
                    .and_then(RunBloom::load)
                    .map_err(|e| e.at(path, footer.bloom.offset))?,
            )
        };
        let total_entries: u64 = pages.iter().map(|p| u64::from(p.entries)).sum();
        if total_entries != props.entries || pages.len() as u64 != props.pages {
            return Err(Error::corruption(
                path,
                footer.properties.offset,
                format!(
                    "properties say {} entries in {} pages, the index {} in {}",
                    props.entries,
                    props.pages,
                    total_entries,
                    pages.len()
                ),
            ));
        }
        if props.entries > 0 && props.min_key > props.max_key {
            return Err(Error::corruption(
                path,
                footer.properties.offset,
                "min key above max key",
            ));
        }
        Ok(Run {
            inner: Arc::new(RunInner {
                path: path.to_path_buf(),
                data,
                footer,
                search: PageSearch::new(&pages),
                pages,
                bloom,
                props,
                cache: options.cache,
                cache_id: NEXT_CACHE_ID.fetch_add(1, AtomicOrdering::Relaxed),
                counters: options.counters,
            }),
        })
    }

    /// The path the run was opened with.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The run's properties, as recorded by the writer.
    pub fn properties(&self) -> &Properties {
        &self.inner.props
    }

    /// The page index.
    pub fn pages(&self) -> &[PageHandle] {
        &self.inner.pages
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.inner.footer
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.inner.data.len()
    }

    /// The process-unique id this open run uses in page-cache keys.
    pub fn cache_id(&self) -> u64 {
        self.inner.cache_id
    }

    /// The counters this run updates.
    pub fn counters(&self) -> &Arc<RunCounters> {
        &self.inner.counters
    }

    /// True if the run has a bloom filter.
    pub fn has_bloom(&self) -> bool {
        self.inner.bloom.is_some()
    }

    /// Probes the bloom filter with a fingerprint from [`crate::key_fingerprint`]; true when the
    /// key may be present (always true without a filter). Counts the probe.
    pub fn bloom_may_contain(&self, fingerprint: u64) -> bool {
        match &self.inner.bloom {
            Some(bloom) => {
                let maybe = bloom.may_contain(fingerprint);
                self.inner.counters.bloom_check(!maybe);
                maybe
            }
            None => true,
        }
    }

    /// True if `key` lies within the run's [min key, max key].
    pub fn key_in_range(&self, key: &[u8]) -> bool {
        let props = &self.inner.props;
        props.entries > 0 && key >= props.min_key.as_slice() && key <= props.max_key.as_slice()
    }

    /// Reads, verifies and decompresses page `index`, through the cache.
    pub(crate) fn load_page(&self, index: usize) -> Result<Page> {
        let inner = &self.inner;
        let handle = inner.pages.get(index).ok_or_else(|| {
            Error::corruption(
                &inner.path,
                inner.footer.index.offset,
                format!("page {index} does not exist"),
            )
        })?;
        let key = PageKey {
            run: inner.cache_id,
            page: index as u32,
        };
        if let Some(bytes) = inner.cache.get(key) {
            return Page::parse_trusted(bytes).map_err(|e| e.at(&inner.path, handle.offset));
        }
        let stored_len = handle.stored_len as usize + BLOCK_TRAILER_LEN;
        let stored = inner
            .data
            .read_at(handle.offset, stored_len)
            .map_err(|e| Error::io(&inner.path, e))?;
        inner.counters.page_read(stored_len as u64);
        let raw = decode_block(&stored, handle.raw_len as usize)
            .map_err(|e| e.at(&inner.path, handle.offset))?;
        let bytes = Bytes::from(raw);
        let page = Page::parse(bytes.clone()).map_err(|e| e.at(&inner.path, handle.offset))?;
        inner.cache.insert(key, bytes);
        Ok(page)
    }

    /// Reads stored bytes straight from the file (no cache, no checksum).
    pub(crate) fn read_bytes(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let inner = &self.inner;
        inner
            .data
            .read_at(offset, len)
            .map(|b| b.into_owned())
            .map_err(|e| Error::io(&inner.path, e))
    }

    pub(crate) fn page_offset(&self, index: usize) -> u64 {
        self.inner.pages.get(index).map_or(0, |p| p.offset)
    }

    /// Index of the last page whose first entry is <= (key, seqno); `None` if the target sorts
    /// before the whole run.
    pub(crate) fn page_for(&self, key: &[u8], seqno: u64) -> Option<usize> {
        let inner = &self.inner;
        let after = inner.search.pages_at_or_before(&inner.pages, key, seqno);
        debug_assert_eq!(
            after,
            inner.pages.partition_point(|p| {
                compare_internal(&p.first_key, p.first_seqno, key, seqno) != Ordering::Greater
            })
        );
        after.checked_sub(1)
    }

    /// Point lookup: hands every version of `key` with seqno <= `read_seqno` to `visit`, newest
    /// first, until `visit` returns false or the versions run out.
    ///
    /// The engine stops at the first Put or Delete and collects Merge operands above it. The key
    /// range and bloom filter are checked first, so absent keys usually cost no I/O.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corruption`] if a page cannot be read or decoded.
    pub fn get(
        &self,
        key: &[u8],
        read_seqno: u64,
        mut visit: impl FnMut(Version) -> bool,
    ) -> Result<LookupOutcome> {
        if !self.key_in_range(key) {
            return Ok(LookupOutcome::OutOfRange);
        }
        if !self.bloom_may_contain(key_fingerprint(key)) {
            return Ok(LookupOutcome::BloomNegative);
        }
        let mut page_index = self.page_for(key, read_seqno).unwrap_or(0);
        let mut visited = 0;
        let mut cursor = PageCursor::new(self.load_page(page_index)?);
        cursor
            .seek(key, read_seqno)
            .map_err(|e| e.at(self.path(), self.page_offset(page_index)))?;
        loop {
            if !cursor.valid() {
                page_index += 1;
                if page_index >= self.inner.pages.len() {
                    break;
                }
                cursor.reset(self.load_page(page_index)?);
                cursor
                    .seek_to_first()
                    .map_err(|e| e.at(self.path(), self.page_offset(page_index)))?;
                continue;
            }
            if cursor.key() != key {
                break;
            }
            visited += 1;
            let version = Version {
                seqno: cursor.seqno(),
                kind: cursor.kind(),
                value: cursor.value(),
            };
            if !visit(version) {
                break;
            }
            cursor
                .next()
                .map_err(|e| e.at(self.path(), self.page_offset(page_index)))?;
        }
        Ok(LookupOutcome::Searched { visited })
    }
}

impl BlockHandle {
    pub(crate) fn end_checked(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }
}
