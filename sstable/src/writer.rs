//! Writing a run: entries in order in, a finished, synced file out.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::block::{frame_block, BLOCK_TRAILER_LEN};
use crate::bloom::{key_fingerprint, RunBloom};
use crate::compression::{Compression, CompressionType, Compressor};
use crate::entry::{
    compare_internal, display_key, EntryKind, DEFAULT_MAX_VALUE_LEN, MAX_KEY_LEN, MAX_SEQNO,
    MAX_VALUE_LEN_LIMIT,
};
use crate::error::{Error, Result};
use crate::file::WriteFile;
use crate::footer::{BlockHandle, Footer, FORMAT_VERSION};
use crate::index::{encode_index, PageHandle};
use crate::page::PageBuilder;
use crate::properties::Properties;

/// How a run is written. Every field has a default; see [`WriterOptions::default`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Target raw page size in bytes (default 8 KiB, vinyl's `page_size`; RocksDB: `block_size`).
    /// A page is closed before an entry that might push it past this size (the estimate allows 30
    /// bytes of varints per entry), so pages end a little short of it; an entry larger than a page
    /// gets a page of its own. Must be within 64 B..=64 MiB.
    pub page_size: usize,
    /// Entries between restart points inside a page (default 16; RocksDB:
    /// `block_restart_interval`). Must be at least 1.
    pub restart_interval: usize,
    /// Page compression (default lz4).
    pub compression: Compression,
    /// Bloom filter false-positive rate (default 0.01; 1.0 or more disables the filter; vinyl:
    /// `bloom_fpr`). Must be above 0.
    pub bloom_fp_rate: f64,
    /// Longest value accepted (default 16 MiB; at most [`crate::MAX_VALUE_LEN_LIMIT`]).
    pub max_value_len: usize,
    /// Caller metadata stored in the properties block.
    pub user_properties: BTreeMap<String, Vec<u8>>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            page_size: 8 * 1024,
            restart_interval: 16,
            compression: Compression::Lz4,
            bloom_fp_rate: 0.01,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            user_properties: BTreeMap::new(),
        }
    }
}

impl WriterOptions {
    fn validate(&self) -> Result<()> {
        if self.page_size < 64 || self.page_size > 64 * 1024 * 1024 {
            return Err(Error::InvalidOption(format!(
                "page_size {} is outside 64..=64 MiB",
                self.page_size
            )));
        }
        if self.restart_interval == 0 || self.restart_interval > 1024 {
            return Err(Error::InvalidOption(format!(
                "restart_interval {} is outside 1..=1024",
                self.restart_interval
            )));
        }
        if self.bloom_fp_rate.is_nan() || self.bloom_fp_rate <= 0.0 {
            return Err(Error::InvalidOption(format!(
                "bloom_fp_rate {} must be above 0",
                self.bloom_fp_rate
            )));
        }
        if self.max_value_len > MAX_VALUE_LEN_LIMIT {
            return Err(Error::InvalidOption(format!(
                "max_value_len {} is above the format's limit of {MAX_VALUE_LEN_LIMIT}",
                self.max_value_len
            )));
        }
        self.compression.validate()
    }
}

/// Writes one run file.
///
/// Entries must arrive in internal order ([`crate::compare_internal`]): user key ascending, seqno
/// descending, no duplicate (key, seqno). Pages are written as they fill, so memory stays bounded
/// by one page plus the page index plus 8 bytes per distinct key (for the bloom filter).
/// [`RunWriter::finish`] writes the metadata blocks and footer and syncs the file; naming and
/// renaming the file is the caller's business.
///
/// Not thread-safe: one writer per thread.
pub struct RunWriter<W: WriteFile> {
    path: PathBuf,
    out: BufWriter<W>,
    options: WriterOptions,
    compressor: Compressor,
    page: PageBuilder,
    page_first: Option<(Vec<u8>, u64)>,
    pages: Vec<PageHandle>,
    fingerprints: Vec<u64>,
    last: Option<(Vec<u8>, u64)>,
    offset: u64,
    props: Properties,
    scratch: Vec<u8>,
}

