//! Write throughput of a whole run: ~200k entries of 16-byte keys and 100-byte values written
//! with `RunWriter::create` + `add` + `finish` (which fsyncs), per compression.
//!
//! Throughput is the raw key + value bytes, so criterion reports MB/s of user data.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use strata_benches::{Dataset, RUN_ENTRIES, VALUE_LEN};
use strata_sstable::Compression;

fn sstable_write(c: &mut Criterion) {
    let dataset = Dataset::new(RUN_ENTRIES, VALUE_LEN);
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-write-")
        .tempdir()
        .expect("create a temporary directory");

    let mut group = c.benchmark_group("sstable_write");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        // One iteration writes a whole ~20 MiB run: run the same count in every sample.
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(dataset.raw_bytes()));

    let mut file_number = 0u64;
    for compression in [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd { level: 3 },
    ] {
        let name = compression.to_string().replace(':', "-");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    file_number += 1;
                    let path = dir.path().join(format!("{file_number:06}.run"));
                    let start = Instant::now();
                    let props = dataset
                        .write_run(&path, black_box(compression))
                        .expect("write the run");
                    total += start.elapsed();
                    black_box(props);
                    // Deleting the file is not part of writing it.
                    std::fs::remove_file(&path).expect("remove the run");
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sstable_write);
criterion_main!(benches);
