//! Range compaction, split and coalesce.
//!
//! A compaction merges a range's newest slices (the prefix the policy chose), drops versions no
//! read view needs ([`VersionGc`]: one version per read-view interval; deletes go only when the
//! output is the range's bottom), writes one run with the keyspace's compaction compression, and
//! replaces the input slices by one slice of it in a single metadata group. Input runs that no
//! slice reads any more are dropped; their files go when the last iterator lets go.
//!
//! Only the final install holds the keyspace's `shape` lock (also taken by a dump assigning
//! slices, and by split and coalesce), so dumps never wait behind the merge itself. A range being
//! compacted is marked busy; split and coalesce leave busy ranges alone.
//!
//! After a compaction the range may split in two at the first key of its bottom run's middle
//! page (when that run exceeds 4/3 of the target range size), or coalesce with an idle neighbour
//! (when both together stay below half of it). Both only re-slice runs: metadata, no data copied.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use strata_compaction::{
    BoxedSource, CompactionPolicy, GcError, MergeIter, RangeRuns, RunSlice, VersionGc,
};

use crate::db::DbInner;
use crate::dump::write_run;
use crate::error::{Error, Result};
use crate::keyspace::KeyspaceInner;
use crate::meta::MetaRecord;
use crate::version::{Range, RunHandle, Slice, TreeVersion};

/// The policy's view of a range: its slices' sizes and seeds, newest first.
pub(crate) fn policy_input(range: &Range) -> Vec<RunSlice> {
    range
        .slices
        .iter()
        .map(|s| RunSlice {
            bytes: s.bytes,
            seed: s.seed,
        })
        .collect()
}

/// The read views compaction must preserve: open snapshots and the current visible seqno.
fn read_views(db: &DbInner) -> Vec<u64> {
    db.read_views.all_and_visible(|| db.commit.visible_seqno())
}

