//! One raw data page in memory, no file, checksum or compression: the page codec alone, through
//! `strata_sstable::bench_support` (thin wrappers over the crate-private `PageBuilder`, `Page`
//! and `PageCursor`).
//!
//! The page is filled the way `RunWriter` fills one with its defaults (8 KiB target, restart
//! every 16 entries): entries of 16-byte keys ([`present_key`]`(0..)`, seqno [`SEQNO`], Put) and
//! 100-byte db_bench-style values are added until the next one might push it past 8 KiB, which
//! gives about 70 entries.
//!
//! * `page_codec/encode`: build the raw page from prepared entries (a fresh builder each time, as
//!   the writer's buffer also starts empty for every page). Throughput in raw page bytes.
//! * `page_codec/decode_all`: validate the restart array, then walk every entry with a cursor
//!   (each step decodes the varints and rebuilds the prefix-compressed key). Throughput in raw
//!   page bytes.
//! * `page_seek/present`: validate the restart array and seek the cursor to a random key of the
//!   page (binary search over the restarts, then a linear scan). Throughput in seeks.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use strata_benches::{
    present_key, SplitMix64, ValueGenerator, COMPRESSION_RATIO, KEY_LEN, SEQNO, VALUE_LEN,
};
use strata_sstable::bench_support::{decode_page_all, encode_page, seek_page};
use strata_sstable::EntryKind;

/// Target raw page size (the writer's default `page_size`).
const PAGE_SIZE: usize = 8 * 1024;

/// Entries between restart points (the writer's default `restart_interval`).
const RESTART_INTERVAL: usize = 16;

/// The writer's worst-case estimate of what one entry adds to a page (`PageBuilder::entry_cost`:
/// 30 bytes of varints plus key and value).
const ENTRY_COST: usize = 4 * 5 + 10 + KEY_LEN + VALUE_LEN;

/// Seek keys prepared ahead of time (a power of two, cycled with a mask).
const KEY_POOL: usize = 1 << 12;

type PageEntry = (Vec<u8>, u64, EntryKind, Vec<u8>);

/// The entries of one page, chosen as `RunWriter` would: add while the page plus the next entry's
/// cost stays within [`PAGE_SIZE`].
fn page_entries() -> Vec<PageEntry> {
    let mut values = ValueGenerator::new(0x5eed_0002, COMPRESSION_RATIO);
    let mut entries: Vec<PageEntry> = Vec::new();
    loop {
        let len = encode_page(&entries, RESTART_INTERVAL).len();
        if !entries.is_empty() && len + ENTRY_COST > PAGE_SIZE {
            return entries;
        }
        let i = entries.len() as u64;
        entries.push((
            present_key(i).to_vec(),
            SEQNO,
            EntryKind::Put,
            values.next_value(VALUE_LEN).to_vec(),
        ));
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn page_codec(c: &mut Criterion) {
    let entries = page_entries();
    let n = entries.len();
    let raw = Bytes::from(encode_page(&entries, RESTART_INTERVAL));
    eprintln!(
        "page_codec: {n} entries, {} raw bytes ({} of keys and values)",
        raw.len(),
        n * (KEY_LEN + VALUE_LEN)
    );
    assert!((60..=80).contains(&n), "about 70 entries per page, got {n}");
    assert!(raw.len() <= PAGE_SIZE);
    assert_eq!(decode_page_all(raw.clone()), Ok(n));

    let mut group = c.benchmark_group("page_codec");
    configure(&mut group);
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_page(black_box(&entries), RESTART_INTERVAL));
    });
    group.bench_function("decode_all", |b| {
        b.iter(|| decode_page_all(black_box(raw.clone())).expect("decode the page"));
    });
    group.finish();

    let mut rng = SplitMix64::new(0x2001);
    let keys: Vec<[u8; KEY_LEN]> = (0..KEY_POOL)
        .map(|_| present_key(rng.below(n as u64)))
        .collect();
    for key in &keys {
        assert_eq!(seek_page(raw.clone(), key), Ok(true));
    }

    let mut group = c.benchmark_group("page_seek");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    group.bench_function("present", |b| {
        let mut next = 0usize;
        b.iter(|| {
            let key = &keys[next & (KEY_POOL - 1)];
            next = next.wrapping_add(1);
            seek_page(black_box(raw.clone()), black_box(key)).expect("seek in the page")
        });
    });
    group.finish();
}

criterion_group!(benches, page_codec);
criterion_main!(benches);
