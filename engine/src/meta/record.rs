//! Metadata log records and the encoding of one atomic group of them.
//!
//! A group is serialized as a MessagePack array of records with `rmp_serde::to_vec_named`: every
//! record is a one-entry map `{ variant name: { field name: value, .. } }`, so fields can be added
//! later (with `#[serde(default)]`) and an older reader ignores fields it does not know. See
//! `engine/METADATA.md` for the meaning of every record.

use std::fmt;
use std::io::Cursor;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// What a created run holds, recorded by [`MetaRecord::CreateRun`] (statistics and pruning).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunInfo {
    /// Smallest seqno of any entry in the run.
    pub(crate) min_seqno: u64,
    /// Largest seqno of any entry in the run.
    pub(crate) max_seqno: u64,
    /// Number of entries (all versions, all kinds).
    pub(crate) entries: u64,
    /// Size of the run file in bytes.
    pub(crate) file_size: u64,
    /// Smallest user key in the run.
    #[serde(with = "serde_bytes")]
    pub(crate) min_key: Vec<u8>,
    /// Largest user key in the run.
    #[serde(with = "serde_bytes")]
    pub(crate) max_key: Vec<u8>,
}

/// One record of the metadata log. Records are only ever written in groups (one frame each), and
/// a group is applied to the [`MetaState`](super::MetaState) all-or-nothing.
///
/// Keys (`begin`, `end`) are user keys compared as bytes; `None` means unbounded (minus infinity
/// for `begin`, plus infinity for `end`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MetaRecord {
    /// A keyspace named `name` exists with id `id` and the engine-serialized `options`.
    CreateKeyspace {
        /// Keyspace id; never reused.
        id: u32,
        /// Unique among live keyspaces.
        name: String,
        /// Opaque to the log: the engine's serialization of the keyspace options.
        #[serde(with = "serde_bytes")]
        options: Vec<u8>,
    },
    /// Keyspace `id` is dropped: its runs (live and prepared) become dropped runs whose files the
    /// engine deletes once no reader needs them; its ranges and slices vanish.
    DropKeyspace {
        /// The keyspace.
        id: u32,
    },
    /// Run `run` of `keyspace` is about to be written. Logged before the run file is created, so
    /// a crash leaves a prepared run whose (possibly partial) file recovery deletes.
    PrepareRun {
        /// The keyspace the run will belong to.
        keyspace: u32,
        /// Run id; never reused.
        run: u64,
    },
    /// Prepared run `run` is complete: its file is written, synced and renamed into place, and it
    /// joins the keyspace's tree.
    CreateRun {
        /// The keyspace (must match the `PrepareRun`).
        keyspace: u32,
        /// The run id.
        run: u64,
        /// What the run holds.
        info: RunInfo,
    },
    /// Run `run` leaves the tree (compacted away). Its file may still be read by open iterators;
    /// it is deleted later and then forgotten.
    DropRun {
        /// The keyspace the run belongs to.
        keyspace: u32,
        /// The run id.
        run: u64,
    },
    /// The file of dropped (or prepared, never created) run `run` is deleted: the log forgets it.
    ForgetRun {
        /// The run id.
        run: u64,
    },
    /// Every write to `keyspace` with seqno `<= seqno` is in its runs (WAL replay skips them).
    Dumped {
        /// The keyspace.
        keyspace: u32,
        /// The dumped seqno; never decreases.
        seqno: u64,
    },
    /// Raises the id counters to at least these values. Written by a rewrite so that ids of
    /// dropped or forgotten objects are not reused after the log forgot them.
    NextIds {
        /// Next keyspace id.
        keyspace: u32,
        /// Next run id.
        run: u64,
        /// Next range id.
        #[serde(default)]
        range: u64,
        /// Next slice id.
        #[serde(default)]
        slice: u64,
    },
    /// A dropped, not yet forgotten run whose keyspace may no longer exist. Written by a rewrite
    /// (the engine logs [`MetaRecord::DropRun`]) so recovery still deletes the file.
    DroppedRun {
        /// The run id.
        run: u64,
    },
    /// Range `range` of `keyspace` covers `[begin, end)`. Reserved for compaction by range:
    /// validated and kept in the state, not written by the engine yet.
    InsertRange {
        /// The keyspace.
        keyspace: u32,
        /// Range id; never reused.
        range: u64,
        /// Inclusive lower bound; `None` is minus infinity.
        #[serde(with = "serde_bytes")]
        begin: Option<Vec<u8>>,
        /// Exclusive upper bound; `None` is plus infinity.
        #[serde(with = "serde_bytes")]
        end: Option<Vec<u8>>,
    },
    /// Range `range` of `keyspace` is gone (split or coalesced). It must hold no slices.
    DeleteRange {
        /// The keyspace.
        keyspace: u32,
        /// The range id.
        range: u64,
    },
    /// Slice `slice`: the part `[begin, end)` of live run `run` that lies in range `range`.
    InsertSlice {
        /// The keyspace of the range and run.
        keyspace: u32,
        /// The range holding the slice.
        range: u64,
        /// Slice id; never reused.
        slice: u64,
        /// The run the slice reads.
        run: u64,
        /// Inclusive lower bound; `None` is minus infinity.
        #[serde(with = "serde_bytes")]
        begin: Option<Vec<u8>>,
        /// Exclusive upper bound; `None` is plus infinity.
        #[serde(with = "serde_bytes")]
        end: Option<Vec<u8>>,
    },
    /// Slice `slice` of range `range` is gone.
    DeleteSlice {
        /// The keyspace.
        keyspace: u32,
        /// The range holding the slice.
        range: u64,
        /// The slice id.
        slice: u64,
    },
}

