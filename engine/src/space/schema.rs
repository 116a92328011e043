//! Space definitions: the fields of a space's tuples and its indexes.
//!
//! A [`SpaceDef`] is what a user writes and what is persisted (MessagePack, see
//! [`SpaceDef::to_msgpack`]); a [`SpaceSchema`] is a checked definition with every field reference
//! resolved to a tuple position, which the rest of the tuple layer works from.
//!
//! ```ignore
//! # use strata::space::{FieldType, IndexDef, SpaceDef};
//! let def = SpaceDef::new()
//!     .field("id", FieldType::Unsigned)
//!     .field("email", FieldType::String)
//!     .nullable_field("city", FieldType::String)
//!     .index(IndexDef::new("primary", ["id"]))
//!     .index(IndexDef::new("email", ["email"]))
//!     .index(IndexDef::new("city", ["city"]).non_unique().covering(["email"]));
//! def.validate()?;
//! # Ok::<(), strata::space::TupleError>(())
//! ```
//!
//! Numbering: field numbers are 1-based (field 1 is the first field of a tuple, as in Tarantool);
//! a *position* (`KeyPartDef::position`, `KeyDef::covering`) is the 0-based index into the
//! tuple's array. Index numbers are 0-based: index 0 is the primary.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::TupleError;

/// Version of the [`SpaceDef`] format written by this build (the `version` field).
pub const SPACE_DEF_VERSION: u32 = 1;

/// The type of a tuple field, as in Tarantool's space format.
///
/// Which MessagePack values each type accepts is listed on each variant; nil is accepted only by
/// nullable fields (and always by [`FieldType::Any`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A non-negative integer, 0 ..= 2^64-1.
    Unsigned,
    /// An integer, -2^63 ..= 2^64-1 (MessagePack int or uint). Shares its key encoding with
    /// `Unsigned`, so both compare in one integer domain.
    Integer,
    /// An integer or a floating-point number (f32 or f64); integers and floats compare by exact
    /// mathematical value, so `1` and `1.0` are the same key.
    Number,
    /// A UTF-8 string, compared byte by byte (no collation).
    String,
    /// `true` or `false`; false sorts first.
    Boolean,
    /// A byte string (MessagePack bin), compared byte by byte.
    Varbinary,
    /// A UUID: MessagePack ext type 2 with 16 bytes (Tarantool's MP_UUID), compared byte by byte.
    Uuid,
    /// Any MessagePack value, including nil, arrays and maps. Cannot be indexed.
    Any,
}

impl FieldType {
    /// The lower-case name used in definitions and messages (`"unsigned"`, `"string"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Unsigned => "unsigned",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
            FieldType::Varbinary => "varbinary",
            FieldType::Uuid => "uuid",
            FieldType::Any => "any",
        }
    }

    /// Whether an index part may use a field of this type (every type but `Any`).
    pub fn is_indexable(self) -> bool {
        self != FieldType::Any
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reference to a field: by name, or by 1-based number.
///
/// In index definitions a number must name a declared field (1 ..= number of fields). In update
/// operations a negative number counts from the end of the tuple (-1 is the last field).
/// Serialised as a MessagePack string or integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldRef {
    /// A 1-based field number; negative counts from the end (update operations only).
    Number(i32),
    /// A field name from the space's format.
    Name(String),
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldRef::Number(n) => write!(f, "{n}"),
            FieldRef::Name(name) => f.write_str(name),
        }
    }
}

impl From<&str> for FieldRef {
    fn from(name: &str) -> Self {
        FieldRef::Name(name.to_owned())
    }
}

impl From<String> for FieldRef {
    fn from(name: String) -> Self {
        FieldRef::Name(name)
    }
}

impl From<&String> for FieldRef {
    fn from(name: &String) -> Self {
        FieldRef::Name(name.clone())
    }
}

impl From<i32> for FieldRef {
    fn from(number: i32) -> Self {
        FieldRef::Number(number)
    }
}

/// One field of a space's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// Unique, non-empty name.
    pub name: String,
    /// The values the field accepts.
    pub field_type: FieldType,
    /// Whether the field may hold nil. Trailing nullable fields may also be missing from a tuple,
    /// which reads as nil.
    #[serde(default)]
    pub nullable: bool,
}

impl FieldDef {
    /// A non-nullable field.
    pub fn new(name: impl Into<String>, field_type: FieldType) -> Self {
        FieldDef {
            name: name.into(),
            field_type,
            nullable: false,
        }
    }

    /// The same field, nullable.
    pub fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
}

