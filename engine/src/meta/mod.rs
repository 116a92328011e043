//! The metadata log (vinyl's vylog, RocksDB's MANIFEST): an append-only log of what exists —
//! keyspaces, runs, dump progress, and (reserved for compaction by range) ranges and slices.
//!
//! - [`record`]: [`MetaRecord`], [`RunInfo`] and the MessagePack encoding of a group.
//! - [`state`]: [`MetaState`], the result of replaying the log, and the rules that validate
//!   every record.
//! - [`log`]: [`MetaLog`], the file `meta.log`: replay with torn-tail handling, atomic group
//!   commits, compact rewrites; [`dump_records`] for `strata meta dump`.
//!
//! `engine/METADATA.md` describes the byte layout, the records, the replay rules and the order
//! of operations the engine follows around them.

pub(crate) mod log;
pub(crate) mod record;
pub(crate) mod state;

#[cfg(test)]
mod tests;

// The engine's entry points; unused until the engine is wired to them.
#[allow(unused_imports)]
pub(crate) use self::log::{dump_records, read_log, LogContents, MetaLog, LOG_FILE};
#[allow(unused_imports)]
pub(crate) use self::record::{MetaRecord, RunInfo};
#[allow(unused_imports)]
pub(crate) use self::state::{KeyspaceMeta, MetaState, RangeMeta, SliceMeta};
