//! The one error type of the tuple layer.
//!
//! Conventions in every message and field of [`TupleError`]: field numbers are 1-based (the first
//! field of a tuple is field 1, as in Tarantool), index numbers are 0-based (the primary index is
//! index 0), key part numbers and update operation numbers are 1-based.

use super::schema::FieldType;

/// Everything that can be wrong with a space definition, a tuple, a key or an update operation.
///
/// Each variant carries enough context to find the culprit: the field's number and name, the
/// index's name, the operation's number and symbol. The engine wraps it as a variant of
/// `strata::Error`; an operation that returns it has changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TupleError {
    // ---------------------------------------------------------------- space definitions
    /// The definition was written by a newer format version than this build understands.
    #[error(
        "space definition version {found} is not supported (this build reads up to {supported})"
    )]
    UnsupportedVersion {
        /// Version found in the definition.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A persisted definition could not be decoded.
    #[error("malformed space definition: {reason}")]
    MalformedDef {
        /// What the decoder reported.
        reason: String,
    },
    /// A field definition has an empty name.
    #[error("field {field_no} has an empty name")]
    EmptyFieldName {
        /// 1-based number of the field.
        field_no: u32,
    },
    /// Two field definitions share a name.
    #[error("fields {first_no} and {second_no} are both named {name:?}")]
    DuplicateFieldName {
        /// The shared name.
        name: String,
        /// 1-based number of the first field with that name.
        first_no: u32,
        /// 1-based number of the second field with that name.
        second_no: u32,
    },
    /// The definition lists no index: every space needs a primary index.
    #[error("a space needs at least one index (the first one is the primary)")]
    NoPrimaryIndex,
    /// An index definition has an empty name.
    #[error("index {index_no} has an empty name")]
    EmptyIndexName {
        /// 0-based number of the index.
        index_no: u32,
    },
    /// Two index definitions share a name.
    #[error("two indexes are named {name:?}")]
    DuplicateIndexName {
        /// The shared name.
        name: String,
    },
    /// An index has no parts.
    #[error("index {index:?} has no parts")]
    EmptyIndexParts {
        /// Name of the index.
        index: String,
    },
    /// An index part or covering field names a field the space does not declare.
    #[error("index {index:?}: unknown field {field} in its {role}")]
    UnknownField {
        /// Name of the index.
        index: String,
        /// The reference as written (a name, or a number).
        field: String,
        /// `"parts"` or `"covering fields"`.
        role: &'static str,
    },
    /// A field appears twice among an index's parts, or twice among its covering fields.
    #[error("index {index:?}: field {field_no} ({field_name}) is listed twice")]
    DuplicateIndexPart {
        /// Name of the index.
        index: String,
        /// 1-based number of the field.
        field_no: u32,
        /// Name of the field.
        field_name: String,
    },
    /// An index part refers to a field of type `any`, which has no order.
    #[error(
        "index {index:?}: field {field_no} ({field_name}) has type any, which cannot be indexed"
    )]
    FieldNotIndexable {
        /// Name of the index.
        index: String,
        /// 1-based number of the field.
        field_no: u32,
        /// Name of the field.
        field_name: String,
    },
    /// The first index (the primary) is not unique.
    #[error("the primary index {index:?} must be unique")]
    PrimaryNotUnique {
        /// Name of the primary index.
        index: String,
    },
    /// A part of the primary index is a nullable field.
    #[error("the primary index {index:?} cannot include nullable field {field_no} ({field_name})")]
    NullablePrimaryPart {
        /// Name of the primary index.
        index: String,
        /// 1-based number of the field.
        field_no: u32,
        /// Name of the field.
        field_name: String,
    },
    /// The primary index lists covering fields: it stores whole tuples already.
    #[error("the primary index {index:?} stores whole tuples; it cannot have covering fields")]
    CoveringPrimary {
        /// Name of the primary index.
        index: String,
    },
    /// A covering field is already part of the index's key or of the primary key.
    #[error(
        "index {index:?}: covering field {field_no} ({field_name}) is already in the entry's key"
    )]
    RedundantCoveringField {
        /// Name of the index.
        index: String,
        /// 1-based number of the field.
        field_no: u32,
        /// Name of the field.
        field_name: String,
    },

    // ---------------------------------------------------------------- tuples
    /// Bytes that should hold a MessagePack tuple do not.
    #[error("malformed tuple: {reason}")]
    MalformedTuple {
        /// What is wrong with the bytes.
        reason: String,
    },
    /// A tuple is not a MessagePack array.
    #[error("a tuple must be a MessagePack array, found {found}")]
    NotAnArray {
        /// MessagePack type found instead.
        found: &'static str,
    },
    /// A tuple has too few or too many fields for the space's format.
    #[error("tuple has {found} fields, the space's format needs {}", field_count_range(*.min, *.max))]
    FieldCount {
        /// Fewest fields allowed (up to and including the last non-nullable field).
        min: u32,
        /// Most fields allowed; `None` when the space allows extra fields.
        max: Option<u32>,
        /// Number of fields in the tuple.
        found: u32,
    },
    /// A field's value does not have the field's type.
    #[error("field {field_no} ({field_name}) must be {expected}, found {found}")]
    FieldType {
        /// 1-based number of the field.
        field_no: u32,
        /// Name of the field.
        field_name: String,
        /// Declared type.
        expected: FieldType,
        /// MessagePack type found (or a description of the out-of-range value).
        found: &'static str,
    },
    /// A non-nullable field holds nil.
    #[error("field {field_no} ({field_name}) cannot be null")]
    NullField {
        /// 1-based number of the field.
        field_no: u32,
        /// Name of the field.
        field_name: String,
    },
    /// A string field holds bytes that are not UTF-8.
    #[error("field {field_no} ({field_name}) is a string that is not valid UTF-8")]
    InvalidUtf8 {
        /// 1-based number of the field.
        field_no: u32,
        /// Name of the field.
        field_name: String,
    },
    /// Converting between a Rust value and a tuple failed (serde).
    #[error("cannot convert between a Rust value and a tuple: {reason}")]
    Serde {
        /// What serde reported.
        reason: String,
    },

    // ---------------------------------------------------------------- keys
    /// A search key has more parts than the index.
    #[error("index {index:?} has {parts} parts, the key has {found}")]
    TooManyKeyParts {
        /// Name of the index.
        index: String,
        /// Number of parts of the index.
        parts: u32,
        /// Number of parts of the key.
        found: u32,
    },
    /// A key part does not have the type of the index part.
    #[error("index {index:?}: key part {part_no} must be {expected}, found {found}")]
    KeyPartType {
        /// Name of the index (empty when encoding outside an index).
        index: String,
        /// 1-based number of the key part.
        part_no: u32,
        /// Type of the index part.
        expected: FieldType,
        /// What the key holds instead.
        found: &'static str,
    },
    /// A key part is null but the index part is not nullable.
    #[error("index {index:?}: key part {part_no} cannot be null")]
    NullKeyPart {
        /// Name of the index.
        index: String,
        /// 1-based number of the key part.
        part_no: u32,
    },
    /// Bytes that should hold an encoded key do not (see `engine/SPACES.md`).
    #[error("malformed key at byte {offset}: {reason}")]
    MalformedKey {
        /// Offset of the offending byte in the key.
        offset: usize,
        /// What was expected there.
        reason: &'static str,
    },
    /// An index number beyond the space's indexes.
    #[error("the space has no index {index_no}")]
    NoSuchIndex {
        /// 0-based number asked for.
        index_no: u32,
    },

    // ---------------------------------------------------------------- updates
    /// An update operation cannot be applied; the tuple is unchanged.
    #[error("update operation {op_no} ('{op}' on field {field}): {kind}")]
    Update {
        /// 1-based number of the operation in its list.
        op_no: u32,
        /// The operation's symbol (`=`, `+`, `-`, `&`, `|`, `^`, `:`, `!`, `#`).
        op: char,
        /// The field as the operation wrote it (a number, possibly negative, or a name).
        field: String,
        /// What went wrong.
        kind: UpdateErrorKind,
    },
    /// Bytes that should hold encoded update operations do not.
    #[error("malformed update operations: {reason}")]
    MalformedOps {
        /// What is wrong.
        reason: String,
    },
    /// An update would change the primary key (Tarantool forbids it; delete and insert instead).
    #[error("update would change the primary key of index {index:?}")]
    PrimaryKeyModified {
        /// Name of the primary index.
        index: String,
    },
}

