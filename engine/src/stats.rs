//! `Db::stats()`: a serializable picture of the database's counters and gauges.

use std::sync::atomic::Ordering;

use serde::Serialize;
use strata_sstable::{CacheStats, PageCache};

use crate::db::DbInner;

/// Database-wide statistics. Field names are stable (tools print them as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct DbStats {
    /// The newest visible seqno.
    pub seqno: u64,
    /// Write-ahead log figures.
    pub wal: WalStats,
    /// Memory quota and write throttling.
    pub memory: MemoryStats,
    /// Open read views (snapshots, read-only transactions, transactions sent to a read view).
    pub read_views: ReadViewStats,
    /// Transactions.
    pub transactions: TransactionStats,
    /// The shared decompressed-page cache.
    pub cache: CacheStats,
    /// The metadata log.
    pub metadata_log_bytes: u64,
    /// One entry per keyspace, by name.
    pub keyspaces: Vec<KeyspaceStats>,
}

/// WAL figures.
#[derive(Debug, Clone, Serialize)]
pub struct WalStats {
    /// Bytes appended to WAL segments.
    pub bytes_written: u64,
    /// Syncs of WAL segments.
    pub syncs: u64,
    /// Commits (batches) written.
    pub commits: u64,
    /// Groups written (one write, at most one sync each).
    pub groups: u64,
    /// Average commits per group: how much group commit shares.
    pub commits_per_group: f64,
    /// Closed segments still holding undumped data.
    pub closed_segments: usize,
}

/// Memory quota figures.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryStats {
    /// Bytes charged to memtables.
    pub used_bytes: u64,
    /// The limit.
    pub limit_bytes: u64,
    /// Commits that blocked because memory was full.
    pub stalls: u64,
    /// Total time commits spent blocked, in milliseconds.
    pub stall_time_ms: u64,
    /// The longest single block, in milliseconds.
    pub longest_stall_ms: u64,
    /// Commits slowed (not blocked) as memory filled.
    pub throttled_commits: u64,
    /// The regulator's write limit in bytes per second while compaction is behind, else `None`.
    pub compaction_rate_limit_bytes_per_sec: Option<u64>,
    /// Commits the regulator slowed.
    pub regulated_commits: u64,
    /// Total time the regulator held commits, in milliseconds.
    pub regulated_time_ms: u64,
}

/// Read view figures.
#[derive(Debug, Clone, Serialize)]
pub struct ReadViewStats {
    /// Open snapshots.
    pub open: usize,
    /// Age of the oldest open snapshot in milliseconds.
    pub oldest_age_ms: Option<u64>,
}

/// Transaction figures.
#[derive(Debug, Clone, Serialize)]
pub struct TransactionStats {
    /// Transactions committed (read-only ones included).
    pub commits: u64,
    /// Transactions rolled back, dropped, or failed at commit.
    pub rollbacks: u64,
    /// `Error::Conflict`s returned (at a read, a write or a commit).
    pub conflicts: u64,
    /// Read-only-so-far transactions moved to a read view because a commit overwrote what they
    /// read.
    pub sent_to_read_view: u64,
    /// Open read-write transactions.
    pub active: usize,
    /// Key intervals tracked for open transactions' reads.
    pub tracked_intervals: usize,
}

