//! Shared helpers for strata's criterion benchmarks (`cargo bench -p strata-benches`).
//!
//! Everything here is deterministic: keys come from a fixed formula, values and random lookup
//! orders from [`SplitMix64`] with fixed seeds, so two runs of a benchmark measure the same work.
//!
//! * [`key`] / [`present_key`] / [`absent_key`]: 16-byte, zero-padded decimal keys (db_bench's
//!   format). The run holds the even numbers; odd numbers lie inside its key range but are absent,
//!   so looking them up exercises the bloom filter's negative path.
//! * [`ValueGenerator`]: db_bench-style values that compress to about half their size.
//! * [`Dataset`]: `n` (key, value) pairs laid out flat, ready to feed a [`RunWriter`].
//! * [`TempRun`]: a run file built from a dataset in a temporary directory.

use std::path::{Path, PathBuf};

use strata_sstable::{Compression, EntryKind, Error, Properties, RunWriter, WriterOptions};

/// Length in bytes of every benchmark key.
pub const KEY_LEN: usize = 16;

/// Default value length in bytes (db_bench's default `--value_size`).
pub const VALUE_LEN: usize = 100;

/// Default number of entries in a benchmark run.
pub const RUN_ENTRIES: usize = 200_000;

/// The fraction of each value that is random; the rest repeats it (db_bench's
/// `--compression_ratio`, default 0.5).
pub const COMPRESSION_RATIO: f64 = 0.5;

/// Seqno given to every entry the helpers write.
pub const SEQNO: u64 = 1;

/// SplitMix64: a tiny, fast, deterministic 64-bit PRNG (Steele, Lea & Flood, 2014).
///
/// Good enough to pick benchmark keys and fill values; not for anything cryptographic.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`; equal seeds give equal sequences.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (Lemire's multiply-shift; the bias is negligible for benchmark
    /// bounds). Returns 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// The 16-byte key for number `n`: `n` in decimal, zero-padded to 16 digits, so byte order equals
