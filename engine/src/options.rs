//! Database and keyspace options. Every option has a default suited to a small embedded database
//! and names the vinyl or RocksDB option it mirrors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_sstable::Compression;

use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::merge::MergeOperator;

/// How commits are made durable. RocksDB: `WriteOptions::disableWAL` / `sync`; vinyl: `wal_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WalMode {
    /// No write-ahead log: writes since a keyspace's last dump are lost on a crash. Fastest.
    /// Keyspaces dump independently, so after a crash one keyspace may hold a later state than
    /// another and a batch spanning keyspaces may be partly present. A clean close and
    /// [`crate::Db::sync`] dump every memtable, so nothing acknowledged is lost without a crash.
    None,
    /// Default. Each commit is written to the log (handed to the operating system) before it
    /// returns: it survives a crash of the process, not of the machine.
    #[default]
    Write,
    /// Each commit is synced to disk before it returns (group commit shares one sync among
    /// concurrent committers): it survives power loss.
    Fsync,
}

impl std::str::FromStr for WalMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "none" => Ok(WalMode::None),
            "write" => Ok(WalMode::Write),
            "fsync" => Ok(WalMode::Fsync),
            _ => Err(Error::InvalidArgument(format!(
                "unknown WAL mode {text:?} (none, write, fsync)"
            ))),
        }
    }
}

/// What recovery does with a damaged WAL record that is followed by valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalRecovery {
    /// Default. A torn last record (a crash mid-write) is dropped; damage anywhere else is an
    /// [`Error::Corruption`] and the database does not open. RocksDB:
    /// `kTolerateCorruptedTailRecords`.
    #[default]
    TolerateTornTail,
    /// Skip damaged records and open with whatever is readable (logging what was skipped). For
    /// salvage, not for normal use. RocksDB: `kSkipAnyCorruptedRecords`.
    SkipCorrupted,
}

