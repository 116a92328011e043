//! The compaction policy: which runs of a range to merge, and when.
//!
//! A policy is a pure function of a range's runs ([`RangeRuns`]: sizes newest first, per-run
//! seeds, whether a compaction is running) to an optional [`CompactionTask`] (merge the newest
//! `run_count` runs into one), behind the [`CompactionPolicy`] trait so the engine does not care
//! which policy it runs. [`VinylPolicy`] is vinyl's: levels are computed per range from run
//! sizes, never stored. `compaction/POLICY.md` explains it with a worked example.
//!
//! # Levels ([`VinylPolicy::analyze`])
//!
//! Let `r = run_size_ratio`. Level targets are the oldest run's size divided by powers of `r`:
//! the bottom level's target is the oldest run's size, the one above it `oldest / r`, then
//! `oldest / r^2`, and so on (and `oldest * r`, ... below it, for newer runs larger than the
//! oldest). A run belongs to the level with the smallest target that is not below its size (a
//! size equal to a target belongs to that level), except that walking from the newest run to
//! the oldest never goes back up: a run smaller than a newer one stays on the newer one's level.
//! This is vinyl's procedure (divide the oldest size by `r` until it is not larger than the
//! newest run's size, then walk the runs newest to oldest, multiplying the target by `r` each
//! time a run is larger than it), computed with exact powers so a run exactly the size of a
//! level's target never slips a level through rounding. Levels are numbered from 0, the level of
//! the newest run; levels without runs are skipped in [`RangeShape::levels`] but keep their
//! numbers. The level of the oldest run is the bottom.
//!
//! # Choosing
//!
//! Walking newest to oldest, a level holding more than `run_count_per_level` runs asks for the
//! merge of every run up to that one: the level and every newer level. The allowance is checked
//! at each run with that run's seed: when [`keeps_extra_run`] says so (one seed in ten), the
//! level may hold one run more at that point, so ranges built by the same dumps do not all
//! compact at once. A later, deeper overfull level extends the merge. A planned merge counts in
//! advance at the level its output will land on (its size's level): if that level then overflows,
//! the merge takes it too, instead of writing a run that would be merged again at once. Finally
//! the bottom level holds one run: more than one there, counting a planned output that lands at
//! or below it, means a major compaction of the whole range. The task's priority is the number
//! of runs it merges.
//!
//! ```
//! use strata_compaction::{CompactionPolicy, CompactionReason, RangeRuns, RunSlice, VinylPolicy};
//!
//! const M: u64 = 1 << 20;
//! let policy = VinylPolicy::default(); // ratio 3.5, 2 runs per level
//! // Newest first: three fresh 1 MiB dumps on a 100 MiB bottom run.
//! let runs = [1 * M, 1 * M, 1 * M, 100 * M].map(|bytes| RunSlice { bytes, seed: 0 });
//! let range = RangeRuns::new(&runs);
//!
//! let task = policy.pick(&range).expect("the top level is overfull");
//! assert_eq!((task.run_count, task.priority, task.output_is_bottom), (3, 3, false));
//! assert!(matches!(task.reason, CompactionReason::LevelOverfull { level: 0, runs: 3, .. }));
//!
//! let shape = policy.analyze(&range);
//! assert_eq!(shape.levels.len(), 2);
//! assert_eq!(shape.debt_bytes(), 3 * M);
//! assert!(policy.pick(&range.with_compacting(true)).is_none());
//! ```

use std::fmt;
use std::ops::Range;

/// Vinyl's default `run_size_ratio`: each level's runs are 3.5 times larger than the level
/// above's.
pub const DEFAULT_RUN_SIZE_RATIO: f64 = 3.5;

/// Vinyl's default `run_count_per_level`.
pub const DEFAULT_RUN_COUNT_PER_LEVEL: u32 = 2;

/// The smallest accepted `run_size_ratio`. Ratios closer to 1 would make thousands of levels and
/// compact on every dump.
pub const MIN_RUN_SIZE_RATIO: f64 = 1.01;

/// One run (slice) of a range, as the policy sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RunSlice {
    /// The slice's size in bytes (on disk, or the share of its run's bytes that lie in the
    /// range). A size of 0 is treated as 1.
    pub bytes: u64,
    /// A random number fixed when the slice is created; see [`keeps_extra_run`].
    pub seed: u64,
}