/// Compacts the newest `run_count` slices of range `range_id` of `ks`. The caller has marked the
/// range busy. Returns false if the range or its slices changed shape in between (nothing done).
pub(crate) fn compact_range(
    db: &DbInner,
    ks: &Arc<KeyspaceInner>,
    range_id: u64,
    run_count: usize,
) -> Result<bool> {
    let version = ks.current();
    let Some(range) = version.ranges.iter().find(|r| r.id == range_id).cloned() else {
        return Ok(false);
    };
    if run_count < 1 || run_count > range.slices.len() {
        return Ok(false);
    }
    let inputs: Vec<Arc<Slice>> = range.slices[..run_count].to_vec();
    let is_bottom = run_count == range.slices.len();
    // The level the output lands on: that of the oldest input (the policy merges a level with
    // every newer one).
    let output_level = ks.options.policy().ok().and_then(|policy| {
        let shape = policy.analyze(&RangeRuns::new(&policy_input(&range)));
        shape
            .levels
            .iter()
            .find(|l| l.runs.contains(&(run_count - 1)))
            .map(|l| l.index as usize)
    });
    let started = Instant::now();
    let views = read_views(db);
    let sources: Vec<BoxedSource> = inputs
        .iter()
        .map(|s| Box::new(s.iter(&Bound::Unbounded, &Bound::Unbounded)) as BoxedSource)
        .collect();
    let merge_fns = ks.merge_operator().map(|operator| {
        (
            crate::merge::full_merge_fn(Arc::clone(operator)),
            crate::merge::partial_merge_fn(Arc::clone(operator)),
        )
    });
    let mut gc = VersionGc::new(MergeIter::new(sources), &views, is_bottom);
    if let Some((full, partial)) = &merge_fns {
        gc = gc
            .with_merge_fn(full.as_ref())
            .with_partial_merge_fn(partial.as_ref());
    }
    let entries = gc.by_ref().map(|item| {
        item.map(|e| (e.key, e.seqno, e.kind, e.value))
            .map_err(|e| match e {
                GcError::Source(source) => Error::from(source),
                other => Error::InvalidArgument(other.to_string()),
            })
    });
    let output = write_run(db, ks, entries, ks.options.compaction_compression)?;
    let stats = gc.stats();

    let _shape = ks.shape.lock().unwrap_or_else(|p| p.into_inner());
    if ks.dropped.load(Ordering::Acquire) {
        output.mark_obsolete();
        return Ok(false);
    }
    let current = ks.current();
    let Some(range_now) = current.ranges.iter().find(|r| r.id == range_id).cloned() else {
        output.mark_obsolete();
        return Ok(false);
    };
    // Dumps may have added newer slices meanwhile; the inputs must all still be there.
    if !inputs
        .iter()
        .all(|i| range_now.slices.iter().any(|s| Arc::ptr_eq(s, i)))
    {
        output.mark_obsolete();
        return Ok(false);
    }
    let mut meta = db.meta.lock().unwrap_or_else(|p| p.into_inner());
    let mut records = Vec::new();
    let keep = output.info.entries > 0;
    let mut new_slice = None;
    if keep {
        let slice_id = meta.state().next_slice_id;
        records.push(MetaRecord::CreateRun {
            keyspace: ks.id,
            run: output.id,
            info: output.info.clone(),
        });
        let slice = Slice::new(
            slice_id,
            Arc::clone(&output),
            range_now.begin.clone(),
            range_now.end.clone(),
        );
        records.push(slice.record(ks.id, range_id));
        new_slice = Some(Arc::new(slice));
    } else {
        // Everything was garbage: the run stays prepared until its handle drops; the reaper then
        // deletes the file and a later commit forgets it.
        output.mark_obsolete();
    }
    for input in &inputs {
        records.push(MetaRecord::DeleteSlice {
            keyspace: ks.id,
            range: range_id,
            slice: input.id,
        });
    }
    let mut next = TreeVersion::clone(&current);
    let mut slices: Vec<Arc<Slice>> = range_now
        .slices
        .iter()
        .filter(|s| !inputs.iter().any(|i| Arc::ptr_eq(s, i)))
        .cloned()
        .collect();
    slices.extend(new_slice);
    Range::sort_slices(&mut slices);
    replace_range(
        &mut next,
        Range {
            slices,
            ..(*range_now).clone()
        },
    );
    let dropped = dropped_runs(&current, &next);
    records.extend(dropped.iter().map(|r| MetaRecord::DropRun {
        keyspace: ks.id,
        run: r.id,
    }));
    records.extend(db.reaper.forget_records());
    meta.commit(records)?;
    drop(meta);
    ks.install_ranges(next.ranges, None);
    for run in &dropped {
        run.mark_obsolete();
    }
    let counters = &ks.counters;
    counters.compactions.fetch_add(1, Ordering::Relaxed);
    counters
        .compaction_bytes_in
        .fetch_add(inputs.iter().map(|s| s.bytes).sum(), Ordering::Relaxed);
    counters.compaction_bytes_out.fetch_add(
        if keep { output.info.file_size } else { 0 },
        Ordering::Relaxed,
    );
    if is_bottom && keep {
        counters
            .compaction_bytes_out_bottom
            .fetch_add(output.info.file_size, Ordering::Relaxed);
    }
    counters
        .compaction_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let bytes_out = if keep { output.info.file_size } else { 0 };
    let bytes_in: u64 = inputs.iter().map(|s| s.bytes).sum();
    if let Some(level) = output_level {
        let mut by_level = counters
            .compaction_bytes_by_level
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if by_level.len() <= level {
            by_level.resize(level + 1, 0);
        }
        by_level[level] += bytes_out;
    }
    {
        let mut by_range = counters
            .compactions_by_range
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slot = by_range.entry(range_id).or_insert([0; 4]);
        slot[0] += 1;
        slot[1] += bytes_in;
        slot[2] += bytes_out;
        slot[3] += started.elapsed().as_micros() as u64;
    }
    db.regulator
        .record_compaction(inputs.iter().map(|s| s.bytes).sum(), started.elapsed());
    counters.versions_dropped.fetch_add(
        stats.versions_dropped + stats.deletes_dropped,
        Ordering::Relaxed,
    );
    Ok(true)
}

/// Swaps the range with the same id in `version` for `range`.
fn replace_range(version: &mut TreeVersion, range: Range) {
    if let Some(slot) = version.ranges.iter_mut().find(|r| r.id == range.id) {
        *slot = Arc::new(range);
    }
}

/// Runs read by `before` that `after` no longer reads.
pub(crate) fn dropped_runs(before: &TreeVersion, after: &TreeVersion) -> Vec<Arc<RunHandle>> {
    let still: BTreeSet<u64> = after.runs().into_keys().collect();
    before
        .runs()
        .into_values()
        .filter(|r| !still.contains(&r.id))
        .collect()
}

