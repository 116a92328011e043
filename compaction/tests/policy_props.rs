//! Properties of the vinyl policy on random ranges, and a simulation of one range under a
//! stream of dumps: settled shapes keep the documented bounds on run counts and space
//! amplification, and write amplification stays logarithmic.

use proptest::prelude::*;
use strata_compaction::{CompactionPolicy, CompactionReason, RangeRuns, RunSlice, VinylPolicy};

const M: u64 = 1 << 20;

fn runs_strategy() -> impl Strategy<Value = Vec<RunSlice>> {
    prop::collection::vec(
        (
            prop_oneof![0u64..10, 1u64..(1 << 20), 1u64..(1 << 40), Just(1 << 20)],
            0u64..20,
        )
            .prop_map(|(bytes, seed)| RunSlice { bytes, seed }),
        0..14,
    )
}

fn policy_strategy() -> impl Strategy<Value = VinylPolicy> {
    (prop_oneof![Just(3.5), Just(2.0), 1.01f64..10.0], 1u32..5)
        .prop_map(|(ratio, count)| VinylPolicy::new(ratio, count).expect("valid"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn shapes_are_consistent(runs in runs_strategy(), policy in policy_strategy()) {
        let range = RangeRuns::new(&runs);
        let shape = policy.analyze(&range);
        prop_assert_eq!(shape.run_count(), runs.len());
        prop_assert_eq!(shape.total_bytes, range.total_bytes());
        // Levels tile the runs in order, numbered downwards, the last one the bottom.
        let mut next = 0;
        for (i, level) in shape.levels.iter().enumerate() {
            prop_assert_eq!(level.runs.start, next);
            prop_assert!(!level.runs.is_empty());
            next = level.runs.end;
            prop_assert_eq!(level.is_bottom, i + 1 == shape.levels.len());
            prop_assert_eq!(level.bytes, runs[level.runs.clone()].iter().map(|r| r.bytes).sum::<u64>());
            if i > 0 {
                prop_assert!(level.index > shape.levels[i - 1].index);
                // The run that opened the level did not fit the level above.
                prop_assert!(runs[level.runs.start].bytes.max(1) > shape.levels[i - 1].target_bytes);
            }
            for run in &runs[level.runs.clone()] {
                prop_assert!(run.bytes.max(1) <= level.target_bytes, "{:?} {:?}", run, level);
            }
        }
        prop_assert_eq!(next, runs.len());
        if let Some(first) = shape.levels.first() {
            prop_assert_eq!(first.index, 0);
        }
        match shape.task {
            Some(task) => {
                prop_assert!(task.run_count >= 2 && task.run_count <= runs.len());
                prop_assert_eq!(task.priority as usize, task.run_count);
                prop_assert_eq!(task.output_is_bottom, task.run_count == runs.len());
                prop_assert_eq!(task.input_bytes, runs[..task.run_count].iter().map(|r| r.bytes).sum::<u64>());
                prop_assert_eq!(shape.debt_bytes(), task.input_bytes);
                // Whole levels only.
                prop_assert!(shape.levels.iter().any(|l| l.runs.end == task.run_count));
                if let CompactionReason::BottomOverfull { runs: n } = task.reason {
                    prop_assert!(n >= 2);
                    prop_assert!(task.output_is_bottom);
                }
            }
            None => {
                prop_assert_eq!(shape.debt_bytes(), 0);
                // Settled: one run at the bottom, and no level beyond its allowance.
                prop_assert!(shape.bottom().is_none_or(|b| b.run_count() == 1));
                for level in &shape.levels {
                    prop_assert!(level.run_count() as u32 <= policy.run_count_per_level() + 1);
                }
            }
        }
        prop_assert_eq!(policy.pick(&range), shape.task);
        prop_assert_eq!(policy.pick(&range.with_compacting(true)), None);
    }
}

/// Simulates one range: `dumps` dumps of about `dump` bytes each, every one followed by the
/// compactions the policy picks until it picks none. Returns the write amplification
/// ((dumped + compacted output) / dumped) and checks the settled shapes on the way.
fn simulate(policy: &VinylPolicy, dumps: u64, dump: u64, random_seeds: bool) -> f64 {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut runs: Vec<RunSlice> = Vec::new();
    let (mut dumped, mut compacted) = (0u64, 0u64);
    let extra = u32::from(random_seeds);
    let bound =
        1.0 + f64::from(policy.run_count_per_level() + extra) / (policy.run_size_ratio() - 1.0);
    let mut worst_amp: f64 = 1.0;
    for _ in 0..dumps {
        let bytes = dump / 2 + random() % dump;
        let seed = if random_seeds { random() } else { 0 };
        runs.insert(0, RunSlice { bytes, seed });
        dumped += bytes;
        let mut rounds = 0;
        while let Some(task) = policy.pick(&RangeRuns::new(&runs)) {
            rounds += 1;
            assert!(rounds < 100, "compaction does not converge: {runs:?}");
            let output = RunSlice {
                bytes: task.input_bytes,
                seed: if random_seeds { random() } else { 0 },
            };
            compacted += output.bytes;
            runs.splice(..task.run_count, [output]);
        }
        let shape = policy.analyze(&RangeRuns::new(&runs));
        assert!(shape.task.is_none());
        let amp = shape.space_amplification().expect("runs");
        worst_amp = worst_amp.max(amp);
        assert!(
            amp < bound,
            "space amplification {amp} over {bound}: {:?}",
            shape.levels
        );
        for level in &shape.levels {
            assert!(level.run_count() as u32 <= policy.run_count_per_level() + extra);
        }
    }
    eprintln!(
        "ratio {} count {} seeds {random_seeds}: {} runs, worst space amplification {worst_amp:.2}",
        policy.run_size_ratio(),
        policy.run_count_per_level(),
        runs.len()
    );
    (dumped + compacted) as f64 / dumped as f64
}

#[test]
fn default_policy_bounds_space_and_write_amplification() {
    let policy = VinylPolicy::default();
    for random_seeds in [false, true] {
        // 5000 dumps of ~1M: the range grows to ~5G, about 7 levels.
        let write_amp = simulate(&policy, 5000, M, random_seeds);
        eprintln!("write amplification {write_amp:.2}");
        // Each byte is rewritten about once per level it passes through.
        assert!(write_amp < 12.0, "write amplification {write_amp}");
    }
}

#[test]
fn other_options_keep_their_bounds() {
    for (ratio, count) in [(2.0, 1), (4.0, 3), (10.0, 9), (3.5, 1), (1.5, 1)] {
        let policy = VinylPolicy::new(ratio, count).expect("valid");
        let write_amp = simulate(&policy, 2000, M, true);
        eprintln!("write amplification {write_amp:.2}");
    }
}
