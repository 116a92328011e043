//! A quick measurement of merge speed, not a timed assertion. Run with
//! `cargo test -p strata-compaction --release --test merge_perf -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use bytes::Bytes;
use strata_compaction::{BoxedSource, Entry, EntryKind, EntrySource, MergeIter, VecSource};
use strata_sstable::WriterOptions;

use common::run_iter;

const PER_SOURCE: u64 = 250_000;
const WAYS: u64 = 4;

fn entry(i: u64) -> Entry {
    let value = format!("{i:0100}");
    Entry::new(format!("key{i:013}"), 1000 + i % 7, EntryKind::Put, value)
}

/// Source `s` of `WAYS`: interleaved (key i in source i % WAYS) or in contiguous ranges.
fn source_entries(s: u64, interleaved: bool) -> Vec<Entry> {
    (0..PER_SOURCE)
        .map(|j| {
            if interleaved {
                j * WAYS + s
            } else {
                s * PER_SOURCE + j
            }
        })
        .map(entry)
        .collect()
}

/// Re-homes `entries` into one contiguous buffer (keys and values are slices of it), so that
/// in-memory sources are laid out like a decoded page rather than scattered over the heap.
fn packed(entries: Vec<Entry>) -> Vec<Entry> {
    let mut arena = Vec::new();
    let mut spans = Vec::new();
    for e in &entries {
        let start = arena.len();
        arena.extend_from_slice(&e.key);
        arena.extend_from_slice(&e.value);
        spans.push((start, e.key.len(), e.value.len()));
    }
    let arena = Bytes::from(arena);
    entries
        .into_iter()
        .zip(spans)
        .map(|(e, (start, key_len, value_len))| Entry {
            key: arena.slice(start..start + key_len),
            value: arena.slice(start + key_len..start + key_len + value_len),
            ..e
        })
        .collect()
}

/// Best of three: nanoseconds per step of a full scan, and the number of entries seen.
fn time_scan(source: &mut dyn EntrySource, forward: bool) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut count = 0;
    for _ in 0..3 {
        let start = Instant::now();
        if forward {
            source.seek_to_first().expect("seek");
        } else {
            source.seek_to_last().expect("seek");
        }
        count = 0u64;
        let mut checksum = 0usize;
        while source.valid() {
            // Touch the bytes, as a consumer would, so every source pays for reaching them.
            let (key, value) = (source.key(), source.value());
            checksum = checksum.wrapping_add(usize::from(key[key.len() - 1]) + value.len());
            checksum = checksum.wrapping_add(usize::from(value[value.len() - 1]));
            count += 1;
            if forward {
                source.next().expect("next");
            } else {
                source.prev().expect("prev");
            }
        }
        std::hint::black_box(checksum);
        best = best.min(start.elapsed().as_nanos() as f64 / count as f64);
    }
    (best, count)
}

fn report<S: EntrySource>(name: &str, build: impl FnOnce() -> S) {
    if std::env::var("MERGE_PERF_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let source = &mut build();
    let (forward, count) = time_scan(source, true);
    let (backward, _) = time_scan(source, false);
    println!("{name:<48} {count:>9} entries  next {forward:>6.1} ns  prev {backward:>6.1} ns");
}

fn runs(interleaved: bool) -> Vec<BoxedSource> {
    (0..WAYS)
        .map(|s| {
            Box::new(run_iter(
                &source_entries(s, interleaved),
                WriterOptions::default(),
            )) as BoxedSource
        })
        .collect()
}

fn vecs(interleaved: bool) -> Vec<BoxedSource> {
    (0..WAYS)
        .map(|s| Box::new(VecSource::new(packed(source_entries(s, interleaved)))) as BoxedSource)
        .collect()
}

/// Nanoseconds per direction change: `next` then `prev`, repeatedly, over the first entries.
fn time_turns(name: &str, source: &mut dyn EntrySource) {
    const TURNS: u32 = 20_000;
    source.seek_to_first().expect("seek");
    let start = Instant::now();
    for i in 0..TURNS {
        if i % 2 == 0 {
            source.next().expect("next");
        } else {
            source.prev().expect("prev");
        }
        assert!(source.valid());
    }
    let per_turn = start.elapsed().as_nanos() as f64 / f64::from(TURNS);
    println!("{name:<48} turn (next<->prev) {per_turn:>8.1} ns");
}

#[test]
#[ignore = "a measurement; run with --release --ignored --nocapture"]
fn merge_speed() {
    let all = || (0..PER_SOURCE * WAYS).map(entry).collect::<Vec<_>>();
    report("one RunIter (baseline)", || {
        run_iter(&all(), WriterOptions::default())
    });
    report("one VecSource (baseline)", || VecSource::new(packed(all())));
    report("1-way merge of one VecSource", || {
        MergeIter::new(vec![Box::new(VecSource::new(packed(all())))])
    });
    report("4-way merge of RunIters, interleaved keys", || {
        MergeIter::new(runs(true))
    });
    report("4-way merge of RunIters, disjoint ranges", || {
        MergeIter::new(runs(false))
    });
    report("4-way merge of VecSources, interleaved keys", || {
        MergeIter::new(vecs(true))
    });
    report("4-way merge of VecSources, disjoint ranges", || {
        MergeIter::new(vecs(false))
    });
    if std::env::var("MERGE_PERF_ONLY").is_err() {
        time_turns(
            "4-way merge of RunIters, interleaved keys",
            &mut MergeIter::new(runs(true)),
        );
        time_turns(
            "4-way merge of VecSources, interleaved keys",
            &mut MergeIter::new(vecs(true)),
        );
    }
    report("2 x 2 nested merge of RunIters, interleaved", || {
        let mut left = runs(true);
        let right = left.split_off(2);
        MergeIter::new(vec![
            Box::new(MergeIter::new(left)),
            Box::new(MergeIter::new(right)),
        ])
    });
}
