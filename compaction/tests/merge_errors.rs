//! Errors from any source of a merge, at any depth and at any moment (seek, step, change of
//! direction), reach the caller unchanged and leave the merge invalid until the next seek.

mod common;

use std::ops::Bound;
use std::sync::atomic::Ordering as AtomicOrdering;

use proptest::prelude::*;
use strata_compaction::{BoxedSource, Entry, EntryKind, EntrySource, MergeIter, VecSource};
use strata_sstable::RunIter;

use common::{
    collect_forward, current_entry, open_run, small_pages, write_run, FailingSource, Model, Op,
    Tagged,
};

fn entries(prefix: &str, count: u64, seqno: u64) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry::new(format!("{prefix}{i:03}"), seqno, EntryKind::Put, "v"))
        .collect()
}

fn vec_source(entries: Vec<Entry>) -> BoxedSource {
    Box::new(VecSource::new(entries))
}

fn assert_injected(result: Result<(), strata_sstable::Error>) {
    match result {
        Err(error) => {
            assert!(error.is_corruption(), "{error}");
            assert!(error.to_string().contains("injected failure"), "{error}");
        }
        Ok(()) => panic!("the injected failure was swallowed"),
    }
}

#[test]
fn error_on_seek_propagates_and_a_later_seek_recovers() {
    let failing = FailingSource::new(VecSource::new(entries("b", 5, 1)), 1);
    let mut merge = MergeIter::new(vec![vec_source(entries("a", 5, 1)), Box::new(failing)]);
    assert_injected(merge.seek_to_first());
    assert!(!merge.valid());
    merge.next().unwrap();
    merge.prev().unwrap();
    assert!(!merge.valid(), "moving a failed merge is a no-op");
    merge.seek_to_first().unwrap();
    assert_eq!(collect_forward(&mut merge).unwrap().len(), 10);
}

#[test]
fn error_on_step_propagates() {
    // Moves: 1 = seek_to_first, then 2.. = next of that source.
    let failing = FailingSource::new(VecSource::new(entries("a", 5, 1)), 4);
    let mut merge = MergeIter::new(vec![Box::new(failing), vec_source(entries("b", 5, 1))]);
    merge.seek_to_first().unwrap();
    let mut seen = 0;
    let result = loop {
        assert!(merge.valid());
        seen += 1;
        if let Err(error) = merge.next() {
            break Err(error);
        }
    };
    assert_injected(result);
    assert_eq!(seen, 3, "the third next of the failing source failed");
    assert!(!merge.valid());
}

#[test]
fn error_while_turning_around_propagates() {
    // The failing source is not the current one, so a prev after nexts seeks it (move 3).
    let failing = FailingSource::new(VecSource::new(entries("a", 5, 1)), 3);
    let mut merge = MergeIter::new(vec![vec_source(entries("a", 5, 2)), Box::new(failing)]);
    merge.seek_to_first().unwrap(); // move 1
    merge.next().unwrap(); // the older a000 (failing source) becomes current
    assert_eq!(merge.current_source(), Some(1));
    merge.next().unwrap(); // move 2: failing source's next; a001@2 from source 0 is current
    assert_eq!(merge.current_source(), Some(0));
    assert_injected(merge.prev());
    assert!(!merge.valid());
    merge.seek(b"a001", u64::MAX).unwrap();
    assert_eq!(
        current_entry(&merge),
        Some(Entry::new("a001", 2, EntryKind::Put, "v"))
    );
}

#[test]
fn errors_cross_nested_merges() {
    let failing = FailingSource::new(VecSource::new(entries("c", 5, 1)), 2);
    let inner = MergeIter::new(vec![vec_source(entries("b", 5, 1)), Box::new(failing)]);
    let middle = MergeIter::new(vec![Box::new(inner), vec_source(entries("d", 1, 1))]);
    let mut outer = MergeIter::new(vec![vec_source(entries("a", 3, 1)), Box::new(middle)]);
    outer.seek_to_first().unwrap();
    let result = (|| {
        while outer.valid() {
            outer.next()?;
        }
        Ok(())
    })();
    assert_injected(result);
    assert!(!outer.valid());
}

