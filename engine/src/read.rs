//! Point reads: the newest visible version across memtables and runs.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use strata_sstable::{EntryKind, LookupOutcome};

use crate::error::Result;
use crate::keyspace::KeyspaceInner;
use crate::version::TreeVersion;

fn resolve(kind: EntryKind, value: Bytes) -> Option<Bytes> {
    match kind {
        // Merge operands read as plain values until merge operators exist.
        EntryKind::Put | EntryKind::Merge => Some(value),
        EntryKind::Delete => None,
    }
}

/// The value of `key` visible at `read_seqno`: memtables newest first, then runs newest first
/// (skipped by seqno, key range and bloom filter); the first version found decides.
pub(crate) fn get(ks: &KeyspaceInner, key: &[u8], read_seqno: u64) -> Result<Option<Bytes>> {
    get_in(ks, &ks.current(), key, read_seqno)
}

/// [`get`] over a tree the caller already holds.
pub(crate) fn get_in(
    ks: &KeyspaceInner,
    version: &TreeVersion,
    key: &[u8],
    read_seqno: u64,
) -> Result<Option<Bytes>> {
    ks.counters.gets.fetch_add(1, Ordering::Relaxed);
    for memtable in version.memtables() {
        if memtable.start_seqno > read_seqno {
            continue;
        }
        if let Some(found) = memtable.get(key, read_seqno) {
            ks.counters
                .gets_from_memtable
                .fetch_add(1, Ordering::Relaxed);
            return Ok(resolve(found.kind, found.value));
        }
    }
    let Some(range) = version.range_for(key) else {
        return Ok(None);
    };
    for slice in &range.slices {
        let handle = &slice.run;
        if handle.info.min_seqno > read_seqno {
            continue;
        }
        let mut found = None;
        let outcome = handle.run.get(key, read_seqno, |v| {
            found = Some((v.kind, v.value));
            false
        })?;
        if matches!(outcome, LookupOutcome::Searched { .. }) {
            ks.counters.runs_probed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((kind, value)) = found {
            return Ok(resolve(kind, value));
        }
    }
    Ok(None)
}