impl MetaRecord {
    /// The record's name as written in the log (for messages).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            MetaRecord::CreateKeyspace { .. } => "CreateKeyspace",
            MetaRecord::DropKeyspace { .. } => "DropKeyspace",
            MetaRecord::PrepareRun { .. } => "PrepareRun",
            MetaRecord::CreateRun { .. } => "CreateRun",
            MetaRecord::DropRun { .. } => "DropRun",
            MetaRecord::ForgetRun { .. } => "ForgetRun",
            MetaRecord::Dumped { .. } => "Dumped",
            MetaRecord::NextIds { .. } => "NextIds",
            MetaRecord::DroppedRun { .. } => "DroppedRun",
            MetaRecord::InsertRange { .. } => "InsertRange",
            MetaRecord::DeleteRange { .. } => "DeleteRange",
            MetaRecord::InsertSlice { .. } => "InsertSlice",
            MetaRecord::DeleteSlice { .. } => "DeleteSlice",
        }
    }
}

/// Nesting limit when decoding a group.
const MAX_DEPTH: usize = 32;

/// Serializes one group of records (a frame's payload).
///
/// # Errors
/// A message if serialization fails (it does not for these types).
pub(crate) fn encode_group(records: &[MetaRecord]) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(records).map_err(|e| format!("cannot encode metadata records: {e}"))
}

/// Deserializes one frame's payload. Decoding never reads past `payload`, never preallocates
/// from a length it has not seen bytes for, and rejects trailing bytes.
///
/// # Errors
/// A message saying what failed to decode.
pub(crate) fn decode_group(payload: &[u8]) -> Result<Vec<MetaRecord>, String> {
    // A `Cursor` reader copies byte strings through `Read::take`, so a damaged length inside the
    // payload can make it read at most the rest of the payload, never allocate more.
    let mut de = rmp_serde::Deserializer::new(Cursor::new(payload));
    // Records nest four levels deep (group, record, fields, `RunInfo`); a bound well above that
    // keeps skipping unknown fields from recursing deeply on hostile input.
    de.set_max_depth(MAX_DEPTH);
    let Group(records) =
        Group::deserialize(&mut de).map_err(|e| format!("cannot decode records: {e}"))?;
    let used = de.position();
    if used != payload.len() as u64 {
        return Err(format!(
            "{} trailing bytes after the records",
            payload.len() as u64 - used.min(payload.len() as u64)
        ));
    }
    Ok(records)
}