/// Per-keyspace statistics.
#[derive(Debug, Clone, Serialize)]
pub struct KeyspaceStats {
    /// The keyspace's name.
    pub name: String,
    /// The merge operator's name, if the keyspace has one.
    pub merge_operator: Option<String>,
    /// Upsert chains folded by background squashes.
    pub squashes: u64,
    /// Bytes in memtables (active and sealed).
    pub memtable_bytes: u64,
    /// Entries in memtables.
    pub memtable_entries: u64,
    /// Sealed memtables waiting for a dump.
    pub sealed_memtables: usize,
    /// Distinct runs (a run may hold slices in several ranges).
    pub runs: usize,
    /// Entries in runs.
    pub run_entries: u64,
    /// Bytes of runs on disk.
    pub run_bytes_on_disk: u64,
    /// Raw key and value bytes held in runs (all versions), before compression.
    pub run_bytes_logical: u64,
    /// Bytes on disk / bytes on disk of the runs holding some range's bottom slice. 1.0 after a
    /// full compaction; vinyl's policy keeps it below 2.
    pub space_amplification: f64,
    /// Ranges tiling the keyspace.
    pub ranges: usize,
    /// Runs and bytes per level, summed over ranges (level 0 holds each range's newest run).
    pub levels: Vec<LevelStats>,
    /// Bytes the policy says must be compacted now (vinyl's compaction queue).
    pub compaction_debt_bytes: u64,
    /// Range splits.
    pub splits: u64,
    /// Range coalesces.
    pub coalesces: u64,
    /// Versions and deletes compaction dropped as garbage.
    pub versions_dropped: u64,
    /// Each range's shape.
    pub range_details: Vec<RangeStats>,
    /// Bytes of user keys and values written (the denominator of write amplification).
    pub user_bytes_written: u64,
    /// Writes (entries) applied.
    pub writes: u64,
    /// Dumps finished.
    pub dumps: u64,
    /// Memtable bytes dumped.
    pub dump_bytes_in: u64,
    /// Run bytes written by dumps.
    pub dump_bytes_out: u64,
    /// Time spent dumping, in milliseconds.
    pub dump_time_ms: u64,
    /// Compactions finished.
    pub compactions: u64,
    /// Run bytes read by compactions.
    pub compaction_bytes_in: u64,
    /// Run bytes written by compactions.
    pub compaction_bytes_out: u64,
    /// Time spent compacting, in milliseconds.
    pub compaction_time_ms: u64,
    /// (dump output + compaction output) / user bytes written.
    pub write_amplification: f64,
    /// The same split by where the bytes were written: dumps (level 0), compactions whose output
    /// stays above a range's bottom, and compactions into the bottom level.
    pub write_amplification_by_level: WriteAmplificationByLevel,
    /// Point lookups.
    pub gets: u64,
    /// Point lookups answered by a memtable.
    pub gets_from_memtable: u64,
    /// Runs whose pages a point lookup searched (past key range and bloom filter).
    pub runs_probed: u64,
    /// Average runs searched per point lookup.
    pub read_amplification: f64,
    /// Bloom filter probes.
    pub bloom_checks: u64,
    /// Probes that ruled a key out.
    pub bloom_negatives: u64,
    /// Pages read from disk (page-cache misses).
    pub pages_read: u64,
    /// Bytes read from disk for pages.
    pub bytes_read: u64,
}

/// Write amplification by destination; the three parts add up to the total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WriteAmplificationByLevel {
    /// Dump output / user bytes.
    pub dumps: f64,
    /// Output of compactions into levels above the bottom / user bytes.
    pub upper_levels: f64,
    /// Output of major compactions (into the bottom level) / user bytes.
    pub bottom_level: f64,
}

/// Runs and bytes on one level, summed over a keyspace's ranges.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LevelStats {
    /// Level number: 0 is a range's newest run's level.
    pub level: u32,
    /// Runs (slices) on this level across ranges.
    pub runs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes compactions wrote into this level (dumps write level 0; see
    /// `write_amplification_by_level.dumps`).
    pub compaction_bytes_written: u64,
    /// `compaction_bytes_written` / user bytes written: this level's share of write
    /// amplification.
    pub write_amplification: f64,
}

/// One range's shape.
#[derive(Debug, Clone, Serialize)]
pub struct RangeStats {
    /// Range id.
    pub id: u64,
    /// Inclusive lower bound (`None`: unbounded).
    pub begin: Option<Vec<u8>>,
    /// Exclusive upper bound (`None`: unbounded).
    pub end: Option<Vec<u8>>,
    /// Slices (runs) in the range.
    pub runs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Runs per level, newest level first.
    pub runs_per_level: Vec<usize>,
    /// Bytes the policy says must be compacted now.
    pub debt_bytes: u64,
    /// A compaction of the range is running.
    pub compacting: bool,
    /// Compactions of this range so far (since the database was opened).
    pub compactions: u64,
    /// Bytes those compactions read.
    pub compaction_bytes_in: u64,
    /// Bytes they wrote.
    pub compaction_bytes_out: u64,
    /// Time they took, in milliseconds.
    pub compaction_time_ms: u64,
}

