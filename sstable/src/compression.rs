//! Page compression: none, lz4 or zstd, chosen per run.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DecodeResult, Error};

/// How a run's data pages are compressed.
///
/// A page that does not shrink by at least 1/8 is stored raw whatever this says, so
/// incompressible data costs no CPU on reads. RocksDB equivalent: `compression` (lz4) and
/// `compression_opts.level` (zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Compression {
    /// Pages are stored as they are.
    None,
    /// LZ4 block format (`lz4_flex`): fast, modest ratio. The default for dumps.
    #[default]
    Lz4,
    /// Zstandard at the given level (1..=22; 3 is zstd's default): slower, better ratio. A good
    /// choice for compacted runs, which are written once and read many times.
    Zstd {
        /// Compression level, 1..=22.
        level: i32,
    },
}

/// The compression byte stored in every block trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CompressionType {
    None = 0,
    Lz4 = 1,
    Zstd = 2,
}

impl CompressionType {
    pub(crate) fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(CompressionType::None),
            1 => Some(CompressionType::Lz4),
            2 => Some(CompressionType::Zstd),
            _ => None,
        }
    }
}

impl Compression {
    /// Checks the level range.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a zstd level outside 1..=22.
    pub fn validate(self) -> Result<(), Error> {
        match self {
            Compression::Zstd { level } if !(1..=22).contains(&level) => Err(Error::InvalidOption(
                format!("zstd level {level} is outside 1..=22"),
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// Parses `none`, `lz4`, `zstd` (level 3) or `zstd:LEVEL`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let parsed = match text {
            "none" => Compression::None,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd { level: 3 },
            _ => match text.strip_prefix("zstd:").map(str::parse::<i32>) {
                Some(Ok(level)) => Compression::Zstd { level },
                _ => {
                    return Err(Error::InvalidOption(format!(
                        "unknown compression {text:?} (expected none, lz4, zstd or zstd:LEVEL)"
                    )))
                }
            },
        };
        parsed.validate()?;
        Ok(parsed)
    }
}

/// Reusable compression state for one writer.
pub(crate) struct Compressor {
    kind: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl Compressor {
    pub(crate) fn new(kind: Compression) -> Result<Self, Error> {
        kind.validate()?;
        let zstd = match kind {
            Compression::Zstd { level } => Some(
                zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::InvalidOption(format!("zstd level {level}: {e}")))?,
            ),
            _ => None,
        };
        Ok(Compressor { kind, zstd })
    }

    /// Compresses `raw`; returns `None` when the result would not be at least 1/8 smaller, in
    /// which case the caller stores the page raw.
    pub(crate) fn compress(&mut self, raw: &[u8]) -> Option<(CompressionType, Vec<u8>)> {
        let limit = raw.len() - raw.len() / 8;
        let (kind, out) = match (self.kind, self.zstd.as_mut()) {
            (Compression::None, _) => return None,
            (Compression::Lz4, _) => (CompressionType::Lz4, lz4_flex::block::compress(raw)),
            (Compression::Zstd { .. }, Some(zstd)) => {
                (CompressionType::Zstd, zstd.compress(raw).ok()?)
            }
            (Compression::Zstd { .. }, None) => return None,
        };
        (out.len() < limit).then_some((kind, out))
    }
}

thread_local! {
    // A zstd decompression context is ~100 KiB of tables; keep one per reading thread.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Decompresses a stored payload into exactly `raw_len` bytes.
///
/// `raw_len` comes from the checksummed page index and is bounded by the caller, so the
/// allocation here is bounded too.
pub(crate) fn decompress(
    kind: CompressionType,
    stored: &[u8],
    raw_len: usize,
) -> DecodeResult<Vec<u8>> {
    // LZ4 cannot expand more than 255:1, so a larger claim is damage; refusing it keeps a
    // hostile length from turning into a large allocation. (zstd legitimately reaches far higher
    // ratios; its claims are bounded by the format's page-size limit instead.)
    if kind == CompressionType::Lz4 && raw_len > stored.len().saturating_mul(255).saturating_add(16)
    {
        return Err(DecodeError::new(format!(
            "lz4 page of {} bytes cannot expand to {raw_len}",
            stored.len()
        )));
    }
    match kind {
        CompressionType::None => {
            if stored.len() != raw_len {
                return Err(DecodeError::new(format!(
                    "raw page is {} bytes, index says {raw_len}",
                    stored.len()
                )));
            }
            Ok(stored.to_vec())
        }
        CompressionType::Lz4 => {
            let mut out = vec![0; raw_len];
            match lz4_flex::block::decompress_into(stored, &mut out) {
                Ok(n) if n == raw_len => Ok(out),
                Ok(n) => Err(DecodeError::new(format!(
                    "lz4 page decompressed to {n} bytes, expected {raw_len}"
                ))),
                Err(e) => Err(DecodeError::new(format!(
                    "lz4 page does not decompress: {e}"
                ))),
            }
        }
        CompressionType::Zstd => ZSTD_DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                let ctx = zstd::bulk::Decompressor::new()
                    .map_err(|e| DecodeError::new(format!("zstd context: {e}")))?;
                *slot = Some(ctx);
            }
            let Some(ctx) = slot.as_mut() else {
                return Err(DecodeError::new("zstd context unavailable"));
            };
            let mut out = Vec::with_capacity(raw_len);
            match ctx.decompress_to_buffer(stored, &mut out) {
                Ok(n) if n == raw_len => Ok(out),
                Ok(n) => Err(DecodeError::new(format!(
                    "zstd page decompressed to {n} bytes, expected {raw_len}"
                ))),
                Err(e) => Err(DecodeError::new(format!(
                    "zstd page does not decompress: {e}"
                ))),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for text in ["none", "lz4", "zstd:3", "zstd:19"] {
            assert_eq!(
                text.parse::<Compression>()
                    .map(|c| c.to_string())
                    .ok()
                    .as_deref(),
                Some(text)
            );
        }
        assert!("zstd:0".parse::<Compression>().is_err());
        assert!("snappy".parse::<Compression>().is_err());
    }

    #[test]
    fn compressible_data_round_trips() {
        let raw: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        for kind in [Compression::Lz4, Compression::Zstd { level: 3 }] {
            let mut c = Compressor::new(kind).unwrap();
            let (ty, stored) = c.compress(&raw).expect("compressible");
            assert_eq!(decompress(ty, &stored, raw.len()).unwrap(), raw);
            assert!(decompress(ty, &stored, raw.len() + 1).is_err());
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let mut state = 0x1234_5678u32;
        let raw: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let mut c = Compressor::new(Compression::Lz4).unwrap();
        assert!(c.compress(&raw).is_none());
    }
}
