//! Spaces: MessagePack tuples with typed primary and secondary indexes (vinyl's data model).
//!
//! Work in progress: these are the pure building blocks; the `Db` integration (create_space,
//! insert, select, ...) follows and will re-export the public items from the crate root.
//!
//! - [`schema`]: [`SpaceDef`] (fields, indexes; persisted as MessagePack) and [`SpaceSchema`], a
//!   checked definition with field references resolved.
//! - [`key`]: the order-preserving key encoding (`engine/SPACES.md` has every byte), search-key
//!   ranges for Tarantool's iterator types.
//! - [`mod@tuple`]: tuple validation, index keys and entries (secondary key ++ primary key, covering
//!   fields), serde conversions.
//! - [`update`]: Tarantool's update operations, `update` and `upsert` semantics.
//! - [`error`]: [`TupleError`], the one error type of all of the above.
pub mod error;
mod handle;
pub mod key;
pub mod schema;
pub mod tuple;
pub mod update;

pub use error::{TupleError, UpdateErrorKind};
pub use key::{IteratorType, KeyPart, KeyRange};
pub use schema::{
    FieldDef, FieldRef, FieldType, IndexDef, KeyDef, KeyPartDef, SpaceDef, SpaceSchema,
};
pub use tuple::{IndexEntry, Uuid};
pub use update::{UpdateOp, UpsertOutcome};

pub(crate) use handle::{create_space, drop_space, open_space, space_names, SpaceRegistry};
pub use handle::{Pairs, Space, SpaceTx, Tuple};
