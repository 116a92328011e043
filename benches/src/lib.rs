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
//! * [`random_key`]: 16 random bytes, for engine benchmarks that insert in random order.
//! * [`ScratchDb`]: a `strata` database with one keyspace in a temporary directory, prefilled
//!   with random entries, which write benchmarks replace (untimed) whenever a fixed number of
//!   puts have gone into it, so every timed put meets a memtable of about the same size.

use std::path::{Path, PathBuf};

use strata::{Db, DbStats, Keyspace, KeyspaceOptions, Options};
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

/// A 16-byte key of random bytes drawn from `rng` (two 64-bit draws): keys that arrive in
/// random order and, for benchmark volumes, never repeat.
pub fn random_key(rng: &mut SplitMix64) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    out[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    out
}

/// Figures summed over every database a [`ScratchDb`] has opened (retired ones and the current
/// one), so a benchmark can report them after criterion's warm-up and samples. Prefill writes
/// are not counted (except in `dumps`, which should stay 0 anyway).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScratchTotals {
    /// Databases opened (1 + resets).
    pub databases: u64,
    /// WAL commits (one per `put`).
    pub commits: u64,
    /// WAL groups (one write, at most one sync each).
    pub groups: u64,
    /// WAL syncs.
    pub syncs: u64,
    /// Memtable dumps finished in the benchmark keyspace.
    pub dumps: u64,
    /// Entries written to the benchmark keyspace.
    pub writes: u64,
}

impl ScratchTotals {
    /// Average commits per WAL group: how much group commit shares (0 without groups).
    pub fn commits_per_group(&self) -> f64 {
        if self.groups == 0 {
            0.0
        } else {
            self.commits as f64 / self.groups as f64
        }
    }

    /// The figures of one database's `stats`, less `base` (taken after its prefill).
    fn of(stats: &DbStats, base: &ScratchTotals) -> ScratchTotals {
        let mut totals = ScratchTotals {
            databases: 1,
            commits: stats.wal.commits.saturating_sub(base.commits),
            groups: stats.wal.groups.saturating_sub(base.groups),
            syncs: stats.wal.syncs.saturating_sub(base.syncs),
            dumps: 0,
            writes: 0,
        };
        for ks in &stats.keyspaces {
            totals.dumps += ks.dumps;
            totals.writes += ks.writes;
        }
        totals.writes = totals.writes.saturating_sub(base.writes);
        totals
    }

    fn add(&mut self, other: &ScratchTotals) {
        self.databases += other.databases;
        self.commits += other.commits;
        self.groups += other.groups;
        self.syncs += other.syncs;
        self.dumps += other.dumps;
        self.writes += other.writes;
    }
}

/// Entries per write batch when a [`ScratchDb`] prefills its keyspace.
const PREFILL_BATCH: usize = 1024;

/// An open database in its own temporary directory.
#[derive(Debug)]
struct OpenDb {
    // Dropped in this order: the handle, the database, then the directory.
    keyspace: Keyspace,
    db: Db,
    dir: tempfile::TempDir,
    /// Figures at the end of the prefill.
    base: ScratchTotals,
}

impl OpenDb {
    fn open(options: &Options) -> strata::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("strata-bench-db-")
            .tempdir()
            .map_err(|e| strata::Error::io(std::env::temp_dir(), e))?;
        let db = Db::open(dir.path(), options.clone())?;
        let keyspace = db.keyspace(ScratchDb::KEYSPACE, KeyspaceOptions::default())?;
        Ok(OpenDb {
            keyspace,
            db,
            dir,
            base: ScratchTotals::default(),
        })
    }

    /// Writes `entries` puts of [`random_key`]s from `seed` and [`VALUE_LEN`]-byte values, in
    /// batches of [`PREFILL_BATCH`] (one commit, and at most one sync, each).
    fn prefill(
        &mut self,
        entries: u64,
        seed: u64,
        values: &mut ValueGenerator,
    ) -> strata::Result<()> {
        let mut rng = SplitMix64::new(seed);
        let mut left = entries;
        while left > 0 {
            let n = left.min(PREFILL_BATCH as u64);
            let mut batch = self.db.batch();
            for _ in 0..n {
                batch.put(
                    &self.keyspace,
                    random_key(&mut rng),
                    values.next_value(VALUE_LEN),
                );
            }
            batch.commit()?;
            left -= n;
        }
        self.base = ScratchTotals::of(&self.db.stats(), &ScratchTotals::default());
        Ok(())
    }

    /// Figures since the end of the prefill.
    fn totals(&self) -> ScratchTotals {
        ScratchTotals::of(&self.db.stats(), &self.base)
    }

    /// Drops the keyspace (freeing its memtables without dumping them), closes the database and
    /// deletes the directory; returns its figures since the end of the prefill.
    fn retire(self) -> strata::Result<ScratchTotals> {
        let totals = self.totals();
        let OpenDb {
            keyspace, db, dir, ..
        } = self;
        drop(keyspace);
        db.drop_keyspace(ScratchDb::KEYSPACE)?;
        db.close()?;
        dir.close()
            .map_err(|e| strata::Error::io(std::env::temp_dir(), e))?;
        Ok(totals)
    }
}

