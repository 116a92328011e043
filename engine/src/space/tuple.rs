//! Tuples: MessagePack arrays of fields, checked against a space's format, and the index keys
//! and entries made from them.
//!
//! A tuple travels as bytes (what the primary index stores) or as its fields, a
//! `Vec<rmpv::Value>`. Typed code converts with [`to_tuple`] / [`from_tuple`]: `rmp_serde::to_vec`
//! encodes a struct as an array of its fields in declaration order, which is a tuple
//! (`to_vec_named` would write a map, which is not). `Option<T>` is nil when `None`; use
//! `serde_bytes` for varbinary fields and [`Uuid`] for uuid fields.
//!
//! Index entries ([`SpaceSchema::entry`]): the primary index maps the primary key to the tuple.
//! A secondary index entry's key is (secondary key ++ primary key) and its value the covering
//! fields as a MessagePack array (empty bytes when the index covers nothing).

use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::TupleError;
use super::key::{self, KeyPart, PartTypeMismatch};
use super::schema::{field_no, u32_of, FieldType, KeyDef, SpaceSchema};

/// Nesting of arrays and maps a tuple may have (its own array is level 1): every tuple up to
/// this depth decodes, none deeper than one more level does. Decoding recurses per level, so
/// hostile input must not choose the depth: rmpv's default limit overflows a 2 MiB thread stack
/// in debug builds.
pub const MAX_TUPLE_DEPTH: usize = 128;

/// [`MAX_TUPLE_DEPTH`] in rmpv's units: it counts two per container level and up to three for
/// the innermost value (a string: value, string, bytes).
const RMPV_DEPTH: usize = 2 * MAX_TUPLE_DEPTH + 3;

/// The MessagePack extension type of a UUID (Tarantool's `MP_UUID`).
pub const UUID_EXT_TYPE: i8 = 2;

/// Decodes a tuple: `bytes` must hold exactly one MessagePack array.
///
/// # Errors
/// [`TupleError::MalformedTuple`] for bytes that are not one MessagePack value (truncated,
/// trailing bytes, nested deeper than [`MAX_TUPLE_DEPTH`]), [`TupleError::NotAnArray`] for a value that
/// is not an array. Never panics; a length prefix larger than the input does not make it
/// allocate that much.
pub fn decode_tuple(bytes: &[u8]) -> Result<Vec<Value>, TupleError> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, RMPV_DEPTH).map_err(|e| {
        TupleError::MalformedTuple {
            reason: e.to_string(),
        }
    })?;
    if !reader.is_empty() {
        return Err(TupleError::MalformedTuple {
            reason: format!("{} bytes after the tuple", reader.len()),
        });
    }
    match value {
        Value::Array(fields) => Ok(fields),
        other => Err(TupleError::NotAnArray {
            found: value_kind(&other),
        }),
    }
}

/// Encodes fields as a tuple (a MessagePack array).
pub fn encode_tuple(fields: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * fields.len() + 5);
    write_array_len(&mut out, fields.len());
    for field in fields {
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, field);
    }
    out
}

/// Serialises a Rust value as a tuple (a struct or a Rust tuple becomes an array of fields).
///
/// # Errors
/// [`TupleError::Serde`] if serde fails, [`TupleError::NotAnArray`] if the value does not
/// serialise as an array (a bare number, a map, a struct under `to_vec_named` conventions).
pub fn to_tuple<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, TupleError> {
    let bytes = rmp_serde::to_vec(value).map_err(|e| TupleError::Serde {
        reason: e.to_string(),
    })?;
    match bytes.first() {
        Some(0x90..=0x9F | 0xDC | 0xDD) => Ok(bytes),
        _ => {
            let found = decode_value(&bytes).map_or("a non-array", |v| value_kind(&v));
            Err(TupleError::NotAnArray { found })
        }
    }
}

/// Deserialises a tuple into a Rust value.
///
/// # Errors
/// [`TupleError::Serde`] if the tuple does not fit `T` (wrong field count or types).
pub fn from_tuple<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TupleError> {
    rmp_serde::from_slice(bytes).map_err(|e| TupleError::Serde {
        reason: e.to_string(),
    })
}

