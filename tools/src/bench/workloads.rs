//! The workloads: their names and meanings, key and value generation, and the measured loops.
//!
//! Every workload runs on worker threads started by [`run`]; each thread times every operation
//! into its own HDR histogram (nanoseconds) and publishes its operation count, which the calling
//! thread samples for the progress bar and the per-second timeline. Histograms are merged at the
//! end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use strata::{Db, Keyspace, WalMode};

use super::BenchError;

/// One named workload, with db_bench's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Writes keys `0..num` in ascending order (one thread).
    FillSeq,
    /// Writes `num` keys drawn uniformly (with replacement) from `0..num`, per thread.
    FillRandom,
    /// Like `fillrandom`, meant to run on a filled database: every write replaces a value.
    Overwrite,
    /// `reads` point lookups of uniformly random keys, per thread.
    ReadRandom,
    /// `reads` point lookups of keys that are never written (a present key plus a `.` suffix, so
    /// they lie inside the key range and only bloom filters can rule them out), per thread.
    ReadMissing,
    /// One forward pass over the whole keyspace (one thread); an operation is one entry.
    ReadSeq,
    /// One backward pass over the whole keyspace (one thread); an operation is one entry.
    ReadReverse,
    /// `reads` times: seek to a random key, then read it and the next 10 entries, per thread.
    SeekRandom,
    /// `--threads` readers doing `reads` random lookups each (measured) while one writer thread
    /// writes random keys at full speed (reported separately).
    ReadWhileWriting,
    /// `num / 1000` random writes per thread, each durable before it returns (the database is
    /// open with `WalMode::Fsync` for this workload).
    FillSync,
    /// `reads` read-modify-writes per thread: a lookup of a random key, then a put of a new value.
    UpdateRandom,
    /// `num` deletes of random keys per thread.
    DeleteRandom,
    /// Counter upserts (needs merge operators: skipped).
    UpsertRandom,
    /// Random transactions (needs transactions: skipped).
    TxnRandom,
}

impl Workload {
    /// Every workload, in the order `--help` lists them.
    pub const ALL: [Workload; 14] = [
        Workload::FillSeq,
        Workload::FillRandom,
        Workload::Overwrite,
        Workload::ReadRandom,
        Workload::ReadMissing,
        Workload::ReadSeq,
        Workload::ReadReverse,
        Workload::SeekRandom,
        Workload::ReadWhileWriting,
        Workload::FillSync,
        Workload::UpdateRandom,
        Workload::DeleteRandom,
        Workload::UpsertRandom,
        Workload::TxnRandom,
    ];

    /// The db_bench name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::Overwrite => "overwrite",
            Workload::ReadRandom => "readrandom",
            Workload::ReadMissing => "readmissing",
            Workload::ReadSeq => "readseq",
            Workload::ReadReverse => "readreverse",
            Workload::SeekRandom => "seekrandom",
            Workload::ReadWhileWriting => "readwhilewriting",
            Workload::FillSync => "fillsync",
            Workload::UpdateRandom => "updaterandom",
            Workload::DeleteRandom => "deleterandom",
            Workload::UpsertRandom => "upsertrandom",
            Workload::TxnRandom => "txnrandom",
        }
    }

    /// The workload called `name`, if any.
    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// True if the workload writes (it is followed by a flush, reported separately).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Workload::FillSeq
                | Workload::FillRandom
                | Workload::Overwrite
                | Workload::ReadWhileWriting
                | Workload::FillSync
                | Workload::UpdateRandom
                | Workload::DeleteRandom
                | Workload::UpsertRandom
                | Workload::TxnRandom
        )
    }

    /// True if `--threads` applies (scans and `fillseq` always use one thread).
    pub fn multi_threaded(self) -> bool {
        !matches!(
            self,
            Workload::FillSeq | Workload::ReadSeq | Workload::ReadReverse
        )
    }

    /// The WAL mode the database must be open with for this workload.
    pub fn wal_mode(self, requested: WalMode) -> WalMode {
        if self == Workload::FillSync {
            WalMode::Fsync
        } else {
            requested
        }
    }
}

/// A deterministic splitmix64 stream.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..bound` (`bound > 0`), by multiply-shift.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// Mixes a seed with a stream number, so that each workload and thread gets its own stream.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut rng = SplitMix::new(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f));
    rng.next_u64()
}

