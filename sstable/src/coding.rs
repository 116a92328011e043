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

/// Decodes the varint at `bytes[pos..]` from one unaligned 8-byte load: (value, length in
/// bytes). `None` when fewer than 8 bytes remain from `pos` or the varint is longer than 8 bytes
/// (9 and 10 are legal); [`Reader::varint`] then decodes it, or says what is wrong with it. Any
/// varint this returns decodes to the same value there.
#[inline(always)]
pub(crate) fn varint_fast(bytes: &[u8], pos: usize) -> Option<(u64, usize)> {
    let window = bytes.get(pos..pos.checked_add(8)?)?;
    let word = u64::from_le_bytes(<[u8; 8]>::try_from(window).ok()?);
    // Lengths and small numbers take one byte.
    if word & 0x80 == 0 {
        return Some((word & 0x7f, 1));
    }
    // The lowest byte with its continuation bit clear ends the varint.
    let stops = !word & 0x8080_8080_8080_8080;
    if stops == 0 {
        return None;
    }
    let len = stops.trailing_zeros() as usize / 8 + 1;
    let groups = word & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
    // Squeeze the 7-bit groups together: pairs of bytes, then of 14-bit, then 28-bit groups.
    let x = (groups & 0x007f_007f_007f_007f) | ((groups & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    let x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
    Some((x, len))
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
        self.varint_multi(what)
    }

    /// Varints of 2..=8 bytes (the trailer of every entry: `seqno << 8 | kind` is 2 bytes from
    /// seqno 64 and 5 bytes from seqno 2^20) from one unaligned 8-byte load, without a loop.
    /// Falls back to the byte-at-a-time decoder near the end of the slice and for 9- and
    /// 10-byte varints, so truncation and overflow are reported exactly as before.
    #[inline]
    fn varint_multi(&mut self, what: &str) -> DecodeResult<u64> {
        match varint_fast(self.bytes, self.pos) {
            Some((value, len)) => {
                self.pos += len;
                Ok(value)
            }
            None => self.varint_slow(what),
        }
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
    #[inline]
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
    fn fast_and_slow_varint_paths_agree() {
        // Every length from 1 to 10 bytes, decoded with 0..=9 bytes of slack after it (so both
        // the 8-byte-load path and the byte-at-a-time path run), then followed by a marker.
        let mut values: Vec<u64> = (0..64)
            .flat_map(|bit| [1u64 << bit, (1u64 << bit) - 1])
            .collect();
        values.extend([u64::MAX, 0x0123_4567_89ab_cdef, 0x7f, 0x80, 0x3fff, 0x4000]);
        for value in values {
            for slack in 0..10 {
                let mut buf = Vec::new();
                put_varint(&mut buf, value);
                let len = buf.len();
                buf.extend(std::iter::repeat_n(0xaa, slack));
                let mut r = Reader::new(&buf);
                assert_eq!(
                    r.varint("v"),
                    Ok(value),
                    "{value:#x} with {slack} bytes after"
                );
                assert_eq!(r.pos(), len);
            }
        }
        // Non-minimal encodings decode as before (FORMAT.md accepts them).
        assert_eq!(
            Reader::new(&[0x80, 0x80, 0x00, 0, 0, 0, 0, 0, 0]).varint("v"),
            Ok(0)
        );
        // A truncated varint with 8 readable bytes of continuation bits still fails.
        assert!(Reader::new(&[0xff; 8]).varint("v").is_err());
        assert!(Reader::new(&[0xff; 9]).varint("v").is_err());
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