/// A group of records whose deserialization grows the vector one decoded record at a time
/// (serde's default would reserve capacity from the array length in the input).
struct Group(Vec<MetaRecord>);

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GroupVisitor;

        impl<'de> Visitor<'de> for GroupVisitor {
            type Value = Group;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of metadata records")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Group, A::Error> {
                let mut records = Vec::new();
                while let Some(record) = seq.next_element::<MetaRecord>()? {
                    records.push(record);
                }
                Ok(Group(records))
            }
        }

        deserializer.deserialize_seq(GroupVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<MetaRecord> {
        vec![
            MetaRecord::CreateKeyspace {
                id: 3,
                name: "users".into(),
                options: vec![1, 2, 3],
            },
            MetaRecord::PrepareRun {
                keyspace: 3,
                run: 9,
            },
            MetaRecord::CreateRun {
                keyspace: 3,
                run: 9,
                info: RunInfo {
                    min_seqno: 1,
                    max_seqno: 5,
                    entries: 5,
                    file_size: 4096,
                    min_key: b"a".to_vec(),
                    max_key: b"z".to_vec(),
                },
            },
            MetaRecord::InsertRange {
                keyspace: 3,
                range: 1,
                begin: None,
                end: Some(b"m".to_vec()),
            },
            MetaRecord::NextIds {
                keyspace: 4,
                run: 10,
                range: 2,
                slice: 0,
            },
        ]
    }

    #[test]
    fn group_round_trips() {
        let records = sample();
        let bytes = encode_group(&records).unwrap();
        assert_eq!(decode_group(&bytes).unwrap(), records);
    }

    #[test]
    fn byte_fields_are_msgpack_bin() {
        let bytes = encode_group(&sample()).unwrap();
        // bin8 of length 3 holding the options.
        assert!(bytes.windows(5).any(|w| w == [0xc4, 3, 1, 2, 3]));
    }

    #[test]
    fn trailing_bytes_and_truncation_are_rejected() {
        let mut bytes = encode_group(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_group(&bytes[..cut]).is_err(), "cut {cut}");
        }
        bytes.push(0xc0);
        assert!(decode_group(&bytes).unwrap_err().contains("trailing"));
    }

    #[test]
    fn huge_claimed_lengths_do_not_allocate() {
        // array32 claiming 2^32-1 records, then nothing.
        assert!(decode_group(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        // One record whose name is a str32 claiming 4 GiB.
        let bytes = [0x91, 0x81, 0xdb, 0xff, 0xff, 0xff, 0xff, b'x'];
        assert!(decode_group(&bytes).is_err());
        // A bin32 options field claiming 4 GiB.
        let mut bytes = vec![0x91, 0x81];
        bytes.extend(rmp_serde::to_vec("CreateKeyspace").unwrap());
        bytes.extend([
            0x83, 0xa2, b'i', b'd', 0x01, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'x',
        ]);
        bytes.extend([
            0xa7, b'o', b'p', b't', b'i', b'o', b'n', b's', 0xc6, 0xff, 0xff, 0xff,
        ]);
        bytes.extend([0xff, 1, 2]);
        assert!(decode_group(&bytes).is_err());
    }

    #[test]
    fn deep_nesting_is_rejected_without_recursing_far() {
        // An unknown field holding 100_000 nested arrays.
        let mut bytes = vec![0x91, 0x81, 0xac];
        bytes.extend(b"DropKeyspace");
        bytes.extend([0x82, 0xa2, b'i', b'd', 0x07, 0xa1, b'x']);
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        assert!(decode_group(&bytes).unwrap_err().contains("depth"));
        // Modest nesting inside an unknown field is fine.
        let mut bytes = vec![0x91, 0x81, 0xac];
        bytes.extend(b"DropKeyspace");
        bytes.extend([0x82, 0xa2, b'i', b'd', 0x07, 0xa1, b'x']);
        bytes.extend([0x91, 0x91, 0x91, 0xc0]);
        assert_eq!(
            decode_group(&bytes).unwrap(),
            vec![MetaRecord::DropKeyspace { id: 7 }]
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_records_rejected() {
        #[derive(Serialize)]
        enum Future {
            DropKeyspace { id: u32, reason: String },
            Teleport { id: u32 },
        }
        let bytes = rmp_serde::to_vec_named(&vec![Future::DropKeyspace {
            id: 7,
            reason: "because".into(),
        }])
        .unwrap();
        assert_eq!(
            decode_group(&bytes).unwrap(),
            vec![MetaRecord::DropKeyspace { id: 7 }]
        );
        let bytes = rmp_serde::to_vec_named(&vec![Future::Teleport { id: 1 }]).unwrap();
        assert!(decode_group(&bytes).is_err());
    }

    #[test]
    fn next_ids_without_range_and_slice_decode_with_defaults() {
        #[derive(Serialize)]
        enum Old {
            NextIds { keyspace: u32, run: u64 },
        }
        let bytes = rmp_serde::to_vec_named(&vec![Old::NextIds {
            keyspace: 1,
            run: 2,
        }])
        .unwrap();
        assert_eq!(
            decode_group(&bytes).unwrap(),
            vec![MetaRecord::NextIds {
                keyspace: 1,
                run: 2,
                range: 0,
                slice: 0
            }]
        );
    }
}
