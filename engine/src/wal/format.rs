//! The byte layout of a WAL segment: the segment header, the record framing and the checksums.
//!
//! `engine/WAL.md` describes every byte; this module is the authority. If the two disagree, one of
//! them has a bug.

use std::path::Path;

use crate::error::{Error, Result};

/// The first eight bytes of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"STRATWAL";

/// The segment format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Length of the segment header: magic (8), version (4), segment id (8), crc32c (4).
pub(crate) const SEGMENT_HEADER_LEN: usize = 24;

/// Length of a record header: crc32c (4), payload length (4), type (1), last seqno (8).
pub(crate) const RECORD_HEADER_LEN: usize = 17;

/// The largest payload a record may carry (1 GiB). Longer lengths are rejected by the writer and
/// read as damage by the reader.
pub(crate) const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// Record type of a record that carries one whole payload, the only type of format version 1.
///
/// `0` is never a valid type, so that zeroed bytes never decode as a record. `2..=255` are
/// reserved, e.g. for fragments of a payload split across records (first, middle, last, as in
/// LevelDB's log format). Adding a type requires a new [`FORMAT_VERSION`]: a version-1 reader
/// treats an unknown type as damage, and damage at the end of the last segment is dropped as a
/// torn tail.
pub(crate) const RECORD_TYPE_FULL: u8 = 1;

/// The crc32c seed of records in segment `segment_id`: the crc32c of the id's 8 little-endian
/// bytes. Every record crc starts from it, so a record written into one segment never validates
/// in a segment with another id (distinct seeds make the crcs of the same bytes differ).
pub(crate) fn record_seed(segment_id: u64) -> u32 {
    crc32c::crc32c(&segment_id.to_le_bytes())
}

/// Encodes the segment header of segment `segment_id`.
pub(crate) fn encode_segment_header(segment_id: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&segment_id.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..20]);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the segment header at the start of `data` and that it names `segment_id`.
///
/// # Errors
/// [`Error::Corruption`] for a short file, wrong magic, a crc mismatch or a segment id that differs
/// from `segment_id` (offset 0, or 12 for the id); [`Error::UnsupportedVersion`] for another
/// format version.
pub(crate) fn check_segment_header(path: &Path, data: &[u8], segment_id: u64) -> Result<()> {
    let Some(header) = data.get(..SEGMENT_HEADER_LEN) else {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "segment of {} bytes is shorter than its {SEGMENT_HEADER_LEN}-byte header",
                data.len()
            ),
        ));
    };
    if header[0..8] != MAGIC {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "bad magic {:02x?}, expected {:02x?} (\"STRATWAL\")",
                &header[0..8],
                MAGIC
            ),
        ));
    }
    let version = le_u32(&header[8..12]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    let stored = le_u32(&header[20..24]);
    let computed = crc32c::crc32c(&header[0..20]);
    if stored != computed {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "segment header crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        ));
    }
    let id = le_u64(&header[12..20]);
    if id != segment_id {
        return Err(Error::corruption(
            path,
            12,
            format!(
                "segment header names segment {id} but the file name says {segment_id} \
                 (a renamed or misplaced segment)"
            ),
        ));
    }
    Ok(())
}