/// Serialises a Rust value into tuple fields ([`to_tuple`], then [`decode_tuple`]).
///
/// # Errors
/// As [`to_tuple`].
pub fn to_fields<T: Serialize + ?Sized>(value: &T) -> Result<Vec<Value>, TupleError> {
    decode_tuple(&to_tuple(value)?)
}

/// Deserialises tuple fields into a Rust value.
///
/// # Errors
/// As [`from_tuple`].
pub fn from_fields<T: DeserializeOwned>(fields: &[Value]) -> Result<T, TupleError> {
    from_tuple(&encode_tuple(fields))
}

/// Writes a MessagePack array header (fixarray, array 16 or array 32).
fn write_array_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=15 => out.push(0x90 | len as u8),
        16..=0xFFFF => {
            out.push(0xDC);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xDD);
            out.extend_from_slice(&u32_of(len).to_be_bytes());
        }
    }
}

fn decode_value(bytes: &[u8]) -> Option<Value> {
    rmpv::decode::read_value_with_max_depth(&mut &bytes[..], RMPV_DEPTH).ok()
}

/// A UUID field value for typed tuples: serialises as MessagePack ext type 2 with its 16 bytes
/// (what `uuid` fields hold), only through `rmp_serde`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The field value of this UUID.
    pub fn to_value(self) -> Value {
        Value::Ext(UUID_EXT_TYPE, self.0.to_vec())
    }
}

impl Serialize for Uuid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(
            rmp_serde::MSGPACK_EXT_STRUCT_NAME,
            &(UUID_EXT_TYPE, serde_bytes::Bytes::new(&self.0)),
        )
    }
}

impl<'de> Deserialize<'de> for Uuid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtVisitor;
        impl<'de> serde::de::Visitor<'de> for ExtVisitor {
            type Value = Uuid;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a MessagePack ext of type 2 with 16 bytes")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Uuid, D::Error> {
                let (ext_type, bytes) = <(i8, serde_bytes::ByteBuf)>::deserialize(d)?;
                let bytes: [u8; 16] = bytes.as_slice().try_into().map_err(|_| {
                    serde::de::Error::invalid_length(bytes.len(), &"16 bytes of a UUID")
                })?;
                if ext_type != UUID_EXT_TYPE {
                    return Err(serde::de::Error::custom(format!(
                        "ext type {ext_type} is not a UUID (type 2)"
                    )));
                }
                Ok(Uuid(bytes))
            }
        }
        deserializer.deserialize_newtype_struct(rmp_serde::MSGPACK_EXT_STRUCT_NAME, ExtVisitor)
    }
}

/// A name for the kind of a MessagePack value, for messages.
pub fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(i) if i.as_u64().is_some() => "unsigned",
        Value::Integer(_) => "integer",
        Value::F32(_) => "float",
        Value::F64(_) => "double",
        Value::String(_) => "string",
        Value::Binary(_) => "varbinary",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(UUID_EXT_TYPE, bytes) if bytes.len() == 16 => "uuid",
        Value::Ext(..) => "ext",
    }
}

/// Converts a field value into a key part of an index part of type `field_type` (nil becomes
/// [`KeyPart::Null`]; nullability is the caller's business).
///
/// # Errors
/// [`PartTypeMismatch`] when the value does not have the type (for `unsigned`, a negative
/// integer; for `string`, also invalid UTF-8).
pub fn key_part(value: &Value, field_type: FieldType) -> Result<KeyPart, PartTypeMismatch> {
    let mismatch = |found| PartTypeMismatch {
        expected: field_type,
        found,
    };
    let part = match (field_type, value) {
        (FieldType::Any, _) => return Err(mismatch("a value of an unindexable type")),
        (_, Value::Nil) => KeyPart::Null,
        (FieldType::Unsigned | FieldType::Integer | FieldType::Number, Value::Integer(i)) => {
            match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => KeyPart::Unsigned(u),
                (None, Some(i)) if field_type != FieldType::Unsigned => KeyPart::Integer(i),
                _ => return Err(mismatch("a negative integer")),
            }
        }
        (FieldType::Number, Value::F32(f)) => KeyPart::Number(f64::from(*f)),
        (FieldType::Number, Value::F64(f)) => KeyPart::Number(*f),
        (FieldType::Boolean, Value::Boolean(b)) => KeyPart::Boolean(*b),
        (FieldType::String, Value::String(s)) => match s.as_str() {
            Some(s) => KeyPart::String(s.to_owned()),
            None => return Err(mismatch("a string that is not UTF-8")),
        },
        (FieldType::Varbinary, Value::Binary(b)) => KeyPart::Varbinary(b.clone()),
        (FieldType::Uuid, Value::Ext(UUID_EXT_TYPE, bytes)) => {
            match <[u8; 16]>::try_from(&bytes[..]) {
                Ok(uuid) => KeyPart::Uuid(uuid),
                Err(_) => return Err(mismatch("an ext of type 2 that is not 16 bytes")),
            }
        }
        (_, other) => return Err(mismatch(value_kind(other))),
    };
    Ok(part)
}

