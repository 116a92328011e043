//! Update operations on tuples, as in Tarantool's `update` and `upsert`.
//!
//! | symbol | operation | argument |
//! |--------|-----------|----------|
//! | `=` | set the field (one past the last field appends) | any value |
//! | `+` `-` | add, subtract | integer or float |
//! | `&` `\|` `^` | bitwise and, or, xor | unsigned; the field must be unsigned |
//! | `:` | string splice | offset, length, replacement |
//! | `!` | insert a field before this one (one past the last appends) | any value |
//! | `#` | delete fields from this one on | count >= 1 |
//!
//! **Field numbers** are 1-based as in Tarantool's Lua API: field 1 is the first. A negative
//! number counts from the end: -1 is the last field, except for `!`, where -1 inserts after the
//! last field (so -1 appends, as in Tarantool). A field may also be named, when a schema is
//! given. Operations apply in order, each to the result of the previous one.
//!
//! **Arithmetic**: integer `+` integer stays an integer, computed exactly; a result outside
//! -2^63 ..= 2^64-1 is an error (`IntegerOverflow`). If either side is a float the result is an
//! f64 (MessagePack double). Non-negative integer results are written as MessagePack unsigned.
//!
//! **Splice** `{':', field, offset, length, replacement}` works on bytes, like Tarantool: offset
//! 1 is the first byte, offsets past the end append, a negative offset counts from the end (-1 is
//! after the last byte); a negative length keeps that many bytes at the end of the tail. The
//! result must still be UTF-8 (a cut inside a character is an error).
//!
//! **All or nothing**: [`apply`] works on a copy; if any operation fails the caller's tuple is
//! untouched and the error names the operation (1-based number, symbol) and its field.
//!
//! **Upsert** ([`SpaceSchema::upsert`]): the tuple and the well-formedness of the operations
//! are checked when the statement is made. When the operations later apply to an existing tuple
//! and any of them fails (or the result breaks the format, or changes the primary key), the whole
//! upsert is skipped: the existing tuple stays as it was and the outcome carries the error for the
//! caller to log. Tarantool skips failing operations one at a time instead; skipping the whole
//! statement keeps upserts all-or-nothing like every other statement.

use rmpv::Value;

use super::error::{TupleError, UpdateErrorKind};
use super::schema::{u32_of, FieldRef, SpaceSchema};
use super::tuple::{decode_tuple, encode_tuple, value_kind};

/// One update operation (see the module documentation for each one's semantics).
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOp {
    /// `=`: set the field to `value`; one past the last field appends.
    Set {
        /// The field.
        field: FieldRef,
        /// The new value.
        value: Value,
    },
    /// `+`: add a number.
    Add {
        /// The field (must hold a number).
        field: FieldRef,
        /// An integer or float.
        value: Value,
    },
    /// `-`: subtract a number.
    Sub {
        /// The field (must hold a number).
        field: FieldRef,
        /// An integer or float.
        value: Value,
    },
    /// `&`: bitwise and.
    And {
        /// The field (must hold an unsigned integer).
        field: FieldRef,
        /// The operand.
        value: u64,
    },
    /// `|`: bitwise or.
    Or {
        /// The field (must hold an unsigned integer).
        field: FieldRef,
        /// The operand.
        value: u64,
    },
    /// `^`: bitwise xor.
    Xor {
        /// The field (must hold an unsigned integer).
        field: FieldRef,
        /// The operand.
        value: u64,
    },
    /// `:`: replace `length` bytes at `offset` of a string field with `replacement`.
    Splice {
        /// The field (must hold a string).
        field: FieldRef,
        /// 1-based byte offset; negative counts from the end; 0 is an error.
        offset: i64,
        /// Bytes to cut; negative keeps that many bytes at the end.
        length: i64,
        /// Inserted at the offset.
        replacement: String,
    },
    /// `!`: insert a field before `field` (one past the last, or -1, appends).
    Insert {
        /// Where the new field goes.
        field: FieldRef,
        /// The new field.
        value: Value,
    },
    /// `#`: delete `count` fields starting at `field` (fewer if the tuple ends first).
    Delete {
        /// The first field to delete.
        field: FieldRef,
        /// How many; at least 1.
        count: u32,
    },
}

