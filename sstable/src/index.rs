//! The page index: one entry per data page, in file order.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::block::BLOCK_TRAILER_LEN;
use crate::coding::{put_varint, Reader};
use crate::entry::{compare_internal, MAX_KEY_LEN, MAX_SEQNO};
use crate::error::{DecodeError, DecodeResult};

/// Where one data page lives and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageHandle {
    /// User key of the page's first entry (the page's separator: every entry before this page
    /// sorts before it).
    pub first_key: Bytes,
    /// Seqno of the page's first entry.
    pub first_seqno: u64,
    /// File offset of the stored page.
    pub offset: u64,
    /// Stored payload bytes (after compression), without the 5-byte block trailer.
    pub stored_len: u32,
    /// Raw (decompressed) page bytes.
    pub raw_len: u32,
    /// Number of entries in the page.
    pub entries: u32,
}

impl PageHandle {
    /// File offset just past the page's trailer.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.stored_len) + BLOCK_TRAILER_LEN as u64
    }
}

/// An in-memory search structure over the pages' first keys, built at open, so that finding the
/// page for a key touches one compact array instead of a [`PageHandle`] and its separately
/// allocated key per probe (two cache misses each).
///
/// Every first key starts with `prefix` (the longest prefix they all share). `heads[i]` is the
/// next 8 bytes of page `i`'s first key as a big-endian integer, zero-padded. Padding keeps the
/// order: `heads[i] < heads[j]` implies `first_key[i] < first_key[j]` and `first_key[i] <=
/// first_key[j]` implies `heads[i] <= heads[j]`, so a probe needs the full key (and seqno) only
/// when the heads are equal.
#[derive(Debug, Default)]
pub(crate) struct PageSearch {
    prefix: Box<[u8]>,
    heads: Vec<u64>,
}

/// The first 8 bytes of `key` as a big-endian integer, zero-padded.
#[inline]
fn head(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(bytes)
}

impl PageSearch {
    /// Builds the search structure of `pages`, whose first entries ascend (as `decode_index`
    /// checks).
    pub(crate) fn new(pages: &[PageHandle]) -> PageSearch {
        let (Some(first), Some(last)) = (pages.first(), pages.last()) else {
            return PageSearch::default();
        };
        // Keys ascend, so what the first and last share, all share.
        let shared = first
            .first_key
            .iter()
            .zip(last.first_key.iter())
            .take_while(|(a, b)| a == b)
            .count();
        PageSearch {
            prefix: first.first_key[..shared].into(),
            heads: pages
                .iter()
                .map(|p| head(p.first_key.get(shared..).unwrap_or_default()))
                .collect(),
        }
    }

    /// The number of pages whose first entry is <= (key, seqno) in internal order. `pages` must
    /// be the handles this was built from.
    pub(crate) fn pages_at_or_before(&self, pages: &[PageHandle], key: &[u8], seqno: u64) -> usize {
        let n = self.heads.len().min(pages.len());
        let p = self.prefix.len();
        let common = p.min(key.len());
        match key[..common].cmp(&self.prefix[..common]) {
            Ordering::Less => return 0,
            Ordering::Greater => return n,
            // A proper prefix of the shared prefix sorts before every first key.
            Ordering::Equal if key.len() < p => return 0,
            Ordering::Equal => {}
        }
        let target = head(&key[p..]);
        let at_or_before = |i: usize| match self.heads[i].cmp(&target) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => {
                let page = &pages[i];
                compare_internal(&page.first_key, page.first_seqno, key, seqno) != Ordering::Greater
            }
        };
        // A binary search whose loop shape does not depend on the outcomes (they are hard to
        // predict), leaving `base` at the last page at or before the target, if any.
        if n == 0 {
            return 0;
        }
        let mut base = 0;
        let mut size = n;
        while size > 1 {
            let half = size / 2;
            let mid = base + half;
            if at_or_before(mid) {
                base = mid;
            }
            size -= half;
        }
        base + usize::from(at_or_before(base))
    }
}

pub(crate) fn encode_index(pages: &[PageHandle]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pages.len() * 32);
    put_varint(&mut out, pages.len() as u64);
    for page in pages {
        put_varint(&mut out, page.first_key.len() as u64);
        out.extend_from_slice(&page.first_key);
        put_varint(&mut out, page.first_seqno);
        put_varint(&mut out, page.offset);
        put_varint(&mut out, u64::from(page.stored_len));
        put_varint(&mut out, u64::from(page.raw_len));
        put_varint(&mut out, u64::from(page.entries));
    }
    out
}