impl RunWriter<File> {
    /// Creates `path` (failing if it exists) and returns a writer into it.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be created; [`Error::InvalidOption`] for bad options.
    pub fn create(path: &Path, options: WriterOptions) -> Result<Self> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        RunWriter::new(path, file, options)
    }
}

impl<W: WriteFile> RunWriter<W> {
    /// Wraps an open, empty file. `path` is used in error messages only.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for bad options.
    pub fn new(path: &Path, file: W, options: WriterOptions) -> Result<Self> {
        options.validate()?;
        let compressor = Compressor::new(options.compression)?;
        let props = Properties {
            format_version: FORMAT_VERSION,
            page_size: options.page_size as u32,
            restart_interval: options.restart_interval as u32,
            compression: Some(options.compression),
            bloom_fp_rate: options.bloom_fp_rate.min(1.0),
            ..Properties::default()
        };
        Ok(RunWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, file),
            page: PageBuilder::new(options.restart_interval),
            options,
            compressor,
            page_first: None,
            pages: Vec::new(),
            fingerprints: Vec::new(),
            last: None,
            offset: 0,
            props,
            scratch: Vec::new(),
        })
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.props.entries
    }

    /// Bytes written to the file so far plus the open page (an estimate of the final data size).
    pub fn estimated_len(&self) -> u64 {
        self.offset + self.page.estimated_len() as u64
    }

    /// Appends one entry.
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`], [`Error::ValueTooLarge`], [`Error::SeqnoOutOfRange`],
    /// [`Error::OutOfOrder`] for bad input (nothing is written for it, and the writer stays
    /// usable); [`Error::Io`] if writing a full page fails (the writer is then unusable).
    pub fn add(&mut self, key: &[u8], seqno: u64, kind: EntryKind, value: &[u8]) -> Result<()> {
        if key.len() > MAX_KEY_LEN {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        if value.len() > self.options.max_value_len {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.options.max_value_len,
            });
        }
        if seqno > MAX_SEQNO {
            return Err(Error::SeqnoOutOfRange {
                seqno,
                max: MAX_SEQNO,
            });
        }
        let new_key = match &self.last {
            Some((last_key, last_seqno)) => {
                match compare_internal(last_key, *last_seqno, key, seqno) {
                    Ordering::Less => last_key.as_slice() != key,
                    _ => {
                        return Err(Error::OutOfOrder {
                            path: self.path.clone(),
                            prev_key: display_key(last_key),
                            prev_seqno: *last_seqno,
                            key: display_key(key),
                            seqno,
                        })
                    }
                }
            }
            None => true,
        };
        if !self.page.is_empty()
            && self.page.estimated_len() + PageBuilder::entry_cost(key.len(), value.len())
                > self.options.page_size
        {
            self.flush_page()?;
        }
        if self.page.is_empty() {
            self.page_first = Some((key.to_vec(), seqno));
        }
        self.page.add(key, seqno, kind, value);

        let props = &mut self.props;
        if props.entries == 0 {
            props.min_key = key.to_vec();
            props.min_seqno = seqno;
        }
        props.entries += 1;
        match kind {
            EntryKind::Put => props.puts += 1,
            EntryKind::Delete => props.deletes += 1,
            EntryKind::Merge => props.merges += 1,
        }
        props.min_seqno = props.min_seqno.min(seqno);
        props.max_seqno = props.max_seqno.max(seqno);
        props.raw_key_bytes += key.len() as u64;
        props.raw_value_bytes += value.len() as u64;
        if new_key {
            props.distinct_keys += 1;
            if self.options.bloom_fp_rate < 1.0 {
                self.fingerprints.push(key_fingerprint(key));
            }
            let last = self.last.get_or_insert_with(Default::default);
            last.0.clear();
            last.0.extend_from_slice(key);
        }
        if let Some(last) = self.last.as_mut() {
            last.1 = seqno;
        }
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn flush_page(&mut self) -> Result<()> {
        if self.page.is_empty() {
            return Ok(());
        }
        let entries = self.page.entries();
        let raw = self.page.finish();
        let (first_key, first_seqno) = self.page_first.take().unwrap_or_default();
        #[cfg(feature = "invariants")]
        check_page_round_trip(&raw, entries);
        let mut stored = std::mem::take(&mut self.scratch);
        stored.clear();
        let payload_len = match self.compressor.compress(&raw) {
            Some((kind, compressed)) => {
                frame_block(&mut stored, &compressed, kind);
                self.props.compressed_pages += 1;
                compressed.len()
            }
            None => {
                frame_block(&mut stored, &raw, CompressionType::None);
                raw.len()
            }
        };
        let handle = PageHandle {
            first_key: first_key.into(),
            first_seqno,
            offset: self.offset,
            stored_len: payload_len as u32,
            raw_len: raw.len() as u32,
            entries,
        };
        self.write_all(&stored)?;
        self.scratch = stored;
        self.props.pages += 1;
        self.props.raw_data_bytes += raw.len() as u64;
        self.props.stored_data_bytes += (payload_len + BLOCK_TRAILER_LEN) as u64;
        self.props.max_page_raw_len = self.props.max_page_raw_len.max(raw.len() as u32);
        self.pages.push(handle);
        Ok(())
    }

    fn write_plain_block(&mut self, payload: &[u8]) -> Result<BlockHandle> {
        let mut stored = Vec::with_capacity(payload.len() + BLOCK_TRAILER_LEN);
        frame_block(&mut stored, payload, CompressionType::None);
        let handle = BlockHandle {
            offset: self.offset,
            len: stored.len() as u64,
        };
        self.write_all(&stored)?;
        Ok(handle)
    }

    /// Writes the last page, the index, bloom and properties blocks and the footer, then flushes
    /// and syncs the file. Returns the run's properties.
    ///
    /// # Errors
    /// [`Error::Io`] if a write or the sync fails; the file must then be discarded.
    pub fn finish(self) -> Result<Properties> {
        self.finish_with_file().map(|(props, _)| props)
    }

    /// Like [`RunWriter::finish`], and hands back the synced file (for in-memory sinks and for
    /// callers that want to keep the handle).
    ///
    /// # Errors
    /// As for [`RunWriter::finish`].
    pub fn finish_with_file(mut self) -> Result<(Properties, W)> {
        self.flush_page()?;
        if let Some((last_key, _)) = self.last.take() {
            self.props.max_key = last_key;
        }
        self.props.created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.props.user = std::mem::take(&mut self.options.user_properties)
            .into_iter()
            .map(|(k, v)| (k, serde_bytes::ByteBuf::from(v)))
            .collect();

        let index = self.write_plain_block(&encode_index(&self.pages))?;
        self.fingerprints.sort_unstable();
        self.fingerprints.dedup();
        let bloom = match RunBloom::build(&self.fingerprints, self.options.bloom_fp_rate) {
            Some(bytes) => {
                self.props.bloom_bytes = bytes.len() as u64;
                self.write_plain_block(&bytes)?
            }
            None => {
                self.props.bloom_fp_rate = 1.0;
                BlockHandle {
                    offset: self.offset,
                    len: 0,
                }
            }
        };
        self.fingerprints = Vec::new();
        let properties = self.write_plain_block(&self.props.encode())?;
        let footer = Footer {
            index,
            bloom,
            properties,
            format_version: FORMAT_VERSION,
        };
        self.write_all(&footer.encode())?;
        let path = self.path.clone();
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.sync_data().map_err(|e| Error::io(&path, e))?;
        Ok((self.props, file))
    }
}

#[cfg(feature = "invariants")]
fn check_page_round_trip(raw: &[u8], entries: u32) {
    use crate::page::{Page, PageCursor};
    let page = Page::parse(bytes::Bytes::copy_from_slice(raw)).expect("invariant: page decodes");
    let mut cursor = PageCursor::new(page);
    cursor
        .seek_to_first()
        .expect("invariant: first entry decodes");
    let mut count = 0;
    let mut prev: Option<(Vec<u8>, u64)> = None;
    while cursor.valid() {
        if let Some((key, seqno)) = &prev {
            assert_eq!(
                compare_internal(key, *seqno, cursor.key(), cursor.seqno()),
                Ordering::Less,
                "invariant: page entries ascend"
            );
        }
        prev = Some((cursor.key().to_vec(), cursor.seqno()));
        count += 1;
        cursor.next().expect("invariant: entry decodes");
    }
    assert_eq!(count, entries, "invariant: page holds the entries added");
}