impl UpdateOp {
    /// `=`.
    pub fn set(field: impl Into<FieldRef>, value: impl Into<Value>) -> Self {
        UpdateOp::Set {
            field: field.into(),
            value: value.into(),
        }
    }
    /// `+`.
    pub fn add(field: impl Into<FieldRef>, value: impl Into<Value>) -> Self {
        UpdateOp::Add {
            field: field.into(),
            value: value.into(),
        }
    }
    /// `-`.
    pub fn sub(field: impl Into<FieldRef>, value: impl Into<Value>) -> Self {
        UpdateOp::Sub {
            field: field.into(),
            value: value.into(),
        }
    }
    /// `&`.
    pub fn and(field: impl Into<FieldRef>, value: u64) -> Self {
        UpdateOp::And {
            field: field.into(),
            value,
        }
    }
    /// `|`.
    pub fn or(field: impl Into<FieldRef>, value: u64) -> Self {
        UpdateOp::Or {
            field: field.into(),
            value,
        }
    }
    /// `^`.
    pub fn xor(field: impl Into<FieldRef>, value: u64) -> Self {
        UpdateOp::Xor {
            field: field.into(),
            value,
        }
    }
    /// `:`.
    pub fn splice(
        field: impl Into<FieldRef>,
        offset: i64,
        length: i64,
        replacement: impl Into<String>,
    ) -> Self {
        UpdateOp::Splice {
            field: field.into(),
            offset,
            length,
            replacement: replacement.into(),
        }
    }
    /// `!`.
    pub fn insert(field: impl Into<FieldRef>, value: impl Into<Value>) -> Self {
        UpdateOp::Insert {
            field: field.into(),
            value: value.into(),
        }
    }
    /// `#`.
    pub fn delete(field: impl Into<FieldRef>, count: u32) -> Self {
        UpdateOp::Delete {
            field: field.into(),
            count,
        }
    }

    /// The operation's symbol: `=`, `+`, `-`, `&`, `|`, `^`, `:`, `!` or `#`.
    pub fn symbol(&self) -> char {
        match self {
            UpdateOp::Set { .. } => '=',
            UpdateOp::Add { .. } => '+',
            UpdateOp::Sub { .. } => '-',
            UpdateOp::And { .. } => '&',
            UpdateOp::Or { .. } => '|',
            UpdateOp::Xor { .. } => '^',
            UpdateOp::Splice { .. } => ':',
            UpdateOp::Insert { .. } => '!',
            UpdateOp::Delete { .. } => '#',
        }
    }

    /// The field the operation addresses.
    pub fn field(&self) -> &FieldRef {
        match self {
            UpdateOp::Set { field, .. }
            | UpdateOp::Add { field, .. }
            | UpdateOp::Sub { field, .. }
            | UpdateOp::And { field, .. }
            | UpdateOp::Or { field, .. }
            | UpdateOp::Xor { field, .. }
            | UpdateOp::Splice { field, .. }
            | UpdateOp::Insert { field, .. }
            | UpdateOp::Delete { field, .. } => field,
        }
    }

    /// How the operation finds its position: `Structural` ones shift later fields.
    fn addressing(&self) -> Addressing {
        match self {
            UpdateOp::Set { .. } => Addressing::SetOrAppend,
            UpdateOp::Insert { .. } => Addressing::Insert,
            UpdateOp::Delete { .. } => Addressing::Existing { structural: true },
            _ => Addressing::Existing { structural: false },
        }
    }