/// The target range size of `ks`: the configured one, or vinyl's automatic one (bottom-level
/// bytes / (4 x dumps per compaction), with `run_count_per_level` standing in for dumps per
/// compaction), clamped to the database's window.
pub(crate) fn target_range_size(db: &DbInner, ks: &KeyspaceInner, version: &TreeVersion) -> u64 {
    if let Some(size) = ks.options.range_size_bytes {
        return size;
    }
    let bottom: u64 = version
        .ranges
        .iter()
        .filter_map(|r| r.slices.last())
        .map(|s| s.bytes)
        .sum();
    let dumps_per_compaction = u64::from(ks.options.run_count_per_level.max(1));
    (bottom / (4 * dumps_per_compaction)).clamp(
        db.options.range_size_min_bytes,
        db.options.range_size_max_bytes,
    )
}

/// The split key of a range whose bottom slice is large: the first key of the middle page of
/// the bottom run that lies inside the range, if it leaves both halves non-empty.
fn split_key(range: &Range) -> Option<Bytes> {
    let bottom = range.slices.last()?;
    let pages: Vec<&Bytes> = bottom
        .run
        .run
        .pages()
        .iter()
        .map(|p| &p.first_key)
        .filter(|k| range.contains(k))
        .collect();
    let middle = pages.get(pages.len() / 2)?;
    let first = pages.first()?;
    (middle > first).then(|| (*middle).clone())
}

/// Splits or coalesces range `range_id` if its size calls for it. The caller holds no locks; the
/// range must not be busy (the scheduler calls this right after compacting it).
pub(crate) fn reshape(db: &DbInner, ks: &Arc<KeyspaceInner>, range_id: u64) -> Result<()> {
    let _shape = ks.shape.lock().unwrap_or_else(|p| p.into_inner());
    if ks.dropped.load(Ordering::Acquire) {
        return Ok(());
    }
    let current = ks.current();
    let target = target_range_size(db, ks, &current);
    let Some(index) = current.ranges.iter().position(|r| r.id == range_id) else {
        return Ok(());
    };
    let range = Arc::clone(&current.ranges[index]);
    let busy = ks.busy_ranges();
    let bottom_bytes = range.slices.last().map_or(0, |s| s.bytes);
    if bottom_bytes > target / 3 * 4 {
        if let Some(key) = split_key(&range) {
            return split(db, ks, &current, index, key);
        }
    }
    if range.bytes() < target / 2 {
        // Coalesce with the right neighbour if it is idle and small enough, else the left one.
        for neighbour in [index + 1, index.wrapping_sub(1)] {
            let Some(other) = current.ranges.get(neighbour) else {
                continue;
            };
            if !busy.contains(&other.id) && range.bytes() + other.bytes() < target / 2 {
                let (left, right) = if neighbour > index {
                    (index, neighbour)
                } else {
                    (neighbour, index)
                };
                return coalesce(db, ks, &current, left, right);
            }
        }
    }
    Ok(())
}

