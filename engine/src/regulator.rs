//! The compaction regulator: when compaction falls behind, writers are slowed to what it can
//! sustain, so compaction debt (and with it read and space amplification) stays bounded instead
//! of growing without limit.
//!
//! As in vinyl, the sustainable write rate is `0.75 x compaction threads x compaction
//! throughput`, the throughput being a moving average of input bytes per second of recent
//! compactions. The limit applies only while the debt (bytes the policy says must be compacted)
//! exceeds four times the memory limit; below that, compaction catches up on its own and writers
//! run free. Writers are admitted through a token bucket and sleep at most 100 ms at a time, so
//! the slowdown is smooth rather than a stall.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct State {
    /// Moving average of one compaction thread's input bytes per second.
    throughput: Option<f64>,
    /// Bytes per second writers may add, when limited.
    limit: Option<f64>,
    tokens: f64,
    refilled: Instant,
}

/// See the module documentation. Thread-safe.
pub(crate) struct Regulator {
    state: Mutex<State>,
    pub throttled_commits: AtomicU64,
    pub throttled_micros: AtomicU64,
}

impl std::fmt::Debug for Regulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regulator")
            .field("limit", &self.limit_bytes_per_sec())
            .finish()
    }
}

impl Regulator {
    pub fn new() -> Self {
        Regulator {
            state: Mutex::new(State {
                throughput: None,
                limit: None,
                tokens: 0.0,
                refilled: Instant::now(),
            }),
            throttled_commits: AtomicU64::new(0),
            throttled_micros: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a finished compaction's input size and duration.
    pub fn record_compaction(&self, input_bytes: u64, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if input_bytes == 0 || seconds <= 0.0 {
            return;
        }
        let sample = input_bytes as f64 / seconds;
        let mut state = self.lock();
        state.throughput = Some(state.throughput.map_or(sample, |t| 0.7 * t + 0.3 * sample));
    }

    /// Sets or lifts the limit from the current debt.
    pub fn update(&self, debt_bytes: u64, threshold_bytes: u64, threads: usize) {
        let mut state = self.lock();
        let limit = match state.throughput {
            Some(throughput) if debt_bytes > threshold_bytes => {
                Some((0.75 * threads as f64 * throughput).max(1.0))
            }
            _ => None,
        };
        if limit.is_some() && state.limit.is_none() {
            state.tokens = 0.0;
            state.refilled = Instant::now();
        }
        state.limit = limit;
    }

    /// The current limit in bytes per second, if writers are limited.
    pub fn limit_bytes_per_sec(&self) -> Option<u64> {
        self.lock().limit.map(|l| l as u64)
    }

    /// Admits a commit of `bytes`, sleeping while the bucket is in debt.
    pub fn admit(&self, bytes: u64) {
        let wait = {
            let mut state = self.lock();
            let Some(limit) = state.limit else { return };
            let now = Instant::now();
            let burst = limit / 10.0;
            state.tokens = (state.tokens
                + now.duration_since(state.refilled).as_secs_f64() * limit)
                .min(burst);
            state.refilled = now;
            state.tokens -= bytes as f64;
            (state.tokens < 0.0).then(|| Duration::from_secs_f64((-state.tokens / limit).min(0.1)))
        };
        if let Some(wait) = wait {
            self.throttled_commits.fetch_add(1, Ordering::Relaxed);
            self.throttled_micros
                .fetch_add(wait.as_micros() as u64, Ordering::Relaxed);
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_only_when_debt_is_high_and_throughput_known() {
        let regulator = Regulator::new();
        regulator.update(u64::MAX, 1, 2);
        assert_eq!(
            regulator.limit_bytes_per_sec(),
            None,
            "no throughput measured yet"
        );
        regulator.record_compaction(10_000_000, Duration::from_secs(1));
        regulator.update(100, 1_000, 2);
        assert_eq!(
            regulator.limit_bytes_per_sec(),
            None,
            "debt below the threshold"
        );
        regulator.update(5_000, 1_000, 2);
        assert_eq!(regulator.limit_bytes_per_sec(), Some(15_000_000));
    }

    #[test]
    fn admission_paces_writers_to_the_limit() {
        let regulator = Regulator::new();
        regulator.record_compaction(1_000_000, Duration::from_secs(1));
        regulator.update(2, 1, 1); // limit 750 kB/s
        let started = Instant::now();
        for _ in 0..30 {
            regulator.admit(10_000); // 300 kB in all: about 0.4 s at 750 kB/s
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(250), "took {elapsed:?}");
        assert!(regulator.throttled_commits.load(Ordering::Relaxed) > 0);
    }
}
