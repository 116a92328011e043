//! Block framing: every stored structure (data page, index, bloom, properties) is
//! `payload ++ compression type (1 byte) ++ crc32c (4 bytes LE)`, the checksum covering payload
//! and type byte.

use crate::coding::read_u32_le;
use crate::compression::{decompress, CompressionType};
use crate::error::{DecodeError, DecodeResult};

/// Bytes after every block's payload: compression type and crc32c.
pub const BLOCK_TRAILER_LEN: usize = 5;

/// Appends `payload` framed with its trailer to `out`.
pub(crate) fn frame_block(out: &mut Vec<u8>, payload: &[u8], kind: CompressionType) {
    out.extend_from_slice(payload);
    out.push(kind as u8);
    let crc = crc32c::crc32c_append(crc32c::crc32c(payload), &[kind as u8]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks the trailer of a stored block and returns (payload, compression type).
pub(crate) fn check_block(stored: &[u8]) -> DecodeResult<(&[u8], CompressionType)> {
    let Some(payload_len) = stored.len().checked_sub(BLOCK_TRAILER_LEN) else {
        return Err(DecodeError::new(format!(
            "block of {} bytes is shorter than its trailer",
            stored.len()
        )));
    };
    let (payload, trailer) = stored.split_at(payload_len);
    let type_byte = trailer[0];
    let stored_crc = read_u32_le(trailer, 1).unwrap_or(0);
    let actual_crc = crc32c::crc32c_append(crc32c::crc32c(payload), &[type_byte]);
    if stored_crc != actual_crc {
        return Err(DecodeError::new(format!(
            "block checksum mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}"
        )));
    }
    let kind = CompressionType::from_u8(type_byte)
        .ok_or_else(|| DecodeError::new(format!("unknown compression type {type_byte}")))?;
    Ok((payload, kind))
}

/// Checks and decompresses a stored block into `raw_len` bytes.
pub(crate) fn decode_block(stored: &[u8], raw_len: usize) -> DecodeResult<Vec<u8>> {
    let (payload, kind) = check_block(stored)?;
    decompress(kind, payload, raw_len)
}

/// Checks an uncompressed block (index, bloom, properties) and returns its payload.
pub(crate) fn decode_plain_block(stored: &[u8]) -> DecodeResult<&[u8]> {
    match check_block(stored)? {
        (payload, CompressionType::None) => Ok(payload),
        (_, kind) => Err(DecodeError::new(format!(
            "metadata block has compression type {}",
            kind as u8
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_detects_flips() {
        let mut stored = Vec::new();
        frame_block(&mut stored, b"hello", CompressionType::None);
        assert_eq!(decode_plain_block(&stored).unwrap(), b"hello");
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 1;
            assert!(decode_plain_block(&bad).is_err(), "flip at {i} undetected");
        }
        assert!(check_block(&stored[..3]).is_err());
    }
}
