//! `strata demo`: writes and reads runs and prints what it measured.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use strata::sstable::{
    ClockCache, Compression, EntryKind, Error, ReadOptions, Result, Run, RunWriter, WriterOptions,
};

/// Options of `strata demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Entries per run.
    #[arg(long, default_value_t = 1_000_000)]
    pub num: u64,
    /// Value size in bytes (keys are 16 bytes).
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Point lookups per run.
    #[arg(long, default_value_t = 200_000)]
    pub reads: u64,
}

/// A deterministic splitmix64 stream, so every run of the demo sees the same data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(b"user0000");
    key[8..].copy_from_slice(&(i * 2).to_be_bytes());
    key
}

/// Values that compress to about half their size, like db_bench's.
fn value(rng: &mut SplitMix, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let word = rng.next().to_le_bytes();
        out.extend_from_slice(&word[..4]);
        out.extend_from_slice(&word[..4]);
    }
    out.truncate(size);
    out
}

struct Row {
    compression: Compression,
    file_bytes: u64,
    pages: u64,
    write: Duration,
    scan: Duration,
    hit: Duration,
    miss: Duration,
}

fn mb_per_s(bytes: u64, took: Duration) -> String {
    format!("{:.0}", bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9))
}

fn ns_per_op(ops: u64, took: Duration) -> String {
    format!("{:.0}", took.as_nanos() as f64 / ops.max(1) as f64)
}

fn measure(dir: &Path, compression: Compression, args: &DemoArgs) -> Result<Row> {
    let path = dir.join(format!("{}.run", compression.to_string().replace(':', "-")));
    let options = WriterOptions {
        compression,
        ..WriterOptions::default()
    };
    let mut rng = SplitMix(42);
    let started = Instant::now();
    let mut writer = RunWriter::create(&path, options)?;
    for i in 0..args.num {
        writer.add(
            &key(i),
            args.num - i,
            EntryKind::Put,
            &value(&mut rng, args.value_size),
        )?;
    }
    let props = writer.finish()?;
    let write = started.elapsed();

    let cache = std::sync::Arc::new(ClockCache::new(256 << 20));
    let run = Run::open(
        &path,
        ReadOptions {
            cache,
            ..ReadOptions::default()
        },
    )?;
    let started = Instant::now();
    let mut scanned = 0u64;
    for entry in run.iter() {
        scanned += entry?.value.len() as u64;
    }
    let scan = started.elapsed();
    if scanned != props.raw_value_bytes {
        return Err(Error::corruption(
            &path,
            0,
            "scan returned fewer bytes than were written",
        ));
    }

    let started = Instant::now();
    let mut found = 0;
    for _ in 0..args.reads {
        let i = rng.next() % args.num;
        run.get(&key(i), u64::MAX >> 8, |_| {
            found += 1;
            false
        })?;
    }
    let hit = started.elapsed();
    if found != args.reads {
        return Err(Error::corruption(&path, 0, "a written key was not found"));
    }

    let started = Instant::now();
    for _ in 0..args.reads {
        let mut absent = key(rng.next() % args.num);
        absent[15] |= 1; // odd suffixes were never written
        run.get(&absent, u64::MAX >> 8, |_| false)?;
    }
    let miss = started.elapsed();
    Ok(Row {
        compression,
        file_bytes: run.file_size(),
        pages: props.pages,
        write,
        scan,
        hit,
        miss,
    })
}

/// Runs the demo and prints its table.
///
/// # Errors
/// I/O errors from the temporary directory, or corruption if a run does not read back.
pub fn run(args: &DemoArgs) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let user_bytes = args.num * (16 + args.value_size as u64);
    println!(
        "strata demo: {} entries, 16-byte keys, {}-byte values ({:.1} MB of user data), {} lookups per run",
        args.num,
        args.value_size,
        user_bytes as f64 / 1e6,
        args.reads
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "compression",
        "file MB",
        "pages",
        "write MB/s",
        "scan MB/s",
        "get hit ns/op",
        "get absent ns/op",
    ]);
    for compression in [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd { level: 3 },
    ] {
        let row = measure(dir.path(), compression, args)?;
        table.add_row(vec![
            Cell::new(row.compression),
            Cell::new(format!("{:.1}", row.file_bytes as f64 / 1e6))
                .set_alignment(CellAlignment::Right),
            Cell::new(row.pages).set_alignment(CellAlignment::Right),
            Cell::new(mb_per_s(user_bytes, row.write)).set_alignment(CellAlignment::Right),
            Cell::new(mb_per_s(user_bytes, row.scan)).set_alignment(CellAlignment::Right),
            Cell::new(ns_per_op(args.reads, row.hit)).set_alignment(CellAlignment::Right),
            Cell::new(ns_per_op(args.reads, row.miss)).set_alignment(CellAlignment::Right),
        ]);
    }
    println!("{table}");
    println!("write includes the final fsync; reads go through a 256 MiB page cache; absent keys lie inside the key range, so only the bloom filter rules them out.");
    Ok(())
}
