//! Version garbage collection, rule by rule, on small hand-written inputs (see the rules in the
//! `gc` module's documentation).

mod common;

use std::ops::Bound;

use bytes::Bytes;
use strata_compaction::{
    BoxedSource, Entry, EntryKind, EntrySource, GcError, GcStats, MergeFn, MergeIter, VecSource,
    VersionGc,
};
use strata_sstable::RunIter;

use common::{open_run, small_pages, write_run, FailingSource};

fn put(key: &str, seqno: u64, value: &str) -> Entry {
    Entry::new(key, seqno, EntryKind::Put, value)
}

fn del(key: &str, seqno: u64) -> Entry {
    Entry::new(key, seqno, EntryKind::Delete, "")
}

fn mrg(key: &str, seqno: u64, operand: &str) -> Entry {
    Entry::new(key, seqno, EntryKind::Merge, operand)
}

/// Concatenation: the base (`_` for no value), then the operands oldest first.
fn concat(_key: &[u8], base: Option<&[u8]>, operands: &[Bytes]) -> Result<Vec<u8>, String> {
    let mut value = base.unwrap_or(b"_").to_vec();
    for operand in operands.iter().rev() {
        value.extend_from_slice(operand);
    }
    Ok(value)
}

const CONCAT: &MergeFn = &concat;

/// Runs the garbage collector over `input` (any order) and checks the output order and the
/// stats identity.
fn gc_with(
    input: Vec<Entry>,
    views: &[u64],
    last: bool,
    merge: Option<&MergeFn>,
) -> (Vec<Entry>, GcStats) {
    let mut gc = VersionGc::new(VecSource::from_unsorted(input), views, last);
    if let Some(merge) = merge {
        gc = gc.with_merge_fn(merge);
    }
    let output: Vec<Entry> = gc.by_ref().map(|e| e.expect("no error")).collect();
    for pair in output.windows(2) {
        assert!(
            pair[0].cmp_internal(&pair[1]).is_lt(),
            "output out of order: {pair:?}"
        );
    }
    let s = gc.stats();
    assert_eq!(s.entries_out, output.len() as u64);
    assert_eq!(
        s.entries_in + s.merge_calls,
        s.entries_out + s.versions_dropped + s.deletes_dropped + s.merges_folded,
        "{s:?}"
    );
    (output, s)
}

fn gc(input: Vec<Entry>, views: &[u64], last: bool) -> Vec<Entry> {
    gc_with(input, views, last, None).0
}

fn gc_merge(input: Vec<Entry>, views: &[u64], last: bool) -> Vec<Entry> {
    gc_with(input, views, last, Some(CONCAT)).0
}

#[test]
fn one_version_per_read_view_interval() {
    let input = vec![
        put("k", 25, "v25"),
        put("k", 18, "v18"),
        put("k", 15, "v15"),
        put("k", 12, "v12"),
        put("k", 8, "v8"),
        put("k", 3, "v3"),
    ];
    let (output, stats) = gc_with(input.clone(), &[20, 10], false, None);
    // 25 is above every view (a later snapshot may read it), 18 serves view 20, 8 view 10.
    assert_eq!(
        output,
        vec![put("k", 25, "v25"), put("k", 18, "v18"), put("k", 8, "v8")]
    );
    assert_eq!(
        stats,
        GcStats {
            entries_in: 6,
            entries_out: 3,
            versions_dropped: 3,
            ..GcStats::default()
        }
    );
    // The bottom changes nothing without deletes.
    assert_eq!(gc(input.clone(), &[20, 10], true), output);
    // A view exactly at a version's seqno sees it: intervals are (previous view, view].
    assert_eq!(
        gc(input.clone(), &[25, 12], false),
        vec![put("k", 25, "v25"), put("k", 12, "v12")]
    );
    // Views with no version in their interval cost nothing.
    assert_eq!(gc(input, &[1, 2, 30, 40], false), vec![put("k", 25, "v25")]);
}

#[test]
fn versions_above_every_view_are_copied() {
    let input = vec![put("k", 30, "a"), del("k", 29), put("k", 28, "b")];
    assert_eq!(gc(input.clone(), &[10], false), input);
    assert_eq!(gc(input.clone(), &[], false), input);
    // u64::MAX as a view: nothing above it, only the newest version survives.
    assert_eq!(gc(input, &[u64::MAX], false), vec![put("k", 30, "a")]);
}