struct TreeShape {
    ranges: Vec<RangeStats>,
    levels: Vec<LevelStats>,
    debt: u64,
    bottom_runs: std::collections::BTreeSet<u64>,
}

fn tree_shape(
    ks: &crate::keyspace::KeyspaceInner,
    version: &crate::version::TreeVersion,
) -> TreeShape {
    use strata_compaction::{CompactionPolicy, RangeRuns};
    let busy = ks.busy_ranges();
    let by_range = ks
        .counters
        .compactions_by_range
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut shape = TreeShape {
        ranges: Vec::new(),
        levels: Vec::new(),
        debt: 0,
        bottom_runs: Default::default(),
    };
    let Ok(policy) = ks.options.policy() else {
        return shape;
    };
    for range in &version.ranges {
        let input = crate::compact::policy_input(range);
        let analysis = policy.analyze(&RangeRuns::new(&input));
        for level in &analysis.levels {
            let index = level.index as usize;
            if shape.levels.len() <= index {
                shape.levels.resize_with(index + 1, LevelStats::default);
            }
            let slot = &mut shape.levels[index];
            slot.level = level.index;
            slot.runs += level.runs.len();
            slot.bytes += level.bytes;
        }
        if let Some(bottom) = range.slices.last() {
            shape.bottom_runs.insert(bottom.run.id);
        }
        shape.debt += analysis.debt_bytes();
        shape.ranges.push(RangeStats {
            id: range.id,
            begin: range.begin.as_ref().map(|b| b.to_vec()),
            end: range.end.as_ref().map(|e| e.to_vec()),
            runs: range.slices.len(),
            bytes: range.bytes(),
            runs_per_level: analysis.levels.iter().map(|l| l.runs.len()).collect(),
            debt_bytes: analysis.debt_bytes(),
            compacting: busy.contains(&range.id),
            compactions: by_range.get(&range.id).map_or(0, |c| c[0]),
            compaction_bytes_in: by_range.get(&range.id).map_or(0, |c| c[1]),
            compaction_bytes_out: by_range.get(&range.id).map_or(0, |c| c[2]),
            compaction_time_ms: by_range.get(&range.id).map_or(0, |c| c[3] / 1000),
        });
    }
    for (i, level) in shape.levels.iter_mut().enumerate() {
        level.level = i as u32;
    }
    shape
}

