//! Dumps: writing sealed memtables to runs on background threads, and trimming the WAL.
//!
//! Order of operations for one dump (see `engine/METADATA.md`):
//! 1. wait until every seqno below the memtable's seal limit is visible (so it holds all of them),
//!    and sync the WAL through it (so no other keyspace's earlier write is less durable);
//! 2. log `PrepareRun`; write the run to `<id>.run.tmp`, sync it, rename it to `<id>.run`, sync
//!    the directory;
//! 3. log `CreateRun` + `Dumped { seqno: limit - 1 }` as one group;
//! 4. swap the run in for the memtable, release its memory, delete WAL segments that hold
//!    nothing undumped.
//!
//! A crash before 3 leaves a prepared run that recovery deletes, and the data is still in the WAL.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_sstable::{Compression, EntryKind, Run, RunWriter, WriterOptions};

use crate::db::DbInner;
use crate::error::{Error, Result};
use crate::fs;
use crate::keyspace::KeyspaceInner;
use crate::meta::{MetaRecord, RunInfo};
use crate::version::{run_file_name, Range, RunHandle, Slice};

/// Work for a dump thread.
pub(crate) enum DumpJob {
    /// Dump the sealed memtables of a keyspace, oldest first.
    Dump(Arc<KeyspaceInner>),
    /// Sync the current WAL segment (requested every few MiB of WAL in `Write` mode).
    SyncWal,
    /// Fold the long upsert chain topped by (key, seqno) into one Put (vinyl's upsert squash).
    Squash(Arc<KeyspaceInner>, bytes::Bytes, u64),
    /// Stop the thread.
    Shutdown,
}

/// A dump thread's loop.
pub(crate) fn worker(db: &Arc<DbInner>, jobs: &crossbeam_channel::Receiver<DumpJob>) {
    while let Ok(job) = jobs.recv() {
        match job {
            DumpJob::Shutdown => break,
            DumpJob::SyncWal => db.commit.background_sync(),
            DumpJob::Squash(ks, key, seqno) => crate::merge::squash(db, &ks, &key, seqno),
            DumpJob::Dump(ks) => {
                if let Err(e) = dump_keyspace(db, &ks) {
                    db.commit
                        .poison(format!("dump of keyspace {:?} failed: {e}", ks.name));
                }
                db.propagate_meta_poison();
                let mut generation = db.dump_generation.lock().unwrap_or_else(|p| p.into_inner());
                *generation += 1;
                db.dump_done.notify_all();
            }
        }
    }
}

