//! Full verification of a run: every page's checksum, decode and key order, and agreement of
//! pages, index, bloom filter and properties.

use std::cmp::Ordering;
use std::path::Path;

use bytes::Bytes;
use serde::Serialize;

use crate::block::{decode_block, BLOCK_TRAILER_LEN};
use crate::bloom::key_fingerprint;
use crate::entry::{compare_internal, display_key, EntryKind};
use crate::error::Result;
use crate::page::{Page, PageCursor};
use crate::reader::{ReadOptions, Run};

/// Problems beyond this many are counted but not described.
const MAX_PROBLEMS: usize = 100;

/// One thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File offset of the damaged structure (the page start for page problems).
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`Run::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Pages read.
    pub pages: u64,
    /// Entries decoded.
    pub entries: u64,
    /// Stored bytes read.
    pub bytes: u64,
    /// Problems found, in file order (at most 100 described).
    pub problems: Vec<Problem>,
    /// Problems found in total.
    pub problem_count: u64,
}

impl VerifyReport {
    /// True if nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    /// The offset of the first problem, if any.
    pub fn first_bad_offset(&self) -> Option<u64> {
        self.problems.first().map(|p| p.offset)
    }

    fn problem(&mut self, offset: u64, what: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                offset,
                what: what.into(),
            });
        }
    }
}

/// Opens and verifies the run at `path`.
///
/// # Errors
/// Whatever [`Run::open`] returns: a run whose footer or metadata blocks are damaged cannot be
/// verified page by page.
pub fn verify_file(path: &Path) -> Result<VerifyReport> {
    Ok(Run::open(path, ReadOptions::default())?.verify())
}

impl Run {
    /// Reads every page straight from the file (bypassing the cache) and checks every checksum,
    /// that entries decode and ascend across the whole run, that each page matches its index
    /// entry, that the bloom filter holds every key, and that the properties match the contents.
    /// Never fails: what it cannot read becomes a [`Problem`].
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        let mut prev: Option<(Vec<u8>, u64)> = None;
        let mut kinds = [0u64; 3];
        let mut min_seqno = u64::MAX;
        let mut max_seqno = 0;
        let mut first_key: Option<Vec<u8>> = None;
        for (index, handle) in self.pages().iter().enumerate() {
            report.pages += 1;
            let stored_len = handle.stored_len as usize + BLOCK_TRAILER_LEN;
            report.bytes += stored_len as u64;
            let page = self
                .read_raw(handle.offset, stored_len)
                .and_then(|stored| decode_block(&stored, handle.raw_len as usize).map_err(|e| e.0))
                .and_then(|raw| Page::parse(Bytes::from(raw)).map_err(|e| e.0));
            let page = match page {
                Ok(page) => page,
                Err(what) => {
                    report.problem(handle.offset, format!("page {index}: {what}"));
                    prev = None;
                    continue;
                }
            };
            if let Err(e) = page.check_restarts() {
                report.problem(handle.offset, format!("page {index}: {}", e.0));
            }
            let mut cursor = PageCursor::new(page);
            let mut step = cursor.seek_to_first();
            let mut count = 0u32;
            while step.is_ok() && cursor.valid() {
                let (key, seqno) = (cursor.key(), cursor.seqno());
                if count == 0 && (key != handle.first_key.as_ref() || seqno != handle.first_seqno) {
                    report.problem(
                        handle.offset,
                        format!("page {index}: first entry differs from the page index"),
                    );
                }
                if let Some((prev_key, prev_seqno)) = &prev {
                    if compare_internal(prev_key, *prev_seqno, key, seqno) != Ordering::Less {
                        report.problem(
                            handle.offset,
                            format!("page {index}: ({}, {seqno}) does not sort after ({}, {prev_seqno})", display_key(key), display_key(prev_key)),
                        );
                    }
                }
                let new_key = prev.as_ref().is_none_or(|(k, _)| k.as_slice() != key);
                if new_key && !self.bloom_may_contain(key_fingerprint(key)) {
                    report.problem(
                        handle.offset,
                        format!("page {index}: bloom filter misses key {}", display_key(key)),
                    );
                }
                first_key.get_or_insert_with(|| key.to_vec());
                kinds[match cursor.kind() {
                    EntryKind::Put => 0,
                    EntryKind::Delete => 1,
                    EntryKind::Merge => 2,
                }] += 1;
                min_seqno = min_seqno.min(seqno);
                max_seqno = max_seqno.max(seqno);
                prev = Some((key.to_vec(), seqno));
                count += 1;
                step = cursor.next();
            }
            if let Err(e) = step {
                report.problem(handle.offset, format!("page {index}: {}", e.0));
                prev = None;
            } else if count != handle.entries {
                report.problem(
                    handle.offset,
                    format!(
                        "page {index}: {count} entries, the index says {}",
                        handle.entries
                    ),
                );
            }
            report.entries += u64::from(count);
        }
        self.check_properties(
            &mut report,
            kinds,
            first_key,
            prev.map(|(k, _)| k),
            (min_seqno, max_seqno),
        );
        report
    }

    fn check_properties(
        &self,
        report: &mut VerifyReport,
        kinds: [u64; 3],
        first_key: Option<Vec<u8>>,
        last_key: Option<Vec<u8>>,
        seqnos: (u64, u64),
    ) {
        if !report.is_ok() {
            return; // Counts from a damaged run would only repeat the page problems.
        }
        let props = self.properties();
        let offset = self.footer().properties.offset;
        if [props.puts, props.deletes, props.merges] != kinds {
            report.problem(
                offset,
                format!(
                    "properties count {:?} puts/deletes/merges, the pages hold {kinds:?}",
                    [props.puts, props.deletes, props.merges]
                ),
            );
        }
        if report.entries > 0 {
            if first_key.as_deref() != Some(props.min_key.as_slice())
                || last_key.as_deref() != Some(props.max_key.as_slice())
            {
                report.problem(offset, "properties' min/max key differ from the pages");
            }
            if (props.min_seqno, props.max_seqno) != seqnos {
                report.problem(offset, "properties' min/max seqno differ from the pages");
            }
        }
    }

    fn read_raw(&self, offset: u64, len: usize) -> std::result::Result<Vec<u8>, String> {
        self.read_bytes(offset, len).map_err(|e| e.to_string())
    }
}
