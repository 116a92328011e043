//! Thin wrappers over crate-private page code, for benchmarks only (`strata-benches`).
//!
//! For benchmarks; not a stable API. Hidden from the documentation and free to change or vanish
//! with any release.

use bytes::Bytes;

use crate::entry::EntryKind;
use crate::page::{Page, PageBuilder, PageCursor};

/// Builds one raw (uncompressed, unframed) data page holding `entries`, given as (key, seqno,
/// kind, value) in internal order, with a restart point every `restart_interval` entries.
///
/// For benchmarks; not a stable API. Neither order nor size limits are checked, as with the
/// writer's internal page builder.
pub fn encode_page(
    entries: &[(Vec<u8>, u64, EntryKind, Vec<u8>)],
    restart_interval: usize,
) -> Vec<u8> {
    let mut builder = PageBuilder::new(restart_interval);
    for (key, seqno, kind, value) in entries {
        builder.add(key, *seqno, *kind, value);
    }
    builder.finish()
}

/// Parses the raw page `raw` (validating its restart array) and walks every entry forward with a
/// page cursor, returning how many there were.
///
/// For benchmarks; not a stable API.
///
/// # Errors
/// The decoder's description of the first problem found.
pub fn decode_page_all(raw: Bytes) -> Result<usize, String> {
    let page = Page::parse(raw).map_err(|e| e.0)?;
    let mut cursor = PageCursor::new(page);
    cursor.seek_to_first().map_err(|e| e.0)?;
    let mut count = 0;
    while cursor.valid() {
        count += 1;
        cursor.next().map_err(|e| e.0)?;
    }
    Ok(count)
}

/// Parses the raw page `raw` and seeks its cursor to the newest version of `key` (the first entry
/// at or after (`key`, `u64::MAX`) in internal order). True if the cursor ends up on an entry,
/// false if every entry sorts before the target.
///
/// For benchmarks; not a stable API.
///
/// # Errors
/// The decoder's description of the first problem found.
pub fn seek_page(raw: Bytes, key: &[u8]) -> Result<bool, String> {
    let page = Page::parse(raw).map_err(|e| e.0)?;
    let mut cursor = PageCursor::new(page);
    cursor.seek(key, u64::MAX).map_err(|e| e.0)?;
    Ok(cursor.valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_seeks() {
        let entries: Vec<_> = (0..50u32)
            .map(|i| {
                (
                    format!("key{i:04}").into_bytes(),
                    7,
                    EntryKind::Put,
                    vec![b'v'; 10],
                )
            })
            .collect();
        let raw = Bytes::from(encode_page(&entries, 16));
        assert_eq!(decode_page_all(raw.clone()), Ok(50));
        assert_eq!(seek_page(raw.clone(), b"key0025"), Ok(true));
        assert_eq!(seek_page(raw.clone(), b"key0049x"), Ok(false));
        assert!(decode_page_all(Bytes::from_static(&[0, 0, 0, 0])).is_err());
    }
}