/// One index of a space. Its key is the listed parts, in order; each index is one keyspace.
///
/// A secondary index entry's key is (secondary key ++ primary key), so entries of a non-unique
/// index are still distinct. Its value holds the `covering` fields, so a query that needs only the
/// index's parts, the primary key and the covering fields never reads the primary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Unique, non-empty name.
    pub name: String,
    /// The fields of the key, most significant first; at least one. No field of type `any`.
    pub parts: Vec<FieldRef>,
    /// Whether two tuples may share a key. The primary index must be unique. As in Tarantool, a
    /// unique secondary index admits several tuples whose key contains a null.
    #[serde(default = "default_unique")]
    pub unique: bool,
    /// Extra fields stored in each entry of a secondary index (not allowed on the primary, and
    /// not fields already in this index's key or in the primary key).
    #[serde(default)]
    pub covering: Vec<FieldRef>,
}

fn default_unique() -> bool {
    true
}

impl IndexDef {
    /// A unique index over `parts` (names or 1-based numbers), without covering fields.
    pub fn new<P: Into<FieldRef>>(
        name: impl Into<String>,
        parts: impl IntoIterator<Item = P>,
    ) -> Self {
        IndexDef {
            name: name.into(),
            parts: parts.into_iter().map(Into::into).collect(),
            unique: true,
            covering: Vec::new(),
        }
    }

    /// The same index, allowing several tuples with one key.
    pub fn non_unique(mut self) -> Self {
        self.unique = false;
        self
    }

    /// The same index, storing these fields in its entries (replaces earlier covering fields).
    pub fn covering<P: Into<FieldRef>>(mut self, fields: impl IntoIterator<Item = P>) -> Self {
        self.covering = fields.into_iter().map(Into::into).collect();
        self
    }
}

/// The definition of a space: its format (fields) and indexes, the first being the primary.
///
/// Build one with the builder methods, check it with [`SpaceDef::validate`] (or turn it into a
/// [`SpaceSchema`]), persist it with [`SpaceDef::to_msgpack`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceDef {
    /// Format version of this definition ([`SPACE_DEF_VERSION`] when built by this crate).
    pub version: u32,
    /// The tuple format: field `i` (0-based) describes position `i` of every tuple.
    pub fields: Vec<FieldDef>,
    /// The indexes; `indexes[0]` is the primary index (unique, no nullable part).
    pub indexes: Vec<IndexDef>,
    /// Whether tuples may have fields beyond `fields` (of any type). Off by default, so a tuple
    /// with an undeclared field is rejected; Tarantool allows them.
    #[serde(default)]
    pub allow_extra_fields: bool,
}

impl Default for SpaceDef {
    fn default() -> Self {
        SpaceDef::new()
    }
}

impl SpaceDef {
    /// An empty definition of the current version: add fields and indexes with the builders.
    pub fn new() -> Self {
        SpaceDef {
            version: SPACE_DEF_VERSION,
            fields: Vec::new(),
            indexes: Vec::new(),
            allow_extra_fields: false,
        }
    }

    /// Appends a non-nullable field.
    pub fn field(mut self, name: impl Into<String>, field_type: FieldType) -> Self {
        self.fields.push(FieldDef::new(name, field_type));
        self
    }

    /// Appends a nullable field.
    pub fn nullable_field(mut self, name: impl Into<String>, field_type: FieldType) -> Self {
        self.fields.push(FieldDef::new(name, field_type).nullable());
        self
    }

    /// Appends an index; the first one appended is the primary.
    pub fn index(mut self, index: IndexDef) -> Self {
        self.indexes.push(index);
        self
    }

    /// Allows tuples to carry fields beyond the declared ones.
    pub fn allow_extra_fields(mut self) -> Self {
        self.allow_extra_fields = true;
        self
    }

    /// Checks the definition.
    ///
    /// # Errors
    /// The first problem found, as a schema variant of [`TupleError`]: unsupported version,
    /// empty or duplicate field or index names, no index, an index without parts, unknown or
    /// repeated fields, an `any` field indexed, a non-unique primary, a nullable primary part,
    /// covering fields on the primary or redundant covering fields.
    pub fn validate(&self) -> Result<(), TupleError> {
        resolve(self).map(drop)
    }

    /// The definition as MessagePack, with named fields (a map) so later versions can add fields.
    pub fn to_msgpack(&self) -> Vec<u8> {
        // Serialising plain strings, integers and vectors into a Vec cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes a definition written by [`SpaceDef::to_msgpack`]. Does not validate it.
    ///
    /// # Errors
    /// [`TupleError::MalformedDef`] if the bytes are not a definition,
    /// [`TupleError::UnsupportedVersion`] if it is newer than this build.
    pub fn from_msgpack(bytes: &[u8]) -> Result<SpaceDef, TupleError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        // Look at the version first, so a newer definition reports its version rather than
        // whatever field this build fails to parse.
        let probe: VersionOnly =
            rmp_serde::from_slice(bytes).map_err(|e| TupleError::MalformedDef {
                reason: e.to_string(),
            })?;
        check_version(probe.version)?;
        rmp_serde::from_slice(bytes).map_err(|e| TupleError::MalformedDef {
            reason: e.to_string(),
        })
    }
}