#[test]
fn corrupt_run_page_surfaces_as_corruption() {
    let data = entries("k", 400, 1);
    let mut bytes = write_run(&data, small_pages(256));
    let run = open_run(bytes.clone()).unwrap();
    assert!(run.pages().len() > 4);
    let victim = &run.pages()[3];
    let middle = (victim.offset + u64::from(victim.stored_len) / 2) as usize;
    bytes[middle] ^= 0x40;
    let damaged = open_run(bytes).expect("metadata is intact");
    let mut merge = MergeIter::new(vec![
        vec_source(entries("k", 400, 2)),
        Box::new(RunIter::new(&damaged, Bound::Unbounded, Bound::Unbounded)),
    ]);
    merge.seek_to_first().unwrap();
    let result: Result<(), strata_sstable::Error> = (|| {
        while merge.valid() {
            merge.next()?;
        }
        Ok(())
    })();
    let error = result.expect_err("the damaged page is read");
    assert!(error.is_corruption(), "{error}");
    assert!(!merge.valid());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// One source of a random merge (flat or nested one level down) fails on a random move: the
    /// merge reports an error exactly on the operation during which the source failed, is
    /// invalid afterwards, and otherwise matches the model.
    #[test]
    fn a_failing_source_is_reported_exactly_once(
        sizes in prop::collection::vec(0u64..20, 1..5),
        failing_index in any::<prop::sample::Index>(),
        fail_at in 1u64..40,
        nested in any::<bool>(),
        ops in prop::collection::vec(
            prop_oneof![
                4 => Just(Op::Next),
                4 => Just(Op::Prev),
                1 => Just(Op::SeekToFirst),
                1 => Just(Op::SeekToLast),
                1 => (0u64..20, 0u64..4).prop_map(|(k, s)| Op::Seek(format!("k{k:03}").into_bytes(), s)),
                1 => (0u64..20, 0u64..4).prop_map(|(k, s)| Op::SeekForPrev(format!("k{k:03}").into_bytes(), s)),
            ],
            1..60,
        ),
    ) {
        let failing_index = failing_index.index(sizes.len());
        let mut tagged = Vec::new();
        let mut leaves: Vec<BoxedSource> = Vec::new();
        let mut fired = None;
        for (index, &size) in sizes.iter().enumerate() {
            // Every source holds k000.. with its own seqno, so keys interleave and collide.
            let data = entries("k", size, index as u64 + 1);
            tagged.extend(data.iter().map(|e| Tagged { entry: e.clone(), source: index }));
            if index == failing_index {
                let source = FailingSource::new(VecSource::new(data), fail_at);
                fired = Some(source.fired.clone());
                leaves.push(Box::new(source));
            } else {
                leaves.push(vec_source(data));
            }
        }
        let fired = fired.expect("one failing source");
        let mut merge: BoxedSource = if nested && leaves.len() > 1 {
            let rest = leaves.split_off(leaves.len() / 2);
            Box::new(MergeIter::new(vec![
                Box::new(MergeIter::new(leaves)),
                Box::new(MergeIter::new(rest)),
            ]))
        } else {
            Box::new(MergeIter::new(leaves))
        };
        let mut model = Model::new(tagged);
        for (step, op) in ops.iter().enumerate() {
            let before = fired.load(AtomicOrdering::SeqCst);
            let result = op.apply(&mut *merge);
            let failed_now = !before && fired.load(AtomicOrdering::SeqCst);
            prop_assert_eq!(result.is_err(), failed_now, "step {} ({:?})", step, op);
            if let Err(error) = result {
                prop_assert!(error.to_string().contains("injected failure"));
                prop_assert!(!merge.valid());
                model.pos = None;
            } else {
                op.apply_model(&mut model);
                prop_assert_eq!(
                    current_entry(&*merge),
                    model.current().map(|t| t.entry.clone()),
                    "step {} ({:?})", step, op
                );
            }
        }
    }
}