impl RunSlice {
    /// A slice of `bytes` with seed 0 (never keeps an extra run).
    pub fn new(bytes: u64) -> Self {
        RunSlice { bytes, seed: 0 }
    }
}

/// A range's runs: the policy's whole input.
#[derive(Debug, Clone, Copy)]
pub struct RangeRuns<'a> {
    /// The range's runs (slices), **newest first**.
    pub runs: &'a [RunSlice],
    /// A compaction of this range is running: [`CompactionPolicy::pick`] returns `None`
    /// ([`CompactionPolicy::analyze`] still reports the shape and debt).
    pub compacting: bool,
}

impl<'a> RangeRuns<'a> {
    /// An idle range with `runs`, newest first.
    pub fn new(runs: &'a [RunSlice]) -> Self {
        RangeRuns {
            runs,
            compacting: false,
        }
    }

    /// The same runs, with `compacting` set.
    #[must_use]
    pub fn with_compacting(self, compacting: bool) -> Self {
        RangeRuns { compacting, ..self }
    }

    /// The sum of the runs' sizes.
    pub fn total_bytes(&self) -> u64 {
        self.runs.iter().map(|run| run.bytes).sum()
    }
}

/// Whether a slice with this seed lets its level keep one run more than `run_count_per_level`
/// when the walk reaches it: true for one seed in ten (`seed % 10 == 9`).
///
/// Seeds should be uniformly random (the engine draws one when it creates a slice and keeps it
/// for the slice's life); sequential ids work too (every tenth slice). Seed 0 never keeps an
/// extra run, so an engine that passes zeros gets vinyl's limits exactly.
pub fn keeps_extra_run(seed: u64) -> bool {
    seed % 10 == 9
}

/// Why a compaction was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionReason {
    /// A level held more runs than allowed; the task takes it and every newer level.
    LevelOverfull {
        /// The level (0 = the newest run's level).
        level: u32,
        /// The runs it held where the walk found it overfull, counting a planned output that
        /// lands on it.
        runs: u32,
        /// The allowance at that point: `run_count_per_level`, plus one if the run's seed
        /// keeps an extra run.
        limit: u32,
        /// The count includes the output of the merge of newer levels.
        planned_output: bool,
    },
    /// The bottom level held more than one run (counting a planned output that lands at or
    /// below it): a major compaction of the whole range.
    BottomOverfull {
        /// The runs it held.
        runs: u32,
    },
    /// Asked for by the user ([`CompactionTask::major`]).
    Manual,
}

/// A compaction to run: merge the range's newest `run_count` runs into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionTask {
    /// How many runs to merge: `runs[..run_count]` of the [`RangeRuns`], newest first; at
    /// least 2 for tasks the policy picks.
    pub run_count: usize,
    /// The task merges every run of the range, so its output is the bottom: version garbage
    /// collection may drop Deletes ([`crate::VersionGc::new`]'s `is_last_level`).
    pub output_is_bottom: bool,
    /// How urgent the task is: the number of runs it merges (each one costs reads a probe).
    /// Higher first.
    pub priority: u32,
    /// The bytes of the runs merged.
    pub input_bytes: u64,
    /// Why.
    pub reason: CompactionReason,
}

impl CompactionTask {
    /// A major compaction of all `runs` (manual compaction), whatever their shape; `None` when
    /// there are none. A single run is rewritten too (its garbage goes); an engine that only
    /// wants one run per range may skip those.
    pub fn major(runs: &[RunSlice]) -> Option<CompactionTask> {
        if runs.is_empty() {
            return None;
        }
        Some(CompactionTask {
            run_count: runs.len(),
            output_is_bottom: true,
            priority: saturating_u32(runs.len()),
            input_bytes: runs.iter().map(|run| run.bytes).sum(),
            reason: CompactionReason::Manual,
        })
    }

    /// The runs to merge: the first [`run_count`](Self::run_count) of `runs` (the slice the
    /// task was computed from), clamped to its length.
    pub fn inputs<'r, T>(&self, runs: &'r [T]) -> &'r [T] {
        &runs[..self.run_count.min(runs.len())]
    }
}