/// Fixed-width keys in db_bench's style: the key number in decimal, zero-padded to `size` bytes.
#[derive(Debug, Clone, Copy)]
pub struct KeyFormat {
    size: usize,
}

impl KeyFormat {
    /// Keys of `size` bytes for numbers below `num`.
    ///
    /// # Errors
    /// A usage error if `size` is too small to hold the digits of `num - 1`.
    pub fn new(size: usize, num: u64) -> Result<Self, BenchError> {
        let digits = num.saturating_sub(1).max(1).ilog10() as usize + 1;
        if size < digits {
            return Err(BenchError::Usage(format!(
                "--key-size {size} is too small for --num {num} (keys are {digits} decimal digits)"
            )));
        }
        Ok(KeyFormat { size })
    }

    /// The key size in bytes.
    pub fn size(self) -> usize {
        self.size
    }

    /// Writes key `k` into `buf`, which must be `size` bytes long.
    pub fn write(self, buf: &mut [u8], mut k: u64) {
        for byte in buf.iter_mut().rev() {
            *byte = b'0' + (k % 10) as u8;
            k /= 10;
        }
    }

    /// A buffer for one present key and the missing key after it (the same digits plus `.`).
    pub fn buffer(self) -> Vec<u8> {
        let mut buf = vec![b'0'; self.size + 1];
        buf[self.size] = b'.';
        buf
    }

    /// The key number of a key written by this format, if it is one.
    pub fn parse(self, key: &[u8]) -> Option<u64> {
        if key.len() != self.size || !key.iter().all(u8::is_ascii_digit) {
            return None;
        }
        key.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }
}

/// A pool of value bytes in the style of db_bench's `RandomGenerator`: 100-byte pieces, each a
/// random printable fragment of `ratio * 100` bytes repeated to fill the piece, so values compress
/// to about `ratio` of their size. Values are consecutive slices of the pool.
#[derive(Debug)]
pub struct ValuePool {
    data: Vec<u8>,
}

impl ValuePool {
    /// A pool of at least 1 MiB (and at least four values) for values of `value_size` bytes.
    pub fn new(compression_ratio: f64, value_size: usize, seed: u64) -> Self {
        let len = (1usize << 20).max(value_size.saturating_mul(4));
        let mut rng = SplitMix::new(derive_seed(seed, 301));
        let mut data = Vec::with_capacity(len + 100);
        let raw = ((100.0 * compression_ratio) as usize).clamp(1, 100);
        let mut fragment = vec![0u8; raw];
        while data.len() < len {
            for byte in fragment.iter_mut() {
                *byte = b' ' + rng.below(95) as u8;
            }
            let piece_end = data.len() + 100;
            while data.len() < piece_end {
                let take = (piece_end - data.len()).min(raw);
                data.extend_from_slice(&fragment[..take]);
            }
        }
        ValuePool { data }
    }

    /// A generator of values starting at a seed-dependent offset.
    pub fn generator(&self, seed: u64) -> ValueGen<'_> {
        let pos = SplitMix::new(seed).below(self.data.len() as u64) as usize;
        ValueGen {
            pool: &self.data,
            pos,
        }
    }
}

/// Hands out consecutive slices of a [`ValuePool`].
#[derive(Debug)]
pub struct ValueGen<'a> {
    pool: &'a [u8],
    pos: usize,
}

impl<'a> ValueGen<'a> {
    /// The next value of `len` bytes (`len` is at most the pool's size).
    pub fn next_value(&mut self, len: usize) -> &'a [u8] {
        if self.pos + len > self.pool.len() {
            self.pos = 0;
        }
        self.pos += len;
        &self.pool[self.pos - len..self.pos]
    }
}

/// Which key numbers are live (written and not deleted) in `0..num`: the numerator of space
/// amplification's logical size. One bit per key, updated with atomics by all threads.
#[derive(Debug)]
pub struct LiveKeys {
    bits: Vec<AtomicU64>,
}