/// Why an update operation failed (inside [`TupleError::Update`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateErrorKind {
    /// Field number 0: field numbers are 1-based (negative numbers count from the end).
    #[error("field numbers start at 1")]
    FieldNumberZero,
    /// The field does not exist in the tuple (as it is after the previous operations).
    #[error("no such field, the tuple has {len} fields")]
    NoSuchField {
        /// Number of fields at the time of the operation.
        len: u32,
    },
    /// A field name that the space's format does not declare (or no format was given).
    #[error("unknown field name")]
    UnknownFieldName,
    /// The field's current value has the wrong type for the operation.
    #[error("the field must be {expected}, found {found}")]
    FieldType {
        /// What the operation needs.
        expected: &'static str,
        /// What the field holds.
        found: &'static str,
    },
    /// The operation's argument has the wrong type.
    #[error("the argument must be {expected}, found {found}")]
    ArgumentType {
        /// What the operation needs.
        expected: &'static str,
        /// What the argument is.
        found: &'static str,
    },
    /// Integer arithmetic left the range -2^63 ..= 2^64-1.
    #[error("integer overflow")]
    IntegerOverflow,
    /// A splice offset before the start of the string.
    #[error("splice offset {offset} is out of bounds for a string of {len} bytes")]
    SpliceOffset {
        /// The offset as given.
        offset: i64,
        /// Length of the string in bytes.
        len: u64,
    },
    /// A splice cut a multi-byte UTF-8 character.
    #[error("the splice cuts a UTF-8 character")]
    SpliceUtf8,
    /// `#` with a count of 0.
    #[error("the number of fields to delete must be at least 1")]
    DeleteCountZero,
}

fn field_count_range(min: u32, max: Option<u32>) -> String {
    match max {
        Some(max) if max == min => format!("exactly {min}"),
        Some(max) => format!("{min} to {max}"),
        None => format!("at least {min}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_culprit() {
        let e = TupleError::FieldType {
            field_no: 2,
            field_name: "email".into(),
            expected: FieldType::String,
            found: "integer",
        };
        assert_eq!(
            e.to_string(),
            "field 2 (email) must be string, found integer"
        );
        let e = TupleError::FieldCount {
            min: 2,
            max: Some(3),
            found: 5,
        };
        assert_eq!(
            e.to_string(),
            "tuple has 5 fields, the space's format needs 2 to 3"
        );
        let e = TupleError::Update {
            op_no: 1,
            op: '+',
            field: "-1".into(),
            kind: UpdateErrorKind::IntegerOverflow,
        };
        assert_eq!(
            e.to_string(),
            "update operation 1 ('+' on field -1): integer overflow"
        );
    }
}