#[test]
fn deletes_are_dropped_only_at_the_bottom() {
    let input = vec![del("k", 8), put("k", 3, "old"), put("x", 2, "x")];
    // Not the bottom: the delete shadows older runs outside the compaction.
    let (output, stats) = gc_with(input.clone(), &[10], false, None);
    assert_eq!(output, vec![del("k", 8), put("x", 2, "x")]);
    assert_eq!((stats.versions_dropped, stats.deletes_dropped), (1, 0));
    // The bottom: the delete and everything it shadows go.
    let (output, stats) = gc_with(input, &[10], true, None);
    assert_eq!(output, vec![put("x", 2, "x")]);
    assert_eq!((stats.versions_dropped, stats.deletes_dropped), (1, 1));
}

#[test]
fn a_delete_a_view_needs_stays_at_the_bottom() {
    // View 10 reads "old"; view 20 must read "absent".
    let input = vec![del("k", 15), put("k", 5, "old")];
    assert_eq!(gc(input.clone(), &[10, 20], true), input);
    // Without view 10 nobody reads "old": both go.
    assert_eq!(gc(input, &[20], true), vec![]);
}

#[test]
fn deletes_with_nothing_below_go_interval_after_interval() {
    let input = vec![put("k", 25, "new"), del("k", 15), del("k", 5)];
    assert_eq!(gc(input.clone(), &[10, 20], false), input);
    let (output, stats) = gc_with(input, &[10, 20], true, None);
    assert_eq!(output, vec![put("k", 25, "new")]);
    assert_eq!(stats.deletes_dropped, 2);
}

#[test]
fn deletes_above_every_view_follow_the_bottom_rule() {
    // A later snapshot may read at 14 ("old") or 16 (absent): both stay.
    let input = vec![del("k", 16), put("k", 14, "old")];
    assert_eq!(gc(input.clone(), &[10], true), input);
    // With nothing below, a delete and nothing read the same.
    assert_eq!(gc(vec![del("k", 16), del("k", 15)], &[10], true), vec![]);
    assert_eq!(
        gc(vec![put("k", 17, "a"), del("k", 16)], &[10], true),
        vec![put("k", 17, "a")]
    );
}

#[test]
fn merges_fold_onto_a_put_in_their_interval() {
    let input = vec![
        mrg("k", 19, "c"),
        mrg("k", 14, "b"),
        put("k", 9, "a"),
        put("k", 5, "old"),
    ];
    let (output, stats) = gc_with(input.clone(), &[20], false, Some(CONCAT));
    assert_eq!(output, vec![put("k", 19, "abc")]);
    assert_eq!(
        stats,
        GcStats {
            entries_in: 4,
            entries_out: 1,
            versions_dropped: 2,
            deletes_dropped: 0,
            merges_folded: 2,
            merge_calls: 1,
            merge_failures: 0,
        }
    );
}

#[test]
fn merge_chains_across_read_views() {
    let input = vec![mrg("k", 19, "c"), mrg("k", 14, "b"), put("k", 9, "a")];
    // Interval (10, 20] folds onto interval [0, 10]'s put, which view 10 still needs.
    let (output, stats) = gc_with(input, &[10, 20], false, Some(CONCAT));
    assert_eq!(output, vec![put("k", 19, "abc"), put("k", 9, "a")]);
    assert_eq!((stats.merges_folded, stats.merge_calls), (2, 1));

    // Three intervals, each folding onto the one below.
    let input = vec![
        mrg("k", 25, "d"),
        mrg("k", 19, "c"),
        mrg("k", 14, "b"),
        put("k", 9, "a"),
    ];
    assert_eq!(
        gc_merge(input, &[10, 20, 30], false),
        vec![put("k", 25, "abcd"), put("k", 19, "abc"), put("k", 9, "a")]
    );
}