/// Decodes and validates the index: pages tile `[0, data_end)` in order, their first keys
/// ascend, and no page claims a raw size above `max_raw_len`.
pub(crate) fn decode_index(
    payload: &[u8],
    data_end: u64,
    max_raw_len: u32,
) -> DecodeResult<Vec<PageHandle>> {
    let mut r = Reader::new(payload);
    // Every entry takes at least 6 bytes, which bounds the allocation by the block size.
    let count = r.varint_len("page count", payload.len() / 6)?;
    let mut pages: Vec<PageHandle> = Vec::with_capacity(count);
    let mut expected_offset = 0u64;
    for i in 0..count {
        let key_len = r.varint_len("first key length", MAX_KEY_LEN)?;
        let first_key = Bytes::copy_from_slice(r.bytes(key_len, "first key")?);
        let first_seqno = r.varint("first seqno")?;
        let offset = r.varint("page offset")?;
        let stored_len = r.varint_len("stored length", u32::MAX as usize)? as u32;
        let raw_len = r.varint_len("raw length", max_raw_len as usize)? as u32;
        let entries = r.varint_len("entry count", raw_len as usize)? as u32;
        let bad = |what: String| DecodeError::new(format!("page index entry {i}: {what}"));
        if first_seqno > MAX_SEQNO {
            return Err(bad(format!("seqno {first_seqno} out of range")));
        }
        if offset != expected_offset {
            return Err(bad(format!("offset {offset}, expected {expected_offset}")));
        }
        if entries == 0 || raw_len == 0 {
            return Err(bad("empty page".into()));
        }
        let page = PageHandle {
            first_key,
            first_seqno,
            offset,
            stored_len,
            raw_len,
            entries,
        };
        if page.end() > data_end {
            return Err(bad(format!(
                "page ends at {} past the data end {data_end}",
                page.end()
            )));
        }
        if let Some(prev) = pages.last() {
            if compare_internal(
                &prev.first_key,
                prev.first_seqno,
                &page.first_key,
                page.first_seqno,
            ) != Ordering::Less
            {
                return Err(bad("first keys out of order".into()));
            }
        }
        expected_offset = page.end();
        pages.push(page);
    }
    if expected_offset != data_end {
        return Err(DecodeError::new(format!(
            "pages end at {expected_offset}, data ends at {data_end}"
        )));
    }
    if r.remaining() != 0 {
        return Err(DecodeError::new(format!(
            "{} trailing bytes after the page index",
            r.remaining()
        )));
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(key: &str, offset: u64) -> PageHandle {
        PageHandle {
            first_key: Bytes::copy_from_slice(key.as_bytes()),
            first_seqno: 7,
            offset,
            stored_len: 95,
            raw_len: 120,
            entries: 3,
        }
    }

    /// `PageSearch` against a plain binary search over the handles, for targets around every
    /// first key, with and without a shared prefix, including keys shorter than the prefix and
    /// keys that differ only past the 8 head bytes or in zero padding.
    #[test]
    fn page_search_agrees_with_handles() {
        let key_sets: Vec<Vec<&[u8]>> = vec![
            vec![b"a"],
            vec![b"", b"\0", b"\0\0", b"a"],
            vec![
                b"pre",
                b"pre\0",
                b"pre\0\x01",
                b"prefix",
                b"prefix-0123456789",
                b"prefix-0123456799",
                b"prefiy",
            ],
            vec![
                b"k000000000000001",
                b"k000000000000001x",
                b"k000000000000002",
                b"k000000000000010",
                b"k100",
            ],
        ];
        for keys in key_sets {
            let mut pages = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                // Two pages per key where possible: the versions of a key may span pages.
                for seqno in [9, 4] {
                    let mut page = handle("", (pages.len() * 100) as u64);
                    page.first_key = Bytes::copy_from_slice(key);
                    page.first_seqno = seqno + i as u64;
                    pages.push(page);
                }
            }
            let search = PageSearch::new(&pages);
            let mut targets: Vec<Vec<u8>> = vec![Vec::new(), b"\xff\xff".to_vec()];
            for key in &keys {
                for cut in 0..=key.len() {
                    targets.push(key[..cut].to_vec());
                }
                let mut longer = key.to_vec();
                longer.push(0);
                targets.push(longer.clone());
                longer.push(0xff);
                targets.push(longer);
                if let Some((last, init)) = key.split_last() {
                    let mut bumped = init.to_vec();
                    bumped.push(last.wrapping_add(1));
                    targets.push(bumped);
                }
            }
            for target in &targets {
                for seqno in [u64::MAX, 20, 13, 12, 9, 5, 4, 0] {
                    let expected = pages.partition_point(|p| {
                        compare_internal(&p.first_key, p.first_seqno, target, seqno)
                            != Ordering::Greater
                    });
                    assert_eq!(
                        search.pages_at_or_before(&pages, target, seqno),
                        expected,
                        "target {target:?} seqno {seqno} over {keys:?}"
                    );
                }
            }
        }
        assert_eq!(PageSearch::new(&[]).pages_at_or_before(&[], b"a", 0), 0);
    }

    #[test]
    fn round_trips_and_validates_tiling() {
        let pages = vec![handle("a", 0), handle("b", 100)];
        let bytes = encode_index(&pages);
        assert_eq!(decode_index(&bytes, 200, 1 << 20).unwrap(), pages);
        assert!(
            decode_index(&bytes, 300, 1 << 20).is_err(),
            "gap at the end"
        );
        assert!(
            decode_index(&bytes, 200, 100).is_err(),
            "raw length above the cap"
        );
        let unordered = encode_index(&[handle("b", 0), handle("a", 100)]);
        assert!(decode_index(&unordered, 200, 1 << 20).is_err());
    }
}
