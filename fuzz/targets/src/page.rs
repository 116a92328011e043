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
    decompress_payload, page_entries_backward, page_entries_forward, page_seek, PageEntry,
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

fn decode(raw: Bytes) {
    let forward = page_entries_forward(raw.clone(), MAX_ENTRIES);
    let backward = page_entries_backward(raw.clone(), MAX_ENTRIES);
    if let (Ok(f), Ok(b)) = (&forward, &backward) {
        if f.len() < MAX_ENTRIES {
            assert!(
                f.iter().eq(b.iter().rev()),
                "forward and backward decoding of a page disagree ({} vs {} entries)",
                f.len(),
                b.len()
            );
        }
    }
    let entries: &[PageEntry] = match (&forward, &backward) {
        (Ok(f), _) => f,
        (_, Ok(b)) => b,
        _ => &[],
    };
    let sorted = forward.is_ok()
        && entries.len() < MAX_ENTRIES
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
        // A sorted page that decodes end to end: seeks must land where the entry list says.
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