impl LiveKeys {
    /// No live key among `0..num`.
    pub fn new(num: u64) -> Self {
        LiveKeys {
            bits: (0..num.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Marks `k` live.
    pub fn set(&self, k: u64) {
        if let Some(word) = self.bits.get((k / 64) as usize) {
            word.fetch_or(1 << (k % 64), Ordering::Relaxed);
        }
    }

    /// Marks `k` deleted.
    pub fn clear(&self, k: u64) {
        if let Some(word) = self.bits.get((k / 64) as usize) {
            word.fetch_and(!(1 << (k % 64)), Ordering::Relaxed);
        }
    }

    /// How many keys are live.
    pub fn count(&self) -> u64 {
        self.bits
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }
}

/// Everything a workload's threads share.
pub struct Context<'a> {
    /// The database under test.
    pub db: &'a Db,
    /// The keyspace under test.
    pub ks: &'a Keyspace,
    /// A keyspace with the counter merge operator (`upsertrandom`).
    pub counters: &'a Keyspace,
    /// Keys in `0..num`.
    pub num: u64,
    /// Lookups per thread for read workloads.
    pub reads: u64,
    /// Threads for multi-threaded workloads.
    pub threads: usize,
    /// Key format.
    pub keys: KeyFormat,
    /// Value size in bytes.
    pub value_size: usize,
    /// Value bytes.
    pub pool: &'a ValuePool,
    /// Live keys, for space amplification.
    pub live: &'a LiveKeys,
    /// The workload's seed (each thread derives its own stream from it).
    pub seed: u64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What one measured thread did.
#[derive(Debug)]
struct ThreadOutput {
    hist: Histogram<u64>,
    ops: u64,
    bytes: u64,
    found: u64,
    started: Instant,
    finished: Instant,
}

/// What a workload measured, all threads merged.
#[derive(Debug)]
pub struct Measured {
    /// Threads measured.
    pub threads: usize,
    /// Operations done.
    pub ops: u64,
    /// Bytes of keys and values written or read.
    pub bytes: u64,
    /// Lookups or seeks that found a key (read workloads only).
    pub found: Option<u64>,
    /// From the first thread's start to the last thread's end.
    pub wall: Duration,
    /// Sum of the threads' own elapsed times (db_bench's micros/op divides this by ops).
    pub thread_time: Duration,
    /// Per-operation latency in nanoseconds.
    pub hist: Histogram<u64>,
    /// Operations per second, sampled each second (the last sample covers the remainder).
    pub timeline: Vec<f64>,
    /// The background writer of `readwhilewriting`: (writes, seconds).
    pub writer: Option<(u64, f64)>,
}

/// A thread's operation count, on its own cache line so that threads do not share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counter(AtomicU64);

/// Times operations of one thread.
struct Recorder<'a> {
    hist: Histogram<u64>,
    ops: u64,
    bytes: u64,
    found: u64,
    published: &'a AtomicU64,
    abort: &'a AtomicBool,
}

impl<'a> Recorder<'a> {
    fn new(published: &'a AtomicU64, abort: &'a AtomicBool) -> Self {
        Recorder {
            hist: new_histogram(),
            ops: 0,
            bytes: 0,
            found: 0,
            published,
            abort,
        }
    }

    /// Records one operation that began at `started`. Returns false if another thread failed
    /// and this one should stop.
    #[inline]
    fn done(&mut self, started: Instant, bytes: usize) -> bool {
        let nanos = started.elapsed().as_nanos() as u64;
        self.hist.saturating_record(nanos.max(1));
        self.ops += 1;
        self.bytes += bytes as u64;
        if self.ops.is_multiple_of(64) {
            self.published.store(self.ops, Ordering::Relaxed);
            return !self.abort.load(Ordering::Relaxed);
        }
        true
    }

    fn finish(self, started: Instant) -> ThreadOutput {
        self.published.store(self.ops, Ordering::Relaxed);
        ThreadOutput {
            hist: self.hist,
            ops: self.ops,
            bytes: self.bytes,
            found: self.found,
            started,
            finished: Instant::now(),
        }
    }
}

/// A histogram of nanoseconds from 1 ns to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3)
        .expect("constant bounds are valid: low 1, high far above 2 * low, 3 significant digits")
}

fn engine(e: strata::Error) -> BenchError {
    BenchError::Engine(e)
}

/// Operations each measured thread plans to do (for the progress bar), and the thread count.
fn plan(w: Workload, cx: &Context<'_>) -> (u64, usize) {
    let threads = if w.multi_threaded() { cx.threads } else { 1 };
    let per_thread = match w {
        Workload::FillSeq
        | Workload::FillRandom
        | Workload::Overwrite
        | Workload::DeleteRandom
        | Workload::ReadSeq
        | Workload::ReadReverse => cx.num,
        Workload::FillSync => (cx.num / 1000).max(1),
        Workload::ReadRandom
        | Workload::ReadMissing
        | Workload::SeekRandom
        | Workload::ReadWhileWriting
        | Workload::UpdateRandom
        | Workload::UpsertRandom
        | Workload::TxnRandom => cx.reads,
    };
    (per_thread, threads)
}

/// One measured thread's loop.
fn thread_body(
    w: Workload,
    cx: &Context<'_>,
    index: usize,
    ops: u64,
    published: &AtomicU64,
    abort: &AtomicBool,
) -> Result<ThreadOutput, BenchError> {
    let mut rng = SplitMix::new(derive_seed(cx.seed, index as u64));
    let mut values = cx.pool.generator(rng.next_u64());
    let mut rec = Recorder::new(published, abort);
    let mut buf = cx.keys.buffer();
    let ksz = cx.keys.size();
    let vsz = cx.value_size;
    let started = Instant::now();
    match w {
        Workload::FillSeq | Workload::FillRandom | Workload::Overwrite | Workload::FillSync => {
            for i in 0..ops {
                // fillseq writes keys in order; the others pick them at random.
                let k = if w == Workload::FillSeq {
                    i
                } else {
                    rng.below(cx.num)
                };
                cx.keys.write(&mut buf[..ksz], k);
                let value = values.next_value(vsz);
                let t = Instant::now();
                cx.ks.put(&buf[..ksz], value).map_err(engine)?;
                cx.live.set(k);
                if !rec.done(t, ksz + vsz) {
                    break;
                }
            }
        }
        Workload::ReadRandom | Workload::ReadWhileWriting | Workload::ReadMissing => {
            let len = if w == Workload::ReadMissing {
                ksz + 1
            } else {
                ksz
            };
            for _ in 0..ops {
                cx.keys.write(&mut buf[..ksz], rng.below(cx.num));
                let t = Instant::now();
                let value = cx.ks.get(&buf[..len]).map_err(engine)?;
                let bytes = match value {
                    Some(v) => {
                        rec.found += 1;
                        len + v.len()
                    }
                    None => 0,
                };
                if !rec.done(t, bytes) {
                    break;
                }
            }
        }
        Workload::ReadSeq | Workload::ReadReverse => {
            let mut iter = cx.ks.iter();
            loop {
                let t = Instant::now();
                let item = if w == Workload::ReadSeq {
                    iter.next()
                } else {
                    iter.next_back()
                };
                let Some(item) = item else { break };
                let (key, value) = item.map_err(engine)?;
                rec.found += 1;
                if !rec.done(t, key.len() + value.len()) {
                    break;
                }
            }
        }
        Workload::SeekRandom => {
            for _ in 0..ops {
                cx.keys.write(&mut buf[..ksz], rng.below(cx.num));
                let t = Instant::now();
                let mut bytes = 0;
                let mut first = true;
                for item in cx.ks.range(&buf[..ksz]..).take(11) {
                    let (key, value) = item.map_err(engine)?;
                    if first && key.as_ref() == &buf[..ksz] {
                        rec.found += 1;
                    }
                    first = false;
                    bytes += key.len() + value.len();
                }
                if !rec.done(t, bytes) {
                    break;
                }
            }
        }
        Workload::UpdateRandom => {
            for _ in 0..ops {
                let k = rng.below(cx.num);
                cx.keys.write(&mut buf[..ksz], k);
                let value = values.next_value(vsz);
                let t = Instant::now();
                if cx.ks.get(&buf[..ksz]).map_err(engine)?.is_some() {
                    rec.found += 1;
                }
                cx.ks.put(&buf[..ksz], value).map_err(engine)?;
                cx.live.set(k);
                if !rec.done(t, ksz + vsz) {
                    break;
                }
            }
        }
        Workload::DeleteRandom => {
            for _ in 0..ops {
                let k = rng.below(cx.num);
                cx.keys.write(&mut buf[..ksz], k);
                let t = Instant::now();
                cx.ks.delete(&buf[..ksz]).map_err(engine)?;
                cx.live.clear(k);
                if !rec.done(t, ksz) {
                    break;
                }
            }
        }
        Workload::UpsertRandom => {
            // A counter increment per op: no read, the merge operator folds them later.
            let operand = strata::merge::Counter::operand(1);
            for _ in 0..ops {
                cx.keys.write(&mut buf[..ksz], rng.below(cx.num));
                let t = Instant::now();
                cx.counters.upsert(&buf[..ksz], operand).map_err(engine)?;
                if !rec.done(t, ksz + operand.len()) {
                    break;
                }
            }
        }
        Workload::TxnRandom => {
            // A transfer between two random keys: read both, write both, retried on conflict.
            let mut other = cx.keys.buffer();
            for _ in 0..ops {
                let (a, b) = (rng.below(cx.num), rng.below(cx.num));
                cx.keys.write(&mut buf[..ksz], a);
                cx.keys.write(&mut other[..ksz], b);
                let value = values.next_value(vsz).to_vec();
                let t = Instant::now();
                let found = cx
                    .db
                    .transact(|tx| {
                        // "found" counts the first key, so it reads as a fraction of ops.
                        let found = tx.get(cx.ks, &buf[..ksz])?.is_some() as u64;
                        tx.get(cx.ks, &other[..ksz])?;
                        tx.put(cx.ks, &buf[..ksz], &value)?;
                        tx.put(cx.ks, &other[..ksz], &value)?;
                        Ok(found)
                    })
                    .map_err(engine)?;
                rec.found += found;
                cx.live.set(a);
                cx.live.set(b);
                if !rec.done(t, 2 * (ksz + vsz)) {
                    break;
                }
            }
        }
    }
    Ok(rec.finish(started))
}

/// The background writer of `readwhilewriting`: random puts until `stop`. Returns its writes
/// and seconds.
fn background_writer(
    cx: &Context<'_>,
    stop: &AtomicBool,
    abort: &AtomicBool,
) -> Result<(u64, f64), BenchError> {
    let mut rng = SplitMix::new(derive_seed(cx.seed, u64::MAX));
    let mut values = cx.pool.generator(rng.next_u64());
    let mut buf = cx.keys.buffer();
    let ksz = cx.keys.size();
    let started = Instant::now();
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
        let k = rng.below(cx.num);
        cx.keys.write(&mut buf[..ksz], k);
        cx.ks
            .put(&buf[..ksz], values.next_value(cx.value_size))
            .map_err(engine)?;
        cx.live.set(k);
        writes += 1;
    }
    Ok((writes, started.elapsed().as_secs_f64()))
}

