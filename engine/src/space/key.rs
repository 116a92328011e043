//! Order-preserving encoding of index keys: comparing two encoded keys byte by byte (`memcmp`,
//! what every keyspace does) gives the same answer as comparing their typed parts.
//!
//! Each part is a tag byte followed by a payload (`engine/SPACES.md` describes every byte):
//!
//! | tag | part | payload |
//! |-----|------|---------|
//! | `0x01` | null | none |
//! | `0x10` / `0x11` | false / true | none |
//! | `0x20..=0x30` | unsigned or integer | `0x28` is 0; `0x28 + n`: a positive value in `n` big-endian bytes; `0x28 - n`: a negative value, `n` bytes of the one's complement of its magnitude |
//! | `0x38` | number: NaN | none |
//! | `0x39` | number | 8 bytes: the largest f64 not above the value, ordered; 2 bytes: the integer remainder |
//! | `0x50` | string | bytes, `0x00` escaped as `0x00 0xFF`, then `0x00 0x01` |
//! | `0x60` | varbinary | as string |
//! | `0x70` | uuid | 16 bytes |
//!
//! Why it preserves order:
//! - Within one part, every payload sorts as its value, and null's tag is below every other tag.
//! - No encoded part is a prefix of another encoded part of the same type (fixed lengths, or a
//!   terminator that cannot occur inside an escaped body), so when two keys first differ inside
//!   part `i`, the bytes first differ inside part `i` too: multi-part keys compare part by part.
//! - A partial key (the first `k` parts) is therefore a byte prefix of every key that starts with
//!   those parts, which is what [`KeyRange`] uses for `Eq`/`Req`/`Gt`/`Le` over partial keys.
//!
//! Numbers: integers and floats share one exact order (`1 == 1.0`, `2^53 + 1 > 2^53 as f64`),
//! `-0.0 == 0.0`, and NaN (all NaNs are one value) sorts below every other number. Unsigned and
//! integer parts share one encoding, so a value compares the same in both.

use std::cmp::Ordering;
use std::ops::Bound;

use super::error::TupleError;
use super::schema::FieldType;

const TAG_NULL: u8 = 0x01;
const TAG_FALSE: u8 = 0x10;
const TAG_TRUE: u8 = 0x11;
const TAG_INT_ZERO: u8 = 0x28;
const TAG_INT_MIN: u8 = TAG_INT_ZERO - 8;
const TAG_INT_MAX: u8 = TAG_INT_ZERO + 8;
const TAG_NAN: u8 = 0x38;
const TAG_NUMBER: u8 = 0x39;
const TAG_STRING: u8 = 0x50;
const TAG_VARBINARY: u8 = 0x60;
const TAG_UUID: u8 = 0x70;

/// Escape byte inside string and varbinary bodies, followed by [`ESCAPED_ZERO`] or
/// [`TERMINATOR`].
const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// One typed part of a key.
///
/// `PartialEq` is structural (`Number(NaN) != Number(NaN)`, `Unsigned(1) != Number(1.0)`); the
/// order keys are stored in is [`compare_parts`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeyPart {
    /// Null (MessagePack nil); sorts before every other value.
    Null,
    /// A non-negative integer.
    Unsigned(u64),
    /// A signed integer (decoding yields `Integer` only for negative values).
    Integer(i64),
    /// A float; allowed in `number` parts only.
    Number(f64),
    /// A boolean.
    Boolean(bool),
    /// A string.
    String(String),
    /// A byte string.
    Varbinary(Vec<u8>),
    /// The 16 bytes of a UUID, in RFC 4122 order.
    Uuid([u8; 16]),
}

impl KeyPart {
    /// A short name of the part's kind for messages (`"null"`, `"unsigned"`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            KeyPart::Null => "null",
            KeyPart::Unsigned(_) => "unsigned",
            KeyPart::Integer(_) => "integer",
            KeyPart::Number(_) => "number",
            KeyPart::Boolean(_) => "boolean",
            KeyPart::String(_) => "string",
            KeyPart::Varbinary(_) => "varbinary",
            KeyPart::Uuid(_) => "uuid",
        }
    }
}

/// A part that does not fit its index part's type (see [`encode_part`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartTypeMismatch {
    /// The index part's type.
    pub expected: FieldType,
    /// What the part holds instead.
    pub found: &'static str,
}