    fn error(&self, op_no: usize, kind: UpdateErrorKind) -> TupleError {
        TupleError::Update {
            op_no: u32_of(op_no + 1),
            op: self.symbol(),
            field: self.field().to_string(),
            kind,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Addressing {
    /// An existing field, or one past the last (append).
    SetOrAppend,
    /// A gap between fields: 0 ..= len; -1 is after the last field.
    Insert,
    /// An existing field.
    Existing { structural: bool },
}

/// A field reference as a signed 1-based number (names resolved through the schema).
fn field_number(field: &FieldRef, schema: Option<&SpaceSchema>) -> Result<i64, UpdateErrorKind> {
    match field {
        FieldRef::Number(0) => Err(UpdateErrorKind::FieldNumberZero),
        FieldRef::Number(n) => Ok(i64::from(*n)),
        FieldRef::Name(name) => schema
            .and_then(|s| s.field_position(name))
            .map(|p| p as i64 + 1)
            .ok_or(UpdateErrorKind::UnknownFieldName),
    }
}

/// The 0-based position an operation addresses in a tuple of `len` fields.
fn position(number: i64, len: usize, addressing: Addressing) -> Result<usize, UpdateErrorKind> {
    let len_i = len as i64;
    // How many positions the operation may address, and where negative numbers count from.
    let (slots, from_end) = match addressing {
        // -1 is the last field; `len` itself appends.
        Addressing::SetOrAppend => (len_i + 1, len_i),
        // -1 is the gap after the last field.
        Addressing::Insert => (len_i + 1, len_i + 1),
        Addressing::Existing { .. } => (len_i, len_i),
    };
    let p = if number > 0 {
        number - 1
    } else {
        from_end + number
    };
    if p < 0 || p >= slots {
        return Err(UpdateErrorKind::NoSuchField { len: u32_of(len) });
    }
    Ok(p as usize)
}

/// Checks what can be checked without the tuple: field numbers, names (against `schema`),
/// argument types, counts and splice offsets.
///
/// # Errors
/// The first [`TupleError::Update`] found.
pub fn check_ops(ops: &[UpdateOp], schema: Option<&SpaceSchema>) -> Result<(), TupleError> {
    for (op_no, op) in ops.iter().enumerate() {
        check_op(op, schema).map_err(|kind| op.error(op_no, kind))?;
    }
    Ok(())
}

fn check_op(op: &UpdateOp, schema: Option<&SpaceSchema>) -> Result<i64, UpdateErrorKind> {
    let number = field_number(op.field(), schema)?;
    match op {
        UpdateOp::Add { value, .. } | UpdateOp::Sub { value, .. } if number_of(value).is_none() => {
            Err(UpdateErrorKind::ArgumentType {
                expected: "a number",
                found: value_kind(value),
            })
        }
        UpdateOp::Delete { count: 0, .. } => Err(UpdateErrorKind::DeleteCountZero),
        UpdateOp::Splice { offset: 0, .. } => {
            Err(UpdateErrorKind::SpliceOffset { offset: 0, len: 0 })
        }
        _ => Ok(number),
    }
}

/// Applies `ops` in order to a copy of `tuple` and returns the result.
///
/// Names in field references resolve through `schema` (without one, a name is an error). The
/// result is not checked against the format: [`SpaceSchema::update`] does that.
///
/// # Errors
/// [`TupleError::Update`] naming the first operation that fails; `tuple` is unchanged.
pub fn apply(
    tuple: &[Value],
    ops: &[UpdateOp],
    schema: Option<&SpaceSchema>,
) -> Result<Vec<Value>, TupleError> {
    let mut fields = tuple.to_vec();
    for (op_no, op) in ops.iter().enumerate() {
        apply_one(&mut fields, op, schema).map_err(|kind| op.error(op_no, kind))?;
    }
    Ok(fields)
}

fn apply_one(
    fields: &mut Vec<Value>,
    op: &UpdateOp,
    schema: Option<&SpaceSchema>,
) -> Result<(), UpdateErrorKind> {
    let number = check_op(op, schema)?;
    let p = position(number, fields.len(), op.addressing())?;
    match op {
        UpdateOp::Set { value, .. } if p == fields.len() => fields.push(value.clone()),
        UpdateOp::Set { value, .. } => fields[p] = value.clone(),
        UpdateOp::Insert { value, .. } => fields.insert(p, value.clone()),
        UpdateOp::Delete { count, .. } => {
            let end = p.saturating_add(*count as usize).min(fields.len());
            fields.drain(p..end);
        }
        UpdateOp::Add { value, .. } => fields[p] = arithmetic(&fields[p], value, false)?,
        UpdateOp::Sub { value, .. } => fields[p] = arithmetic(&fields[p], value, true)?,
        UpdateOp::And { value, .. } => fields[p] = bitwise(&fields[p], |x| x & value)?,
        UpdateOp::Or { value, .. } => fields[p] = bitwise(&fields[p], |x| x | value)?,
        UpdateOp::Xor { value, .. } => fields[p] = bitwise(&fields[p], |x| x ^ value)?,
        UpdateOp::Splice {
            offset,
            length,
            replacement,
            ..
        } => fields[p] = splice(&fields[p], *offset, *length, replacement)?,
    }
    Ok(())
}

enum Number {
    Int(i128),
    Float(f64),
}

fn number_of(value: &Value) -> Option<Number> {
    match value {
        Value::Integer(i) => i
            .as_u64()
            .map(i128::from)
            .or_else(|| i.as_i64().map(i128::from))
            .map(Number::Int),
        Value::F32(f) => Some(Number::Float(f64::from(*f))),
        Value::F64(f) => Some(Number::Float(*f)),
        _ => None,
    }
}

fn arithmetic(field: &Value, arg: &Value, subtract: bool) -> Result<Value, UpdateErrorKind> {
    let found = value_kind;
    let lhs = number_of(field).ok_or(UpdateErrorKind::FieldType {
        expected: "a number",
        found: found(field),
    })?;
    let rhs = number_of(arg).ok_or(UpdateErrorKind::ArgumentType {
        expected: "a number",
        found: found(arg),
    })?;
    match (lhs, rhs) {
        (Number::Int(a), Number::Int(b)) => {
            let result = if subtract { a - b } else { a + b };
            if let Ok(u) = u64::try_from(result) {
                Ok(Value::from(u))
            } else if let Ok(i) = i64::try_from(result) {
                Ok(Value::from(i))
            } else {
                Err(UpdateErrorKind::IntegerOverflow)
            }
        }
        (a, b) => {
            let float = |n| match n {
                Number::Int(i) => i as f64,
                Number::Float(f) => f,
            };
            let (a, b) = (float(a), float(b));
            Ok(Value::F64(if subtract { a - b } else { a + b }))
        }
    }
}

fn bitwise(field: &Value, op: impl Fn(u64) -> u64) -> Result<Value, UpdateErrorKind> {
    match field {
        Value::Integer(i) => i.as_u64().map(|u| Value::from(op(u))),
        _ => None,
    }
    .ok_or(UpdateErrorKind::FieldType {
        expected: "an unsigned integer",
        found: value_kind(field),
    })
}

fn splice(
    field: &Value,
    offset: i64,
    length: i64,
    replacement: &str,
) -> Result<Value, UpdateErrorKind> {
    let s = match field {
        Value::String(s) => s.as_str(),
        _ => None,
    };
    let s = s.ok_or(UpdateErrorKind::FieldType {
        expected: "a string",
        found: value_kind(field),
    })?;
    let len = s.len() as i64;
    let start = if offset < 0 {
        if -offset > len + 1 {
            return Err(UpdateErrorKind::SpliceOffset {
                offset,
                len: len as u64,
            });
        }
        offset + len + 1
    } else if offset > 0 {
        (offset - 1).min(len)
    } else {
        return Err(UpdateErrorKind::SpliceOffset {
            offset,
            len: len as u64,
        });
    };
    let tail = len - start;
    let cut = if length < 0 {
        if -length > tail {
            0
        } else {
            tail + length
        }
    } else {
        length.min(tail)
    };
    let (start, end) = (start as usize, (start + cut) as usize);
    if !s.is_char_boundary(start) || !s.is_char_boundary(end) {
        return Err(UpdateErrorKind::SpliceUtf8);
    }
    let mut result = String::with_capacity(s.len() - (end - start) + replacement.len());
    result.push_str(&s[..start]);
    result.push_str(replacement);
    result.push_str(&s[end..]);
    Ok(Value::from(result))
}

/// Whether `ops` may change or move the fields at these 0-based `positions` (the primary key's,
/// typically), so the caller can refuse them before doing any work.
///
/// With the tuple's length the answer is exact about positions (it does not look at values: a
/// `=` that writes the same value still counts). Without it (a blind upsert) it is conservative:
/// a negative field number, or an insertion or deletion at or before a position, counts as
/// touching.
///
/// # Errors
/// The [`TupleError::Update`] that [`apply`] would report for a bad field reference.
pub fn touches_fields(
    ops: &[UpdateOp],
    tuple_len: Option<usize>,
    positions: &[usize],
    schema: Option<&SpaceSchema>,
) -> Result<bool, TupleError> {
    let Some(len) = tuple_len else {
        let mut touched = Vec::new();
        let mut shifted_from = usize::MAX;
        for (op_no, op) in ops.iter().enumerate() {
            let number = check_op(op, schema).map_err(|kind| op.error(op_no, kind))?;
            if number < 0 {
                return Ok(!positions.is_empty());
            }
            // Operations below every earlier insertion or deletion address original fields.
            let p = (number - 1) as usize;
            match op.addressing() {
                Addressing::Insert | Addressing::Existing { structural: true } => {
                    shifted_from = shifted_from.min(p)
                }
                _ => touched.push(p),
            }
        }
        return Ok(positions
            .iter()
            .any(|q| *q >= shifted_from || touched.contains(q)));
    };
    // Where each current field came from: `Some(original position)` if untouched.
    let mut origin: Vec<Option<usize>> = (0..len).map(Some).collect();
    for (op_no, op) in ops.iter().enumerate() {
        let err = |kind| op.error(op_no, kind);
        let number = check_op(op, schema).map_err(err)?;
        let p = position(number, origin.len(), op.addressing()).map_err(err)?;
        match op {
            UpdateOp::Set { .. } if p == origin.len() => origin.push(None),
            UpdateOp::Insert { .. } => origin.insert(p, None),
            UpdateOp::Delete { count, .. } => {
                let end = p.saturating_add(*count as usize).min(origin.len());
                origin.drain(p..end);
            }
            _ => origin[p] = None,
        }
    }
    Ok(positions.iter().any(|&q| origin.get(q) != Some(&Some(q))))
}

/// Encodes operations as MessagePack, in Tarantool's layout: an array of arrays
/// `[symbol, field, args...]`, with 1-based (possibly negative) field numbers or names.
pub fn encode_ops(ops: &[UpdateOp]) -> Vec<u8> {
    let field = |f: &FieldRef| match f {
        FieldRef::Number(n) => Value::from(*n),
        FieldRef::Name(name) => Value::from(name.as_str()),
    };
    let encoded: Vec<Value> = ops
        .iter()
        .map(|op| {
            let mut items = vec![Value::from(op.symbol().to_string()), field(op.field())];
            match op {
                UpdateOp::Set { value, .. }
                | UpdateOp::Add { value, .. }
                | UpdateOp::Sub { value, .. }
                | UpdateOp::Insert { value, .. } => items.push(value.clone()),
                UpdateOp::And { value, .. }
                | UpdateOp::Or { value, .. }
                | UpdateOp::Xor { value, .. } => items.push(Value::from(*value)),
                UpdateOp::Splice {
                    offset,
                    length,
                    replacement,
                    ..
                } => items.extend([
                    Value::from(*offset),
                    Value::from(*length),
                    Value::from(replacement.as_str()),
                ]),
                UpdateOp::Delete { count, .. } => items.push(Value::from(*count)),
            }
            Value::Array(items)
        })
        .collect();
    encode_tuple(&encoded)
}

/// Decodes operations written by [`encode_ops`].
///
/// # Errors
/// [`TupleError::MalformedOps`] naming the operation that does not parse; never panics.
pub fn decode_ops(bytes: &[u8]) -> Result<Vec<UpdateOp>, TupleError> {
    let list = decode_tuple(bytes).map_err(|e| TupleError::MalformedOps {
        reason: e.to_string(),
    })?;
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            decode_op(item).ok_or_else(|| TupleError::MalformedOps {
                reason: format!(
                    "operation {} is not [symbol, field, args...]: {item}",
                    i + 1
                ),
            })
        })
        .collect()
}

fn decode_op(item: &Value) -> Option<UpdateOp> {
    let Value::Array(items) = item else {
        return None;
    };
    let symbol = items.first()?.as_str()?;
    let field = match items.get(1)? {
        Value::String(s) => FieldRef::Name(s.as_str()?.to_owned()),
        Value::Integer(n) => FieldRef::Number(i32::try_from(n.as_i64()?).ok()?),
        _ => return None,
    };
    let args = &items[2..];
    let one = || match args {
        [value] => Some(value.clone()),
        _ => None,
    };
    let unsigned = || one()?.as_u64();
    let op = match symbol {
        "=" => UpdateOp::Set {
            field,
            value: one()?,
        },
        "+" => UpdateOp::Add {
            field,
            value: one()?,
        },
        "-" => UpdateOp::Sub {
            field,
            value: one()?,
        },
        "&" => UpdateOp::And {
            field,
            value: unsigned()?,
        },
        "|" => UpdateOp::Or {
            field,
            value: unsigned()?,
        },
        "^" => UpdateOp::Xor {
            field,
            value: unsigned()?,
        },
        "!" => UpdateOp::Insert {
            field,
            value: one()?,
        },
        "#" => UpdateOp::Delete {
            field,
            count: u32::try_from(unsigned()?).ok()?,
        },
        ":" => match args {
            [offset, length, replacement] => UpdateOp::Splice {
                field,
                offset: offset.as_i64()?,
                length: length.as_i64()?,
                replacement: replacement.as_str()?.to_owned(),
            },
            _ => return None,
        },
        _ => return None,
    };
    Some(op)
}

/// What an upsert did (see [`SpaceSchema::upsert`]).
#[derive(Debug, Clone, PartialEq)]
pub enum UpsertOutcome {
    /// No tuple had the key: the upsert's tuple is stored.
    Inserted(Vec<Value>),
    /// The operations applied to the existing tuple: this is the new tuple.
    Updated(Vec<Value>),
    /// The operations failed on the existing tuple, which stays unchanged; log the error.
    Skipped(TupleError),
}

impl SpaceSchema {
    /// Updates a tuple: applies `ops` ([`apply`], with field names resolved), checks the result
    /// against the format and that the primary key did not change.
    ///
    /// # Errors
    /// [`TupleError::Update`], a tuple validation error for the result, or
    /// [`TupleError::PrimaryKeyModified`]. `old` is never changed.
    pub fn update(&self, old: &[Value], ops: &[UpdateOp]) -> Result<Vec<Value>, TupleError> {
        let new = apply(old, ops, Some(self))?;
        self.validate_tuple(&new)?;
        if self.key(0, old)? != self.key(0, &new)? {
            return Err(TupleError::PrimaryKeyModified {
                index: self.primary().name.clone(),
            });
        }
        Ok(new)
    }

    /// Upsert: insert `tuple` if `existing` is `None`, else update `existing` with `ops`.
    ///
    /// `tuple` and the operations' well-formedness ([`check_ops`]) are checked up front, even
    /// when a tuple exists, so a bad statement is refused when it is made. A failure while
    /// applying the operations to `existing` is not an error: the outcome is
    /// [`UpsertOutcome::Skipped`] and `existing` stays (see the module documentation).
    ///
    /// # Errors
    /// A validation error for `tuple`, or [`TupleError::Update`] from [`check_ops`].
    pub fn upsert(
        &self,
        existing: Option<&[Value]>,
        tuple: &[Value],
        ops: &[UpdateOp],
    ) -> Result<UpsertOutcome, TupleError> {
        self.validate_tuple(tuple)?;
        check_ops(ops, Some(self))?;
        Ok(match existing {
            None => UpsertOutcome::Inserted(tuple.to_vec()),
            Some(old) => match self.update(old, ops) {
                Ok(new) => UpsertOutcome::Updated(new),
                Err(error) => UpsertOutcome::Skipped(error),
            },
        })
    }
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
