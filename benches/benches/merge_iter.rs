//! The k-way merge (`strata_compaction::MergeIter`) over 4 sources holding 100k entries in all:
//! 16-byte keys ([`present_key`]`(0..100_000)`, seqno [`SEQNO`], Put) with 100-byte db_bench-style
//! values, dealt round-robin (entry `i` to source `i % 4`), so consecutive merged entries always
//! come from different sources and every step moves the heap's root.
//!
//! * `merge_iter/vec_source/forward`: sources are [`VecSource`]s (entries in a `Vec`, O(1) steps),
//!   so this is the merge machinery alone: heap sift plus the sources' dynamic dispatch.
//! * `merge_iter/run_iter/{forward,reverse}`: sources are [`RunIter`]s over in-memory runs
//!   (written with `RunWriter` into a `Vec<u8>`, writer defaults but no compression, opened with
//!   `Run::open_with` and no page cache), so each page crossed is read, checksummed and parsed,
//!   and each step decodes one entry; reverse steps re-scan from the previous restart point.
//!
//! One iteration is a full scan: seek to the first (last) entry, then `next` (`prev`) until the
//! merge is exhausted, reading each entry's key and seqno (values are not fetched). The merge is
//! built once and re-seeked for every iteration. Throughput is in merged entries.

use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use strata_benches::{Dataset, SEQNO, VALUE_LEN};
use strata_compaction::{BoxedSource, Entry, EntryKind, EntrySource, MergeIter, VecSource};
use strata_sstable::{Compression, ReadOptions, Run, RunIter, RunWriter, WriterOptions};

/// Merged entries in all.
const ENTRIES: usize = 100_000;

/// Sources in the merge.
const WAYS: usize = 4;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// The dataset's entries dealt round-robin into [`WAYS`] sorted vectors.
fn split(dataset: &Dataset) -> Vec<Vec<Entry>> {
    let mut parts: Vec<Vec<Entry>> = (0..WAYS).map(|_| Vec::new()).collect();
    for (i, (key, value)) in dataset.iter().enumerate() {
        parts[i % WAYS].push(Entry::new(key, SEQNO, EntryKind::Put, value));
    }
    parts
}

/// An uncompressed in-memory run of `entries`, opened without a page cache.
fn in_memory_run(entries: &[Entry]) -> Run {
    let path = Path::new("mem.run");
    let options = WriterOptions {
        compression: Compression::None,
        ..WriterOptions::default()
    };
    let mut writer = RunWriter::new(path, Vec::new(), options).expect("writer options");
    for e in entries {
        writer.add(&e.key, e.seqno, e.kind, &e.value).expect("add");
    }
    let (_, bytes) = writer.finish_with_file().expect("finish the run");
    Run::open_with(path, Box::new(bytes), ReadOptions::default()).expect("open the run")
}

/// Seeks to the first entry and steps forward to the end; returns the entries seen.
fn scan_forward(merge: &mut MergeIter) -> usize {
    let mut count = 0;
    merge.seek_to_first().expect("seek to first");
    while merge.valid() {
        black_box((merge.key(), merge.seqno()));
        count += 1;
        merge.next().expect("next");
    }
    count
}

/// Seeks to the last entry and steps backward to the start; returns the entries seen.
fn scan_reverse(merge: &mut MergeIter) -> usize {
    let mut count = 0;
    merge.seek_to_last().expect("seek to last");
    while merge.valid() {
        black_box((merge.key(), merge.seqno()));
        count += 1;
        merge.prev().expect("prev");
    }
    count
}

fn merge_iter(c: &mut Criterion) {
    let dataset = Dataset::new(ENTRIES, VALUE_LEN);
    let parts = split(&dataset);

    let mut vec_merge = MergeIter::new(
        parts
            .iter()
            .map(|part| Box::new(VecSource::new(part.clone())) as BoxedSource)
            .collect(),
    );
    let runs: Vec<Run> = parts.iter().map(|part| in_memory_run(part)).collect();
    let mut run_merge = MergeIter::new(
        runs.iter()
            .map(|run| {
                Box::new(RunIter::new(run, Bound::Unbounded, Bound::Unbounded)) as BoxedSource
            })
            .collect(),
    );
    drop(parts);
    assert_eq!(scan_forward(&mut vec_merge), ENTRIES);
    assert_eq!(scan_forward(&mut run_merge), ENTRIES);
    assert_eq!(scan_reverse(&mut run_merge), ENTRIES);

    let mut group = c.benchmark_group("merge_iter");
    configure(&mut group);
    group
        // One iteration is a whole 100k-entry scan: run the same count in every sample.
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(ENTRIES as u64));
    group.bench_function("vec_source/forward", |b| {
        b.iter(|| scan_forward(&mut vec_merge));
    });
    group.bench_function("run_iter/forward", |b| {
        b.iter(|| scan_forward(&mut run_merge));
    });
    group.bench_function("run_iter/reverse", |b| {
        b.iter(|| scan_reverse(&mut run_merge));
    });
    group.finish();
}

criterion_group!(benches, merge_iter);
criterion_main!(benches);