/// Dumps every sealed memtable of `ks`, oldest first, then runs the placeholder compaction and
/// trims the WAL.
pub(crate) fn dump_keyspace(db: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<()> {
    let _dumping = ks.dump_lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if ks.dropped.load(Ordering::Acquire) {
            return Ok(());
        }
        let version = ks.current();
        let Some(memtable) = version.sealed.last().cloned() else {
            break;
        };
        let limit = memtable.limit_seqno();
        db.commit
            .wait_visible(limit.saturating_sub(1), Duration::from_secs(3600))?;
        // Before this keyspace becomes durable up to limit - 1, so must every other keyspace's
        // writes below it (they may be only in the WAL): see CommitPipeline::sync_through.
        db.commit.sync_through(limit.saturating_sub(1))?;
        let started = Instant::now();
        let handle = if memtable.is_empty() {
            None
        } else {
            let entries = memtable.iter().map(Ok);
            Some(write_run(db, ks, entries, ks.options.dump_compression)?)
        };
        install_dump(db, ks, &memtable, handle.as_ref(), limit.saturating_sub(1))?;
        db.quota.release(memtable.size_bytes());
        let counters = &ks.counters;
        counters.dumps.fetch_add(1, Ordering::Relaxed);
        counters
            .dump_bytes_in
            .fetch_add(memtable.size_bytes(), Ordering::Relaxed);
        if let Some(handle) = &handle {
            counters
                .dump_bytes_out
                .fetch_add(handle.info.file_size, Ordering::Relaxed);
        }
        counters
            .dump_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
    db.update_regulator();
    db.wake_compaction();
    trim_wal(db)
}

/// Gives the dumped run a slice in every range it intersects and swaps it in for the memtable,
/// logging `CreateRun`, the slices and `Dumped` as one group.
fn install_dump(
    db: &DbInner,
    ks: &KeyspaceInner,
    memtable: &Arc<crate::memtable::Memtable>,
    handle: Option<&Arc<RunHandle>>,
    dumped_seqno: u64,
) -> Result<()> {
    let _shape = ks.shape.lock().unwrap_or_else(|p| p.into_inner());
    let current = ks.current();
    let mut meta = db.meta.lock().unwrap_or_else(|p| p.into_inner());
    let mut records = Vec::new();
    let mut next = (*current).clone();
    next.sealed.retain(|m| !Arc::ptr_eq(m, memtable));
    if let Some(handle) = handle {
        records.push(MetaRecord::CreateRun {
            keyspace: ks.id,
            run: handle.id,
            info: handle.info.clone(),
        });
        let mut slice_id = meta.state().next_slice_id;
        for range in next.ranges.iter_mut() {
            if !range.overlaps_keys(&handle.info.min_key, &handle.info.max_key) {
                continue;
            }
            let slice = Arc::new(Slice::new(
                slice_id,
                Arc::clone(handle),
                range.begin.clone(),
                range.end.clone(),
            ));
            records.push(slice.record(ks.id, range.id));
            slice_id += 1;
            let mut updated = Range::clone(range);
            updated.slices.insert(0, slice);
            Range::sort_slices(&mut updated.slices);
            *range = Arc::new(updated);
        }
    }
    records.push(MetaRecord::Dumped {
        keyspace: ks.id,
        seqno: dumped_seqno,
    });
    records.extend(db.reaper.forget_records());
    meta.commit(records)?;
    drop(meta);
    ks.install_ranges(next.ranges, Some(memtable));
    Ok(())
}

/// Writes a run from entries in internal order, through a temporary name, and returns its handle.
/// The run is prepared in the metadata log; the caller logs `CreateRun`.
pub(crate) fn write_run<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    db: &DbInner,
    ks: &KeyspaceInner,
    entries: impl Iterator<Item = Result<(K, u64, EntryKind, V)>>,
    compression: Compression,
) -> Result<Arc<RunHandle>> {
    let run_id = db
        .meta
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .prepare_run(ks.id)?;
    let path = db.dir.join(run_file_name(run_id));
    let tmp = fs::temp_path(&path);
    let file = db.fs.create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut user_properties = std::collections::BTreeMap::new();
    user_properties.insert("strata.run_id".to_string(), run_id.to_le_bytes().to_vec());
    user_properties.insert("strata.keyspace".to_string(), ks.name.as_bytes().to_vec());
    let options = WriterOptions {
        page_size: ks.options.page_size_bytes,
        compression,
        bloom_fp_rate: ks.options.bloom_fp_rate,
        max_value_len: db.options.max_value_len,
        user_properties,
        ..WriterOptions::default()
    };
    let mut writer = RunWriter::new(&tmp, file, options)?;
    for entry in entries {
        let (key, seqno, kind, value) = entry?;
        writer.add(key.as_ref(), seqno, kind, value.as_ref())?;
    }
    let props = writer.finish()?;
    db.fs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    db.fs.sync_dir(&db.dir).map_err(|e| Error::io(&db.dir, e))?;
    let run = open_run(db.fs.as_ref(), &db.cache, ks, &path)?;
    let info = RunInfo {
        min_seqno: props.min_seqno,
        max_seqno: props.max_seqno,
        entries: props.entries,
        file_size: run.file_size(),
        min_key: props.min_key.clone(),
        max_key: props.max_key.clone(),
    };
    Ok(Arc::new(RunHandle::new(
        run_id,
        run,
        info,
        path,
        Arc::clone(&db.reaper),
    )))
}

/// Opens a run file of `ks` through the file system and the shared page cache.
pub(crate) fn open_run(
    fs: &dyn crate::fs::Fs,
    cache: &Arc<strata_sstable::ClockCache>,
    ks: &KeyspaceInner,
    path: &std::path::Path,
) -> Result<Run> {
    let data = fs.open_read(path).map_err(|e| Error::io(path, e))?;
    let options = strata_sstable::ReadOptions {
        cache: Arc::clone(cache) as Arc<dyn strata_sstable::PageCache>,
        counters: Arc::clone(&ks.run_counters),
    };
    Ok(Run::open_with(path, Box::new(data), options)?)
}

/// Deletes closed WAL segments whose every record is dumped.
pub(crate) fn trim_wal(db: &DbInner) -> Result<()> {
    // Anything above the visible seqno may be in flight (written to the WAL, not yet in a
    // memtable), so it bounds what may be deleted too.
    let mut keep_from = db.commit.visible_seqno() + 1;
    for ks in db.all_keyspaces() {
        for memtable in ks.current().memtables() {
            if let Some(min) = memtable.min_seqno() {
                keep_from = keep_from.min(min);
            }
        }
    }
    let mut wal = db.commit.wal.lock().unwrap_or_else(|p| p.into_inner());
    while let Some(&(segment, last_seqno)) = wal.closed.first() {
        if last_seqno >= keep_from {
            break;
        }
        crate::wal::remove_segment(db.fs.as_ref(), &db.dir, segment)?;
        wal.closed.remove(0);
    }
    Ok(())
}
