//! Opening a database: lock, metadata replay, garbage removal, run opening, WAL replay.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::batch;
use crate::commit::{CommitPipeline, WalState};
use crate::db::{DbInner, Registry, LOCK_FILE};
use crate::dump::open_run;
use crate::error::{Error, Result};
use crate::fs;
use crate::keyspace::KeyspaceInner;
use crate::memtable::Memtable;
use crate::meta::KeyspaceMeta;
use crate::meta::{MetaLog, MetaRecord, LOG_FILE};
use crate::options::{KeyspaceOptions, Options, WalMode, WalRecovery};
use crate::version::{
    parse_run_file_name, run_file_name, Range, Reaper, RunHandle, Slice, TreeVersion,
};
use crate::wal::{self, WalRecoveryMode, WalWriter};
use bytes::Bytes;
use std::collections::BTreeMap;
use strata_sstable::ClockCache;

/// Opens the database in `dir` (see [`crate::Db::open`]).
pub(crate) fn open(dir: &Path, options: Options) -> Result<DbInner> {
    let fs = Arc::clone(&options.fs);
    fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = fs.lock(&lock_path).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked {
            path: lock_path.clone(),
        },
        _ => Error::io(&lock_path, e),
    })?;
    let mut meta = MetaLog::open(Arc::clone(&fs), dir, options.meta_rewrite_threshold_bytes)?;
    remove_garbage(&fs, dir, &mut meta)?;
    let reaper = Arc::new(Reaper::new(Arc::clone(&fs)));
    let cache = Arc::new(ClockCache::new(options.cache_size_bytes as usize));

    // Keyspaces and their runs, newest run first.
    let mut registry = Registry::default();
    let mut max_seqno = 0u64;
    let state = meta.state().clone();
    for ks_meta in state.keyspaces.values() {
        let (ks_options, merge_operator) = KeyspaceOptions::decode_stored(&ks_meta.options)
            .map_err(|e| {
                Error::corruption(meta.path(), 0, format!("keyspace {:?}: {e}", ks_meta.name))
            })?;
        // The tree is built below; a keyspace starts empty until its ranges are known.
        let placeholder = TreeVersion {
            active: Arc::new(Memtable::new(0, 0)),
            sealed: Vec::new(),
            ranges: Vec::new(),
        };
        let ks = Arc::new(KeyspaceInner::new(
            ks_meta.id,
            ks_meta.name.clone(),
            ks_options,
            merge_operator,
            placeholder,
            crate::memtable::bloom_bytes_for_budget(options.memory_limit_bytes),
        ));
        let mut runs = BTreeMap::new();
        for (&run_id, info) in &ks_meta.runs {
            let path = dir.join(run_file_name(run_id));
            let run = open_run_checked(fs.as_ref(), &cache, &ks, &path, info)?;
            // Runs hold only dumped data: a version above the dumped seqno means the log and
            // the run disagree, and the WAL could not replay the gap below it.
            if info.max_seqno > ks_meta.dumped_seqno {
                return Err(Error::corruption(
                    meta.path(),
                    0,
                    format!(
                        "run {run_id} of keyspace {:?} holds seqnos up to {}, above the keyspace's \
                         dumped seqno {}",
                        ks_meta.name, info.max_seqno, ks_meta.dumped_seqno
                    ),
                ));
            }
            runs.insert(
                run_id,
                Arc::new(RunHandle::new(
                    run_id,
                    run,
                    info.clone(),
                    path,
                    Arc::clone(&reaper),
                )),
            );
            max_seqno = max_seqno.max(info.max_seqno);
        }
        let ranges = build_ranges(&mut meta, ks_meta, &runs)?;
        let tree = TreeVersion {
            active: Arc::new(Memtable::new(0, ks.memtable_bloom_bytes)),
            sealed: Vec::new(),
            ranges,
        };
        ks.update(|_| tree);
        max_seqno = max_seqno.max(ks_meta.dumped_seqno);
        registry.by_name.insert(ks_meta.name.clone(), ks_meta.id);
        registry.by_id.insert(ks_meta.id, ks);
    }

    // WAL replay: every record newer than its keyspace's dumped seqno goes back into memtables.
    let mode = match options.wal_recovery {
        WalRecovery::TolerateTornTail => WalRecoveryMode::TolerateTornTail,
        WalRecovery::SkipCorrupted => WalRecoveryMode::SkipCorrupted,
    };
    let segments = wal::list_segments(fs.as_ref(), dir)?;
    // Segment ids count up from 1 and never wrap: an id near u64::MAX is a damaged or foreign
    // file name, and would overflow the ids of the segments after it.
    if let Some(segment) = segments.iter().find(|s| s.id > MAX_SEGMENT_ID) {
        return Err(Error::corruption(
            &segment.path,
            0,
            format!(
                "WAL segment id {} is beyond the largest valid id {MAX_SEGMENT_ID}",
                segment.id
            ),
        ));
    }
    let mut closed = Vec::new();
    let mut quota_used = 0u64;
    let mut replayed = 0u64;
    // Records missing as a whole (a segment cut at a record boundary) are found by their seqnos.
    let max_dumped = state.keyspaces.values().map(|k| k.dumped_seqno).max();
    let mut chain = wal::SeqnoChain::new(max_dumped.unwrap_or(0), mode);
    for (i, segment) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let contents = wal::read_segment(fs.as_ref(), &segment.path, segment.id, is_last, mode)?;
        for (offset, what) in &contents.skipped {
            log::warn!(
                "strata: skipped damaged WAL bytes in {} at {offset}: {what}",
                segment.path.display()
            );
        }
        for record in &contents.records {
            let decoded = batch::decode(&record.payload).map_err(|what| {
                Error::corruption(&segment.path, record.offset, format!("WAL batch: {what}"))
            })?;
            chain.record(
                &segment.path,
                record.offset,
                decoded.first_seqno,
                record.last_seqno,
            )?;
            replayed += 1;
            for (j, entry) in decoded.entries.iter().enumerate() {
                let seqno = decoded.first_seqno + j as u64;
                max_seqno = max_seqno.max(seqno);
                let Some(ks) = registry.by_id.get(&entry.keyspace) else {
                    if entry.keyspace >= state.next_keyspace_id {
                        // A keyspace is logged before any write to it: the log lost it.
                        return Err(lost_metadata(
                            &meta,
                            format!(
                                "the WAL record at offset {} of {} writes to keyspace id {}, \
                                 which the metadata log never created",
                                record.offset,
                                segment.path.display(),
                                entry.keyspace
                            ),
                        ));
                    }
                    continue;
                };
                let dumped = state
                    .keyspaces
                    .get(&entry.keyspace)
                    .map_or(0, |k| k.dumped_seqno);
                if seqno > dumped {
                    quota_used += ks.insert(seqno, entry).0;
                }
            }
        }
        chain.segment_end(&segment.path, contents.valid_len);
        // Only the last segment can end in a torn write or in preallocated zeros; it is cut to
        // its last record before a new segment follows it.
        let repair = if is_last {
            wal::repair_tail(fs.as_ref(), dir, segment, &contents)?
        } else {
            wal::TailRepair::Clean
        };
        match repair {
            wal::TailRepair::Removed => continue,
            // A cut is durable, records included; an untouched last segment may not be.
            wal::TailRepair::Clean if is_last => wal::sync_segment(fs.as_ref(), segment)?,
            wal::TailRepair::Clean | wal::TailRepair::Truncated(_) => {}
        }
        closed.push((segment.id, contents.last_seqno()));
    }
    let next_segment_id = segments.last().map_or(1, |s| s.id + 1);
    let writer = match options.wal_mode {
        WalMode::None => None,
        WalMode::Write | WalMode::Fsync => Some(WalWriter::create(
            Arc::clone(&fs),
            dir,
            next_segment_id,
            options.wal_segment_size_bytes,
        )?),
    };
    let wal_state = WalState {
        writer,
        closed,
        next_segment_id: next_segment_id + 1,
    };
    let commit = CommitPipeline::new(
        max_seqno + 1,
        options.wal_mode,
        options.wal_segment_size_bytes,
        wal_state,
        Arc::clone(&fs),
    );
    let parts = crate::db::Parts {
        lock,
        meta,
        registry,
        commit,
        quota_used,
        reaper,
        cache,
    };
    let db = DbInner::new(dir.to_path_buf(), options, parts);
    db.recovered_records
        .store(replayed, std::sync::atomic::Ordering::Relaxed);
    Ok(db)
}