#[test]
fn merge_chains_with_no_base_in_the_input() {
    let input = vec![mrg("k", 19, "c"), mrg("k", 14, "b"), mrg("k", 9, "a")];
    // At the bottom there is nothing below: fold onto no value.
    let (output, stats) = gc_with(input.clone(), &[10, 20], true, Some(CONCAT));
    assert_eq!(output, vec![put("k", 19, "_abc"), put("k", 9, "_a")]);
    assert_eq!((stats.merges_folded, stats.merge_calls), (3, 2));
    // Elsewhere older runs may hold the base: everything stays for readers to fold.
    assert_eq!(gc_merge(input.clone(), &[10, 20], false), input);
    // A merge alone at the bottom becomes a put.
    assert_eq!(
        gc_merge(vec![mrg("k", 3, "x")], &[10], true),
        vec![put("k", 3, "_x")]
    );
}

#[test]
fn merges_fold_onto_deletes() {
    // The base of (10, 20] is its own delete at 17; put@12 is shadowed by it.
    let input = vec![
        mrg("k", 19, "c"),
        del("k", 17),
        put("k", 12, "x"),
        put("k", 9, "a"),
    ];
    let (output, stats) = gc_with(input, &[10, 20], false, Some(CONCAT));
    assert_eq!(output, vec![put("k", 19, "_c"), put("k", 9, "a")]);
    assert_eq!(stats.versions_dropped, 2);

    // The base is a delete in an older interval: kept for view 10 unless at the bottom.
    let input = vec![mrg("k", 15, "c"), del("k", 5)];
    assert_eq!(
        gc_merge(input.clone(), &[10, 20], false),
        vec![put("k", 15, "_c"), del("k", 5)]
    );
    let (output, stats) = gc_with(input, &[10, 20], true, Some(CONCAT));
    assert_eq!(output, vec![put("k", 15, "_c")]);
    assert_eq!(stats.deletes_dropped, 1);
}

#[test]
fn merges_above_every_view_are_copied() {
    let input = vec![mrg("k", 15, "b"), put("k", 5, "a")];
    assert_eq!(gc_merge(input.clone(), &[10], true), input);
    // ... and still serve as operands for the newest view's fold below them.
    let input = vec![mrg("k", 25, "c"), mrg("k", 15, "b"), put("k", 5, "a")];
    assert_eq!(
        gc_merge(input, &[20], true),
        vec![mrg("k", 25, "c"), put("k", 15, "ab")]
    );
}

#[test]
fn without_a_merge_function_operands_are_kept() {
    // The chain and its base are copied; only what the base shadows goes.
    let input = vec![
        mrg("k", 19, "c"),
        mrg("k", 14, "b"),
        put("k", 9, "a"),
        put("k", 5, "old"),
    ];
    let (output, stats) = gc_with(input.clone(), &[20], true, None);
    assert_eq!(output, input[..3].to_vec());
    assert_eq!((stats.versions_dropped, stats.merge_calls), (1, 0));
    // Merges with nothing below stay merges, even at the bottom.
    let input = vec![mrg("k", 19, "c"), mrg("k", 9, "a")];
    assert_eq!(gc(input.clone(), &[10, 20], true), input);
    // A delete under a chain at the bottom goes (folding onto it or onto nothing is the same).
    let (output, stats) = gc_with(
        vec![mrg("k", 19, "c"), del("k", 12), put("k", 11, "x")],
        &[20],
        true,
        None,
    );
    assert_eq!(output, vec![mrg("k", 19, "c")]);
    assert_eq!((stats.deletes_dropped, stats.versions_dropped), (1, 1));
}

#[test]
fn keys_are_independent() {
    let input = vec![
        put("a", 9, "a9"),
        put("a", 4, "a4"),
        del("b", 7),
        mrg("c", 8, "y"),
        mrg("c", 6, "x"),
        put("d", 1, "d1"),
    ];
    assert_eq!(
        gc_merge(input, &[5, 10], true),
        vec![
            put("a", 9, "a9"),
            put("a", 4, "a4"),
            put("c", 8, "_xy"),
            put("d", 1, "d1"),
        ]
    );
}

