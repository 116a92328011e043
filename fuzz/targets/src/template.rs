//! A small database that the `wal_segment` and `meta_log` targets put the fuzzed file into, and
//! the corpus generator takes its valid files from.
//!
//! Its files are checked in, packed into `fuzz/targets/template.bin` (compiled into the crate),
//! because building it is not deterministic: background compactions race with dumps for run
//! ids. The `meta_log` corpus names those runs, so it must come from the same build as the
//! packed files; [`crate::corpus::generate`] writes both. `tests/corpus.rs` checks that the
//! valid corpus files still open with it; if the engine changes what it writes, regenerate
//! (see `fuzz/README.md`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use strata::fs::{Fs, MemFs};
use strata::{Db, KeyspaceOptions, Options, WalMode, WalRecovery};

/// The database directory inside every in-memory file system.
pub(crate) const DIR: &str = "/db";

/// The metadata log's file name (`engine/METADATA.md`).
pub(crate) const META_LOG: &str = "meta.log";

/// Key-value contents of one keyspace.
pub(crate) type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

/// The template database's files and what it holds.
pub(crate) struct Template {
    /// Every run file the build ever wrote (runs compacted away or dropped included), so that a
    /// metadata log from any stage of the build finds its runs.
    pub runs: Vec<(String, Vec<u8>)>,
    /// The closed database's metadata log.
    pub meta: Vec<u8>,
    /// Contents of each live keyspace of the closed database, by name.
    pub contents: BTreeMap<String, Contents>,
}

impl Template {
    /// The closed database's metadata log.
    pub(crate) fn final_meta(&self) -> &[u8] {
        &self.meta
    }

    /// A fresh file system holding `meta` as the metadata log and the runs it can know of (no
    /// WAL). Recovery refuses a log when a run file with an id at or above the log's next run
    /// id exists (the log lost records), so only runs below it are written when the log reads;
    /// all of them when it does not.
    pub(crate) fn file_system(&self, meta: &[u8]) -> MemFs {
        let fs = MemFs::new();
        let dir = Path::new(DIR);
        // A fresh MemFs has no faults, so these cannot fail; a failure would only make the
        // target's database fail to open, never a false finding.
        let _ = fs.create_dir_all(dir);
        let _ = write_file(&fs, &dir.join(META_LOG), meta);
        let next_run_id =
            strata::inspect::read_meta(&fs, dir).map_or(u64::MAX, |view| view.state.next_run_id);
        for (name, bytes) in &self.runs {
            let id = name
                .strip_suffix(".run")
                .and_then(|id| id.parse::<u64>().ok())
                .unwrap_or(0);
            if id < next_run_id {
                let _ = write_file(&fs, &dir.join(name), bytes);
            }
        }
        fs
    }