/// The ranges of a keyspace from the metadata state, in key order. A keyspace without ranges
/// (written before ranges existed) gets one unbounded range holding a slice of every live run;
/// a live run no slice reads is dropped. Both fixes are logged as one group.
fn build_ranges(
    meta: &mut MetaLog,
    ks_meta: &KeyspaceMeta,
    runs: &BTreeMap<u64, Arc<RunHandle>>,
) -> Result<Vec<Arc<Range>>> {
    let mut records = Vec::new();
    let mut ranges = Vec::new();
    let mut next_slice = meta.state().next_slice_id;
    if ks_meta.ranges.is_empty() {
        let id = meta.state().next_range_id;
        records.push(MetaRecord::InsertRange {
            keyspace: ks_meta.id,
            range: id,
            begin: None,
            end: None,
        });
        let mut slices = Vec::new();
        for (&run_id, handle) in runs {
            records.push(MetaRecord::InsertSlice {
                keyspace: ks_meta.id,
                range: id,
                slice: next_slice,
                run: run_id,
                begin: None,
                end: None,
            });
            slices.push(Arc::new(Slice::new(
                next_slice,
                Arc::clone(handle),
                None,
                None,
            )));
            next_slice += 1;
        }
        Range::sort_slices(&mut slices);
        ranges.push(Arc::new(Range {
            id,
            begin: None,
            end: None,
            slices,
        }));
    } else {
        let mut read = std::collections::BTreeSet::new();
        for range_meta in ks_meta.ranges.values() {
            let mut slices = Vec::new();
            for slice in range_meta.slices.values() {
                let handle = runs.get(&slice.run).ok_or_else(|| {
                    Error::corruption(
                        meta.path(),
                        0,
                        format!(
                            "slice {} reads run {} which is not live",
                            slice.id, slice.run
                        ),
                    )
                })?;
                read.insert(slice.run);
                let begin = slice.begin.clone().map(Bytes::from);
                let end = slice.end.clone().map(Bytes::from);
                slices.push(Arc::new(Slice::new(
                    slice.id,
                    Arc::clone(handle),
                    begin,
                    end,
                )));
            }
            Range::sort_slices(&mut slices);
            ranges.push(Arc::new(Range {
                id: range_meta.id,
                begin: range_meta.begin.clone().map(Bytes::from),
                end: range_meta.end.clone().map(Bytes::from),
                slices,
            }));
        }
        ranges.sort_by(|a, b| match (&a.begin, &b.begin) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.cmp(y),
        });
        let tiled = ranges.first().is_some_and(|r| r.begin.is_none())
            && ranges.last().is_some_and(|r| r.end.is_none())
            && ranges.windows(2).all(|w| w[0].end == w[1].begin);
        if !tiled {
            return Err(Error::corruption(
                meta.path(),
                0,
                format!("ranges of keyspace {:?} do not tile its keys", ks_meta.name),
            ));
        }
        for &run_id in runs.keys().filter(|id| !read.contains(id)) {
            records.push(MetaRecord::DropRun {
                keyspace: ks_meta.id,
                run: run_id,
            });
            if let Some(handle) = runs.get(&run_id) {
                handle.mark_obsolete();
            }
        }
    }
    if !records.is_empty() {
        meta.commit(records)?;
    }
    Ok(ranges)
}