#[test]
fn rejected_chains_are_copied_unfolded() {
    let picky = |key: &[u8], base: Option<&[u8]>, operands: &[Bytes]| {
        if key == b"bad" {
            Err("operand is not a number".to_string())
        } else {
            concat(key, base, operands)
        }
    };
    let input = VecSource::new(vec![
        mrg("a", 5, "x"),
        mrg("bad", 7, "y"),
        mrg("bad", 6, "z"),
        put("bad", 3, "base"),
        put("c", 1, "c"),
    ]);
    let mut gc = VersionGc::new(input, &[10], true).with_merge_fn(&picky);
    let output: Vec<Entry> = gc.by_ref().map(|e| e.expect("no source error")).collect();
    assert_eq!(
        output,
        vec![
            put("a", 5, "_x"),
            mrg("bad", 7, "y"),
            mrg("bad", 6, "z"),
            put("bad", 3, "base"),
            put("c", 1, "c"),
        ]
    );
    let stats = gc.stats();
    assert_eq!((stats.merge_failures, stats.merge_calls), (1, 1));
}

#[test]
fn partial_merge_combines_chains_without_a_base() {
    let partial = |_key: &[u8], operands: &[Bytes]| {
        let mut value = Vec::new();
        for operand in operands.iter().rev() {
            value.extend_from_slice(operand);
        }
        Some(value)
    };
    let input = VecSource::new(vec![
        mrg("a", 9, "c"),
        mrg("a", 8, "b"),
        mrg("a", 7, "a"),
        mrg("b", 5, "only"),
    ]);
    // Not the bottom: the base is unknown, so the chain becomes one operand.
    let mut gc = VersionGc::new(input, &[10], false)
        .with_merge_fn(&concat)
        .with_partial_merge_fn(&partial);
    let output: Vec<Entry> = gc.by_ref().map(|e| e.expect("no source error")).collect();
    assert_eq!(output, vec![mrg("a", 9, "abc"), mrg("b", 5, "only")]);
    let stats = gc.stats();
    assert_eq!(
        stats.entries_in + stats.merge_calls,
        stats.entries_out + stats.versions_dropped + stats.deletes_dropped + stats.merges_folded
    );
}

#[test]
fn source_errors_propagate() {
    let entries: Vec<Entry> = (0..10).map(|i| put(&format!("k{i}"), 1, "v")).collect();
    // Moves: 1 = seek_to_first, then one next per entry.
    let failing = FailingSource::new(VecSource::new(entries), 5);
    let mut gc = VersionGc::new(failing, &[10], true);
    let mut seen = 0;
    let error = loop {
        match gc.next() {
            Some(Ok(_)) => seen += 1,
            Some(Err(error)) => break error,
            None => panic!("the injected failure was swallowed"),
        }
    };
    assert_eq!(seen, 3);
    match &error {
        GcError::Source(inner) => assert!(inner.is_corruption(), "{inner}"),
        other => panic!("expected a source error, got {other:?}"),
    }
    assert!(error.to_string().contains("injected failure"));
    assert!(gc.next().is_none());
}

#[test]
fn runs_in_runs_out() {
    // Two real runs merged, garbage-collected and written to a new run.
    let newer = vec![
        del("a", 20),
        mrg("b", 21, "2"),
        put("c", 22, "c22"),
        put("d", 23, "d23"),
    ];
    let older: Vec<Entry> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .flat_map(|(i, k)| {
            [
                put(k, 10 + i as u64, &format!("{k}new")),
                put(k, 1 + i as u64, &format!("{k}old")),
            ]
        })
        .collect();
    let runs: Vec<BoxedSource> = [newer, older]
        .iter()
        .map(|entries| {
            let run = open_run(write_run(entries, small_pages(64))).expect("open");
            Box::new(RunIter::new(&run, Bound::Unbounded, Bound::Unbounded)) as BoxedSource
        })
        .collect();
    let gc = VersionGc::new(MergeIter::new(runs), &[5, 30], true).with_merge_fn(CONCAT);
    let output: Vec<Entry> = gc.map(|e| e.expect("no error")).collect();
    assert_eq!(
        output,
        vec![
            del("a", 20),
            put("a", 1, "aold"),
            put("b", 21, "bnew2"),
            put("b", 2, "bold"),
            put("c", 22, "c22"),
            put("c", 3, "cold"),
            put("d", 23, "d23"),
            put("d", 4, "dold"),
        ]
    );
    let mut reread = RunIter::new(
        &open_run(write_run(&output, small_pages(64))).expect("open"),
        Bound::Unbounded,
        Bound::Unbounded,
    );
    EntrySource::seek_to_first(&mut reread).expect("seek");
    assert_eq!(reread.entry(), del("a", 20));
}