/// numeric order (`key(42) == *b"0000000000000042"`). Numbers of more than 16 digits keep their
/// low 16 digits.
pub fn key(mut n: u64) -> [u8; KEY_LEN] {
    let mut out = [b'0'; KEY_LEN];
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// The key of the `i`th entry of a benchmark run: [`key`] of `2 * i`.
pub fn present_key(i: u64) -> [u8; KEY_LEN] {
    key(2 * i)
}

/// A key that sorts between the `i`th and the `i + 1`th entry of a benchmark run ([`key`] of
/// `2 * i + 1`): inside the run's key range when `i + 1` is below the entry count, yet absent.
pub fn absent_key(i: u64) -> [u8; KEY_LEN] {
    key(2 * i + 1)
}

/// db_bench-style value source: a buffer of pieces that are `ratio` random printable bytes and
/// the rest a repetition of them, handed out as consecutive slices.
///
/// Compressors see each value as about `ratio` of its length, like db_bench's
/// `RandomGenerator` with `--compression_ratio`.
#[derive(Debug, Clone)]
pub struct ValueGenerator {
    data: Vec<u8>,
    pos: usize,
}

impl ValueGenerator {
    /// Size of the buffer values are sliced from (1 MiB, as in db_bench).
    pub const BUFFER_LEN: usize = 1 << 20;

    /// A generator whose values compress to about `ratio` of their size (clamped to 0.01..=1),
    /// with random bytes drawn from a [`SplitMix64`] seeded with `seed`.
    pub fn new(seed: u64, ratio: f64) -> Self {
        const PIECE: usize = 100;
        let ratio = ratio.clamp(0.01, 1.0);
        let random_len = ((PIECE as f64 * ratio).ceil() as usize).clamp(1, PIECE);
        let mut rng = SplitMix64::new(seed);
        let mut data = Vec::with_capacity(Self::BUFFER_LEN + PIECE);
        while data.len() < Self::BUFFER_LEN {
            let random: Vec<u8> = (0..random_len)
                .map(|_| b' ' + rng.below(95) as u8)
                .collect();
            data.extend(random.iter().cycle().take(PIECE));
        }
        data.truncate(Self::BUFFER_LEN);
        ValueGenerator { data, pos: 0 }
    }

    /// The next value of `len` bytes (at most [`ValueGenerator::BUFFER_LEN`]); wraps around the
    /// buffer.
    ///
    /// # Panics
    /// If `len` is above [`ValueGenerator::BUFFER_LEN`].
    pub fn next_value(&mut self, len: usize) -> &[u8] {
        assert!(
            len <= Self::BUFFER_LEN,
            "value length {len} exceeds the generator's buffer"
        );
        if self.pos + len > self.data.len() {
            self.pos = 0;
        }
        let start = self.pos;
        self.pos += len;
        &self.data[start..self.pos]
    }
}

/// `n` benchmark entries: keys [`present_key`]`(0..n)` in order with [`ValueGenerator`] values,
/// stored flat so iterating them costs no allocation.
#[derive(Debug, Clone)]
pub struct Dataset {
    keys: Vec<u8>,
    values: Vec<u8>,
    value_len: usize,
}

impl Dataset {
    /// Generates `n` entries with values of `value_len` bytes compressible to about 50%.
    pub fn new(n: usize, value_len: usize) -> Self {
        let mut generator = ValueGenerator::new(0x5eed_0001, COMPRESSION_RATIO);
        let mut keys = Vec::with_capacity(n * KEY_LEN);
        let mut values = Vec::with_capacity(n * value_len);
        for i in 0..n as u64 {
            keys.extend_from_slice(&present_key(i));
            values.extend_from_slice(generator.next_value(value_len));
        }
        Dataset {
            keys,
            values,
            value_len,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.keys.len() / KEY_LEN
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Total key plus value bytes: the raw data volume for `Throughput::Bytes`.
    pub fn raw_bytes(&self) -> u64 {
        (self.keys.len() + self.values.len()) as u64
    }

    /// The entries in key order, as (key, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.keys
            .chunks_exact(KEY_LEN)
            .zip(self.values.chunks_exact(self.value_len.max(1)))
    }

    /// Writes every entry (as a Put at [`SEQNO`]) into a new run file at `path`, which must not
    /// exist, and finishes (syncs) it.
    ///
    /// # Errors
    /// Whatever [`RunWriter::create`], [`RunWriter::add`] or [`RunWriter::finish`] return.
    pub fn write_run(&self, path: &Path, compression: Compression) -> Result<Properties, Error> {
        let options = WriterOptions {
            compression,
            ..WriterOptions::default()
        };
        let mut writer = RunWriter::create(path, options)?;
        for (key, value) in self.iter() {
            writer.add(key, SEQNO, EntryKind::Put, value)?;
        }
        writer.finish()
    }
}

/// A run file built from a [`Dataset`] in a temporary directory, deleted on drop.
#[derive(Debug)]
pub struct TempRun {
    dir: tempfile::TempDir,
    path: PathBuf,
    /// The dataset the run was written from.
    pub dataset: Dataset,
    /// The properties the writer returned.
    pub properties: Properties,
}

impl TempRun {
    /// Generates a [`Dataset`] of `n` entries with `value_len`-byte values and writes it with
    /// `compression` into a fresh temporary directory.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be made, or whatever writing the run returns.
    pub fn build(n: usize, value_len: usize, compression: Compression) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("strata-bench-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let path = dir.path().join("000001.run");
        let dataset = Dataset::new(n, value_len);
        let properties = dataset.write_run(&path, compression)?;
        Ok(TempRun {
            dir,
            path,
            dataset,
            properties,
        })
    }

    /// The run file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary directory holding the run.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_ordered() {
        assert_eq!(&key(42), b"0000000000000042");
        assert!(present_key(3) < absent_key(3));
        assert!(absent_key(3) < present_key(4));
    }

    #[test]
    fn prng_is_deterministic_and_bounded() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
    }

    #[test]
    fn values_are_half_random() {
        let mut generator = ValueGenerator::new(1, 0.5);
        let value = generator.next_value(100).to_vec();
        assert_eq!(value.len(), 100);
        assert_eq!(value[..50], value[50..]);
    }

    #[test]
    fn runs_compress_to_about_half() {
        for (compression, low, high) in [
            (Compression::None, 0.95, 1.2),
            (Compression::Lz4, 0.4, 0.7),
            (Compression::Zstd { level: 3 }, 0.3, 0.7),
        ] {
            let run = TempRun::build(20_000, VALUE_LEN, compression).expect("build a run");
            let props = &run.properties;
            let ratio = props.stored_data_bytes as f64 / props.raw_data_bytes as f64;
            eprintln!("{compression}: stored/raw = {ratio:.3}");
            assert!(
                (low..=high).contains(&ratio),
                "{compression}: stored/raw {ratio:.3} outside {low}..={high}"
            );
        }
    }
}
