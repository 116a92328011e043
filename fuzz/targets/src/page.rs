//! `page`: the bytes as one data page.
//!
//! Input format: the whole input is a raw (decompressed) page for the page decoder. In addition,
//! when the first byte is a compression type (0 none, 1 lz4, 2 zstd), the input is also read as
//! `type u8 | raw_len u24 LE | payload`: the payload is decompressed to `raw_len` bytes, as the
//! reader does after a page's checksum matched, and the result goes to the page decoder.
//! `fuzz/corpus/page/` holds both shapes.

use std::cmp::Ordering;

use bytes::Bytes;
use strata::sstable::compare_internal;
use strata::sstable::fuzz_support::{
    decompress_payload, page_entries_backward, page_entries_forward, page_entry_offsets, page_seek,
    PageEntry,
};

/// Entries decoded at most per direction (a raw page entry takes at least 5 bytes).
const MAX_ENTRIES: usize = 1 << 16;

/// Seeks per page.
const MAX_PROBES: usize = 32;

/// The largest raw length a compressed input may claim: the decompressors allocate the claimed
/// length up front, and the format's own bound (`MAX_PAGE_RAW_LEN`, 256 MiB) is the run
/// target's concern. This keeps the target's allocations within its budget (see the corpus
/// test) while still letting claims exceed what the payload can produce.
fn max_raw_len(input_len: usize) -> usize {
    32 * input_len + 64 * 1024
}

/// Body of the `page` target; see [`crate::page`].
pub(crate) fn run(data: &[u8]) {
    decode(Bytes::copy_from_slice(data));
    if let [type_byte @ 0..=2, a, b, c, payload @ ..] = data {
        let claimed = usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16;
        let raw_len = claimed.min(max_raw_len(data.len()));
        if let Ok(raw) = decompress_payload(*type_byte, payload, raw_len) {
            assert_eq!(
                raw.len(),
                raw_len,
                "decompression returned {} bytes, not the {raw_len} claimed",
                raw.len()
            );
            decode(Bytes::from(raw));
        }
    }
}

/// The restart offsets of a raw page (`FORMAT.md` §5: `restart[n] u32 LE` then `n u32 LE` at
/// the end), if the array fits.
fn restarts(raw: &[u8]) -> Option<Vec<usize>> {
    let count_at = raw.len().checked_sub(4)?;
    let n = u32::from_le_bytes(raw[count_at..].try_into().ok()?) as usize;
    let start = count_at.checked_sub(n.checked_mul(4)?)?;
    Some(
        raw[start..count_at]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect(),
    )
}

/// True if every restart points at an entry of the forward decoding that stores its whole key
/// (`shared`, the entry's first varint, is a single zero byte): what a writer guarantees and a
/// page checksum vouches for. Only then do backward steps and seeks (which start from
/// restarts) have to agree with the forward decoding; otherwise they may fail or differ, but
/// must not panic.
fn restarts_point_at_entries(raw: &[u8]) -> bool {
    let Ok(offsets) = page_entry_offsets(Bytes::copy_from_slice(raw), MAX_ENTRIES) else {
        return false;
    };
    restarts(raw).is_some_and(|r| {
        r.iter()
            .all(|&o| offsets.binary_search(&o).is_ok() && raw.get(o) == Some(&0))
    })
}

fn decode(raw: Bytes) {
    let forward = page_entries_forward(raw.clone(), MAX_ENTRIES);
    let backward = page_entries_backward(raw.clone(), MAX_ENTRIES);
    let entries: &[PageEntry] = match (&forward, &backward) {
        (Ok(f), _) => f,
        (_, Ok(b)) => b,
        _ => &[],
    };
    let well_formed =
        forward.is_ok() && entries.len() < MAX_ENTRIES && restarts_point_at_entries(&raw);
    if well_formed {
        let Ok(b) = &backward else {
            panic!("a well-formed page decodes forward but not backward: {backward:?}");
        };
        assert!(
            entries.iter().eq(b.iter().rev()),
            "forward and backward decoding of a page disagree ({} vs {} entries)",
            entries.len(),
            b.len()
        );
    }
    let sorted = well_formed
        && entries
            .windows(2)
            .all(|w| compare_internal(&w[0].0, w[0].1, &w[1].0, w[1].1) == Ordering::Less);
    let mut targets: Vec<(Vec<u8>, u64)> = entries
        .iter()
        .step_by((entries.len() / MAX_PROBES).max(1))
        .map(|e| (e.0.clone(), e.1))
        .collect();
    targets.extend([(Vec::new(), u64::MAX), (vec![0xff; 3], 0)]);
    if let Some(e) = entries.first() {
        let mut after = e.0.clone();
        after.push(0);
        targets.push((after, u64::MAX));
        targets.push((e.0.clone(), e.1.saturating_add(1)));
        targets.push((e.0.clone(), e.1.saturating_sub(1)));
    }
    for (key, seqno) in targets {
        let at = page_seek(raw.clone(), &key, seqno, false);
        let before = page_seek(raw.clone(), &key, seqno, true);
        if !sorted {
            continue;
        }
        // A well-formed, sorted page: seeks must land where the entry list says.
        let want_at = entries
            .iter()
            .find(|e| compare_internal(&e.0, e.1, &key, seqno) != Ordering::Less)
            .map(|e| (e.0.clone(), e.1));
        let want_before = entries
            .iter()
            .rev()
            .find(|e| compare_internal(&e.0, e.1, &key, seqno) != Ordering::Greater)
            .map(|e| (e.0.clone(), e.1));
        assert_eq!(at, Ok(want_at), "seek disagrees with the decoded entries");
        assert_eq!(
            before,
            Ok(want_before),
            "seek_for_prev disagrees with the decoded entries"
        );
    }
}