/// Options of a database, fixed at [`crate::Db::open`].
#[derive(Clone)]
pub struct Options {
    /// Durability of commits (default [`WalMode::Write`]).
    pub wal_mode: WalMode,
    /// Handling of damaged WAL records at recovery (default [`WalRecovery::TolerateTornTail`]).
    pub wal_recovery: WalRecovery,
    /// A WAL segment is closed and a new one started past this size (default 64 MiB; RocksDB:
    /// `max_total_wal_size` per file, vinyl: `wal_max_size`).
    pub wal_segment_size_bytes: u64,
    /// Memory for all memtables together (default 128 MiB; vinyl: `vinyl_memory`, RocksDB:
    /// `db_write_buffer_size`). Above half of it memtables are sealed and dumped; writers are
    /// slowed as it fills and blocked when it is full.
    pub memory_limit_bytes: u64,
    /// Background threads writing sealed memtables to runs (default 1; vinyl:
    /// `vinyl_write_threads`, RocksDB: `max_background_flushes`).
    pub dump_threads: usize,
    /// How long a writer waits for memory before failing with [`Error::QuotaTimeout`] (default
    /// 60 s; vinyl: `vinyl_timeout`).
    pub quota_timeout: Duration,
    /// Budget of the decompressed-page cache shared by all keyspaces (default 128 MiB; vinyl:
    /// `vinyl_cache`, RocksDB: `block_cache`).
    pub cache_size_bytes: u64,
    /// Longest value accepted (default 16 MiB).
    pub max_value_len: usize,
    /// Background threads compacting ranges (default 2; vinyl: `vinyl_write_threads` shared
    /// with dumps, RocksDB: `max_background_compactions`). Dumps have their own threads and never
    /// wait behind a compaction.
    pub compaction_threads: usize,
    /// Lower clamp of the automatic range size (default 16 MiB: small databases keep few,
    /// reasonably sized ranges).
    pub range_size_min_bytes: u64,
    /// Upper clamp of the automatic range size (default 2 GiB, as vinyl).
    pub range_size_max_bytes: u64,
    /// The metadata log is rewritten compactly past this size (default 4 MiB).
    pub meta_rewrite_threshold_bytes: u64,
    /// Largest total of writes one transaction may buffer (keys, values and 64 bytes per write;
    /// default 64 MiB). Buffered writes also count against `memory_limit_bytes`; a write past
    /// this limit fails with [`Error::TransactionTooLarge`].
    pub max_transaction_bytes: u64,
    /// Attempts [`crate::Db::transact`] makes before returning [`Error::Conflict`] (default 10).
    pub transaction_attempts: u32,
    /// The file system (default: the real one). Tests pass an in-memory, fault-injecting one.
    pub fs: Arc<dyn Fs>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("wal_mode", &self.wal_mode)
            .field("wal_recovery", &self.wal_recovery)
            .field("wal_segment_size_bytes", &self.wal_segment_size_bytes)
            .field("memory_limit_bytes", &self.memory_limit_bytes)
            .field("dump_threads", &self.dump_threads)
            .field("quota_timeout", &self.quota_timeout)
            .field("cache_size_bytes", &self.cache_size_bytes)
            .field("max_value_len", &self.max_value_len)
            .field("compaction_threads", &self.compaction_threads)
            .field("range_size_min_bytes", &self.range_size_min_bytes)
            .field("range_size_max_bytes", &self.range_size_max_bytes)
            .field("max_transaction_bytes", &self.max_transaction_bytes)
            .field("transaction_attempts", &self.transaction_attempts)
            .field("fs", &self.fs)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wal_mode: WalMode::Write,
            wal_recovery: WalRecovery::TolerateTornTail,
            wal_segment_size_bytes: 64 << 20,
            memory_limit_bytes: 128 << 20,
            dump_threads: 1,
            quota_timeout: Duration::from_secs(60),
            cache_size_bytes: 128 << 20,
            max_value_len: strata_sstable::DEFAULT_MAX_VALUE_LEN,
            compaction_threads: 2,
            range_size_min_bytes: 16 << 20,
            range_size_max_bytes: 2 << 30,
            meta_rewrite_threshold_bytes: 4 << 20,
            max_transaction_bytes: 64 << 20,
            transaction_attempts: 10,
            fs: Arc::new(RealFs),
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if self.memory_limit_bytes < 1 << 16 {
            return bad(format!(
                "memory_limit_bytes {} is below 64 KiB",
                self.memory_limit_bytes
            ));
        }
        if self.dump_threads == 0 || self.dump_threads > 64 {
            return bad(format!(
                "dump_threads {} is outside 1..=64",
                self.dump_threads
            ));
        }
        if self.wal_segment_size_bytes < 4096 {
            return bad(format!(
                "wal_segment_size_bytes {} is below 4 KiB",
                self.wal_segment_size_bytes
            ));
        }
        if self.max_value_len > strata_sstable::MAX_VALUE_LEN_LIMIT {
            return bad(format!(
                "max_value_len {} is above the format limit",
                self.max_value_len
            ));
        }
        if self.compaction_threads == 0 || self.compaction_threads > 64 {
            return bad(format!(
                "compaction_threads {} is outside 1..=64",
                self.compaction_threads
            ));
        }
        if self.range_size_min_bytes == 0 || self.range_size_min_bytes > self.range_size_max_bytes {
            return bad(
                "range_size_min_bytes must be positive and at most range_size_max_bytes".into(),
            );
        }
        Ok(())
    }
}

