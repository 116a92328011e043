//! Placeholder compaction: when a keyspace holds too many runs, merge them all into one.
//!
//! The vinyl policy with ranges and levels replaces this in the compaction issue. This version
//! is already correct about read views: for each key it keeps every version newer than the
//! oldest read view, plus the newest version at or below it; a delete at that point is dropped
//! (with everything it shadows) because the merge covers every run of the keyspace.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use strata_compaction::{BoxedSource, EntrySource, MergeIter};
use strata_sstable::{EntryKind, RunIter};

use crate::db::DbInner;
use crate::dump::write_run;
use crate::error::Result;
use crate::keyspace::KeyspaceInner;
use crate::meta::MetaRecord;

/// Merges every run of `ks` into one. The caller holds `ks.maintenance`.
pub(crate) fn compact_all(db: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<()> {
    let version = ks.current();
    let inputs = version.runs.clone();
    if inputs.len() < 2 {
        return Ok(());
    }
    let started = Instant::now();
    let visible = db.commit.visible_seqno();
    let oldest_view = db.read_views.oldest().map_or(visible, |v| v.min(visible));
    let sources: Vec<BoxedSource> = inputs
        .iter()
        .map(|h| {
            Box::new(RunIter::new(
                &h.run,
                std::ops::Bound::Unbounded,
                std::ops::Bound::Unbounded,
            )) as BoxedSource
        })
        .collect();
    let mut merge = MergeIter::new(sources);
    merge.seek_to_first()?;
    let entries = GcIter {
        merge,
        oldest_view,
        current_key: None,
        settled: false,
    };
    let output = write_run(db, ks, entries, ks.options.compaction_compression)?;
    let bytes_in: u64 = inputs.iter().map(|h| h.info.file_size).sum();
    let mut records = Vec::new();
    let keep = output.info.entries > 0;
    if keep {
        records.push(MetaRecord::CreateRun {
            keyspace: ks.id,
            run: output.id,
            info: output.info.clone(),
        });
    } else {
        // Everything was garbage. The run stays prepared until its handle drops below; the
        // reaper then deletes the file, syncs the directory, and a later commit forgets it.
        output.mark_obsolete();
    }
    records.extend(inputs.iter().map(|h| MetaRecord::DropRun {
        keyspace: ks.id,
        run: h.id,
    }));
    records.extend(
        db.reaper
            .take_forgotten()
            .into_iter()
            .map(|run| MetaRecord::ForgetRun { run }),
    );
    db.meta
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .commit(records)?;
    ks.update(|v| {
        let mut next = v.clone();
        next.runs
            .retain(|r| !inputs.iter().any(|i| Arc::ptr_eq(i, r)));
        if keep {
            next.runs.push(Arc::clone(&output));
        }
        next
    });
    for input in &inputs {
        input.mark_obsolete();
    }
    let counters = &ks.counters;
    counters.compactions.fetch_add(1, Ordering::Relaxed);
    counters
        .compaction_bytes_in
        .fetch_add(bytes_in, Ordering::Relaxed);
    counters.compaction_bytes_out.fetch_add(
        if keep { output.info.file_size } else { 0 },
        Ordering::Relaxed,
    );
    counters
        .compaction_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    Ok(())
}

/// The merged stream with version garbage collected (see the module documentation).
struct GcIter {
    merge: MergeIter,
    oldest_view: u64,
    current_key: Option<Bytes>,
    /// True once the current key's version at or below the oldest view has been decided.
    settled: bool,
}

impl Iterator for GcIter {
    type Item = Result<(Bytes, u64, EntryKind, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if !self.merge.valid() {
                return None;
            }
            let (seqno, kind) = (self.merge.seqno(), self.merge.kind());
            if self.current_key.as_deref() != Some(self.merge.key()) {
                self.current_key = Some(Bytes::copy_from_slice(self.merge.key()));
                self.settled = false;
            }
            let key = self.current_key.clone().unwrap_or_default();
            let value = self.merge.value();
            if let Err(e) = self.merge.next() {
                return Some(Err(e.into()));
            }
            if seqno > self.oldest_view {
                return Some(Ok((key, seqno, kind, value)));
            }
            if self.settled {
                continue;
            }
            self.settled = true;
            if kind != EntryKind::Delete {
                return Some(Ok((key, seqno, kind, value)));
            }
        }
    }
}