fn progress_bar(w: Workload, total: u64, show: bool) -> ProgressBar {
    if !show || total == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:16} [{bar:40.cyan/blue}] {human_pos}/{human_len} {rate} eta {eta}",
    ) {
        let style = style
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:>9.0} ops/s", state.per_sec());
                },
            )
            .progress_chars("=> ");
        bar.set_style(style);
    }
    bar.set_prefix(w.name());
    bar
}

/// Runs workload `w` on its threads and returns what they measured.
///
/// # Errors
/// The first engine error any thread met (the others stop soon after).
pub fn run(w: Workload, cx: &Context<'_>) -> Result<Measured, BenchError> {
    let (per_thread, threads) = plan(w, cx);
    let counters: Vec<Counter> = (0..threads).map(|_| Counter::default()).collect();
    let abort = AtomicBool::new(false);
    let writer_stop = AtomicBool::new(false);
    let bar = progress_bar(w, per_thread * threads as u64, cx.progress);
    let mut timeline = Vec::new();
    // When the last timeline sample was taken, and the operation count then.
    let mut last_tick = (Instant::now(), 0u64);

    let (outputs, writer) = std::thread::scope(|s| {
        let workers: Vec<_> = counters
            .iter()
            .enumerate()
            .map(|(i, counter)| {
                let abort = &abort;
                s.spawn(move || {
                    let result = thread_body(w, cx, i, per_thread, &counter.0, abort);
                    if result.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        let writer = (w == Workload::ReadWhileWriting).then(|| {
            let (stop, abort) = (&writer_stop, &abort);
            s.spawn(move || {
                let result = background_writer(cx, stop, abort);
                if result.is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
                result
            })
        });

        // Sample the counters: the progress bar every 25 ms, the timeline every second.
        let total = || -> u64 { counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum() };
        let tick = Duration::from_secs(1);
        let mut next_tick = last_tick.0 + tick;
        loop {
            let finished = workers.iter().all(|h| h.is_finished());
            let now = Instant::now();
            let done = total();
            if now >= next_tick && !finished {
                timeline.push((done - last_tick.1) as f64);
                last_tick = (next_tick, done);
                next_tick += tick;
            }
            bar.set_position(done);
            if finished {
                break;
            }
            std::thread::sleep(
                next_tick
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(25)),
            );
        }
        bar.finish_and_clear();
        writer_stop.store(true, Ordering::Relaxed);
        let outputs: Vec<_> = workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Other("a worker thread panicked".into())))
            })
            .collect();
        let writer = writer.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(BenchError::Other("the writer thread panicked".into())))
        });
        (outputs, writer)
    });

    let mut hist = new_histogram();
    let (mut ops, mut bytes, mut found) = (0, 0, 0);
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    let mut thread_time = Duration::ZERO;
    for output in outputs {
        let output = output?;
        hist.add(&output.hist)
            .map_err(|e| BenchError::Other(format!("merging histograms: {e}")))?;
        ops += output.ops;
        bytes += output.bytes;
        found += output.found;
        thread_time += output.finished - output.started;
        first_start = Some(first_start.map_or(output.started, |s| s.min(output.started)));
        last_end = Some(last_end.map_or(output.finished, |e| e.max(output.finished)));
    }
    let writer = writer.transpose()?;
    let wall = match (first_start, last_end) {
        (Some(s), Some(e)) => e - s,
        _ => Duration::ZERO,
    };
    // The remainder after the last full second, as a rate, if it is long enough to mean much.
    if let Some(end) = last_end {
        let tail = end.saturating_duration_since(last_tick.0);
        if tail >= Duration::from_millis(100) && ops > last_tick.1 {
            timeline.push((ops - last_tick.1) as f64 / tail.as_secs_f64());
        }
    }
    let reads = matches!(
        w,
        Workload::ReadRandom
            | Workload::ReadMissing
            | Workload::ReadWhileWriting
            | Workload::SeekRandom
            | Workload::UpdateRandom
            | Workload::TxnRandom
    );
    Ok(Measured {
        threads,
        ops,
        bytes,
        found: reads.then_some(found),
        wall,
        thread_time,
        hist,
        timeline,
        writer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_round_trip() {
        let keys = KeyFormat::new(16, 1_000_000).expect("fits");
        let mut buf = keys.buffer();
        keys.write(&mut buf[..16], 123);
        assert_eq!(&buf, b"0000000000000123.");
        assert_eq!(keys.parse(&buf[..16]), Some(123));
        assert_eq!(keys.parse(&buf), None);
        assert!(KeyFormat::new(3, 10_000).is_err());
        assert!(KeyFormat::new(4, 10_000).is_ok());
        assert!(KeyFormat::new(1, 1).is_ok());
    }

    #[test]
    fn values_compress_to_about_the_ratio() {
        let pool = ValuePool::new(0.5, 100, 1);
        let mut gen = pool.generator(7);
        let value = gen.next_value(100).to_vec();
        assert_eq!(value.len(), 100);
        assert!(value.iter().all(|b| (b' '..=b'~').contains(b)));
        let distinct: std::collections::HashSet<_> = pool.data[..100].windows(50).collect();
        assert!(
            distinct.len() <= 51,
            "each piece repeats a 50-byte fragment"
        );
    }

    #[test]
    fn below_stays_in_range_and_live_keys_count() {
        let mut rng = SplitMix::new(3);
        assert!((0..10_000).all(|_| rng.below(7) < 7));
        let live = LiveKeys::new(130);
        live.set(0);
        live.set(129);
        live.set(129);
        live.set(500);
        assert_eq!(live.count(), 2);
        live.clear(0);
        assert_eq!(live.count(), 1);
    }
}
