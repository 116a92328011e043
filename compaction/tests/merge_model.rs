//! Model-based property tests of `MergeIter`: random sources (in-memory vectors and real runs,
//! bounded or not, nested in random merge trees) must behave exactly like one sorted vector of
//! all their entries, through every cursor operation and every change of direction.

mod common;

use std::ops::Bound;

use proptest::prelude::*;
use strata_compaction::{BoxedSource, Entry, EntryKind, EntrySource, MergeIter, VecSource};
use strata_sstable::{RunIter, MAX_SEQNO};

use common::{
    collect_backward, collect_forward, current_entry, in_bounds, open_run, small_pages, write_run,
    Model, Op, Tagged,
};

/// Keys from a tiny alphabet, so sources share keys and versions often.
fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c']), 0..3)
}

fn kind_strategy() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Put),
        Just(EntryKind::Delete),
        Just(EntryKind::Merge)
    ]
}

type RawSources = Vec<Vec<(Vec<u8>, u64, EntryKind)>>;

fn raw_sources_strategy(max_sources: usize) -> impl Strategy<Value = RawSources> {
    prop::collection::vec(
        prop::collection::vec((key_strategy(), 0u64..6, kind_strategy()), 0..30),
        0..max_sources,
    )
}

/// Turns raw writes into sorted sources. Each (key, seqno) is unique within a source; with
/// `unique_across`, also across sources (the earliest source keeps it). Values name the source,
/// so duplicates are told apart.
fn make_sources(raw: RawSources, unique_across: bool) -> Vec<Vec<Entry>> {
    let mut seen = std::collections::HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(index, writes)| {
            let mut local = std::collections::HashSet::new();
            let mut entries: Vec<Entry> = writes
                .into_iter()
                .filter(|(key, seqno, _)| local.insert((key.clone(), *seqno)))
                .filter(|(key, seqno, _)| !unique_across || seen.insert((key.clone(), *seqno)))
                .map(|(key, seqno, kind)| {
                    let value = if kind == EntryKind::Delete {
                        String::new()
                    } else {
                        format!("s{index}:{key:?}@{seqno}")
                    };
                    Entry::new(key, seqno, kind, value)
                })
                .collect();
            entries.sort_by(Entry::cmp_internal);
            entries
        })
        .collect()
}

fn seqno_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..7,
        1 => Just(u64::MAX),
        1 => Just(MAX_SEQNO),
        1 => Just(0u64),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let target = || {
        (
            prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c']), 0..4),
            seqno_strategy(),
        )
    };
    prop_oneof![
        6 => Just(Op::Next),
        6 => Just(Op::Prev),
        1 => Just(Op::SeekToFirst),
        1 => Just(Op::SeekToLast),
        2 => target().prop_map(|(k, s)| Op::Seek(k, s)),
        2 => target().prop_map(|(k, s)| Op::SeekForPrev(k, s)),
    ]
}

/// How a leaf source is stored.
#[derive(Debug, Clone)]
enum Leaf {
    Vec,
    Run {
        page_size: usize,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    },
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        2 => Just(Bound::Unbounded),
        1 => key_strategy().prop_map(Bound::Included),
        1 => key_strategy().prop_map(Bound::Excluded),
    ]
}

fn leaf_strategy() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        Just(Leaf::Vec),
        (
            prop::sample::select(vec![64usize, 128, 4096]),
            bound_strategy(),
            bound_strategy()
        )
            .prop_map(|(page_size, lower, upper)| Leaf::Run {
                page_size,
                lower,
                upper
            }),
    ]
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Builds leaf `index` and what it exposes, tagged for the model.
fn make_leaf(index: usize, entries: &[Entry], leaf: &Leaf) -> (BoxedSource, Vec<Tagged>) {
    let tag = |entry: &Entry| Tagged {
        entry: entry.clone(),
        source: index,
    };
    match leaf {
        Leaf::Vec => (
            Box::new(VecSource::new(entries.to_vec())),
            entries.iter().map(tag).collect(),
        ),
        Leaf::Run {
            page_size,
            lower,
            upper,
        } => {
            let run = open_run(write_run(entries, small_pages(*page_size))).expect("open");
            let iter = RunIter::new(&run, as_ref(lower), as_ref(upper));
            let visible = entries
                .iter()
                .filter(|e| in_bounds(&e.key, lower, upper))
                .map(tag)
                .collect();
            (Box::new(iter), visible)
        }
    }
}

/// Nests `leaves` (in global source order) into a random tree of merges shaped by `shape`.
/// Groups are contiguous and in order, so the tree orders duplicates like one flat merge.
fn build_tree(leaves: Vec<BoxedSource>, shape: &[u8], depth: usize) -> BoxedSource {
    let byte = |i: usize| {
        shape
            .get((depth * 13 + i) % shape.len().max(1))
            .copied()
            .unwrap_or(0)
    };
    if depth >= 3 || leaves.len() <= 1 {
        return Box::new(MergeIter::new(leaves));
    }
    let mut groups: Vec<Vec<BoxedSource>> = vec![Vec::new()];
    let count = leaves.len();
    for (i, leaf) in leaves.into_iter().enumerate() {
        groups.last_mut().expect("nonempty").push(leaf);
        if i + 1 < count && byte(i) % 3 == 0 {
            groups.push(Vec::new());
        }
    }
    let children = groups
        .into_iter()
        .enumerate()
        .map(|(g, mut group)| {
            if group.len() == 1 && byte(g + 7) % 2 == 0 {
                group.pop().expect("one leaf")
            } else {
                build_tree(group, shape, depth + 1)
            }
        })
        .collect();
    Box::new(MergeIter::new(children))
}