/// Appends the encoding of `part` as a part of type `field_type` to `out`.
///
/// Accepted: null for any type; for `unsigned`, non-negative integers (`Unsigned`, or a
/// non-negative `Integer`); for `integer`, any integer; for `number`, any integer or float;
/// otherwise the variant of the same name. Nullability is the caller's business.
///
/// # Errors
/// [`PartTypeMismatch`] if the part does not fit (`out` is unchanged then). `any` fits nothing.
pub fn encode_part(
    out: &mut Vec<u8>,
    field_type: FieldType,
    part: &KeyPart,
) -> Result<(), PartTypeMismatch> {
    let mismatch = |found| PartTypeMismatch {
        expected: field_type,
        found,
    };
    match (field_type, part) {
        (FieldType::Any, _) => return Err(mismatch("a part of an unindexable type")),
        (_, KeyPart::Null) => out.push(TAG_NULL),
        (FieldType::Unsigned | FieldType::Integer, KeyPart::Unsigned(u)) => {
            encode_integer(out, i128::from(*u))
        }
        (FieldType::Unsigned, KeyPart::Integer(i)) if *i < 0 => {
            return Err(mismatch("a negative integer"))
        }
        (FieldType::Unsigned | FieldType::Integer, KeyPart::Integer(i)) => {
            encode_integer(out, i128::from(*i))
        }
        (FieldType::Number, KeyPart::Unsigned(u)) => encode_number_integer(out, i128::from(*u)),
        (FieldType::Number, KeyPart::Integer(i)) => encode_number_integer(out, i128::from(*i)),
        (FieldType::Number, KeyPart::Number(f)) => encode_number_float(out, *f),
        (FieldType::Boolean, KeyPart::Boolean(b)) => {
            out.push(if *b { TAG_TRUE } else { TAG_FALSE })
        }
        (FieldType::String, KeyPart::String(s)) => encode_escaped(out, TAG_STRING, s.as_bytes()),
        (FieldType::Varbinary, KeyPart::Varbinary(b)) => encode_escaped(out, TAG_VARBINARY, b),
        (FieldType::Uuid, KeyPart::Uuid(u)) => {
            out.push(TAG_UUID);
            out.extend_from_slice(u);
        }
        (_, other) => return Err(mismatch(other.kind_name())),
    }
    Ok(())
}

/// Encodes a key: `parts[i]` as a part of type `types[i]`. `parts` may be shorter than `types`
/// (a partial key, for searches); it is then a byte prefix of every full key it starts.
///
/// # Errors
/// [`TupleError::TooManyKeyParts`] if `parts` is longer than `types`,
/// [`TupleError::KeyPartType`] for a part that does not fit its type. The index name in both is
/// empty; callers that know it fill it in.
pub fn encode_key(types: &[FieldType], parts: &[KeyPart]) -> Result<Vec<u8>, TupleError> {
    if parts.len() > types.len() {
        return Err(TupleError::TooManyKeyParts {
            index: String::new(),
            parts: super::schema::u32_of(types.len()),
            found: super::schema::u32_of(parts.len()),
        });
    }
    let mut out = Vec::with_capacity(parts.len() * 10);
    for (i, (ty, part)) in types.iter().zip(parts).enumerate() {
        encode_part(&mut out, *ty, part).map_err(|m| TupleError::KeyPartType {
            index: String::new(),
            part_no: super::schema::field_no(i),
            expected: m.expected,
            found: m.found,
        })?;
    }
    Ok(out)
}