/// Opens a live run, checking that the file is there and has the size the log recorded.
fn open_run_checked(
    fs: &dyn fs::Fs,
    cache: &Arc<ClockCache>,
    ks: &KeyspaceInner,
    path: &Path,
    info: &crate::meta::RunInfo,
) -> Result<strata_sstable::Run> {
    let expected_size = info.file_size;
    let size = fs.file_len(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            Error::corruption(path, 0, "run file named by the metadata log is missing")
        }
        _ => Error::io(path, e),
    })?;
    if size != expected_size {
        let what = format!("run file is {size} bytes, the metadata log says {expected_size}");
        return Err(Error::corruption(path, size.min(expected_size), what));
    }
    let run = open_run(fs, cache, ks, path)?;
    // The log's record of the run must describe this run: reads prune by it (key range,
    // seqnos), so a disagreement would make reads and compaction see different data.
    let props = run.properties();
    let recorded = (
        info.min_seqno,
        info.max_seqno,
        info.entries,
        info.min_key.as_slice(),
        info.max_key.as_slice(),
    );
    let actual = (
        props.min_seqno,
        props.max_seqno,
        props.entries,
        props.min_key.as_slice(),
        props.max_key.as_slice(),
    );
    if recorded != actual {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "the metadata log's record of this run (seqnos {}..={}, {} entries) does not \
                 match the run (seqnos {}..={}, {} entries, or its key range)",
                info.min_seqno,
                info.max_seqno,
                info.entries,
                props.min_seqno,
                props.max_seqno,
                props.entries
            ),
        ));
    }
    Ok(run)
}

