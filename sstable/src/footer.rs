//! The fixed-size footer at the end of every run file.

use crate::coding::{read_u32_le, read_u64_le};
use crate::error::{DecodeError, DecodeResult};

/// Footer length in bytes.
pub const FOOTER_LEN: usize = 64;

/// The last 8 bytes of every run file: `STRATRUN` read as a little-endian u64.
pub const RUN_MAGIC: u64 = u64::from_le_bytes(*b"STRATRUN");

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Location and length (trailer included) of one metadata block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// File offset.
    pub offset: u64,
    /// Stored length, trailer included; 0 for an absent block (the bloom filter only).
    pub len: u64,
}

impl BlockHandle {
    /// The offset just past the block.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The page index block.
    pub index: BlockHandle,
    /// The bloom filter block (`len == 0`: no filter).
    pub bloom: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
    /// Format version of the file.
    pub format_version: u32,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        let fields = [
            self.index.offset,
            self.index.len,
            self.bloom.offset,
            self.bloom.len,
            self.properties.offset,
            self.properties.len,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&field.to_le_bytes());
        }
        out[48..52].copy_from_slice(&self.format_version.to_le_bytes());
        let crc = crc32c::crc32c(&out[..52]);
        out[52..56].copy_from_slice(&crc.to_le_bytes());
        out[56..64].copy_from_slice(&RUN_MAGIC.to_le_bytes());
        out
    }

    /// Decodes a footer: magic first (so a foreign file says so), then checksum, then version.
    /// The version check is the caller's, so it can report it distinctly.
    pub(crate) fn decode(bytes: &[u8]) -> DecodeResult<Footer> {
        if bytes.len() != FOOTER_LEN {
            return Err(DecodeError::new(format!(
                "footer is {} bytes, expected {FOOTER_LEN}",
                bytes.len()
            )));
        }
        let field = |i: usize| read_u64_le(bytes, i * 8).unwrap_or(0);
        let magic = field(7);
        if magic != RUN_MAGIC {
            return Err(DecodeError::new(format!(
                "bad magic {magic:#018x}: not a strata run file"
            )));
        }
        let stored_crc = read_u32_le(bytes, 52).unwrap_or(0);
        let actual_crc = crc32c::crc32c(&bytes[..52]);
        if stored_crc != actual_crc {
            return Err(DecodeError::new(format!(
                "footer checksum mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}"
            )));
        }
        Ok(Footer {
            index: BlockHandle {
                offset: field(0),
                len: field(1),
            },
            bloom: BlockHandle {
                offset: field(2),
                len: field(3),
            },
            properties: BlockHandle {
                offset: field(4),
                len: field(5),
            },
            format_version: read_u32_le(bytes, 48).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let footer = Footer {
            index: BlockHandle {
                offset: 100,
                len: 20,
            },
            bloom: BlockHandle {
                offset: 120,
                len: 0,
            },
            properties: BlockHandle {
                offset: 120,
                len: 50,
            },
            format_version: FORMAT_VERSION,
        };
        let bytes = footer.encode();
        assert_eq!(Footer::decode(&bytes).unwrap(), footer);
        for i in 0..FOOTER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x80;
            assert!(Footer::decode(&bad).is_err(), "flip at {i} undetected");
        }
    }
}