/// Decodes one part of type `field_type` starting at `*pos`, and advances `*pos` past it.
///
/// Only canonical encodings are accepted, so re-encoding the result gives back the same bytes.
/// A `number` part whose value is a whole float comes back as [`KeyPart::Number`] (the
/// encoding of `5` and `5.0` is the same); one that only an integer can hold comes back as
/// `Unsigned` or `Integer`. Non-negative integers come back as `Unsigned`.
///
/// # Errors
/// [`TupleError::MalformedKey`] with the offset of the offending byte; never panics.
pub fn decode_part(
    bytes: &[u8],
    pos: &mut usize,
    field_type: FieldType,
) -> Result<KeyPart, TupleError> {
    let start = *pos;
    let malformed = |offset: usize, reason| TupleError::MalformedKey { offset, reason };
    let tag = *bytes
        .get(start)
        .ok_or(malformed(start, "key ends before a part"))?;
    let mut cursor = start + 1;
    let part = match (tag, field_type) {
        (TAG_NULL, _) if field_type.is_indexable() => KeyPart::Null,
        (TAG_FALSE, FieldType::Boolean) => KeyPart::Boolean(false),
        (TAG_TRUE, FieldType::Boolean) => KeyPart::Boolean(true),
        (TAG_INT_MIN..=TAG_INT_MAX, FieldType::Unsigned | FieldType::Integer) => {
            let value = decode_integer(bytes, &mut cursor, tag)?;
            if value < 0 && field_type == FieldType::Unsigned {
                return Err(malformed(start, "negative integer in an unsigned part"));
            }
            integer_part(value)
        }
        (TAG_NAN, FieldType::Number) => KeyPart::Number(f64::NAN),
        (TAG_NUMBER, FieldType::Number) => decode_number(bytes, &mut cursor)?,
        (TAG_STRING, FieldType::String) => {
            let body = decode_escaped(bytes, &mut cursor)?;
            let s = String::from_utf8(body).map_err(|_| malformed(start, "string is not UTF-8"))?;
            KeyPart::String(s)
        }
        (TAG_VARBINARY, FieldType::Varbinary) => {
            KeyPart::Varbinary(decode_escaped(bytes, &mut cursor)?)
        }
        (TAG_UUID, FieldType::Uuid) => {
            let body = take(bytes, &mut cursor, 16)?;
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(body);
            KeyPart::Uuid(uuid)
        }
        _ => return Err(malformed(start, "tag does not match the part's type")),
    };
    *pos = cursor;
    Ok(part)
}

/// Decodes a key of up to `types.len()` parts (a partial key decodes to fewer parts).
///
/// # Errors
/// [`TupleError::MalformedKey`] if a part is malformed or bytes remain after `types.len()`
/// parts; never panics.
pub fn decode_key(types: &[FieldType], bytes: &[u8]) -> Result<Vec<KeyPart>, TupleError> {
    let mut pos = 0;
    let mut parts = Vec::with_capacity(types.len());
    for ty in types {
        if pos == bytes.len() {
            break;
        }
        parts.push(decode_part(bytes, &mut pos, *ty)?);
    }
    if pos != bytes.len() {
        return Err(TupleError::MalformedKey {
            offset: pos,
            reason: "bytes after the last part",
        });
    }
    Ok(parts)
}

/// The length in bytes of the first `types.len()` parts of `bytes` (all of them must be there).
///
/// Splits a secondary index entry key (secondary key ++ primary key): pass the secondary
/// index's part types and cut there. Checks the same structure as [`decode_part`] without
/// allocating (but does not check that strings are UTF-8).
///
/// # Errors
/// [`TupleError::MalformedKey`] if a part is malformed or missing; never panics.
pub fn parts_len(types: &[FieldType], bytes: &[u8]) -> Result<usize, TupleError> {
    let mut pos = 0;
    for ty in types {
        skip_part(bytes, &mut pos, *ty)?;
    }
    Ok(pos)
}

fn skip_part(bytes: &[u8], pos: &mut usize, field_type: FieldType) -> Result<(), TupleError> {
    let start = *pos;
    let malformed = |offset: usize, reason| TupleError::MalformedKey { offset, reason };
    let tag = *bytes
        .get(start)
        .ok_or(malformed(start, "key ends before a part"))?;
    let mut cursor = start + 1;
    match (tag, field_type) {
        (TAG_STRING, FieldType::String) | (TAG_VARBINARY, FieldType::Varbinary) => loop {
            let rest = bytes.get(cursor..).unwrap_or_default();
            let zero = rest.iter().position(|&b| b == ESCAPE);
            let zero = zero.ok_or(malformed(bytes.len(), "string without terminator"))?;
            cursor += zero + 1;
            match bytes.get(cursor) {
                Some(&ESCAPED_ZERO) => cursor += 1,
                Some(&TERMINATOR) => {
                    cursor += 1;
                    break;
                }
                _ => return Err(malformed(cursor, "bad escape in string")),
            }
        },
        // Every other part has a fixed size: decoding it allocates nothing.
        _ => {
            cursor = start;
            decode_part(bytes, &mut cursor, field_type)?;
        }
    }
    *pos = cursor;
    Ok(())
}

fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], TupleError> {
    let end = pos.checked_add(n).filter(|&end| end <= bytes.len());
    let end = end.ok_or(TupleError::MalformedKey {
        offset: bytes.len(),
        reason: "key truncated",
    })?;
    let slice = &bytes[*pos..end];
    *pos = end;
    Ok(slice)
}

fn integer_part(value: i128) -> KeyPart {
    match u64::try_from(value) {
        Ok(u) => KeyPart::Unsigned(u),
        // Callers only pass values in -2^63 ..= 2^64-1.
        Err(_) => KeyPart::Integer(i64::try_from(value).unwrap_or(i64::MIN)),
    }
}

/// `value` must lie in -2^63 ..= 2^64-1.
fn encode_integer(out: &mut Vec<u8>, value: i128) {
    debug_assert!((-(1i128 << 63)..(1i128 << 64)).contains(&value));
    let magnitude = value.unsigned_abs() as u64;
    let len = 8 - (magnitude.leading_zeros() / 8) as usize;
    if value >= 0 {
        out.push(TAG_INT_ZERO + len as u8);
        out.extend_from_slice(&magnitude.to_be_bytes()[8 - len..]);
    } else {
        out.push(TAG_INT_ZERO - len as u8);
        out.extend_from_slice(&(!magnitude).to_be_bytes()[8 - len..]);
    }
}

fn decode_integer(bytes: &[u8], pos: &mut usize, tag: u8) -> Result<i128, TupleError> {
    let start = *pos;
    let len = usize::from(tag.abs_diff(TAG_INT_ZERO));
    let body = take(bytes, pos, len)?;
    let mut word = [0u8; 8];
    word[8 - len..].copy_from_slice(body);
    let word = u64::from_be_bytes(word);
    let non_canonical = TupleError::MalformedKey {
        offset: start,
        reason: "integer not in its shortest form",
    };
    if tag >= TAG_INT_ZERO {
        if body.first() == Some(&0) {
            return Err(non_canonical);
        }
        Ok(i128::from(word))
    } else {
        if body.first() == Some(&0xFF) {
            return Err(non_canonical);
        }
        let mask = if len == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * len)) - 1
        };
        let magnitude = !word & mask;
        if magnitude > 1 << 63 {
            return Err(TupleError::MalformedKey {
                offset: start,
                reason: "integer below -2^63",
            });
        }
        Ok(-i128::from(magnitude))
    }
}

/// Bits of `f` such that unsigned comparison of the bits is numeric comparison of the floats
/// (for non-NaN values, with -0.0 below 0.0; the encoder never writes -0.0).
fn ordered_bits(f: f64) -> u64 {
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn from_ordered_bits(ordered: u64) -> f64 {
    f64::from_bits(if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    })
}

/// The largest f64 not above `value` (`value` in -2^63 ..= 2^64-1, so the result is exact in
/// i128 and `value - result` is below 2^11, the spacing of f64s near 2^64).
fn floor_f64(value: i128) -> f64 {
    let nearest = value as f64;
    if nearest as i128 > value {
        nearest.next_down()
    } else {
        nearest
    }
}

