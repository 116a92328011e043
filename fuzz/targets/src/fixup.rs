//! Checksum repair: makes mutated bytes pass their crc32c checks again, so a fuzzer gets past the
//! checksums to the decoders behind them.
//!
//! libFuzzer cannot solve a crc32c, so nearly every mutation of a checksummed file dies at the
//! first checksum and the decoders behind it (page entries, index records, WAL batches, metadata
//! records) never see hostile bytes. Each target therefore feeds the input twice: as it is (which
//! tests the checksum and framing checks) and after these functions recomputed every checksum
//! they can locate by following the file's framing (which tests everything else). The framing
//! rules come from `sstable/FORMAT.md`, `engine/WAL.md` and `engine/METADATA.md`; where the
//! framing itself is damaged the repair stops, and the decoder sees the damage.

use strata::sstable::{PageHandle, BLOCK_TRAILER_LEN, FOOTER_LEN, RUN_MAGIC};

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn put_u32(data: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = at.checked_add(4).and_then(|end| data.get_mut(at..end)) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
}

/// Recomputes the trailer crc of the block `[offset, offset + len)` (`len` includes the 5-byte
/// trailer: payload, type byte, crc32c of payload and type byte). Out-of-range blocks are left
/// alone.
fn fix_block(data: &mut [u8], offset: u64, len: u64) {
    let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
        return;
    };
    let Some(end) = start.checked_add(len).filter(|&end| end <= data.len()) else {
        return;
    };
    if len < BLOCK_TRAILER_LEN {
        return;
    }
    let crc_at = end - 4;
    let crc = crc32c::crc32c(&data[start..crc_at]);
    put_u32(data, crc_at, crc);
}

/// Repairs the footer crc and the crcs of the index, bloom and properties blocks of a run file,
/// as far as the footer locates them. `None` if the bytes do not end in a run footer (no magic).
pub(crate) fn run_metadata(data: &[u8]) -> Option<Vec<u8>> {
    let footer_at = data.len().checked_sub(FOOTER_LEN)?;
    if le_u64(data, footer_at + 56)? != RUN_MAGIC {
        return None;
    }
    let mut out = data.to_vec();
    let crc = crc32c::crc32c(&out[footer_at..footer_at + 52]);
    put_u32(&mut out, footer_at + 52, crc);
    for block in 0..3 {
        let offset = le_u64(&out, footer_at + 16 * block)?;
        let len = le_u64(&out, footer_at + 16 * block + 8)?;
        fix_block(&mut out, offset, len);
    }
    Some(out)
}

/// Repairs the crc of every data page the (already decoded) index `pages` locates.
pub(crate) fn run_pages(data: &mut [u8], pages: &[PageHandle]) {
    for page in pages {
        fix_block(
            data,
            page.offset,
            u64::from(page.stored_len) + BLOCK_TRAILER_LEN as u64,
        );
    }
}

/// WAL segment layout (engine/WAL.md): a 24-byte header (magic, version, id, crc of bytes
/// 0..20), then records of `crc | len u32 | type u8 | last seqno u64 | payload`, each crc seeded
/// with the crc32c of the segment id.
const WAL_HEADER_LEN: usize = 24;
const WAL_RECORD_HEADER_LEN: usize = 17;

/// The segment id a WAL segment's header claims, if the header is long enough to hold one.
pub(crate) fn wal_segment_id(data: &[u8]) -> Option<u64> {
    if data.get(..8)? != b"STRATWAL" {
        return None;
    }
    le_u64(data, 12)
}

/// Repairs the header crc and the crc of every record of a WAL segment, following record
/// lengths from the start until one runs past the end (or is zero).
pub(crate) fn wal_segment(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.len() < WAL_HEADER_LEN {
        return out;
    }
    let crc = crc32c::crc32c(&out[..20]);
    put_u32(&mut out, 20, crc);
    let id = le_u64(&out, 12).unwrap_or(0);
    let seed = crc32c::crc32c(&id.to_le_bytes());
    let mut at = WAL_HEADER_LEN;
    while let Some(len) = le_u32(&out, at + 4) {
        let Some(end) = (at + WAL_RECORD_HEADER_LEN)
            .checked_add(len as usize)
            .filter(|&end| len > 0 && end <= out.len())
        else {
            break;
        };
        let crc = crc32c::crc32c_append(seed, &out[at + 4..end]);
        put_u32(&mut out, at, crc);
        at = end;
    }
    out
}

/// Metadata log layout (engine/METADATA.md): a 16-byte header (magic, version, crc of bytes
/// 0..12), then frames of `crc | len u32 | payload`, the crc covering length and payload.
const META_HEADER_LEN: usize = 16;
const META_FRAME_HEADER_LEN: usize = 8;

/// Repairs the header crc and the crc of every frame of a metadata log, following frame
/// lengths from the start until one runs past the end (or is zero).
pub(crate) fn meta_log(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.len() < META_HEADER_LEN {
        return out;
    }
    let crc = crc32c::crc32c(&out[..12]);
    put_u32(&mut out, 12, crc);
    let mut at = META_HEADER_LEN;
    while let Some(len) = le_u32(&out, at + 4) {
        let Some(end) = (at + META_FRAME_HEADER_LEN)
            .checked_add(len as usize)
            .filter(|&end| len > 0 && end <= out.len())
        else {
            break;
        };
        let crc = crc32c::crc32c(&out[at + 4..end]);
        put_u32(&mut out, at, crc);
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_a_flipped_meta_frame_and_leaves_valid_bytes_alone() {
        let payload = b"\x90"; // an empty MessagePack array
        let mut log = b"STRATMET\x01\x00\x00\x00".to_vec();
        let crc = crc32c::crc32c(&log);
        log.extend_from_slice(&crc.to_le_bytes());
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(payload);
        log.extend_from_slice(&crc32c::crc32c(&frame).to_le_bytes());
        log.extend_from_slice(&frame);
        assert_eq!(meta_log(&log), log);
        let mut damaged = log.clone();
        damaged[16] ^= 0xff;
        damaged[12] ^= 0x01;
        assert_eq!(meta_log(&damaged), log);
    }

    #[test]
    fn wal_repair_follows_record_lengths() {
        let id = 7u64;
        let mut seg = b"STRATWAL\x01\x00\x00\x00".to_vec();
        seg.extend_from_slice(&id.to_le_bytes());
        let crc = crc32c::crc32c(&seg);
        seg.extend_from_slice(&crc.to_le_bytes());
        let mut record = vec![0u8; 4];
        record.extend_from_slice(&3u32.to_le_bytes());
        record.push(1);
        record.extend_from_slice(&9u64.to_le_bytes());
        record.extend_from_slice(b"abc");
        let seed = crc32c::crc32c(&id.to_le_bytes());
        let crc = crc32c::crc32c_append(seed, &record[4..]);
        record[..4].copy_from_slice(&crc.to_le_bytes());
        seg.extend_from_slice(&record);
        assert_eq!(wal_segment(&seg), seg);
        assert_eq!(wal_segment_id(&seg), Some(7));
        let mut damaged = seg.clone();
        damaged[24] ^= 0x10;
        assert_eq!(wal_segment(&damaged), seg);
        assert_eq!(wal_segment(&seg[..30]), seg[..30].to_vec());
    }
}