/// The field value of a key part (a uuid becomes ext type 2; a number part keeps the variant
/// it decoded as, see [`key::decode_part`]).
pub fn part_value(part: &KeyPart) -> Value {
    match part {
        KeyPart::Null => Value::Nil,
        KeyPart::Unsigned(u) => Value::from(*u),
        KeyPart::Integer(i) => Value::from(*i),
        KeyPart::Number(f) => Value::F64(*f),
        KeyPart::Boolean(b) => Value::Boolean(*b),
        KeyPart::String(s) => Value::from(s.as_str()),
        KeyPart::Varbinary(b) => Value::Binary(b.clone()),
        KeyPart::Uuid(u) => Value::Ext(UUID_EXT_TYPE, u.to_vec()),
    }
}

/// Whether `value` is acceptable in a field of this type, ignoring nullability; `Err` holds
/// what was found instead.
fn check_type(value: &Value, field_type: FieldType) -> Result<(), &'static str> {
    let ok = match (field_type, value) {
        (FieldType::Any, _) => true,
        (FieldType::Unsigned, Value::Integer(i)) => {
            if i.as_u64().is_none() {
                return Err("a negative integer");
            }
            true
        }
        (FieldType::Integer, Value::Integer(_)) => true,
        (FieldType::Number, Value::Integer(_) | Value::F32(_) | Value::F64(_)) => true,
        (FieldType::String, Value::String(_)) => true,
        (FieldType::Boolean, Value::Boolean(_)) => true,
        (FieldType::Varbinary, Value::Binary(_)) => true,
        (FieldType::Uuid, Value::Ext(UUID_EXT_TYPE, bytes)) => {
            if bytes.len() != 16 {
                return Err("an ext of type 2 that is not 16 bytes");
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(value_kind(value))
    }
}

/// An index entry made from a tuple (see [`SpaceSchema::entry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The entry's key: the primary key, or secondary key ++ primary key.
    pub key: Vec<u8>,
    /// For a secondary index, the covering fields as a MessagePack array, or empty when the
    /// index covers nothing. Empty for the primary index (whose value is the tuple itself).
    pub value: Vec<u8>,
    /// Whether the index's own key parts include a null. A unique index admits several tuples
    /// whose key has a null (as in Tarantool), so the engine skips the uniqueness check then.
    pub key_has_null: bool,
}

