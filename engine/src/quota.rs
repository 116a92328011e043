//! The memory quota over all memtables, and write throttling.
//!
//! Writers are slowed smoothly as memory fills past three quarters of the limit (a sleep that
//! grows from 0 to 1 ms per commit as usage approaches the limit), and blocked at the limit until
//! dumps free memory or `quota_timeout` passes. vinyl's weakness here was bursty stalls; the
//! ramp is what keeps the write rate from falling off a cliff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Memory accounting and the throttle. Thread-safe.
#[derive(Debug)]
pub(crate) struct Quota {
    limit_bytes: u64,
    used_bytes: AtomicU64,
    lock: Mutex<()>,
    freed: Condvar,
    pub stalls: AtomicU64,
    pub stall_micros: AtomicU64,
    pub longest_stall_micros: AtomicU64,
    pub throttled: AtomicU64,
}

impl Quota {
    pub fn new(limit_bytes: u64) -> Self {
        Quota {
            limit_bytes,
            used_bytes: AtomicU64::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
            stalls: AtomicU64::new(0),
            stall_micros: AtomicU64::new(0),
            longest_stall_micros: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    pub fn charge(&self, bytes: u64) {
        self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Returns memory (after a dump) and wakes blocked writers.
    pub fn release(&self, bytes: u64) {
        let _ = self
            .used_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.freed.notify_all();
    }

    /// Wakes blocked writers so they re-check (e.g. on close or poison).
    pub fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.freed.notify_all();
    }

    /// Called before a commit: slows or blocks the writer while memory is short.
    ///
    /// # Errors
    /// [`Error::QuotaTimeout`] after waiting `timeout`; whatever `abort` returns while waiting
    /// (the database closed or was poisoned).
    pub fn throttle(&self, timeout: Duration, abort: impl Fn() -> Result<()>) -> Result<()> {
        let used = self.used_bytes();
        let soft = self.limit_bytes / 4 * 3;
        if used < soft {
            return Ok(());
        }
        if used < self.limit_bytes {
            let fraction = (used - soft) as f64 / (self.limit_bytes - soft).max(1) as f64;
            self.throttled.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros((fraction * 1000.0) as u64));
            return Ok(());
        }
        let started = Instant::now();
        self.stalls.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = loop {
            if let Err(e) = abort() {
                break Err(e);
            }
            if self.used_bytes() < self.limit_bytes {
                break Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout {
                break Err(Error::QuotaTimeout {
                    waited_ms: waited.as_millis() as u64,
                });
            }
            let slice = (timeout - waited).min(Duration::from_millis(50));
            guard = match self.freed.wait_timeout(guard, slice) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        };
        drop(guard);
        let micros = started.elapsed().as_micros() as u64;
        self.stall_micros.fetch_add(micros, Ordering::Relaxed);
        self.longest_stall_micros
            .fetch_max(micros, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_at_the_limit_and_times_out() {
        let quota = Quota::new(1000);
        quota.charge(1000);
        let result = quota.throttle(Duration::from_millis(30), || Ok(()));
        assert!(matches!(result, Err(Error::QuotaTimeout { .. })));
        assert_eq!(quota.stalls.load(Ordering::Relaxed), 1);
        quota.release(500);
        assert!(quota.throttle(Duration::from_millis(30), || Ok(())).is_ok());
    }

    #[test]
    fn release_wakes_a_blocked_writer() {
        let quota = std::sync::Arc::new(Quota::new(1000));
        quota.charge(2000);
        let q = std::sync::Arc::clone(&quota);
        let waiter = std::thread::spawn(move || q.throttle(Duration::from_secs(10), || Ok(())));
        std::thread::sleep(Duration::from_millis(20));
        quota.release(1500);
        assert!(waiter.join().unwrap().is_ok());
    }

    #[test]
    fn abort_stops_the_wait() {
        let quota = Quota::new(1000);
        quota.charge(1000);
        let result = quota.throttle(Duration::from_secs(10), || Err(Error::Closed));
        assert!(matches!(result, Err(Error::Closed)));
    }
}