/// Largest WAL segment id recovery accepts (2^62: a segment a microsecond for 146,000 years).
const MAX_SEGMENT_ID: u64 = 1 << 62;

/// The error for a metadata log that lost records (durable frames cut off its end): named after
/// the log, at its end, where the records are missing.
fn lost_metadata(meta: &MetaLog, what: String) -> Error {
    Error::corruption(
        meta.path(),
        meta.size_bytes(),
        format!("{what}: the log has lost records"),
    )
}

/// Deletes files of prepared and dropped runs (logging `ForgetRun`), temporary files, and run
/// files the log does not know.
fn remove_garbage(fs: &Arc<dyn fs::Fs>, dir: &Path, meta: &mut MetaLog) -> Result<()> {
    let garbage: BTreeSet<u64> = meta.state().garbage_runs();
    for &run in &garbage {
        let path = dir.join(run_file_name(run));
        for candidate in [fs::temp_path(&path), path] {
            match fs.remove_file(&candidate) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&candidate, e)),
            }
        }
    }
    let known = meta.state().known_runs();
    let names = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    // Every run is prepared in the log before its file is created, and ids are never reused: a
    // run file the log has no id for yet means the log lost records. Deleting it as a stray would
    // destroy data; refuse instead.
    let next_run_id = meta.state().next_run_id;
    if let Some(name) = names
        .iter()
        .find(|n| parse_run_file_name(n).is_some_and(|id| id >= next_run_id))
    {
        return Err(lost_metadata(
            meta,
            format!(
                "run file {name} exists, but the metadata log never prepared it (its next run \
                 id is {next_run_id})"
            ),
        ));
    }
    for name in names {
        let stray_run = parse_run_file_name(&name).is_some_and(|id| !known.contains(&id));
        let temporary = name.ends_with(".tmp") && name != format!("{LOG_FILE}.tmp");
        if stray_run || temporary {
            let path = dir.join(&name);
            log::info!("strata: removing stray file {}", path.display());
            fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    if !garbage.is_empty() {
        meta.commit(
            garbage
                .into_iter()
                .map(|run| MetaRecord::ForgetRun { run })
                .collect(),
        )?;
    }
    Ok(())
}
