//! Bounds-checked little-endian and LEB128 varint coding.
//!
//! Every reader here takes a slice and a cursor and fails with a [`DecodeError`] instead of
//! slicing past the end, so hostile bytes can never panic a decoder.

use crate::error::{DecodeError, DecodeResult};

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

pub(crate) fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// A cursor over a byte slice whose every read is checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Self {
        Reader { bytes, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    #[inline]
    pub(crate) fn varint(&mut self, what: &str) -> DecodeResult<u64> {
        // Most varints in a page (lengths, small seqnos) are one byte.
        if let Some(&byte) = self.bytes.get(self.pos) {
            if byte < 0x80 {
                self.pos += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_slow(what)
    }

    #[cold]
    fn varint_slow(&mut self, what: &str) -> DecodeResult<u64> {
        let mut result: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(DecodeError::new(format!(
                    "{what}: varint runs past the end at {}",
                    self.pos
                )));
            };
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::new(format!(
                    "{what}: varint overflows 64 bits"
                )));
            }
            result |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(result);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::new(format!(
                    "{what}: varint longer than 10 bytes"
                )));
            }
        }
    }

    /// A varint that must fit in `usize` and be at most `max`.
    pub(crate) fn varint_len(&mut self, what: &str, max: usize) -> DecodeResult<usize> {
        let value = self.varint(what)?;
        match usize::try_from(value) {
            Ok(len) if len <= max => Ok(len),
            _ => Err(DecodeError::new(format!(
                "{what}: {value} exceeds the limit {max}"
            ))),
        }
    }

    pub(crate) fn bytes(&mut self, len: usize, what: &str) -> DecodeResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(DecodeError::new(format!(
                "{what}: {len} bytes at {} run past the end ({})",
                self.pos,
                self.bytes.len()
            )));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
}

pub(crate) fn read_u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

pub(crate) fn read_u64_le(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value));
            assert_eq!(Reader::new(&buf).varint("v"), Ok(value));
        }
    }

    #[test]
    fn varint_rejects_truncation_and_overflow() {
        assert!(Reader::new(&[0x80]).varint("v").is_err());
        assert!(Reader::new(&[0xff; 11]).varint("v").is_err());
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert!(Reader::new(&too_big).varint("v").is_err());
    }

    #[test]
    fn bytes_checks_bounds() {
        let data = [1, 2, 3];
        let mut r = Reader::new(&data);
        assert_eq!(r.bytes(2, "b"), Ok(&data[..2]));
        assert!(r.bytes(2, "b").is_err());
        assert!(Reader::new(&data).bytes(usize::MAX, "b").is_err());
    }
}