/// Adds what compactions wrote into each level (and its share of write amplification) to the
/// level list, extending it for levels that received output but hold no runs right now.
fn with_writes(
    mut levels: Vec<LevelStats>,
    written: &std::sync::Mutex<Vec<u64>>,
    user: u64,
) -> Vec<LevelStats> {
    let written = written.lock().map(|w| w.clone()).unwrap_or_default();
    for (index, bytes) in written.iter().enumerate() {
        if levels.len() <= index {
            levels.resize_with(index + 1, LevelStats::default);
        }
        levels[index].level = index as u32;
        levels[index].compaction_bytes_written = *bytes;
        levels[index].write_amplification = ratio(*bytes, user);
    }
    levels
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

pub(crate) fn collect(db: &DbInner) -> DbStats {
    let counters = &db.commit.counters;
    let commits = counters.commits.load(Ordering::Relaxed);
    let groups = counters.groups.load(Ordering::Relaxed);
    let closed_segments = db.commit.wal.lock().map(|w| w.closed.len()).unwrap_or(0);
    let (open, oldest) = db.read_views.summary();
    let quota = &db.quota;
    let keyspaces = db
        .all_keyspaces()
        .into_iter()
        .map(|ks| {
            let version = ks.current();
            let c = &ks.counters;
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let run_counters = ks.run_counters.snapshot();
            let runs = version.runs();
            let disk: u64 = runs.values().map(|r| r.info.file_size).sum();
            let shape = tree_shape(&ks, &version);
            let bottom_disk: u64 = shape
                .bottom_runs
                .iter()
                .filter_map(|id| runs.get(id))
                .map(|r| r.info.file_size)
                .sum();
            let dump_out = load(&c.dump_bytes_out);
            let compaction_out = load(&c.compaction_bytes_out);
            let user = load(&c.user_bytes_written);
            let gets = load(&c.gets);
            let probed = load(&c.runs_probed);
            KeyspaceStats {
                name: ks.name.clone(),
                merge_operator: ks.merge_operator_name().map(str::to_string),
                squashes: ks.counters.squashes.load(Ordering::Relaxed),
                memtable_bytes: version.memtables().map(|m| m.size_bytes()).sum(),
                memtable_entries: version.memtables().map(|m| m.entries()).sum(),
                sealed_memtables: version.sealed.len(),
                runs: runs.len(),
                run_entries: runs.values().map(|r| r.info.entries).sum(),
                run_bytes_on_disk: disk,
                run_bytes_logical: runs
                    .values()
                    .map(|r| r.run.properties().raw_key_bytes + r.run.properties().raw_value_bytes)
                    .sum(),
                space_amplification: ratio(disk, bottom_disk),
                ranges: shape.ranges.len(),
                levels: with_writes(shape.levels, &c.compaction_bytes_by_level, user),
                compaction_debt_bytes: shape.debt,
                splits: load(&c.splits),
                coalesces: load(&c.coalesces),
                versions_dropped: load(&c.versions_dropped),
                range_details: shape.ranges,
                user_bytes_written: user,
                writes: load(&c.writes),
                dumps: load(&c.dumps),
                dump_bytes_in: load(&c.dump_bytes_in),
                dump_bytes_out: dump_out,
                dump_time_ms: load(&c.dump_micros) / 1000,
                compactions: load(&c.compactions),
                compaction_bytes_in: load(&c.compaction_bytes_in),
                compaction_bytes_out: compaction_out,
                compaction_time_ms: load(&c.compaction_micros) / 1000,
                write_amplification: ratio(dump_out + compaction_out, user),
                write_amplification_by_level: {
                    let bottom = load(&c.compaction_bytes_out_bottom);
                    WriteAmplificationByLevel {
                        dumps: ratio(dump_out, user),
                        upper_levels: ratio(compaction_out.saturating_sub(bottom), user),
                        bottom_level: ratio(bottom, user),
                    }
                },
                gets,
                gets_from_memtable: load(&c.gets_from_memtable),
                runs_probed: probed,
                read_amplification: ratio(probed, gets),
                bloom_checks: run_counters.bloom_checks,
                bloom_negatives: run_counters.bloom_negatives,
                pages_read: run_counters.pages_read,
                bytes_read: run_counters.bytes_read,
            }
        })
        .collect();
    DbStats {
        seqno: db.commit.visible_seqno(),
        wal: WalStats {
            bytes_written: counters.wal_bytes.load(Ordering::Relaxed),
            syncs: counters.syncs.load(Ordering::Relaxed),
            commits,
            groups,
            commits_per_group: ratio(commits, groups),
            closed_segments,
        },
        memory: MemoryStats {
            used_bytes: quota.used_bytes(),
            limit_bytes: quota.limit_bytes(),
            stalls: quota.stalls.load(Ordering::Relaxed),
            stall_time_ms: quota.stall_micros.load(Ordering::Relaxed) / 1000,
            longest_stall_ms: quota.longest_stall_micros.load(Ordering::Relaxed) / 1000,
            throttled_commits: quota.throttled.load(Ordering::Relaxed),
            compaction_rate_limit_bytes_per_sec: db.regulator.limit_bytes_per_sec(),
            regulated_commits: db.regulator.throttled_commits.load(Ordering::Relaxed),
            regulated_time_ms: db.regulator.throttled_micros.load(Ordering::Relaxed) / 1000,
        },
        read_views: ReadViewStats {
            open,
            oldest_age_ms: oldest.map(|d| d.as_millis() as u64),
        },
        transactions: {
            let counters = &db.conflicts.counters;
            let (active, tracked_intervals) = db.conflicts.summary();
            TransactionStats {
                commits: counters.commits.load(Ordering::Relaxed),
                rollbacks: counters.rollbacks.load(Ordering::Relaxed),
                conflicts: counters.conflicts.load(Ordering::Relaxed),
                sent_to_read_view: counters.sent_to_read_view.load(Ordering::Relaxed),
                active,
                tracked_intervals,
            }
        },
        cache: db.cache.stats(),
        metadata_log_bytes: db.meta.lock().map(|m| m.size_bytes()).unwrap_or(0),
        keyspaces,
    }
}