fn check_version(version: u32) -> Result<(), TupleError> {
    if version == 0 || version > SPACE_DEF_VERSION {
        return Err(TupleError::UnsupportedVersion {
            found: version,
            supported: SPACE_DEF_VERSION,
        });
    }
    Ok(())
}

/// One part of a resolved index key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPartDef {
    /// 0-based position of the field in the tuple.
    pub position: usize,
    /// The field's type (never `Any`).
    pub field_type: FieldType,
    /// Whether the field, and so this part, may be null.
    pub nullable: bool,
}

/// A resolved index: what its keys and entries are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDef {
    pub(super) name: String,
    pub(super) unique: bool,
    pub(super) parts: Vec<KeyPartDef>,
    pub(super) types: Vec<FieldType>,
    /// Types of an entry key's parts: this index's parts, then (for a secondary) the primary's.
    pub(super) entry_types: Vec<FieldType>,
    pub(super) covering: Vec<usize>,
}

impl KeyDef {
    /// The index's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the index is unique.
    pub fn is_unique(&self) -> bool {
        self.unique
    }

    /// The key's parts, most significant first.
    pub fn parts(&self) -> &[KeyPartDef] {
        &self.parts
    }

    /// The key parts' types, in order (what `key::encode_key`/`decode_key` take).
    pub fn part_types(&self) -> &[FieldType] {
        &self.types
    }

    /// The types of the parts of an entry key: this index's parts, then for a secondary index
    /// the primary index's parts (an entry key is secondary key ++ primary key).
    pub fn entry_types(&self) -> &[FieldType] {
        &self.entry_types
    }

    /// 0-based positions of the covering fields, in definition order (empty for the primary).
    pub fn covering(&self) -> &[usize] {
        &self.covering
    }

    /// Whether any part of the key is nullable.
    pub fn is_nullable(&self) -> bool {
        self.parts.iter().any(|p| p.nullable)
    }
}

/// A checked [`SpaceDef`] with every field reference resolved; cheap to share behind an `Arc`.
///
/// Tuple validation, key extraction ([`crate::space::tuple`]) and updates
/// ([`crate::space::update`]) are methods of this type.
#[derive(Debug, Clone)]
pub struct SpaceSchema {
    pub(super) def: SpaceDef,
    pub(super) indexes: Vec<KeyDef>,
    /// Fewest fields a tuple may have: up to and including the last non-nullable field.
    pub(super) min_field_count: usize,
    pub(super) positions_by_name: HashMap<String, usize>,
}

impl SpaceSchema {
    /// Checks `def` and resolves it.
    ///
    /// # Errors
    /// As [`SpaceDef::validate`].
    pub fn new(def: SpaceDef) -> Result<SpaceSchema, TupleError> {
        let Resolved {
            indexes,
            min_field_count,
            positions_by_name,
        } = resolve(&def)?;
        Ok(SpaceSchema {
            def,
            indexes,
            min_field_count,
            positions_by_name,
        })
    }

    /// The definition this schema was built from.
    pub fn def(&self) -> &SpaceDef {
        &self.def
    }

    /// The declared fields.
    pub fn fields(&self) -> &[FieldDef] {
        &self.def.fields
    }

    /// The resolved indexes; index 0 is the primary.
    pub fn indexes(&self) -> &[KeyDef] {
        &self.indexes
    }

    /// The primary index.
    pub fn primary(&self) -> &KeyDef {
        // `resolve` rejects definitions without an index, so index 0 exists.
        &self.indexes[0]
    }

    /// The index with this 0-based number.
    ///
    /// # Errors
    /// [`TupleError::NoSuchIndex`] if there is none.
    pub fn index(&self, index_no: usize) -> Result<&KeyDef, TupleError> {
        self.indexes.get(index_no).ok_or(TupleError::NoSuchIndex {
            index_no: u32_of(index_no),
        })
    }

    /// The 0-based number of the index with this name.
    pub fn index_no(&self, name: &str) -> Option<usize> {
        self.indexes.iter().position(|k| k.name == name)
    }

    /// The 0-based position of the field with this name.
    pub fn field_position(&self, name: &str) -> Option<usize> {
        self.positions_by_name.get(name).copied()
    }

    /// The name of the field at a 0-based position (empty beyond the declared fields).
    pub fn field_name(&self, position: usize) -> &str {
        self.def
            .fields
            .get(position)
            .map_or("", |f| f.name.as_str())
    }
}

/// What [`resolve`] derives from a definition.
struct Resolved {
    indexes: Vec<KeyDef>,
    min_field_count: usize,
    positions_by_name: HashMap<String, usize>,
}