fn split(
    db: &DbInner,
    ks: &KeyspaceInner,
    current: &TreeVersion,
    index: usize,
    key: Bytes,
) -> Result<()> {
    let range = &current.ranges[index];
    let mut meta = db.meta.lock().unwrap_or_else(|p| p.into_inner());
    let state = meta.state();
    let (mut next_range, mut next_slice) = (state.next_range_id, state.next_slice_id);
    let mut records: Vec<MetaRecord> = range
        .slices
        .iter()
        .map(|s| MetaRecord::DeleteSlice {
            keyspace: ks.id,
            range: range.id,
            slice: s.id,
        })
        .collect();
    records.push(MetaRecord::DeleteRange {
        keyspace: ks.id,
        range: range.id,
    });
    let halves = [
        (range.begin.clone(), Some(key.clone())),
        (Some(key), range.end.clone()),
    ];
    let mut new_ranges = Vec::new();
    for (begin, end) in halves {
        let id = next_range;
        next_range += 1;
        records.push(MetaRecord::InsertRange {
            keyspace: ks.id,
            range: id,
            begin: begin.as_ref().map(|b| b.to_vec()),
            end: end.as_ref().map(|e| e.to_vec()),
        });
        let mut slices = Vec::new();
        for old in &range.slices {
            let clipped_begin = max_begin(&old.begin, &begin);
            let clipped_end = min_end(&old.end, &end);
            let candidate =
                Slice::new(next_slice, Arc::clone(&old.run), clipped_begin, clipped_end);
            if candidate.is_empty() {
                continue;
            }
            records.push(candidate.record(ks.id, id));
            next_slice += 1;
            slices.push(Arc::new(candidate));
        }
        Range::sort_slices(&mut slices);
        new_ranges.push(Arc::new(Range {
            id,
            begin,
            end,
            slices,
        }));
    }
    let mut next = current.clone();
    next.ranges.splice(index..=index, new_ranges);
    let dropped = dropped_runs(current, &next);
    records.extend(dropped.iter().map(|r| MetaRecord::DropRun {
        keyspace: ks.id,
        run: r.id,
    }));
    meta.commit(records)?;
    drop(meta);
    ks.install_ranges(next.ranges, None);
    for run in dropped {
        run.mark_obsolete();
    }
    ks.counters.splits.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn coalesce(
    db: &DbInner,
    ks: &KeyspaceInner,
    current: &TreeVersion,
    left: usize,
    right: usize,
) -> Result<()> {
    let (a, b) = (&current.ranges[left], &current.ranges[right]);
    let mut meta = db.meta.lock().unwrap_or_else(|p| p.into_inner());
    let id = meta.state().next_range_id;
    let mut next_slice = meta.state().next_slice_id;
    let mut records = Vec::new();
    for range in [a, b] {
        records.extend(range.slices.iter().map(|s| MetaRecord::DeleteSlice {
            keyspace: ks.id,
            range: range.id,
            slice: s.id,
        }));
        records.push(MetaRecord::DeleteRange {
            keyspace: ks.id,
            range: range.id,
        });
    }
    records.push(MetaRecord::InsertRange {
        keyspace: ks.id,
        range: id,
        begin: a.begin.as_ref().map(|k| k.to_vec()),
        end: b.end.as_ref().map(|k| k.to_vec()),
    });
    let mut slices = Vec::new();
    for old in a.slices.iter().chain(&b.slices) {
        let slice = Slice::new(
            next_slice,
            Arc::clone(&old.run),
            old.begin.clone(),
            old.end.clone(),
        );
        records.push(slice.record(ks.id, id));
        slices.push(Arc::new(slice));
        next_slice += 1;
    }
    Range::sort_slices(&mut slices);
    let merged = Arc::new(Range {
        id,
        begin: a.begin.clone(),
        end: b.end.clone(),
        slices,
    });
    let mut next = current.clone();
    next.ranges.splice(left..=right, [merged]);
    meta.commit(records)?;
    drop(meta);
    ks.install_ranges(next.ranges, None);
    ks.counters.coalesces.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn max_begin(a: &Option<Bytes>, b: &Option<Bytes>) -> Option<Bytes> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(x), Some(y)) => Some(x.max(y).clone()),
    }
}

fn min_end(a: &Option<Bytes>, b: &Option<Bytes>) -> Option<Bytes> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(x), Some(y)) => Some(x.min(y).clone()),
    }
}

/// The bytes the policy says must be compacted now, across `keyspaces` (vinyl's compaction
/// queue).
pub(crate) fn total_debt(keyspaces: &[Arc<KeyspaceInner>]) -> u64 {
    let mut debt = 0;
    for ks in keyspaces {
        let Ok(policy) = ks.options.policy() else {
            continue;
        };
        for range in &ks.current().ranges {
            debt += policy
                .analyze(&RangeRuns::new(&policy_input(range)))
                .debt_bytes();
        }
    }
    debt
}

/// The most urgent compaction across `keyspaces`: (keyspace, range id, runs to merge, priority).
pub(crate) fn pick(keyspaces: &[Arc<KeyspaceInner>]) -> Option<(Arc<KeyspaceInner>, u64, usize)> {
    let mut best: Option<(Arc<KeyspaceInner>, u64, usize, u32)> = None;
    for ks in keyspaces {
        if ks.dropped.load(Ordering::Acquire) {
            continue;
        }
        let Ok(policy) = ks.options.policy() else {
            continue;
        };
        let busy = ks.busy_ranges();
        let quarantined = ks.quarantined_ranges();
        for range in &ks.current().ranges {
            if quarantined.contains(&range.id) {
                continue;
            }
            let runs = policy_input(range);
            let input = RangeRuns::new(&runs).with_compacting(busy.contains(&range.id));
            if let Some(task) = policy.pick(&input) {
                if best.as_ref().is_none_or(|b| task.priority > b.3) {
                    best = Some((Arc::clone(ks), range.id, task.run_count, task.priority));
                }
            }
        }
    }
    best.map(|(ks, range, count, _)| (ks, range, count))
}

impl From<GcError> for Error {
    fn from(error: GcError) -> Self {
        match error {
            GcError::Source(source) => Error::from(source),
            other => Error::InvalidArgument(other.to_string()),
        }
    }
}
