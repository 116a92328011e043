//! Point reads: the newest visible version across memtables and runs, with upsert operands
//! folded onto it.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use strata_sstable::{EntryKind, LookupOutcome};

use crate::error::{Error, Result};
use crate::keyspace::KeyspaceInner;
use crate::merge;
use crate::version::TreeVersion;

/// The versions of one key seen newest first: the upsert operands on top and, once found, the
/// Put or Delete below them that decides the base.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// Merge operands, newest first.
    pub operands: Vec<Bytes>,
    /// `Some(base)` once a Put (`Some(value)`) or Delete (`None`) ended the chain.
    pub base: Option<Option<Bytes>>,
}

impl Chain {
    /// Adds the next older version; returns true while older versions still matter.
    pub fn push(&mut self, kind: EntryKind, value: Bytes) -> bool {
        match kind {
            EntryKind::Put => self.base = Some(Some(value)),
            EntryKind::Delete => self.base = Some(None),
            EntryKind::Merge => self.operands.push(value),
        }
        self.base.is_none()
    }

    /// The key's value: the base with the operands folded onto it (no base below the operands
    /// means no value).
    pub fn resolve(self, ks: &KeyspaceInner, key: &[u8]) -> Result<Option<Bytes>> {
        let base = self.base.flatten();
        if self.operands.is_empty() {
            return Ok(base);
        }
        resolve_operands(ks, key, base, &self.operands).map(Some)
    }
}

/// Folds `operands` (newest first) onto `base` with the keyspace's merge operator.
///
/// # Errors
/// [`Error::Merge`] naming the key if the operator rejects an operand, or if the keyspace has
/// operands but no operator attached.
pub(crate) fn resolve_operands(
    ks: &KeyspaceInner,
    key: &[u8],
    base: Option<Bytes>,
    operands_newest_first: &[Bytes],
) -> Result<Bytes> {
    let error = |message: String| Error::Merge {
        keyspace: ks.name.clone(),
        key: key.to_vec(),
        message,
    };
    let Some(operator) = ks.merge_operator() else {
        return Err(error(
            "the keyspace holds upsert operands but has no merge operator".into(),
        ));
    };
    merge::fold(
        operator.as_ref(),
        key,
        base.as_deref(),
        operands_newest_first,
    )
    .map(Bytes::from)
    .map_err(error)
}

/// The value of `key` visible at `read_seqno`: memtables newest first, then runs newest first
/// (skipped by seqno, key range and bloom filter); the first Put or Delete decides, with any
/// upsert operands above it folded on.
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
    let mut chain = Chain::default();
    for memtable in version.memtables() {
        if memtable.start_seqno > read_seqno {
            continue;
        }
        let mut more = true;
        memtable.for_each_version(key, read_seqno, |kind, value| {
            more = chain.push(kind, value);
            more
        });
        if !more {
            ks.counters
                .gets_from_memtable
                .fetch_add(1, Ordering::Relaxed);
            return chain.resolve(ks, key);
        }
    }
    let Some(range) = version.range_for(key) else {
        return chain.resolve(ks, key);
    };
    for slice in &range.slices {
        let handle = &slice.run;
        if handle.info.min_seqno > read_seqno || !slice.contains(key) {
            continue;
        }
        let mut more = true;
        let outcome = handle.run.get(key, read_seqno, |v| {
            more = chain.push(v.kind, v.value);
            more
        })?;
        if matches!(outcome, LookupOutcome::Searched { .. }) {
            ks.counters.runs_probed.fetch_add(1, Ordering::Relaxed);
        }
        if !more {
            break;
        }
    }
    chain.resolve(ks, key)
}