/// A `strata` database with one keyspace ([`ScratchDb::KEYSPACE`], default options) in a fresh
/// temporary directory on the real file system (`std::env::temp_dir()`), optionally prefilled
/// with a fixed number of random entries.
///
/// Write benchmarks time their puts in chunks and call [`ScratchDb::reset_if_written`] between
/// chunks: once a given number of puts have gone into the current database beyond its prefill,
/// the keyspace is dropped (its memtables are freed, not dumped), the database closed and its
/// directory deleted, and a new database is opened and prefilled, all outside the timed region.
/// So every timed put lands in a memtable of between `prefill` and `prefill + window` entries,
/// and with a memory limit far above that, no dump or throttling ever runs while timed.
#[derive(Debug)]
pub struct ScratchDb {
    options: Options,
    prefill: u64,
    values: ValueGenerator,
    current: OpenDb,
    retired: ScratchTotals,
}

impl ScratchDb {
    /// Name of the benchmark keyspace.
    pub const KEYSPACE: &'static str = "bench";

    /// Opens a database with `options` in a new temporary directory and writes `prefill` random
    /// entries ([`random_key`] keys, [`VALUE_LEN`]-byte values) into its keyspace, in batches.
    ///
    /// # Errors
    /// [`strata::Error::Io`] if the directory cannot be made; whatever [`Db::open`],
    /// [`Db::keyspace`] or committing a prefill batch return.
    pub fn open(options: Options, prefill: u64) -> strata::Result<Self> {
        let mut values = ValueGenerator::new(0x5eed_0003, COMPRESSION_RATIO);
        let mut current = OpenDb::open(&options)?;
        current.prefill(prefill, 0x9e3_0000, &mut values)?;
        Ok(ScratchDb {
            options,
            prefill,
            values,
            current,
            retired: ScratchTotals::default(),
        })
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.current.db
    }

    /// The benchmark keyspace.
    pub fn keyspace(&self) -> &Keyspace {
        &self.current.keyspace
    }

    /// The temporary directory of the current database.
    pub fn dir(&self) -> &Path {
        self.current.dir.path()
    }

    /// Entries written to the current database beyond its prefill.
    pub fn written(&self) -> u64 {
        self.current.totals().writes
    }

    /// Replaces the database with a fresh, prefilled one in a new directory (see the type's
    /// docs).
    ///
    /// # Errors
    /// Errors opening or prefilling the new database, dropping the keyspace, closing the old
    /// database or deleting its directory.
    pub fn reset(&mut self) -> strata::Result<()> {
        let fresh = OpenDb::open(&self.options)?;
        let old = std::mem::replace(&mut self.current, fresh);
        let totals = old.retire()?;
        self.retired.add(&totals);
        // The old database is gone before the new one fills: at most one holds memory.
        let seed = 0x9e3_0000 + self.retired.databases;
        self.current.prefill(self.prefill, seed, &mut self.values)?;
        Ok(())
    }

    /// [`ScratchDb::reset`] if at least `puts` entries have been written to the current
    /// database beyond its prefill; returns whether it did.
    ///
    /// # Errors
    /// As for [`ScratchDb::reset`].
    pub fn reset_if_written(&mut self, puts: u64) -> strata::Result<bool> {
        if self.written() < puts {
            return Ok(false);
        }
        self.reset()?;
        Ok(true)
    }

    /// Figures summed over every database opened so far, the current one included, prefills
    /// excluded.
    pub fn totals(&self) -> ScratchTotals {
        let mut totals = self.retired;
        totals.add(&self.current.totals());
        totals
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
    fn scratch_db_resets_without_dumping() {
        let options = Options {
            wal_mode: strata::WalMode::None,
            memory_limit_bytes: 64 << 20,
            ..Options::default()
        };
        let mut scratch = ScratchDb::open(options, 3000).expect("open a scratch database");
        assert_eq!(scratch.keyspace().iter().count(), 3000);
        assert_eq!(scratch.written(), 0);
        let mut rng = SplitMix64::new(3);
        for _ in 0..1000 {
            scratch
                .keyspace()
                .put(random_key(&mut rng), [7u8; VALUE_LEN])
                .expect("put");
        }
        assert_eq!(scratch.written(), 1000);
        let old_dir = scratch.dir().to_path_buf();
        assert!(!scratch.reset_if_written(1001).expect("no reset"));
        assert!(scratch.reset_if_written(1000).expect("reset"));
        assert!(!old_dir.exists(), "the old directory should be deleted");
        assert_eq!(scratch.keyspace().iter().count(), 3000);
        assert_eq!(scratch.written(), 0);
        let totals = scratch.totals();
        assert_eq!(totals.databases, 2);
        assert_eq!(totals.writes, 1000);
        assert_eq!(totals.commits, 1000);
        assert_eq!(totals.dumps, 0);
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
