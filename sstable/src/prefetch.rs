//! Warming cache lines ahead of a dependent chain of loads.
//!
//! A seek into a cached page is a chain of dependent cache misses: the cache's hash bucket, the
//! page's reference count, its restart array at the end, the restart entries, then the entries
//! of one restart interval. Where the next addresses are known before the current load returns,
//! loading them early lets the misses overlap instead of queueing.
//!
//! These are plain loads whose values are discarded, not prefetch intrinsics: on the seekrandom
//! benchmark both measured the same, and plain loads need no `unsafe`. The loads are independent
//! of each other, so the processor keeps them all in flight at once.

/// Loads the byte at `bytes[offset]` (if in range) and discards it.
#[inline(always)]
pub(crate) fn touch(bytes: &[u8], offset: usize) {
    std::hint::black_box(bytes.get(offset).copied());
}

/// Loads one byte from each of `offsets` (those in range) and discards them.
#[inline]
pub(crate) fn touch_each(bytes: &[u8], offsets: impl Iterator<Item = usize>) {
    let mut sink = 0u8;
    for offset in offsets {
        sink ^= bytes.get(offset).copied().unwrap_or(0);
    }
    std::hint::black_box(sink);
}

/// Loads one byte from every 64-byte line of `bytes[from..to]`, at most `max_lines` of them.
#[inline]
pub(crate) fn touch_lines(bytes: &[u8], from: usize, to: usize, max_lines: usize) {
    touch_each(
        bytes,
        (from..to.min(bytes.len())).step_by(64).take(max_lines),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_offsets_are_ignored() {
        let bytes = [1u8; 100];
        touch(&bytes, 100);
        touch(&bytes, usize::MAX);
        touch_each(&bytes, [0, 99, 100, usize::MAX].into_iter());
        touch_lines(&bytes, 50, usize::MAX, 1000);
        touch_lines(&bytes, 200, 100, 1000);
        touch_lines(&[], 0, 10, 10);
    }
}
