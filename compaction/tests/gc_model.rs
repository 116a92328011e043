//! Model-based property test of version garbage collection: for random multi-version data,
//! random read views, with or without a merge function, at the bottom of the range or above
//! older runs, every reader that can exist (one at each read view, and any later snapshot above
//! the newest view) reads the same values from the collected output as from the input.

mod common;

use bytes::Bytes;
use proptest::prelude::*;
use strata_compaction::{
    BoxedSource, Entry, EntryKind, GcStats, MergeFn, MergeIter, VecSource, VersionGc,
};

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// Seqnos of the older runs below the compaction are below this; the input's are above it.
const INPUT_BASE: u64 = 100;

/// Concatenation: the base (`_` for no value), then `|` and each operand, oldest first. Order and
/// base mistakes change the result.
fn concat(_key: &[u8], base: Option<&[u8]>, operands: &[Bytes]) -> Result<Vec<u8>, String> {
    let mut value = base.unwrap_or(b"_").to_vec();
    for operand in operands.iter().rev() {
        value.push(b'|');
        value.extend_from_slice(operand);
    }
    Ok(value)
}

const CONCAT: &MergeFn = &concat;

/// What a reader at `seqno` sees for `key` in `entries` (sorted in internal order): the newest
/// version at or below `seqno`, with merge operands folded, deletes hidden.
fn read(entries: &[Entry], key: &[u8], seqno: u64) -> Option<Vec<u8>> {
    let mut operands: Vec<Bytes> = Vec::new();
    let fold = |base: Option<&[u8]>, operands: &[Bytes]| {
        if operands.is_empty() {
            base.map(<[u8]>::to_vec)
        } else {
            concat(key, base, operands).ok()
        }
    };
    for entry in entries
        .iter()
        .filter(|e| &e.key[..] == key && e.seqno <= seqno)
    {
        match entry.kind {
            EntryKind::Put => return fold(Some(&entry.value), &operands),
            EntryKind::Delete => return fold(None, &operands),
            EntryKind::Merge => operands.push(entry.value.clone()),
        }
    }
    fold(None, &operands)
}

fn kind_strategy() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        3 => Just(EntryKind::Put),
        2 => Just(EntryKind::Delete),
        3 => Just(EntryKind::Merge),
    ]
}

/// Writes in commit order: (key, kind, value, seqno gap, source index).
type Writes = Vec<(usize, EntryKind, String, u64, usize)>;

fn writes_strategy(max: usize) -> impl Strategy<Value = Writes> {
    prop::collection::vec(
        (0..KEYS.len(), kind_strategy(), "[a-z]", 1u64..4, 0usize..3),
        0..max,
    )
}

/// Turns writes into entries with increasing seqnos from `base`, split by source index.
fn entries(writes: &Writes, base: u64) -> Vec<Vec<Entry>> {
    let mut seqno = base;
    let mut sources = vec![Vec::new(); 3];
    for (key, kind, value, gap, source) in writes {
        seqno += gap;
        let value = if *kind == EntryKind::Delete {
            ""
        } else {
            value
        };
        sources[*source].push(Entry::new(KEYS[*key], seqno, *kind, value));
    }
    for source in &mut sources {
        source.sort_by(Entry::cmp_internal);
    }
    sources
}

#[derive(Debug, Clone)]
struct Case {
    input: Writes,
    /// Older runs outside the compaction (only when not at the bottom).
    older: Writes,
    /// Read views as offsets from `INPUT_BASE - 10` (so some fall among the older runs).
    views: Vec<u64>,
    /// Add `u64::MAX` as a view.
    view_max: bool,
    last_level: bool,
    merge: bool,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        writes_strategy(40),
        writes_strategy(12),
        prop::collection::vec(0u64..110, 0..5),
        prop::bool::weighted(0.15),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(input, older, views, view_max, last_level, merge)| Case {
            input,
            older: if last_level { Vec::new() } else { older },
            views,
            view_max,
            last_level,
            merge,
        })
}

fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(Entry::cmp_internal);
    entries
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let sources = entries(&case.input, INPUT_BASE);
    let older: Vec<Entry> = entries(&case.older, 0).concat();
    prop_assert!(older.iter().all(|e| e.seqno < INPUT_BASE));
    let input: Vec<Entry> = sorted(sources.concat());
    let mut views: Vec<u64> = case.views.iter().map(|v| v + INPUT_BASE - 10).collect();
    if case.view_max {
        views.push(u64::MAX);
    }

    let merge = MergeIter::new(
        sources
            .into_iter()
            .map(|s| Box::new(VecSource::new(s)) as BoxedSource)
            .collect(),
    );
    let mut gc = VersionGc::new(merge, &views, case.last_level);
    if case.merge {
        gc = gc.with_merge_fn(CONCAT);
    }
    let output: Vec<Entry> = gc
        .by_ref()
        .collect::<Result<_, _>>()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let stats: GcStats = gc.stats();

    // Shape of the output.
    for pair in output.windows(2) {
        prop_assert!(pair[0].cmp_internal(&pair[1]).is_lt(), "order: {pair:?}");
    }
    prop_assert_eq!(stats.entries_in, input.len() as u64);
    prop_assert_eq!(stats.entries_out, output.len() as u64);
    prop_assert_eq!(
        stats.entries_in + stats.merge_calls,
        stats.entries_out + stats.versions_dropped + stats.deletes_dropped + stats.merges_folded
    );
    prop_assert!(output.len() <= input.len());
    let mut sorted_views = views.clone();
    sorted_views.sort_unstable();
    sorted_views.dedup();
    let newest_view = sorted_views.last().copied();
    for key in KEYS {
        let versions: Vec<&Entry> = output
            .iter()
            .filter(|e| &e.key[..] == key.as_bytes())
            .collect();
        if case.last_level {
            prop_assert!(
                versions.last().is_none_or(|e| e.kind != EntryKind::Delete),
                "a delete with nothing below survived the bottom: {versions:?}"
            );
        }
        if case.last_level && case.merge {
            // At most one version per interval below the newest view, and no operands there.
            let mut intervals: Vec<usize> = versions
                .iter()
                .filter(|e| newest_view.is_some_and(|v| e.seqno <= v))
                .map(|e| sorted_views.partition_point(|&v| v < e.seqno))
                .collect();
            let n = intervals.len();
            intervals.dedup();
            prop_assert_eq!(
                intervals.len(),
                n,
                "two versions in one interval: {:?}",
                versions
            );
            prop_assert!(versions
                .iter()
                .filter(|e| newest_view.is_some_and(|v| e.seqno <= v))
                .all(|e| e.kind != EntryKind::Merge));
        }
    }

    // Every possible reader reads the same: one at each view, and later snapshots at any seqno
    // above the newest view (all seqnos when there is no view).
    let max_seqno = input.iter().map(|e| e.seqno).max().unwrap_or(INPUT_BASE);
    let mut readers: Vec<u64> = sorted_views.clone();
    let from = newest_view.map_or(0, |v| v.saturating_add(1));
    if from <= max_seqno + 1 {
        readers.extend(from..=max_seqno + 1);
    }
    let before = sorted([input.clone(), older.clone()].concat());
    let after = sorted([output.clone(), older].concat());
    for &seqno in &readers {
        for key in KEYS {
            prop_assert_eq!(
                read(&after, key.as_bytes(), seqno),
                read(&before, key.as_bytes(), seqno),
                "key {} read at {}; output {:?}",
                key,
                seqno,
                output
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_reader_reads_the_same(case in case_strategy()) {
        check(&case)?;
    }
}

#[test]
fn a_hot_key_keeps_one_version_per_view() {
    // 10 000 versions of one key, three views: four versions survive.
    let mut input = Vec::new();
    for seqno in (1..=10_000u64).rev() {
        input.push(Entry::new("hot", seqno, EntryKind::Put, seqno.to_string()));
    }
    let mut gc = VersionGc::new(VecSource::new(input), &[100, 5_000, 9_999], true);
    let output: Vec<u64> = gc
        .by_ref()
        .map(|e| e.map(|e| e.seqno))
        .collect::<Result<_, _>>()
        .expect("ok");
    assert_eq!(output, vec![10_000, 9_999, 5_000, 100]);
    assert_eq!(gc.stats().versions_dropped, 9_996);
}