    /// Packs the files: per file `name_len u32 LE | name | len u32 LE | bytes`, the metadata log
    /// under the name `meta.log`.
    pub(crate) fn pack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let files = self
            .runs
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .chain([(META_LOG, self.meta.as_slice())]);
        for (name, bytes) in files {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Unpacks [`Template::pack`]'s output and reads the contents by opening the database.
    fn unpack(mut packed: &[u8]) -> Result<Template, String> {
        let take = |packed: &mut &[u8]| -> Result<Vec<u8>, String> {
            let (len, rest) = packed.split_at_checked(4).ok_or("truncated length")?;
            let len = u32::from_le_bytes(len.try_into().map_err(|_| "length")?) as usize;
            let (bytes, rest) = rest.split_at_checked(len).ok_or("truncated file")?;
            *packed = rest;
            Ok(bytes.to_vec())
        };
        let mut runs = Vec::new();
        let mut meta = None;
        while !packed.is_empty() {
            let name = String::from_utf8(take(&mut packed)?).map_err(|e| e.to_string())?;
            let bytes = take(&mut packed)?;
            if name == META_LOG {
                meta = Some(bytes);
            } else {
                runs.push((name, bytes));
            }
        }
        let mut template = Template {
            runs,
            meta: meta.ok_or("no metadata log")?,
            contents: BTreeMap::new(),
        };
        template.contents = template.read_contents().map_err(|e| e.to_string())?;
        Ok(template)
    }

    fn read_contents(&self) -> strata::Result<BTreeMap<String, Contents>> {
        let fs = self.file_system(&self.meta);
        let db = Db::open(DIR, options(&fs, WalRecovery::TolerateTornTail))?;
        let contents = read_all(&db);
        db.close()?;
        Ok(contents)
    }
}

/// Writes a durable file (create, write, sync, sync the directory).
pub(crate) fn write_file(fs: &MemFs, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs.create_new(path)?;
    file.write_all(bytes)?;
    file.flush()?;
    file.sync_data()?;
    drop(file);
    fs.sync_dir(Path::new(DIR))
}

/// Options the targets open the database with: small enough that nothing is dumped
/// automatically while a target runs, one background thread of each kind.
pub(crate) fn options(fs: &MemFs, recovery: WalRecovery) -> Options {
    Options {
        wal_mode: WalMode::Fsync,
        wal_recovery: recovery,
        memory_limit_bytes: 4 << 20,
        cache_size_bytes: 1 << 20,
        dump_threads: 1,
        compaction_threads: 1,
        range_size_min_bytes: 1024,
        wal_segment_size_bytes: 64 * 1024,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

/// Keyspace options of the template's keyspaces: tiny pages and ranges so a few hundred keys
/// make several pages, runs and ranges; no automatic compaction.
pub(crate) fn keyspace_options(name: &str) -> KeyspaceOptions {
    let base = KeyspaceOptions {
        page_size_bytes: 512,
        range_size_bytes: Some(2048),
        run_count_per_level: 1000,
        ..KeyspaceOptions::default()
    };
    match name {
        "ks1" => KeyspaceOptions {
            bloom_fp_rate: 1.0,
            dump_compression: strata::Compression::None,
            ..base
        },
        _ => base,
    }
}

/// Reads every key-value pair of every keyspace of an open database.
///
/// # Panics
/// If a read fails: callers use it only where reads must succeed.
pub(crate) fn read_all(db: &Db) -> BTreeMap<String, Contents> {
    try_read_all(db).unwrap_or_else(|e| panic!("reading the database failed: {e}"))
}

/// Reads every key-value pair of every keyspace of an open database.
///
/// # Errors
/// The first read error.
pub(crate) fn try_read_all(db: &Db) -> strata::Result<BTreeMap<String, Contents>> {
    let mut out = BTreeMap::new();
    for name in db.keyspace_names() {
        let Ok(ks) = db.keyspace(&name, KeyspaceOptions::default()) else {
            continue;
        };
        let contents = ks
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<strata::Result<Contents>>()?;
        out.insert(name, contents);
    }
    Ok(out)
}

fn value(i: usize, round: usize) -> Vec<u8> {
    format!(
        "value-{round}-{i}-{}",
        "v".repeat((i * 7 + round * 13) % 48)
    )
    .into_bytes()
}

fn collect_runs(fs: &MemFs, runs: &mut BTreeMap<String, Vec<u8>>) {
    for path in fs.files() {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".run") && !runs.contains_key(name) {
            if let Ok(bytes) = fs.read_file(&path) {
                runs.insert(name.to_string(), bytes);
            }
        }
    }
}

/// A freshly built template and its metadata log after each stage of the build (the last is
/// [`Template::meta`]).
pub(crate) struct Built {
    pub template: Template,
    pub meta_stages: Vec<Vec<u8>>,
}

/// Builds a template database. Stages: two keyspaces filled and dumped; overwrites and deletes
/// dumped; a full compaction (which splits ranges); a third keyspace written, dumped and
/// dropped; a clean close.
///
/// # Errors
/// The engine's error if a step fails.
pub(crate) fn build() -> strata::Result<Built> {
    let fs = MemFs::new();
    let dir = PathBuf::from(DIR);
    let mut runs = BTreeMap::new();
    let mut meta_stages = Vec::new();
    let mut stage = |fs: &MemFs, runs: &mut BTreeMap<String, Vec<u8>>| {
        collect_runs(fs, runs);
        if let Ok(meta) = fs.read_file(&dir.join(META_LOG)) {
            meta_stages.push(meta);
        }
    };
    let db = Db::open(DIR, options(&fs, WalRecovery::TolerateTornTail))?;
    let ks0 = db.keyspace("ks0", keyspace_options("ks0"))?;
    let ks1 = db.keyspace("ks1", keyspace_options("ks1"))?;
    for i in 0..160 {
        ks0.put(format!("key{i:04}"), value(i, 0))?;
    }
    for i in 0..40 {
        ks1.put(format!("k1-{i:03}"), value(i, 0))?;
    }
    db.flush()?;
    stage(&fs, &mut runs);
    let mut batch = db.batch();
    for i in (0..160).step_by(3) {
        batch.put(&ks0, format!("key{i:04}"), value(i, 1));
    }
    for i in (1..160).step_by(7) {
        batch.delete(&ks0, format!("key{i:04}"));
    }
    batch.put(&ks1, "k1-extra", "x");
    batch.commit()?;
    db.flush()?;
    stage(&fs, &mut runs);
    ks0.compact()?;
    stage(&fs, &mut runs);
    let ks2 = db.keyspace("ks2", keyspace_options("ks2"))?;
    for i in 0..20 {
        ks2.put(format!("gone{i}"), value(i, 2))?;
    }
    db.flush()?;
    stage(&fs, &mut runs);
    drop(ks2);
    db.drop_keyspace("ks2")?;
    stage(&fs, &mut runs);
    drop((ks0, ks1));
    db.close()?;
    stage(&fs, &mut runs);
    let mut template = Template {
        runs: runs.into_iter().collect(),
        meta: meta_stages.last().cloned().unwrap_or_default(),
        contents: BTreeMap::new(),
    };
    template.contents = template.read_contents()?;
    Ok(Built {
        template,
        meta_stages,
    })
}

/// The packed template files (see [`Template::pack`]), written by the corpus generator.
static PACKED: &[u8] = include_bytes!("../template.bin");

/// The checked-in template, unpacked on first use.
///
/// # Panics
/// If the packed files do not unpack or do not open (a bug outside the fuzzed decoders, found
/// on every input; regenerate the corpus).
pub(crate) fn get() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        Template::unpack(PACKED).unwrap_or_else(|e| {
            panic!("fuzz/targets/template.bin: {e} (regenerate it, see fuzz/README.md)")
        })
    })
}