/// One level of a range, as computed from its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// The level's number: 0 is the newest run's level; deeper levels count up, including
    /// levels without runs (which are not listed).
    pub index: u32,
    /// The largest run size the level takes, in bytes (rounded down: every run on the level is
    /// at most this, and the run opening the next level is larger).
    pub target_bytes: u64,
    /// Its runs: indices into [`RangeRuns::runs`] (newest first).
    pub runs: Range<usize>,
    /// The sum of its runs' sizes.
    pub bytes: u64,
    /// This is the bottom level (it holds the oldest run).
    pub is_bottom: bool,
}

impl Level {
    /// The number of runs on the level.
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }
}

/// Everything a policy computes about a range: its levels (for statistics), the task it would
/// choose, and the compaction debt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeShape {
    /// The non-empty levels, newest first; the last one is the bottom. Empty without runs.
    pub levels: Vec<Level>,
    /// The compaction the runs' shape asks for, whether or not one is running.
    pub task: Option<CompactionTask>,
    /// The sum of the runs' sizes.
    pub total_bytes: u64,
}

impl RangeShape {
    /// The bytes the current priorities say must be compacted (vinyl's compaction queue): the
    /// input of [`task`](Self::task), or 0.
    pub fn debt_bytes(&self) -> u64 {
        self.task.map_or(0, |task| task.input_bytes)
    }

    /// The bottom level, if there are runs.
    pub fn bottom(&self) -> Option<&Level> {
        self.levels.last()
    }

    /// The number of runs.
    pub fn run_count(&self) -> usize {
        self.levels.last().map_or(0, |level| level.runs.end)
    }

    /// Space amplification of the range: total bytes over bottom-level bytes (1.0 for one
    /// run; `None` without runs or with an empty bottom).
    pub fn space_amplification(&self) -> Option<f64> {
        let bottom = self.bottom()?.bytes;
        (bottom > 0).then(|| self.total_bytes as f64 / bottom as f64)
    }
}

/// A compaction policy: a pure function from a range's runs to its shape and the compaction
/// to run. Implementations must not keep state between calls (the engine calls them after every
/// dump and compaction, from any thread).
pub trait CompactionPolicy: fmt::Debug + Send + Sync {
    /// The range's levels, the task its shape asks for (ignoring
    /// [`RangeRuns::compacting`]) and the debt.
    fn analyze(&self, range: &RangeRuns<'_>) -> RangeShape;

    /// The compaction to schedule for the range: `None` when one is running already or the
    /// shape asks for none.
    fn pick(&self, range: &RangeRuns<'_>) -> Option<CompactionTask> {
        if range.compacting {
            return None;
        }
        self.analyze(range).task
    }
}

/// An invalid policy option.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `run_size_ratio` must be finite and at least [`MIN_RUN_SIZE_RATIO`].
    #[error("run_size_ratio must be a finite number >= {MIN_RUN_SIZE_RATIO}, got {0}")]
    RunSizeRatio(f64),
    /// `run_count_per_level` must be at least 1.
    #[error("run_count_per_level must be at least 1")]
    RunCountPerLevel,
}

/// Vinyl's per-range policy: levels from run sizes (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VinylPolicy {
    run_size_ratio: f64,
    run_count_per_level: u32,
}

impl Default for VinylPolicy {
    /// `run_size_ratio` 3.5, `run_count_per_level` 2.
    fn default() -> Self {
        VinylPolicy {
            run_size_ratio: DEFAULT_RUN_SIZE_RATIO,
            run_count_per_level: DEFAULT_RUN_COUNT_PER_LEVEL,
        }
    }
}

impl VinylPolicy {
    /// A policy with the given options.
    ///
    /// Space amplification stays below 2 when `run_count_per_level <= run_size_ratio - 1`
    /// (see `POLICY.md`), but any values passing validation work.
    ///
    /// # Errors
    /// [`PolicyError`] for a ratio below [`MIN_RUN_SIZE_RATIO`] (or not finite) or a run count
    /// of 0.
    pub fn new(run_size_ratio: f64, run_count_per_level: u32) -> Result<Self, PolicyError> {
        if !run_size_ratio.is_finite() || run_size_ratio < MIN_RUN_SIZE_RATIO {
            return Err(PolicyError::RunSizeRatio(run_size_ratio));
        }
        if run_count_per_level == 0 {
            return Err(PolicyError::RunCountPerLevel);
        }
        Ok(VinylPolicy {
            run_size_ratio,
            run_count_per_level,
        })
    }