/// Appends one framed record (header then payload) to `out`.
///
/// The caller has checked that `1 <= payload.len() <= MAX_PAYLOAD_LEN`.
pub(crate) fn encode_record(out: &mut Vec<u8>, seed: u32, payload: &[u8], last_seqno: u64) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    // The length fits: callers reject payloads longer than MAX_PAYLOAD_LEN (< u32::MAX).
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(RECORD_TYPE_FULL);
    out.extend_from_slice(&last_seqno.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(seed, &out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record decoded from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodedRecord {
    /// Where the payload starts.
    pub(crate) payload_start: usize,
    /// Where the record (and its payload) ends.
    pub(crate) end: usize,
    /// The last seqno stored in the record header.
    pub(crate) last_seqno: u64,
}

/// Decodes the record starting at `offset` of `data`, or says what is wrong with it.
///
/// Checks, in order: a whole header is present, the length is in `1..=MAX_PAYLOAD_LEN`, the
/// payload is present, the crc matches, the type is known. Reads nothing outside `data`.
pub(crate) fn decode_record(
    data: &[u8],
    offset: usize,
    seed: u32,
) -> std::result::Result<DecodedRecord, String> {
    let available = data.len().saturating_sub(offset);
    if available < RECORD_HEADER_LEN {
        return Err(format!(
            "truncated record header ({available} of {RECORD_HEADER_LEN} bytes present)"
        ));
    }
    let header = &data[offset..offset + RECORD_HEADER_LEN];
    let stored = le_u32(&header[0..4]);
    let len = le_u32(&header[4..8]) as usize;
    let kind = header[8];
    let last_seqno = le_u64(&header[9..17]);
    if len == 0 {
        return Err("record payload length 0 is invalid".to_string());
    }
    if len > MAX_PAYLOAD_LEN {
        return Err(format!(
            "record payload length {len} exceeds the limit of {MAX_PAYLOAD_LEN} bytes"
        ));
    }
    let payload_start = offset + RECORD_HEADER_LEN;
    let remaining = data.len() - payload_start;
    if len > remaining {
        return Err(format!(
            "record payload of {len} bytes runs past the end of the segment \
             ({remaining} bytes present)"
        ));
    }
    let end = payload_start + len;
    let computed = crc32c::crc32c_append(seed, &data[offset + 4..end]);
    if stored != computed {
        return Err(format!(
            "record crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if kind != RECORD_TYPE_FULL {
        return Err(format!(
            "unknown record type {kind} (this build reads type {RECORD_TYPE_FULL})"
        ));
    }
    Ok(DecodedRecord {
        payload_start,
        end,
        last_seqno,
    })
}

/// Finds the first offset `>= from` where a record of type [`RECORD_TYPE_FULL`] validates, in
/// time linear in the bytes scanned.
///
/// A naive scan computes a crc over each candidate's payload, which is quadratic when many
/// offsets look like headers of long records (a torn record whose payload repeats `01 00 10 00`
/// makes every fourth offset a candidate). Instead, candidates whose type or length is impossible,
/// or whose length runs past the end, are rejected before any crc, and a surviving candidate's
/// crc is derived from prefix crcs in constant time (see [`PrefixCrcs`]).
pub(crate) struct Resync<'a> {
    data: &'a [u8],
    seed: u32,
    prefix: PrefixCrcs<'a>,
}

impl<'a> Resync<'a> {
    /// Prepares to scan `data` (one pass over it) for records seeded with `seed`.
    pub(crate) fn new(data: &'a [u8], seed: u32) -> Self {
        Resync {
            data,
            seed,
            prefix: PrefixCrcs::new(data),
        }
    }

    /// The first offset `>= from` where a whole record validates, if any.
    pub(crate) fn next_valid(&self, from: usize) -> Option<usize> {
        let data = self.data;
        let last_start = data.len().checked_sub(RECORD_HEADER_LEN)?;
        let mut p = from;
        while p <= last_start {
            if data[p + 8] == RECORD_TYPE_FULL {
                let len = le_u32(&data[p + 4..p + 8]) as usize;
                let end = (p + RECORD_HEADER_LEN).saturating_add(len);
                if len != 0 && len <= MAX_PAYLOAD_LEN && end <= data.len() {
                    let stored = le_u32(&data[p..p + 4]);
                    let covered = p + 4;
                    // crc(seed, data[covered..end]) from the prefix crcs of `covered` and `end`.
                    let computed = shift(self.seed ^ self.prefix.at(covered), end - covered)
                        ^ self.prefix.at(end);
                    if computed == stored {
                        return Some(p);
                    }
                }
            }
            p += 1;
        }
        None
    }
}

/// Distance between stored prefix crcs.
const PREFIX_STRIDE: usize = 512;

/// Prefix crcs of a buffer: `at(i) = crc32c(data[..i])`, computed from a checkpoint every
/// [`PREFIX_STRIDE`] bytes (memory: 4 bytes per stride) plus at most one stride of crc.
///
/// With them, the crc of any range seeded with any crc is
/// `crc32c_append(seed, data[a..b]) = shift(seed ^ at(a), b - a) ^ at(b)`: crc32c is affine, and
/// `shift(c, n)` (the effect of `n` bytes on a crc) is linear, so the init and xorout constants
/// cancel.
struct PrefixCrcs<'a> {
    data: &'a [u8],
    checkpoints: Vec<u32>,
}

impl<'a> PrefixCrcs<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut checkpoints = Vec::with_capacity(data.len() / PREFIX_STRIDE + 1);
        let mut crc = 0;
        checkpoints.push(crc);
        for chunk in data.chunks_exact(PREFIX_STRIDE) {
            crc = crc32c::crc32c_append(crc, chunk);
            checkpoints.push(crc);
        }
        PrefixCrcs { data, checkpoints }
    }

    /// `crc32c(data[..i])`; `i <= data.len()`.
    fn at(&self, i: usize) -> u32 {
        let k = i / PREFIX_STRIDE;
        let base = self.checkpoints.get(k).copied().unwrap_or(0);
        crc32c::crc32c_append(base, &self.data[k * PREFIX_STRIDE..i])
    }
}

