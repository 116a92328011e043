//! The properties block: what a run holds, recorded by the writer and read back at open.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compression::Compression;
use crate::error::{DecodeError, DecodeResult};

/// Everything the writer knows about a run, stored in its properties block.
///
/// Encoded as a MessagePack map with named fields, so later versions can add fields (readers
/// ignore unknown ones, missing ones take their default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Properties {
    /// The run format version the file was written with.
    pub format_version: u32,
    /// Total entries.
    pub entries: u64,
    /// Entries of kind Put.
    pub puts: u64,
    /// Entries of kind Delete.
    pub deletes: u64,
    /// Entries of kind Merge.
    pub merges: u64,
    /// Distinct user keys.
    pub distinct_keys: u64,
    /// Smallest user key (empty for an empty run).
    #[serde(with = "serde_bytes")]
    pub min_key: Vec<u8>,
    /// Largest user key (empty for an empty run).
    #[serde(with = "serde_bytes")]
    pub max_key: Vec<u8>,
    /// Smallest seqno.
    pub min_seqno: u64,
    /// Largest seqno.
    pub max_seqno: u64,
    /// Sum of user key lengths over all entries.
    pub raw_key_bytes: u64,
    /// Sum of value lengths over all entries.
    pub raw_value_bytes: u64,
    /// Sum of raw (decompressed) page sizes.
    pub raw_data_bytes: u64,
    /// Bytes the data pages take in the file, trailers included.
    pub stored_data_bytes: u64,
    /// Number of data pages.
    pub pages: u64,
    /// Largest raw page; readers refuse index entries claiming more.
    pub max_page_raw_len: u32,
    /// The target page size the writer used.
    pub page_size: u32,
    /// Entries between restart points.
    pub restart_interval: u32,
    /// Compression the writer was asked to use (individual pages may be raw).
    pub compression: Option<Compression>,
    /// Pages actually stored compressed.
    pub compressed_pages: u64,
    /// Bloom filter size in bytes (0: no filter).
    pub bloom_bytes: u64,
    /// The false-positive rate the filter was sized for (1.0: no filter).
    pub bloom_fp_rate: f64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Caller-supplied metadata (the engine records its run id and keyspace here).
    pub user: BTreeMap<String, serde_bytes::ByteBuf>,
}

impl Properties {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serializing a plain struct of integers, byte strings and a map cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> DecodeResult<Properties> {
        rmp_serde::from_slice(bytes).map_err(|e| DecodeError::new(format!("properties block: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_unknown_fields() {
        let mut props = Properties {
            entries: 3,
            min_key: b"a".to_vec(),
            ..Default::default()
        };
        props
            .user
            .insert("run_id".into(), serde_bytes::ByteBuf::from(vec![1, 2]));
        assert_eq!(Properties::decode(&props.encode()).unwrap(), props);

        #[derive(Serialize)]
        struct Future {
            entries: u64,
            some_new_field: String,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            entries: 9,
            some_new_field: "x".into(),
        })
        .unwrap();
        assert_eq!(Properties::decode(&bytes).unwrap().entries, 9);
        assert!(Properties::decode(&[0xc1]).is_err());
    }
}