    /// The size ratio between adjacent levels.
    pub fn run_size_ratio(&self) -> f64 {
        self.run_size_ratio
    }

    /// The runs a level holds before it is compacted.
    pub fn run_count_per_level(&self) -> u32 {
        self.run_count_per_level
    }
}

/// Level arithmetic for one range: targets are `oldest / ratio^e`, so `e` counts levels up from
/// the oldest run's size (0), negative below it.
struct Targets {
    oldest: f64,
    ratio: f64,
    ln_ratio: f64,
}

impl Targets {
    fn target(&self, e: i64) -> f64 {
        self.oldest / self.ratio.powf(e as f64)
    }

    /// The largest `e` whose target is not below `size`: the level a run of `size` fits.
    fn exponent_of(&self, size: f64) -> i64 {
        let estimate = ((self.oldest / size).ln() / self.ln_ratio).floor();
        // Sizes are at most 2^64 and the ratio at least 1.01, so |estimate| < 5000.
        let mut e = estimate as i64;
        while self.target(e) < size {
            e -= 1;
        }
        while self.target(e + 1) >= size {
            e += 1;
        }
        e
    }
}

/// A size as the level arithmetic sees it (0 counts as 1).
fn size_of(bytes: u64) -> f64 {
    bytes.max(1) as f64
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl CompactionPolicy for VinylPolicy {
    fn analyze(&self, range: &RangeRuns<'_>) -> RangeShape {
        let runs = range.runs;
        let total_bytes = range.total_bytes();
        let (Some(newest), Some(oldest)) = (runs.first(), runs.last()) else {
            return RangeShape::default();
        };
        let targets = Targets {
            oldest: size_of(oldest.bytes),
            ratio: self.run_size_ratio,
            ln_ratio: self.run_size_ratio.ln(),
        };
        let top = targets.exponent_of(size_of(newest.bytes));
        let index_of = |e: i64| u32::try_from(top - e).unwrap_or(u32::MAX);

        let mut levels = Vec::new();
        // The level being walked: its exponent, first run, bytes and run count (counting a
        // planned output that lands on it).
        let mut level_e = top;
        let mut level_start = 0;
        let mut level_bytes = 0u64;
        let mut level_runs = 0u32;
        let mut level_has_output = false;
        // The task so far: the runs it merges, their bytes, and why.
        let mut task: Option<(usize, u64, CompactionReason)> = None;
        // The exponent of the level a planned merge's output lands on, until the walk reaches
        // or passes it, and the exponent of the level that planned it.
        let mut planned_output: Option<(i64, i64)> = None;
        let mut prefix_bytes = 0u64;

        for (i, run) in runs.iter().enumerate() {
            let e = targets.exponent_of(size_of(run.bytes)).min(level_e);
            if e < level_e {
                levels.push(Level {
                    index: index_of(level_e),
                    target_bytes: targets.target(level_e).floor() as u64,
                    runs: level_start..i,
                    bytes: level_bytes,
                    is_bottom: false,
                });
                level_e = e;
                level_start = i;
                level_bytes = 0;
                level_runs = 0;
                level_has_output = false;
                if let Some((output_e, _)) = planned_output {
                    if output_e >= e {
                        // The output lands here, or on an empty level above: either way the walk
                        // is past it.
                        planned_output = None;
                        if output_e == e {
                            level_runs = 1;
                            level_has_output = true;
                        }
                    }
                }
            }
            level_runs += 1;
            level_bytes += run.bytes;
            prefix_bytes += run.bytes;
            let limit = self.run_count_per_level + u32::from(keeps_extra_run(run.seed));
            if level_runs > limit {
                task = Some((
                    i + 1,
                    prefix_bytes,
                    CompactionReason::LevelOverfull {
                        level: index_of(level_e),
                        runs: level_runs,
                        limit,
                        planned_output: level_has_output,
                    },
                ));
                // The merge takes every run of this level so far: its output stays here alone
                // if it fits, else it lands deeper.
                let output_e = targets.exponent_of(size_of(prefix_bytes)).min(level_e);
                planned_output = (output_e < level_e).then_some((output_e, level_e));
            }
        }
        levels.push(Level {
            index: index_of(level_e),
            target_bytes: targets.target(level_e).floor() as u64,
            runs: level_start..runs.len(),
            bytes: level_bytes,
            is_bottom: true,
        });

        // The bottom holds one run. A planned output still pending is larger than the bottom
        // level's target: it would share (or push under) the bottom, unless it comes from the
        // bottom level itself, whose runs already count for it.
        let pending_from_above =
            planned_output.is_some_and(|(_, planned_at)| planned_at != level_e);
        let bottom_runs = level_runs + u32::from(pending_from_above);
        if bottom_runs > 1 {
            task = Some((
                runs.len(),
                total_bytes,
                CompactionReason::BottomOverfull { runs: bottom_runs },
            ));
        }
        let task = task.map(|(run_count, input_bytes, reason)| CompactionTask {
            run_count,
            output_is_bottom: run_count == runs.len(),
            priority: saturating_u32(run_count),
            input_bytes,
            reason,
        });
        RangeShape {
            levels,
            task,
            total_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(sizes: &[u64]) -> Vec<RunSlice> {
        sizes.iter().map(|&bytes| RunSlice::new(bytes)).collect()
    }

    #[test]
    fn options_are_validated() {
        assert!(VinylPolicy::new(3.5, 2).is_ok());
        assert_eq!(
            VinylPolicy::new(1.0, 2),
            Err(PolicyError::RunSizeRatio(1.0))
        );
        assert!(VinylPolicy::new(f64::NAN, 2).is_err());
        assert!(VinylPolicy::new(f64::INFINITY, 2).is_err());
        assert_eq!(VinylPolicy::new(3.5, 0), Err(PolicyError::RunCountPerLevel));
        let policy = VinylPolicy::default();
        assert_eq!(
            (policy.run_size_ratio(), policy.run_count_per_level()),
            (3.5, 2)
        );
    }

    #[test]
    fn exponents_are_exact_at_targets() {
        let t = Targets {
            oldest: 35.0,
            ratio: 3.5,
            ln_ratio: 3.5f64.ln(),
        };
        assert_eq!(t.exponent_of(35.0), 0);
        assert_eq!(t.exponent_of(35.5), -1);
        assert_eq!(t.exponent_of(10.0), 1);
        assert_eq!(t.exponent_of(10.01), 0);
        assert_eq!(t.exponent_of(1.0), 2);
        assert_eq!(t.exponent_of(1e30), -53);
    }

    #[test]
    fn nothing_to_do_for_zero_or_one_run() {
        let policy = VinylPolicy::default();
        let shape = policy.analyze(&RangeRuns::new(&[]));
        assert_eq!(shape, RangeShape::default());
        assert_eq!(shape.space_amplification(), None);
        let one = runs(&[5]);
        let shape = policy.analyze(&RangeRuns::new(&one));
        assert_eq!(shape.task, None);
        assert_eq!(shape.run_count(), 1);
        assert_eq!(shape.space_amplification(), Some(1.0));
    }

    #[test]
    fn pick_respects_a_running_compaction() {
        let policy = VinylPolicy::default();
        let two = runs(&[1, 1]);
        let range = RangeRuns::new(&two);
        let task = policy
            .pick(&range)
            .expect("two equal runs share the bottom");
        assert_eq!(task.run_count, 2);
        assert!(task.output_is_bottom);
        assert_eq!(task.inputs(&two).len(), 2);
        assert!(policy.pick(&range.with_compacting(true)).is_none());
        assert_eq!(policy.analyze(&range.with_compacting(true)).debt_bytes(), 2);
    }

    #[test]
    fn zero_sized_runs_count_as_one_byte() {
        let policy = VinylPolicy::default();
        let zeros = runs(&[0, 0, 0]);
        let task = policy.analyze(&RangeRuns::new(&zeros)).task;
        assert_eq!(task.map(|t| t.run_count), Some(3));
    }

    #[test]
    fn major_tasks() {
        assert_eq!(CompactionTask::major(&[]), None);
        let task = CompactionTask::major(&runs(&[3, 4])).expect("runs");
        assert_eq!((task.run_count, task.priority, task.input_bytes), (2, 2, 7));
        assert!(task.output_is_bottom);
        assert_eq!(task.reason, CompactionReason::Manual);
    }

    #[test]
    fn extra_run_seeds() {
        assert!(!keeps_extra_run(0));
        assert!(keeps_extra_run(9));
        assert!(keeps_extra_run(19));
        assert_eq!((0..1000).filter(|&s| keeps_extra_run(s)).count(), 100);
    }
}