/// The reflected CRC-32C polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `a * b mod P` for polynomials in the reflected representation (bit 31 is `x^0`).
const fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(8 * v * 256^k) mod P` for each byte position `k` of a length and byte value `v`.
static SHIFT_TABLES: [[u32; 256]; 4] = shift_tables();

const fn shift_tables() -> [[u32; 256]; 4] {
    let mut tables = [[0u32; 256]; 4];
    // x^8 (one zero byte) is bit 31 - 8.
    let mut base: u32 = 1 << (31 - 8);
    let mut k = 0;
    while k < 4 {
        let mut power: u32 = 1 << 31; // x^0
        let mut v = 0;
        while v < 256 {
            tables[k][v] = power;
            power = mul_mod_p(power, base);
            v += 1;
        }
        // The next byte position: base^256.
        base = power;
        k += 1;
    }
    tables
}

/// The linear part of appending `n` bytes to a crc: `crc32c_combine(crc, 0, n)`, that is `crc`
/// times `x^(8n)` modulo the polynomial. At most four multiplications for `n < 2^32`.
pub(crate) fn shift(crc: u32, n: usize) -> u32 {
    let n = n as u64;
    if n >> 32 != 0 {
        return mul_mod_p(x_pow_8n(n), crc);
    }
    let mut crc = crc;
    for (k, table) in SHIFT_TABLES.iter().enumerate() {
        let byte = ((n >> (8 * k)) & 0xff) as usize;
        if byte != 0 {
            crc = mul_mod_p(table[byte], crc);
        }
    }
    crc
}

/// `x^(8n) mod P` by square-and-multiply (only used for `n >= 2^32`).
fn x_pow_8n(mut n: u64) -> u32 {
    let mut power: u32 = 1 << 31; // x^0
    let mut base: u32 = 1 << (31 - 8); // x^8
    while n != 0 {
        if n & 1 != 0 {
            power = mul_mod_p(power, base);
        }
        base = mul_mod_p(base, base);
        n >>= 1;
    }
    power
}

/// Reads a little-endian u32 from a 4-byte slice (0 for other lengths, which callers never pass).
pub(crate) fn le_u32(bytes: &[u8]) -> u32 {
    bytes.try_into().map(u32::from_le_bytes).unwrap_or(0)
}

/// Reads a little-endian u64 from an 8-byte slice (0 for other lengths, which callers never pass).
pub(crate) fn le_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for test data.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn shift_matches_crc32c_combine() {
        let mut s = 0x1234_5678_9abc_def1;
        for _ in 0..2000 {
            let crc = xorshift(&mut s) as u32;
            let n = (xorshift(&mut s) % (1 << 31)) as usize >> (xorshift(&mut s) % 31);
            assert_eq!(shift(crc, n), crc32c::crc32c_combine(crc, 0, n), "n = {n}");
        }
        for n in [
            0,
            1,
            255,
            256,
            65535,
            65536,
            (1 << 24) - 1,
            1 << 24,
            1 << 30,
        ] {
            assert_eq!(
                shift(0xdead_beef, n),
                crc32c::crc32c_combine(0xdead_beef, 0, n)
            );
        }
    }

    #[test]
    fn shift_beyond_4_gib_matches_combine() {
        let n = (1usize << 32) + 12345;
        assert_eq!(
            shift(0x0bad_f00d, n),
            crc32c::crc32c_combine(0x0bad_f00d, 0, n)
        );
        let n = (3usize << 40) + 7;
        assert_eq!(
            shift(0x0bad_f00d, n),
            crc32c::crc32c_combine(0x0bad_f00d, 0, n)
        );
    }

    #[test]
    fn prefix_crcs_give_seeded_range_crcs() {
        let mut s = 99;
        let data: Vec<u8> = (0..5000).map(|_| xorshift(&mut s) as u8).collect();
        let prefix = PrefixCrcs::new(&data);
        for _ in 0..500 {
            let a = (xorshift(&mut s) % 5001) as usize;
            let b = a + (xorshift(&mut s) as usize % (5001 - a));
            let seed = xorshift(&mut s) as u32;
            let direct = crc32c::crc32c_append(seed, &data[a..b]);
            let derived = shift(seed ^ prefix.at(a), b - a) ^ prefix.at(b);
            assert_eq!(direct, derived, "a = {a}, b = {b}");
        }
    }

    #[test]
    fn header_round_trip_and_checks() {
        let path = Path::new("x.wal");
        let header = encode_segment_header(42);
        check_segment_header(path, &header, 42).unwrap();
        assert!(check_segment_header(path, &header, 43)
            .unwrap_err()
            .is_corruption());
        assert!(check_segment_header(path, &header[..23], 42)
            .unwrap_err()
            .is_corruption());
        let mut bad = header;
        bad[8] = 2;
        assert!(matches!(
            check_segment_header(path, &bad, 42),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
        for i in [0, 13, 21] {
            let mut bad = header;
            bad[i] ^= 0x10;
            assert!(check_segment_header(path, &bad, 42)
                .unwrap_err()
                .is_corruption());
        }
    }

    #[test]
    fn record_round_trip_and_seed() {
        let mut out = vec![0xAA; 3];
        encode_record(&mut out, record_seed(7), b"hello", 99);
        assert_eq!(out.len(), 3 + RECORD_HEADER_LEN + 5);
        let rec = decode_record(&out, 3, record_seed(7)).unwrap();
        assert_eq!(rec.last_seqno, 99);
        assert_eq!(&out[rec.payload_start..rec.end], b"hello");
        assert!(decode_record(&out, 3, record_seed(8)).is_err());
        let resync = Resync::new(&out, record_seed(7));
        assert_eq!(resync.next_valid(0), Some(3));
        assert_eq!(resync.next_valid(4), None);
        assert_eq!(Resync::new(&out, record_seed(8)).next_valid(0), None);
    }

    #[test]
    fn seeds_of_small_ids_are_distinct() {
        // Ids below 2^32 differ only in the low 32 bits, whose difference polynomial cannot be a
        // multiple of the degree-32 generator; spot-check the first ids.
        let mut seeds: Vec<u32> = (0..200_000u64).map(record_seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), 200_000);
    }

    #[test]
    fn zeroes_never_decode() {
        let zeros = vec![0u8; 4096];
        for seed in [0, record_seed(0), record_seed(1)] {
            assert!(decode_record(&zeros, 0, seed).is_err());
            assert_eq!(Resync::new(&zeros, seed).next_valid(0), None);
        }
    }
}