/// Options of one keyspace (one LSM tree), chosen when it is created and stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyspaceOptions {
    /// Target page size of runs (default 8 KiB; vinyl: `page_size`, RocksDB: `block_size`).
    pub page_size_bytes: usize,
    /// Bloom filter false-positive rate (default 0.01; 1.0 disables; vinyl: `bloom_fpr`).
    pub bloom_fp_rate: f64,
    /// Compression of runs written by dumps (default lz4: fast, and dumps are on the write path).
    pub dump_compression: Compression,
    /// Compression of runs written by compaction (default zstd level 3: written once, read
    /// often).
    pub compaction_compression: Compression,
    /// Size ratio between adjacent levels of a range (default 3.5; vinyl: `run_size_ratio`).
    pub run_size_ratio: f64,
    /// Runs a level holds before it is compacted with every newer level (default 2; vinyl:
    /// `run_count_per_level`). With `run_count_per_level <= run_size_ratio - 1` space
    /// amplification stays below 2.
    pub run_count_per_level: u32,
    /// Target range size: a range splits when its bottom run exceeds 4/3 of it and coalesces
    /// with idle neighbours below 1/2 of it (vinyl: `range_size`). `None` (default) is automatic
    /// as in vinyl: bottom-level bytes / (4 x dumps per compaction), clamped to
    /// `Options::range_size_min_bytes..=range_size_max_bytes`.
    pub range_size_bytes: Option<u64>,
    /// Folds the keyspace's upserts ([`crate::Keyspace::upsert`]); default none, which makes
    /// `upsert` an error. Its name is stored with the keyspace, and opening the keyspace later
    /// with another operator (or none) is [`Error::MergeOperatorMismatch`]. Built-ins live in
    /// [`crate::merge`].
    #[serde(skip)]
    pub merge_operator: Option<Arc<dyn MergeOperator>>,
}

/// How keyspace options are stored in the metadata log: the options, and the name of the merge
/// operator (which is code, so only its name can be stored).
#[derive(Serialize, Deserialize)]
struct StoredKeyspaceOptions {
    #[serde(flatten)]
    options: KeyspaceOptions,
    #[serde(default)]
    merge_operator: Option<String>,
}

impl Default for KeyspaceOptions {
    fn default() -> Self {
        KeyspaceOptions {
            page_size_bytes: 8 * 1024,
            bloom_fp_rate: 0.01,
            dump_compression: Compression::Lz4,
            compaction_compression: Compression::Zstd { level: 3 },
            run_size_ratio: strata_compaction::DEFAULT_RUN_SIZE_RATIO,
            run_count_per_level: strata_compaction::DEFAULT_RUN_COUNT_PER_LEVEL,
            range_size_bytes: None,
            merge_operator: None,
        }
    }
}

impl KeyspaceOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.page_size_bytes < 512 || self.page_size_bytes > 16 << 20 {
            return Err(Error::InvalidArgument(format!(
                "page_size_bytes {} is outside 512..=16 MiB",
                self.page_size_bytes
            )));
        }
        if self.bloom_fp_rate.is_nan() || self.bloom_fp_rate <= 0.0 {
            return Err(Error::InvalidArgument(format!(
                "bloom_fp_rate {} must be above 0",
                self.bloom_fp_rate
            )));
        }
        self.dump_compression.validate()?;
        self.compaction_compression.validate()?;
        self.policy()?;
        if self.range_size_bytes == Some(0) {
            return Err(Error::InvalidArgument(
                "range_size_bytes must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The compaction policy these options describe.
    pub(crate) fn policy(&self) -> Result<strata_compaction::VinylPolicy> {
        strata_compaction::VinylPolicy::new(self.run_size_ratio, self.run_count_per_level)
            .map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// The merge operator's name, if any.
    pub(crate) fn merge_operator_name(&self) -> Option<String> {
        self.merge_operator.as_ref().map(|m| m.name().to_string())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let stored = StoredKeyspaceOptions {
            options: self.clone(),
            merge_operator: self.merge_operator_name(),
        };
        rmp_serde::to_vec_named(&stored).unwrap_or_default()
    }

    /// The stored options (without the merge operator, which is code).
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        Ok(Self::decode_stored(bytes)?.0)
    }

    /// The stored options and the stored merge operator's name.
    pub(crate) fn decode_stored(
        bytes: &[u8],
    ) -> std::result::Result<(Self, Option<String>), String> {
        let stored: StoredKeyspaceOptions =
            rmp_serde::from_slice(bytes).map_err(|e| format!("keyspace options: {e}"))?;
        Ok((stored.options, stored.merge_operator))
    }
}
