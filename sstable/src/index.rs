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
