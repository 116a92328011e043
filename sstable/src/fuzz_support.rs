//! Entry points into crate-private decoders, for the fuzz targets (`fuzz/targets`, crate
//! `strata-fuzz`) and nothing else.
//!
//! The data page and block decoders are internal: a run reaches them only through checksummed,
//! index-described blocks, so a fuzzer feeding whole files rarely gets past the checksums. These
//! wrappers let a fuzzer hand bytes straight to the page decoder and to the decompressors. Not a
//! stable API: hidden from the documentation and free to change or vanish with any release.

use bytes::Bytes;

use crate::block::decode_block;
use crate::compression::{decompress, CompressionType};
use crate::entry::EntryKind;
use crate::page::{Page, PageCursor};

/// One decoded page entry: (user key, seqno, kind, value).
pub type PageEntry = (Vec<u8>, u64, EntryKind, Bytes);

/// Parses the raw page `raw` (validating its restart array) and decodes every entry from the
/// first to the last, stopping after `limit` entries.
///
/// # Errors
/// The decoder's description of the first problem found.
pub fn page_entries_forward(raw: Bytes, limit: usize) -> Result<Vec<PageEntry>, String> {
    let page = Page::parse(raw).map_err(|e| e.0)?;
    let mut cursor = PageCursor::new(page);
    cursor.seek_to_first().map_err(|e| e.0)?;
    let mut out = Vec::new();
    while cursor.valid() && out.len() < limit {
        out.push(entry(&cursor));
        cursor.next().map_err(|e| e.0)?;
    }
    Ok(out)
}

/// Parses the raw page `raw` and returns the page offset of every entry, first to last,
/// stopping after `limit` entries. With the restart array (the page's last `4 + 4 * n` bytes)
/// this tells whether every restart points at an entry, which a writer guarantees and the reader
/// does not check (a page's checksum vouches for it).
///
/// # Errors
/// The decoder's description of the first problem found.
pub fn page_entry_offsets(raw: Bytes, limit: usize) -> Result<Vec<usize>, String> {
    let page = Page::parse(raw).map_err(|e| e.0)?;
    let mut cursor = PageCursor::new(page);
    cursor.seek_to_first().map_err(|e| e.0)?;
    let mut out = Vec::new();
    while let Some(pos) = cursor.pos().filter(|_| out.len() < limit) {
        out.push(pos);
        cursor.next().map_err(|e| e.0)?;
    }
    Ok(out)
}

/// Parses the raw page `raw` and decodes entries from the last one backwards (each `prev`
/// re-scans from a restart point), stopping after `limit` entries. Returned in the order visited
/// (last entry first).
///
/// # Errors
/// The decoder's description of the first problem found.
pub fn page_entries_backward(raw: Bytes, limit: usize) -> Result<Vec<PageEntry>, String> {
    let page = Page::parse(raw).map_err(|e| e.0)?;
    let mut cursor = PageCursor::new(page);
    cursor.seek_to_last().map_err(|e| e.0)?;
    let mut out = Vec::new();
    while cursor.valid() && out.len() < limit {
        out.push(entry(&cursor));
        cursor.prev().map_err(|e| e.0)?;
    }
    Ok(out)
}

/// Parses the raw page `raw` and positions a cursor at the first entry at or after
/// (`key`, `seqno`) in internal order, or with `for_prev` at the last entry at or before it.
/// Returns that entry's (key, seqno), or `None` if there is none.
///
/// # Errors
/// The decoder's description of the first problem found.
pub fn page_seek(
    raw: Bytes,
    key: &[u8],
    seqno: u64,
    for_prev: bool,
) -> Result<Option<(Vec<u8>, u64)>, String> {
    let page = Page::parse(raw).map_err(|e| e.0)?;
    let mut cursor = PageCursor::new(page);
    if for_prev {
        cursor.seek_for_prev(key, seqno).map_err(|e| e.0)?;
    } else {
        cursor.seek(key, seqno).map_err(|e| e.0)?;
    }
    Ok(cursor
        .valid()
        .then(|| (cursor.key().to_vec(), cursor.seqno())))
}

/// Decompresses `payload`, stored with compression type byte `type_byte` (0 none, 1 lz4,
/// 2 zstd; anything else is an error), into exactly `raw_len` bytes, as the reader does for a
/// data page whose checksum matched.
///
/// # Errors
/// The decoder's description of the problem.
pub fn decompress_payload(
    type_byte: u8,
    payload: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, String> {
    let kind = CompressionType::from_u8(type_byte)
        .ok_or_else(|| format!("unknown compression type {type_byte}"))?;
    decompress(kind, payload, raw_len).map_err(|e| e.0)
}

/// Checks the trailer (type byte and crc32c) of the stored block `stored` and decompresses it
/// into exactly `raw_len` bytes, as the reader does for a data page.
///
/// # Errors
/// The decoder's description of the problem.
pub fn decode_stored_block(stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    decode_block(stored, raw_len).map_err(|e| e.0)
}

fn entry(cursor: &PageCursor) -> PageEntry {
    (
        cursor.key().to_vec(),
        cursor.seqno(),
        cursor.kind(),
        cursor.value(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::PageBuilder;

    #[test]
    fn forward_backward_and_seek_agree_on_a_built_page() {
        let mut builder = PageBuilder::new(3);
        for i in 0..10u64 {
            builder.add(format!("k{i}").as_bytes(), 5, EntryKind::Put, b"v");
        }
        let raw = Bytes::from(builder.finish());
        let forward = page_entries_forward(raw.clone(), usize::MAX).unwrap();
        let mut backward = page_entries_backward(raw.clone(), usize::MAX).unwrap();
        backward.reverse();
        assert_eq!(forward.len(), 10);
        assert_eq!(forward, backward);
        assert_eq!(
            page_seek(raw.clone(), b"k3", u64::MAX, false).unwrap(),
            Some((b"k3".to_vec(), 5))
        );
        assert_eq!(
            page_seek(raw.clone(), b"k35", 0, true).unwrap(),
            Some((b"k3".to_vec(), 5))
        );
        assert_eq!(page_entries_forward(raw.clone(), 4).unwrap().len(), 4);
        let offsets = page_entry_offsets(raw, usize::MAX).unwrap();
        assert_eq!(offsets.len(), 10);
        assert_eq!(offsets[0], 0);
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert!(decompress_payload(9, b"x", 1).is_err());
        assert_eq!(decompress_payload(0, b"xy", 2).unwrap(), b"xy");
        assert!(decode_stored_block(b"xy", 2).is_err());
    }
}
