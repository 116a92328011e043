//! Model-based property tests: runs written from random entries must read back exactly like a
//! `BTreeMap` model of them, through every access path, for every compression and page shape.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use strata_sstable::{
    compare_internal, Compression, Entry, EntryKind, Run, RunIter, WriterOptions,
};

use common::{open_run, write_run};

fn kind_strategy() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Put),
        Just(EntryKind::Delete),
        Just(EntryKind::Merge)
    ]
}

/// Keys from a small alphabet so many keys share prefixes and carry several versions.
fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'c', 0u8, 0xff]),
        0..6,
    )
}

fn entries_strategy() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (
            key_strategy(),
            0u64..40,
            kind_strategy(),
            prop::collection::vec(any::<u8>(), 0..48),
        ),
        0..300,
    )
    .prop_map(|raw| {
        // The model: (key, seqno) is unique; last write wins while generating.
        let mut model = BTreeMap::new();
        for (key, seqno, kind, value) in raw {
            model.insert((key, std::cmp::Reverse(seqno)), (kind, value));
        }
        model
            .into_iter()
            .map(|((key, seqno), (kind, value))| Entry::new(key, seqno.0, kind, value))
            .collect()
    })
}

fn options_strategy() -> impl Strategy<Value = WriterOptions> {
    (
        prop::sample::select(vec![64usize, 100, 256, 4096, 65536]),
        prop::sample::select(vec![1usize, 2, 3, 16]),
        prop::sample::select(vec![
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 1 },
        ]),
        prop::sample::select(vec![0.01, 0.5, 1.0]),
    )
        .prop_map(
            |(page_size, restart_interval, compression, bloom_fp_rate)| WriterOptions {
                page_size,
                restart_interval,
                compression,
                bloom_fp_rate,
                ..WriterOptions::default()
            },
        )
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key_strategy().prop_map(Bound::Included),
        key_strategy().prop_map(Bound::Excluded),
    ]
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    (match lower {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    }) && (match upper {
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Unbounded => true,
    })
}

fn collect(run: &Run, lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>, reverse: bool) -> Vec<Entry> {
    let range = run.range(as_ref(lower), as_ref(upper));
    let result: Result<Vec<Entry>, _> = if reverse {
        range.rev().collect()
    } else {
        range.collect()
    };
    result.expect("scan")
}

fn at(iter: &RunIter) -> Option<(Vec<u8>, u64)> {
    iter.valid().then(|| (iter.key().to_vec(), iter.seqno()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn run_reads_back_like_the_model(
        entries in entries_strategy(),
        options in options_strategy(),
        lower in bound_strategy(),
        upper in bound_strategy(),
        probes in prop::collection::vec((key_strategy(), 0u64..45), 1..40),
        walk in prop::collection::vec(any::<bool>(), 0..60),
        alternate in prop::collection::vec(any::<bool>(), 0..80),
    ) {
        let run = open_run(write_run(&entries, options)).expect("open");
        let props = run.properties();
        prop_assert_eq!(props.entries, entries.len() as u64);

        // Full scans, both directions.
        prop_assert_eq!(&collect(&run, &Bound::Unbounded, &Bound::Unbounded, false), &entries);
        let mut reversed = entries.clone();
        reversed.reverse();
        prop_assert_eq!(&collect(&run, &Bound::Unbounded, &Bound::Unbounded, true), &reversed);

        // Bounded scans, both directions, and a random interleaving of next and next_back.
        let expected: Vec<Entry> = entries.iter().filter(|e| in_bounds(&e.key, &lower, &upper)).cloned().collect();
        prop_assert_eq!(&collect(&run, &lower, &upper, false), &expected);
        let mut expected_rev = expected.clone();
        expected_rev.reverse();
        prop_assert_eq!(&collect(&run, &lower, &upper, true), &expected_rev);
        let mut range = run.range(as_ref(&lower), as_ref(&upper));
        let (mut front, mut back) = (0usize, expected.len());
        for from_back in alternate {
            let got = if from_back { range.next_back() } else { range.next() };
            let want = if front < back {
                if from_back { back -= 1; Some(&expected[back]) } else { front += 1; Some(&expected[front - 1]) }
            } else {
                None
            };
            let got = got.map(|r| r.expect("entry"));
            prop_assert_eq!(got.as_ref(), want);
        }

        for (key, read_seqno) in &probes {
            // Point lookups: every visible version, newest first.
            let mut got = Vec::new();
            run.get(key, *read_seqno, |v| { got.push((v.seqno, v.kind, v.value)); true }).expect("get");
            let want: Vec<_> = entries
                .iter()
                .filter(|e| e.key.as_ref() == key.as_slice() && e.seqno <= *read_seqno)
                .map(|e| (e.seqno, e.kind, e.value.clone()))
                .collect();
            prop_assert_eq!(got, want);

            // Seeks against the model's positions.
            let mut iter = RunIter::new(&run, as_ref(&lower), as_ref(&upper));
            iter.seek(key).expect("seek");
            let first_ge = expected.iter().position(|e| e.key.as_ref() >= key.as_slice());
            prop_assert_eq!(at(&iter), first_ge.map(|i| (expected[i].key.to_vec(), expected[i].seqno)));

            iter.seek_at(key, *read_seqno).expect("seek_at");
            let first_at = expected.iter().position(|e| compare_internal(&e.key, e.seqno, key, *read_seqno).is_ge());
            prop_assert_eq!(at(&iter), first_at.map(|i| (expected[i].key.to_vec(), expected[i].seqno)));

            iter.seek_for_prev_at(key, *read_seqno).expect("seek_for_prev_at");
            let last_at = expected.iter().rposition(|e| compare_internal(&e.key, e.seqno, key, *read_seqno).is_le());
            prop_assert_eq!(at(&iter), last_at.map(|i| (expected[i].key.to_vec(), expected[i].seqno)));

            iter.seek_for_prev(key).expect("seek_for_prev");
            let last_le = expected.iter().rposition(|e| e.key.as_ref() <= key.as_slice());
            prop_assert_eq!(at(&iter), last_le.map(|i| (expected[i].key.to_vec(), expected[i].seqno)));

            // A random walk from there, checked step by step.
            let mut position = last_le;
            for &forward in &walk {
                let Some(p) = position else { break };
                if forward { iter.next().expect("next") } else { iter.prev().expect("prev") }
                position = if forward { Some(p + 1).filter(|&n| n < expected.len()) } else { p.checked_sub(1) };
                prop_assert_eq!(at(&iter), position.map(|i| (expected[i].key.to_vec(), expected[i].seqno)));
            }
        }

        let report = run.verify();
        prop_assert!(report.is_ok(), "verify: {:?}", report.problems);
        prop_assert_eq!(report.entries, entries.len() as u64);
    }
}

#[test]
fn large_values_make_single_entry_pages() {
    let big = vec![7u8; 200_000];
    let entries = vec![
        Entry::new("a", 3, EntryKind::Put, &big),
        Entry::new("b", 2, EntryKind::Put, &big),
    ];
    for compression in [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd { level: 3 },
    ] {
        let options = WriterOptions {
            compression,
            ..WriterOptions::default()
        };
        let run = open_run(write_run(&entries, options)).expect("open");
        assert_eq!(run.pages().len(), 2);
        let got: Vec<Entry> = run.iter().collect::<Result<_, _>>().expect("scan");
        assert_eq!(got, entries);
    }
}