fn check_position(
    source: &dyn EntrySource,
    model: &Model,
    flat: Option<&MergeIter>,
    step: usize,
    op: &Op,
) -> Result<(), TestCaseError> {
    let expected = model.current();
    prop_assert_eq!(
        current_entry(source),
        expected.map(|t| t.entry.clone()),
        "step {} ({:?})",
        step,
        op
    );
    if let Some(merge) = flat {
        prop_assert_eq!(
            merge.current_source(),
            expected.map(|t| t.source),
            "source at step {}",
            step
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The merge of sources with unique (key, seqno) pairs is their sorted union, forwards and
    /// backwards.
    #[test]
    fn merge_is_the_sorted_union(raw in raw_sources_strategy(7)) {
        let sources = make_sources(raw, true);
        let mut union: Vec<Entry> = sources.iter().flatten().cloned().collect();
        union.sort_by(Entry::cmp_internal);
        let mut merge = MergeIter::new(
            sources.into_iter().map(|s| Box::new(VecSource::new(s)) as BoxedSource).collect(),
        );
        merge.seek_to_first().unwrap();
        prop_assert_eq!(&collect_forward(&mut merge).unwrap(), &union);
        merge.seek_to_last().unwrap();
        let mut backward = collect_backward(&mut merge).unwrap();
        backward.reverse();
        prop_assert_eq!(&backward, &union);
    }

    /// Random walks over a flat merge of vectors, duplicates across sources allowed: every
    /// position, and the source it comes from, matches the model's.
    #[test]
    fn flat_random_walk_matches_model(
        raw in raw_sources_strategy(6),
        unique in any::<bool>(),
        ops in prop::collection::vec(op_strategy(), 1..80),
    ) {
        let sources = make_sources(raw, unique);
        let mut tagged = Vec::new();
        let mut boxed: Vec<BoxedSource> = Vec::new();
        for (index, entries) in sources.iter().enumerate() {
            let (source, visible) = make_leaf(index, entries, &Leaf::Vec);
            boxed.push(source);
            tagged.extend(visible);
        }
        let mut model = Model::new(tagged);
        let mut merge = MergeIter::new(boxed);
        for (step, op) in ops.iter().enumerate() {
            op.apply(&mut merge).unwrap();
            op.apply_model(&mut model);
            check_position(&merge, &model, Some(&merge), step, op)?;
        }
    }

    /// Random walks over random trees of merges whose leaves are vectors and runs (small pages,
    /// random bounds): the tree behaves like one flat merge of everything its leaves expose.
    #[test]
    fn nested_random_walk_matches_model(
        raw in raw_sources_strategy(7),
        unique in any::<bool>(),
        leaves in prop::collection::vec(leaf_strategy(), 7),
        shape in prop::collection::vec(any::<u8>(), 1..16),
        ops in prop::collection::vec(op_strategy(), 1..80),
    ) {
        let sources = make_sources(raw, unique);
        let mut tagged = Vec::new();
        let mut built = Vec::new();
        for (index, entries) in sources.iter().enumerate() {
            let (source, visible) = make_leaf(index, entries, &leaves[index]);
            built.push(source);
            tagged.extend(visible);
        }
        let mut model = Model::new(tagged);
        let mut tree = build_tree(built, &shape, 0);
        // A full scan each way first.
        tree.seek_to_first().unwrap();
        let all: Vec<Entry> = model.entries.iter().map(|t| t.entry.clone()).collect();
        prop_assert_eq!(&collect_forward(&mut *tree).unwrap(), &all);
        tree.seek_to_last().unwrap();
        let mut backward = collect_backward(&mut *tree).unwrap();
        backward.reverse();
        prop_assert_eq!(&backward, &all);
        for (step, op) in ops.iter().enumerate() {
            op.apply(&mut *tree).unwrap();
            op.apply_model(&mut model);
            check_position(&*tree, &model, None, step, op)?;
        }
    }
}

/// A longer, deterministic zig-zag over overlapping runs: every entry is reached by turning
/// around at every position.
#[test]
fn zig_zag_over_runs() {
    let mut sources = Vec::new();
    let mut tagged = Vec::new();
    for s in 0..4u64 {
        let entries: Vec<Entry> = (0..300u64)
            .filter(|i| i % 4 == s || i % 7 == 0)
            .flat_map(|i| {
                let key = format!("key-{:04}", i);
                (0..3).map(move |v| {
                    let seqno = 100 * v + s;
                    Entry::new(&key, seqno, EntryKind::Put, format!("{key}/{seqno}"))
                })
            })
            .collect::<Vec<_>>();
        let mut entries = entries;
        entries.sort_by(Entry::cmp_internal);
        let (source, visible) = make_leaf(
            s as usize,
            &entries,
            &Leaf::Run {
                page_size: 256,
                lower: Bound::Unbounded,
                upper: Bound::Unbounded,
            },
        );
        sources.push(source);
        tagged.extend(visible);
    }
    let mut model = Model::new(tagged);
    let mut merge = MergeIter::new(sources);
    merge.seek_to_first().unwrap();
    model.seek_to_first();
    let mut steps = 0;
    while merge.valid() {
        // next, prev, next: two direction changes per entry.
        for op in [Op::Next, Op::Prev, Op::Next] {
            op.apply(&mut merge).unwrap();
            op.apply_model(&mut model);
            assert_eq!(
                current_entry(&merge),
                model.current().map(|t| t.entry.clone())
            );
            assert_eq!(merge.current_source(), model.current().map(|t| t.source));
        }
        steps += 1;
    }
    assert_eq!(steps, model.entries.len());
}