impl SpaceSchema {
    /// Checks fields against the space's format: field count, each field's type, nullability.
    ///
    /// A tuple may omit trailing nullable fields (they read as nil); it may have fields beyond
    /// the format only if the definition allows extra fields.
    ///
    /// # Errors
    /// [`TupleError::FieldCount`], [`TupleError::FieldType`], [`TupleError::NullField`],
    /// [`TupleError::InvalidUtf8`], each naming the first offending field.
    pub fn validate_tuple(&self, fields: &[Value]) -> Result<(), TupleError> {
        let declared = self.def.fields.len();
        if fields.len() < self.min_field_count
            || (!self.def.allow_extra_fields && fields.len() > declared)
        {
            return Err(TupleError::FieldCount {
                min: u32_of(self.min_field_count),
                max: (!self.def.allow_extra_fields).then_some(u32_of(declared)),
                found: u32_of(fields.len()),
            });
        }
        for (position, (value, def)) in fields.iter().zip(&self.def.fields).enumerate() {
            let field = || (field_no(position), def.name.clone());
            if value.is_nil() {
                if !def.nullable && def.field_type != FieldType::Any {
                    let (field_no, field_name) = field();
                    return Err(TupleError::NullField {
                        field_no,
                        field_name,
                    });
                }
                continue;
            }
            if let Err(found) = check_type(value, def.field_type) {
                let (field_no, field_name) = field();
                return Err(TupleError::FieldType {
                    field_no,
                    field_name,
                    expected: def.field_type,
                    found,
                });
            }
            if let Value::String(s) = value {
                if s.as_str().is_none() {
                    let (field_no, field_name) = field();
                    return Err(TupleError::InvalidUtf8 {
                        field_no,
                        field_name,
                    });
                }
            }
        }
        Ok(())
    }

    /// Decodes a tuple ([`decode_tuple`]) and validates it ([`SpaceSchema::validate_tuple`]).
    ///
    /// # Errors
    /// As those two.
    pub fn decode_tuple(&self, bytes: &[u8]) -> Result<Vec<Value>, TupleError> {
        let fields = decode_tuple(bytes)?;
        self.validate_tuple(&fields)?;
        Ok(fields)
    }

    /// The encoded key of index `index_no` for a tuple: its own parts only (for a secondary
    /// index, without the primary key; see [`SpaceSchema::entry`]).
    ///
    /// # Errors
    /// [`TupleError::NoSuchIndex`]; for a tuple that was not validated,
    /// [`TupleError::FieldType`] or [`TupleError::NullField`] for a key field.
    pub fn key(&self, index_no: usize, fields: &[Value]) -> Result<Vec<u8>, TupleError> {
        let mut out = Vec::new();
        self.append_key(self.index(index_no)?, fields, &mut out)?;
        Ok(out)
    }

    /// The entry of index `index_no` for a tuple: key, covering value, and whether the key has a
    /// null.
    ///
    /// # Errors
    /// As [`SpaceSchema::key`].
    pub fn entry(&self, index_no: usize, fields: &[Value]) -> Result<IndexEntry, TupleError> {
        let index = self.index(index_no)?;
        let mut key = Vec::new();
        let key_has_null = self.append_key(index, fields, &mut key)?;
        if index_no == 0 {
            return Ok(IndexEntry {
                key,
                value: Vec::new(),
                key_has_null,
            });
        }
        self.append_key(self.primary(), fields, &mut key)?;
        let value = if index.covering.is_empty() {
            Vec::new()
        } else {
            let covered: Vec<Value> = index
                .covering
                .iter()
                .map(|&p| fields.get(p).cloned().unwrap_or(Value::Nil))
                .collect();
            encode_tuple(&covered)
        };
        Ok(IndexEntry {
            key,
            value,
            key_has_null,
        })
    }

    /// Appends `index`'s key for `fields` to `out`; returns whether a part was null.
    fn append_key(
        &self,
        index: &KeyDef,
        fields: &[Value],
        out: &mut Vec<u8>,
    ) -> Result<bool, TupleError> {
        let mut has_null = false;
        for part in &index.parts {
            let value = fields.get(part.position).unwrap_or(&Value::Nil);
            let field = || {
                (
                    field_no(part.position),
                    self.field_name(part.position).to_owned(),
                )
            };
            if value.is_nil() {
                if !part.nullable {
                    let (field_no, field_name) = field();
                    return Err(TupleError::NullField {
                        field_no,
                        field_name,
                    });
                }
                has_null = true;
            }
            let converted = key_part(value, part.field_type)
                .and_then(|p| key::encode_part(out, part.field_type, &p));
            if let Err(m) = converted {
                let (field_no, field_name) = field();
                return Err(TupleError::FieldType {
                    field_no,
                    field_name,
                    expected: m.expected,
                    found: m.found,
                });
            }
        }
        Ok(has_null)
    }