fn encode_number_float(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.push(TAG_NAN);
        return;
    }
    // -0.0 == 0.0 numerically, so both must encode the same.
    let f = if f == 0.0 { 0.0 } else { f };
    out.push(TAG_NUMBER);
    out.extend_from_slice(&ordered_bits(f).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

fn encode_number_integer(out: &mut Vec<u8>, value: i128) {
    let floor = floor_f64(value);
    // Below 2^11: see `floor_f64`.
    let remainder = (value - floor as i128) as u16;
    out.push(TAG_NUMBER);
    out.extend_from_slice(&ordered_bits(floor).to_be_bytes());
    out.extend_from_slice(&remainder.to_be_bytes());
}

fn decode_number(bytes: &[u8], pos: &mut usize) -> Result<KeyPart, TupleError> {
    let start = *pos;
    let body = take(bytes, pos, 10)?;
    let malformed = |reason| TupleError::MalformedKey {
        offset: start,
        reason,
    };
    let mut ordered = [0u8; 8];
    ordered.copy_from_slice(&body[..8]);
    let floor = from_ordered_bits(u64::from_be_bytes(ordered));
    let remainder = u16::from_be_bytes([body[8], body[9]]);
    if floor.is_nan() {
        return Err(malformed("NaN outside the NaN tag"));
    }
    if floor == 0.0 && floor.is_sign_negative() {
        return Err(malformed("negative zero"));
    }
    if remainder == 0 {
        return Ok(KeyPart::Number(floor));
    }
    if !(-TWO_POW_63..TWO_POW_64).contains(&floor) || floor.fract() != 0.0 {
        return Err(malformed(
            "integer remainder on a float outside the integer range",
        ));
    }
    let value = floor as i128 + i128::from(remainder);
    if value > i128::from(u64::MAX) || floor_f64(value).to_bits() != floor.to_bits() {
        return Err(malformed("integer remainder not in canonical form"));
    }
    Ok(integer_part(value))
}

fn encode_escaped(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.push(tag);
    let mut chunks = body.split(|&b| b == 0);
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for chunk in chunks {
        out.extend_from_slice(&[ESCAPE, ESCAPED_ZERO]);
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&[ESCAPE, TERMINATOR]);
}

fn decode_escaped(bytes: &[u8], pos: &mut usize) -> Result<Vec<u8>, TupleError> {
    let mut body = Vec::new();
    let mut cursor = *pos;
    loop {
        let rest = bytes.get(cursor..).unwrap_or_default();
        let Some(zero) = rest.iter().position(|&b| b == ESCAPE) else {
            return Err(TupleError::MalformedKey {
                offset: bytes.len(),
                reason: "string without terminator",
            });
        };
        body.extend_from_slice(&rest[..zero]);
        cursor += zero + 1;
        match bytes.get(cursor) {
            Some(&ESCAPED_ZERO) => body.push(0),
            Some(&TERMINATOR) => {
                *pos = cursor + 1;
                return Ok(body);
            }
            _ => {
                return Err(TupleError::MalformedKey {
                    offset: cursor,
                    reason: "bad escape in string",
                })
            }
        }
        cursor += 1;
    }
}

/// The typed order of key parts, which encoded keys follow byte by byte.
///
/// Null first, then booleans (false < true), numbers (integers and floats by exact value, NaN
/// lowest, -0.0 == 0.0), strings and varbinaries (byte by byte), uuids (byte by byte): the order
/// of Tarantool's `scalar` type. Within one index part only null and the part's own type occur.
pub fn compare_parts(a: &KeyPart, b: &KeyPart) -> Ordering {
    use KeyPart::*;
    fn rank(p: &KeyPart) -> u8 {
        match p {
            Null => 0,
            Boolean(_) => 1,
            Unsigned(_) | Integer(_) | Number(_) => 2,
            String(_) => 3,
            Varbinary(_) => 4,
            Uuid(_) => 5,
        }
    }
    match (a, b) {
        (Boolean(x), Boolean(y)) => x.cmp(y),
        (String(x), String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Varbinary(x), Varbinary(y)) => x.cmp(y),
        (Uuid(x), Uuid(y)) => x.cmp(y),
        (Number(x), Number(y)) => compare_floats(*x, *y),
        (Number(x), other) => match as_integer(other) {
            Some(i) => compare_integer_float(i, *x).reverse(),
            None => rank(a).cmp(&rank(b)),
        },
        (other, Number(y)) => match as_integer(other) {
            Some(i) => compare_integer_float(i, *y),
            None => rank(a).cmp(&rank(b)),
        },
        _ => match (as_integer(a), as_integer(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => rank(a).cmp(&rank(b)),
        },
    }
}

/// Compares keys part by part with [`compare_parts`]; a key that is a prefix of the other (a
/// partial key) is smaller, as its encoding is a byte prefix.
pub fn compare_keys(a: &[KeyPart], b: &[KeyPart]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match compare_parts(x, y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

fn as_integer(p: &KeyPart) -> Option<i128> {
    match p {
        KeyPart::Unsigned(u) => Some(i128::from(*u)),
        KeyPart::Integer(i) => Some(i128::from(*i)),
        _ => None,
    }
}

fn compare_floats(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // Neither is NaN, so partial_cmp answers (and -0.0 == 0.0).
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Exact comparison of an integer (in -2^63 ..= 2^64-1) with a float.
fn compare_integer_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    if f >= TWO_POW_64 {
        return Ordering::Less;
    }
    if f < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let floor = f.floor();
    // In range, so the conversion is exact.
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

/// The smallest byte string greater than `key`: `key ++ 0x00`. Resumes a scan strictly after a
/// full key (no encoded key starts with `0x00`, so nothing lies in between in an index).
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None` if
/// there is none (`prefix` empty or all `0xFF`). The exclusive upper bound of a prefix scan.
pub fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut bound = prefix[..=keep].to_vec();
    bound[keep] += 1;
    Some(bound)
}

/// How a search key selects and orders index entries (Tarantool's iterator types).
///
/// A search key may be partial (the first `k` parts of the index); comparisons then look at
/// those `k` parts only. An empty key selects every entry, in the iterator's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IteratorType {
    /// Entries whose key starts with the search key, ascending.
    Eq,
    /// Entries whose key starts with the search key, descending.
    Req,
    /// Every entry, ascending; the key is ignored.
    All,
    /// Entries >= the search key, ascending.
    Ge,
    /// Entries > the search key, ascending.
    Gt,
    /// Entries <= the search key, descending.
    Le,
    /// Entries < the search key, descending.
    Lt,
}

impl IteratorType {
    /// Whether entries come in descending key order.
    pub fn is_reverse(self) -> bool {
        matches!(
            self,
            IteratorType::Req | IteratorType::Le | IteratorType::Lt
        )
    }
}

/// Byte bounds of an index scan, and its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound on entry keys.
    pub lower: Bound<Vec<u8>>,
    /// Upper bound on entry keys.
    pub upper: Bound<Vec<u8>>,
    /// Whether to scan from the upper bound down.
    pub reverse: bool,
}

impl KeyRange {
    /// The entries `iterator` selects for the encoded (possibly partial) search `key`. Works on
    /// secondary entry keys too: their leading parts are the secondary key.
    ///
    /// `key` must be a valid encoded key (from [`encode_key`]).
    pub fn new(iterator: IteratorType, key: &[u8]) -> KeyRange {
        use Bound::{Excluded, Included, Unbounded};
        let reverse = iterator.is_reverse();
        if key.is_empty() || iterator == IteratorType::All {
            return KeyRange {
                lower: Unbounded,
                upper: Unbounded,
                reverse,
            };
        }
        // A valid key starts with a tag below 0xFF, so it always has an upper bound.
        let after_prefix = || prefix_upper_bound(key).map_or(Unbounded, Excluded);
        let (lower, upper) = match iterator {
            IteratorType::Eq | IteratorType::Req => (Included(key.to_vec()), after_prefix()),
            IteratorType::Ge => (Included(key.to_vec()), Unbounded),
            IteratorType::Gt => match prefix_upper_bound(key) {
                Some(bound) => (Included(bound), Unbounded),
                None => (Excluded(key.to_vec()), Excluded(key.to_vec())),
            },
            IteratorType::Le => (Unbounded, after_prefix()),
            IteratorType::Lt => (Unbounded, Excluded(key.to_vec())),
            IteratorType::All => (Unbounded, Unbounded),
        };
        KeyRange {
            lower,
            upper,
            reverse,
        }
    }

    /// The rest of this range after the entry `last_key` (a full entry key this range returned):
    /// a continuation that pages without offsets, in either direction.
    pub fn after(mut self, last_key: &[u8]) -> KeyRange {
        if self.reverse {
            self.upper = Bound::Excluded(last_key.to_vec());
        } else {
            self.lower = Bound::Excluded(last_key.to_vec());
        }
        self
    }

    /// Whether an entry key lies inside the bounds.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.lower {
            Bound::Included(b) => key >= b.as_slice(),
            Bound::Excluded(b) => key > b.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.upper {
            Bound::Included(b) => key <= b.as_slice(),
            Bound::Excluded(b) => key < b.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