/// Checks a definition and resolves its field references (the one place schema rules live).
fn resolve(def: &SpaceDef) -> Result<Resolved, TupleError> {
    check_version(def.version)?;
    let mut positions_by_name = HashMap::with_capacity(def.fields.len());
    for (position, field) in def.fields.iter().enumerate() {
        if field.name.is_empty() {
            return Err(TupleError::EmptyFieldName {
                field_no: field_no(position),
            });
        }
        if let Some(&first) = positions_by_name.get(&field.name) {
            return Err(TupleError::DuplicateFieldName {
                name: field.name.clone(),
                first_no: field_no(first),
                second_no: field_no(position),
            });
        }
        positions_by_name.insert(field.name.clone(), position);
    }
    if def.indexes.is_empty() {
        return Err(TupleError::NoPrimaryIndex);
    }
    let lookup = |index: &str, field: &FieldRef, role| -> Result<usize, TupleError> {
        let position = match field {
            FieldRef::Name(name) => positions_by_name.get(name).copied(),
            FieldRef::Number(n) => usize::try_from(*n)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .filter(|&p| p < def.fields.len()),
        };
        position.ok_or_else(|| TupleError::UnknownField {
            index: index.to_owned(),
            field: field.to_string(),
            role,
        })
    };
    let mut indexes: Vec<KeyDef> = Vec::with_capacity(def.indexes.len());
    for (index_no, index) in def.indexes.iter().enumerate() {
        if index.name.is_empty() {
            return Err(TupleError::EmptyIndexName {
                index_no: u32_of(index_no),
            });
        }
        if indexes.iter().any(|k| k.name == index.name) {
            return Err(TupleError::DuplicateIndexName {
                name: index.name.clone(),
            });
        }
        if index.parts.is_empty() {
            return Err(TupleError::EmptyIndexParts {
                index: index.name.clone(),
            });
        }
        let field_error = |position: usize| (field_no(position), def.fields[position].name.clone());
        let mut parts = Vec::with_capacity(index.parts.len());
        for part in &index.parts {
            let position = lookup(&index.name, part, "parts")?;
            let field = &def.fields[position];
            if parts.iter().any(|p: &KeyPartDef| p.position == position) {
                let (field_no, field_name) = field_error(position);
                return Err(TupleError::DuplicateIndexPart {
                    index: index.name.clone(),
                    field_no,
                    field_name,
                });
            }
            if !field.field_type.is_indexable() {
                let (field_no, field_name) = field_error(position);
                return Err(TupleError::FieldNotIndexable {
                    index: index.name.clone(),
                    field_no,
                    field_name,
                });
            }
            parts.push(KeyPartDef {
                position,
                field_type: field.field_type,
                nullable: field.nullable,
            });
        }
        let types: Vec<FieldType> = parts.iter().map(|p| p.field_type).collect();
        let mut covering = Vec::with_capacity(index.covering.len());
        let entry_types = match indexes.first() {
            None => {
                if !index.unique {
                    return Err(TupleError::PrimaryNotUnique {
                        index: index.name.clone(),
                    });
                }
                if let Some(part) = parts.iter().find(|p| p.nullable) {
                    let (field_no, field_name) = field_error(part.position);
                    return Err(TupleError::NullablePrimaryPart {
                        index: index.name.clone(),
                        field_no,
                        field_name,
                    });
                }
                if !index.covering.is_empty() {
                    return Err(TupleError::CoveringPrimary {
                        index: index.name.clone(),
                    });
                }
                types.clone()
            }
            Some(primary) => {
                for field in &index.covering {
                    let position = lookup(&index.name, field, "covering fields")?;
                    let (field_no, field_name) = field_error(position);
                    if covering.contains(&position) {
                        return Err(TupleError::DuplicateIndexPart {
                            index: index.name.clone(),
                            field_no,
                            field_name,
                        });
                    }
                    let in_key = |k: &[KeyPartDef]| k.iter().any(|p| p.position == position);
                    if in_key(&parts) || in_key(&primary.parts) {
                        return Err(TupleError::RedundantCoveringField {
                            index: index.name.clone(),
                            field_no,
                            field_name,
                        });
                    }
                    covering.push(position);
                }
                types.iter().chain(&primary.types).copied().collect()
            }
        };
        indexes.push(KeyDef {
            name: index.name.clone(),
            unique: index.unique,
            parts,
            types,
            entry_types,
            covering,
        });
    }
    let min_field_count = def
        .fields
        .iter()
        .rposition(|f| !f.nullable)
        .map_or(0, |p| p + 1);
    Ok(Resolved {
        indexes,
        min_field_count,
        positions_by_name,
    })
}

/// The 1-based number of a 0-based position, saturating (formats never approach 2^32 fields).
pub(super) fn field_no(position: usize) -> u32 {
    u32::try_from(position.saturating_add(1)).unwrap_or(u32::MAX)
}

pub(super) fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