    /// Encodes a search key for index `index_no`: up to as many values as the index has parts
    /// (fewer make a partial key), each of its part's type or nil for a nullable part.
    ///
    /// # Errors
    /// [`TupleError::NoSuchIndex`], [`TupleError::TooManyKeyParts`],
    /// [`TupleError::KeyPartType`], [`TupleError::NullKeyPart`].
    pub fn search_key(&self, index_no: usize, key: &[Value]) -> Result<Vec<u8>, TupleError> {
        let index = self.index(index_no)?;
        if key.len() > index.parts.len() {
            return Err(TupleError::TooManyKeyParts {
                index: index.name.clone(),
                parts: u32_of(index.parts.len()),
                found: u32_of(key.len()),
            });
        }
        let mut out = Vec::new();
        for (i, (value, part)) in key.iter().zip(&index.parts).enumerate() {
            if value.is_nil() && !part.nullable {
                return Err(TupleError::NullKeyPart {
                    index: index.name.clone(),
                    part_no: field_no(i),
                });
            }
            key_part(value, part.field_type)
                .and_then(|p| key::encode_part(&mut out, part.field_type, &p))
                .map_err(|m| TupleError::KeyPartType {
                    index: index.name.clone(),
                    part_no: field_no(i),
                    expected: m.expected,
                    found: m.found,
                })?;
        }
        Ok(out)
    }

    /// Splits the key of an entry of index `index_no` into (the index's own key, primary key).
    /// For the primary index the second half is empty.
    ///
    /// # Errors
    /// [`TupleError::NoSuchIndex`], [`TupleError::MalformedKey`].
    pub fn split_entry_key<'a>(
        &self,
        index_no: usize,
        entry_key: &'a [u8],
    ) -> Result<(&'a [u8], &'a [u8]), TupleError> {
        let index = self.index(index_no)?;
        let own = key::parts_len(&index.types, entry_key)?;
        Ok(entry_key.split_at(own))
    }

    /// Whether a query that needs the fields at these 0-based positions can be answered from
    /// entries of index `index_no` alone (its parts, the primary key's, the covering fields).
    pub fn covers(&self, index_no: usize, positions: &[usize]) -> bool {
        let Ok(index) = self.index(index_no) else {
            return false;
        };
        if index_no == 0 {
            return true;
        }
        let in_parts = |k: &KeyDef, p: usize| k.parts.iter().any(|part| part.position == p);
        positions.iter().all(|&p| {
            in_parts(index, p) || in_parts(self.primary(), p) || index.covering.contains(&p)
        })
    }

    /// The fields an entry of secondary index `index_no` holds, as (0-based position, value),
    /// ascending by position: the index's parts and the primary key's (decoded from the key, see
    /// [`part_value`]) and the covering fields (from the value).
    ///
    /// # Errors
    /// [`TupleError::NoSuchIndex`], [`TupleError::MalformedKey`],
    /// [`TupleError::MalformedTuple`] for a value that is not the covering array.
    pub fn covered_fields(
        &self,
        index_no: usize,
        entry_key: &[u8],
        entry_value: &[u8],
    ) -> Result<Vec<(usize, Value)>, TupleError> {
        let index = self.index(index_no)?;
        let parts = key::decode_key(&index.entry_types, entry_key)?;
        let positions = index.parts.iter().chain(if index_no == 0 {
            &[][..]
        } else {
            &self.primary().parts
        });
        let mut fields: Vec<(usize, Value)> = positions
            .zip(&parts)
            .map(|(def, part)| (def.position, part_value(part)))
            .collect();
        if !index.covering.is_empty() {
            let covered = decode_tuple(entry_value)?;
            if covered.len() != index.covering.len() {
                return Err(TupleError::MalformedTuple {
                    reason: format!(
                        "index {:?} covers {} fields, its entry holds {}",
                        index.name,
                        index.covering.len(),
                        covered.len()
                    ),
                });
            }
            fields.extend(index.covering.iter().copied().zip(covered));
        }
        fields.sort_by_key(|(position, _)| *position);
        fields.dedup_by_key(|(position, _)| *position);
        Ok(fields)
    }
}

#[cfg(test)]
#[path = "tuple_tests.rs"]
mod tests;
