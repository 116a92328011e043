//! The seed corpus: valid files produced by the engine and a few damaged copies, per target.
//!
//! [`generate`] writes `fuzz/corpus/<target>/*`; it is run by the ignored test
//! `cargo test -p strata-fuzz --test corpus -- --ignored generate_corpus` (see
//! `fuzz/README.md`). File names say what each file is. [`mutate`] is the deterministic mutator
//! the corpus test (and nothing else) applies on top.

use std::io;
use std::path::{Path, PathBuf};

use strata::fs::{FaultKind, Fs};
use strata::sstable::{bench_support, Compression, EntryKind, Run, RunWriter, WriterOptions};
use strata::{Db, KeyspaceOptions, WalRecovery};

use crate::model::{self, Op};
use crate::template::{self, Built, Template, DIR};

/// A small deterministic generator (splitmix64), so the corpus and the mutations are the same on
/// every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Applies one to three random mutations to `data` (bit flips, byte sets to interesting values,
/// truncation, a duplicated or removed slice, appended bytes), as a fuzzer's first steps would.
pub fn mutate(data: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            2 if len > 0 => out.truncate(rng.below(len)),
            3 if len > 1 => {
                let start = rng.below(len);
                let end = start + rng.below((len - start).min(64)) + 1;
                let slice = out[start..end.min(len)].to_vec();
                let at = rng.below(len);
                out.splice(at..at, slice);
            }
            4 if len > 1 => {
                let start = rng.below(len);
                let end = (start + rng.below(32) + 1).min(len);
                out.drain(start..end);
            }
            5 if len >= 4 => {
                // A little-endian u32 set to an edge value, where lengths and counts live.
                let at = rng.below(len - 3);
                let value: u32 = [0, 1, 0xffff, 0x7fff_ffff, u32::MAX][rng.below(5)];
                out[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            _ => {
                let extra = rng.below(16) + 1;
                out.extend((0..extra).map(|_| rng.next_u64() as u8));
            }
        }
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}

/// Removes the generated files of a corpus directory; `regression-*` files (fuzzer findings,
/// added by hand) stay.
fn clear_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let generated = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with("regression-"));
        if path.is_file() && generated {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

fn to_io(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes a run of `entries` (internal order) with `options` into memory.
fn build_run(
    options: WriterOptions,
    entries: &[(Vec<u8>, u64, EntryKind, Vec<u8>)],
) -> io::Result<Vec<u8>> {
    let mut writer = RunWriter::new(Path::new("corpus.run"), Vec::new(), options).map_err(to_io)?;
    for (key, seqno, kind, value) in entries {
        writer.add(key, *seqno, *kind, value).map_err(to_io)?;
    }
    let (_, bytes) = writer.finish_with_file().map_err(to_io)?;
    Ok(bytes)
}

fn entries_versions(keys: usize, versions: u64) -> Vec<(Vec<u8>, u64, EntryKind, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..keys {
        for v in (0..versions).rev() {
            let seqno = 10 + v * 1000 + i as u64;
            let kind = match (i + v as usize) % 7 {
                0 => EntryKind::Delete,
                3 => EntryKind::Merge,
                _ => EntryKind::Put,
            };
            let value = if kind == EntryKind::Delete {
                Vec::new()
            } else {
                format!("value {i} version {v} {}", "abc".repeat(i % 9)).into_bytes()
            };
            out.push((format!("key{i:05}").into_bytes(), seqno, kind, value));
        }
    }
    out
}

/// The run files of the `run_file` corpus (valid ones, then damaged copies).
fn run_files() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let lz4 = build_run(WriterOptions::default(), &entries_versions(40, 2))?;
    files.push(("valid-lz4-versions.run".to_string(), lz4.clone()));
    let zstd = build_run(
        WriterOptions {
            page_size: 256,
            restart_interval: 4,
            compression: Compression::Zstd { level: 3 },
            ..WriterOptions::default()
        },
        &entries_versions(60, 1),
    )?;
    files.push(("valid-zstd-small-pages.run".to_string(), zstd.clone()));
    files.push((
        "valid-raw-no-bloom-restart1.run".to_string(),
        build_run(
            WriterOptions {
                page_size: 200,
                restart_interval: 1,
                compression: Compression::None,
                bloom_fp_rate: 1.0,
                ..WriterOptions::default()
            },
            &entries_versions(25, 2),
        )?,
    ));
    files.push((
        "valid-empty.run".to_string(),
        build_run(WriterOptions::default(), &[])?,
    ));
    files.push((
        "valid-one-large-value.run".to_string(),
        build_run(
            WriterOptions::default(),
            &[(b"big".to_vec(), 7, EntryKind::Put, vec![b'x'; 6000])],
        )?,
    ));
    let shared: Vec<_> = (0..80u64)
        .map(|i| {
            let key = format!("{}{i:03}", "prefix/".repeat(6)).into_bytes();
            (key, 100 - i, EntryKind::Put, vec![i as u8; 3])
        })
        .collect();
    files.push((
        "valid-shared-prefixes-restart1024.run".to_string(),
        build_run(
            WriterOptions {
                page_size: 128,
                restart_interval: 1024,
                ..WriterOptions::default()
            },
            &shared,
        )?,
    ));
    let binary = vec![
        (Vec::new(), 5, EntryKind::Put, b"empty key".to_vec()),
        (vec![0], 4, EntryKind::Put, vec![0; 10]),
        (vec![0, 0xff], 3, EntryKind::Delete, Vec::new()),
        (vec![0xff; 20], 2, EntryKind::Merge, b"+1".to_vec()),
    ];
    files.push((
        "valid-binary-keys.run".to_string(),
        build_run(WriterOptions::default(), &binary)?,
    ));
    // Damaged copies: a truncated tail, a flipped page byte, a flipped index byte, another
    // format version in the footer.
    files.push((
        "damaged-truncated.run".to_string(),
        lz4[..lz4.len() - 10].to_vec(),
    ));
    let mut flipped = lz4.clone();
    flipped[20] ^= 0x04;
    files.push(("damaged-page-byte.run".to_string(), flipped));
    let run = Run::open_with(
        Path::new("corpus.run"),
        Box::new(zstd.clone()),
        Default::default(),
    )
    .map_err(to_io)?;
    let index_at = run.footer().index.offset as usize;
    let mut flipped = zstd.clone();
    flipped[index_at + 3] ^= 0x80;
    files.push(("damaged-index-byte.run".to_string(), flipped));
    let mut version = lz4;
    let at = version.len() - 16;
    version[at] = 2;
    files.push(("damaged-footer-version.run".to_string(), version));
    Ok(files)
}

/// The `page` corpus: raw pages, and stored pages of real runs in the target's
/// `type | raw_len u24 | payload` shape.
fn pages(runs: &[(String, Vec<u8>)]) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for (interval, count) in [(16, 30), (1, 12), (4, 50)] {
        let entries = entries_versions(count, 1);
        files.push((
            format!("raw-{count}-entries-restart{interval}.page"),
            bench_support::encode_page(&entries, interval),
        ));
    }
    files.push((
        "raw-one-entry.page".to_string(),
        bench_support::encode_page(&[(b"k".to_vec(), 1, EntryKind::Put, b"v".to_vec())], 16),
    ));
    for (name, bytes) in runs.iter().filter(|(n, _)| n.starts_with("valid-")) {
        let Ok(run) = Run::open_with(
            Path::new("corpus.run"),
            Box::new(bytes.clone()),
            Default::default(),
        ) else {
            continue;
        };
        for (i, handle) in run.pages().iter().take(2).enumerate() {
            let start = handle.offset as usize;
            let end = start + handle.stored_len as usize;
            let Some(type_byte) = bytes.get(end) else {
                continue;
            };
            let mut framed = vec![*type_byte];
            framed.extend_from_slice(&handle.raw_len.to_le_bytes()[..3]);
            framed.extend_from_slice(&bytes[start..end]);
            let stem = name.trim_start_matches("valid-").trim_end_matches(".run");
            files.push((format!("stored-{stem}-page{i}.page"), framed));
        }
    }
    Ok(files)
}

/// Opens a copy of the template database, runs `writes` in `Fsync` mode, then freezes the file
/// system and crashes, and returns the WAL segments left (name, bytes).
fn wal_after(
    t: &Template,
    segment_size: u64,
    writes: impl FnOnce(&Db) -> strata::Result<()>,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let fs = t.file_system(t.final_meta());
    let options = strata::Options {
        wal_segment_size_bytes: segment_size,
        ..template::options(&fs, WalRecovery::TolerateTornTail)
    };
    let db = Db::open(DIR, options).map_err(to_io)?;
    writes(&db).map_err(to_io)?;
    fs.fail_at(fs.op_count(), FaultKind::Eio, true);
    drop(db);
    fs.crash();
    fs.clear_faults();
    let mut out = Vec::new();
    for path in fs.files() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".wal") {
            out.push((name.to_string(), fs.read_file(&path)?));
        }
    }
    Ok(out)
}

fn wal_segments(t: &Template) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let mixed = wal_after(t, 64 << 10, |db| {
        let ks0 = db.keyspace("ks0", KeyspaceOptions::default())?;
        let ks1 = db.keyspace("ks1", KeyspaceOptions::default())?;
        for i in 0..12 {
            ks0.put(format!("key{:04}", i * 11), format!("new value {i}"))?;
        }
        ks0.delete("key0003")?;
        let mut batch = db.batch();
        batch
            .put(&ks0, "batch-a", "1")
            .put(&ks1, "batch-b", "2")
            .delete(&ks1, "k1-001");
        batch.commit()?;
        ks1.put("", "empty key")?;
        Ok(())
    })?;
    for (name, bytes) in &mixed {
        files.push((format!("valid-mixed-{name}"), bytes.clone()));
        if bytes.len() > 40 {
            files.push((
                format!("damaged-torn-tail-{name}"),
                bytes[..bytes.len() - 7].to_vec(),
            ));
            let mut flipped = bytes.clone();
            flipped[40] ^= 0x20;
            files.push((format!("damaged-flipped-{name}"), flipped));
        }
    }
    let rotated = wal_after(t, 4096, |db| {
        let ks0 = db.keyspace("ks0", KeyspaceOptions::default())?;
        for i in 0..8 {
            ks0.put(format!("large{i}"), vec![b'0' + i as u8; 1200])?;
        }
        Ok(())
    })?;
    // Only the first segment stands alone: recovery refuses a log whose records start past the
    // dumped seqno + 1 (records were lost), so later segments are inputs, not valid files.
    for (i, (name, bytes)) in rotated.into_iter().enumerate() {
        let kind = if i == 0 { "valid" } else { "later" };
        files.push((format!("{kind}-rotated-{name}"), bytes));
    }
    let empty = wal_after(t, 64 << 10, |_| Ok(()))?;
    for (name, bytes) in empty {
        files.push((format!("valid-header-only-{name}"), bytes));
    }
    Ok(files)
}

fn meta_logs(built: &Built) -> Vec<(String, Vec<u8>)> {
    let t = &built.template;
    let mut files: Vec<(String, Vec<u8>)> = built
        .meta_stages
        .iter()
        .enumerate()
        .map(|(i, log)| (format!("valid-stage{i}.meta"), log.clone()))
        .collect();
    let last = t.final_meta().to_vec();
    files.push((
        "damaged-torn-tail.meta".to_string(),
        last[..last.len().saturating_sub(5)].to_vec(),
    ));
    let mut flipped = last.clone();
    if let Some(b) = flipped.get_mut(30) {
        *b ^= 0x01;
    }
    files.push(("damaged-flipped.meta".to_string(), flipped));
    files
}

/// Picks model inputs from a deterministic stream: four per WAL mode, covering a crash, an
/// injected fault and a clean reopen.
fn model_inputs() -> Vec<(String, Vec<u8>)> {
    type Feature = (&'static str, fn(&Op) -> bool);
    const FEATURES: [Feature; 4] = [
        ("crash", |op| matches!(op, Op::Crash { .. })),
        ("fault", |op| matches!(op, Op::FailAt { .. })),
        ("reopen", |op| matches!(op, Op::Reopen)),
        ("plain", |_| true),
    ];
    let mut rng = Rng::new(0x005e_edf0_5747);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..10_000 {
        if files.len() == 12 {
            break;
        }
        let len = 64 + rng.below(900);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let (config, ops) = model::decode(&bytes);
        let mode = format!("{:?}", config.wal_mode()).to_lowercase();
        let seen = files.iter().filter(|(n, _)| n.starts_with(&mode)).count();
        let Some((feature, has)) = FEATURES.get(seen) else {
            continue;
        };
        if ops.iter().any(has) {
            files.push((format!("{mode}-{feature}-{}ops.bin", ops.len()), bytes));
        }
    }
    files
}

/// Picks `txn_model` inputs from a deterministic stream: ones whose run reaches conflicts,
/// commits with and without writes, and (for half of them) rollbacks to savepoints.
fn txn_inputs() -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(0x7a5c_0de1);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..2_000 {
        if files.len() == 12 {
            break;
        }
        let len = 100 + rng.below(500);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let s = crate::txn_model_stats(&bytes);
        let wanted = s.conflicts > 0
            && s.writer_commits > 2
            && s.reader_commits > 0
            && (files.len().is_multiple_of(2) || s.savepoint_rollbacks > 0);
        if wanted {
            let name = format!(
                "txn-{}ops-{}commits-{}conflicts.bin",
                s.ops, s.writer_commits, s.conflicts
            );
            files.push((name, bytes));
        }
    }
    files
}

/// Writes the corpus of the model targets only (`engine_model`, `txn_model`) under `root`,
/// replacing their directories: they are deterministic and need no template. Returns the files
/// written.
///
/// # Errors
/// An I/O error writing a file.
pub fn generate_models(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (target, files) in [
        ("engine_model", model_inputs()),
        ("txn_model", txn_inputs()),
    ] {
        let dir = root.join(target);
        clear_dir(&dir)?;
        for (name, bytes) in files {
            write(&dir, &name, &bytes)?;
            written.push(dir.join(name));
        }
    }
    Ok(written)
}

/// Checks that the valid WAL segments and metadata logs of a corpus (files named `valid-*`) are
/// still accepted by this build with the template database: each opens, and the newest metadata
/// log gives the template's contents.
///
/// # Errors
/// Which file failed and why.
pub fn check_valid_files(
    wal: &[(String, Vec<u8>)],
    meta: &[(String, Vec<u8>)],
) -> Result<(), String> {
    let t = template::get();
    let dir = Path::new(DIR);
    for (name, bytes) in wal.iter().filter(|(n, _)| n.starts_with("valid-")) {
        let fs = t.file_system(t.final_meta());
        let id = crate::fixup::wal_segment_id(bytes).ok_or(format!("{name}: no segment header"))?;
        template::write_file(&fs, &dir.join(format!("{id:020}.wal")), bytes)
            .map_err(|e| format!("{name}: {e}"))?;
        let views = strata::inspect::read_wal(&fs, dir).map_err(|e| format!("{name}: {e}"))?;
        let batches: usize = views.iter().map(|v| v.batches.len()).sum();
        if batches == 0 && bytes.len() > 24 {
            return Err(format!("{name}: no batch"));
        }
        let db = Db::open(DIR, template::options(&fs, WalRecovery::TolerateTornTail))
            .map_err(|e| format!("{name}: {e}"))?;
        db.close().map_err(|e| format!("{name}: {e}"))?;
    }
    let newest = meta
        .iter()
        .filter(|(n, _)| n.starts_with("valid-"))
        .max_by(|a, b| a.0.cmp(&b.0))
        .ok_or("no valid metadata log")?;
    for (name, bytes) in meta.iter().filter(|(n, _)| n.starts_with("valid-")) {
        let fs = t.file_system(bytes);
        let db = Db::open(DIR, template::options(&fs, WalRecovery::TolerateTornTail))
            .map_err(|e| format!("{name}: {e}"))?;
        if name == &newest.0 && template::read_all(&db) != t.contents {
            return Err(format!(
                "{name}: the newest metadata log does not give the template's contents; \
                 regenerate the corpus"
            ));
        }
        db.close().map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Builds a new template database and writes it packed to `template` (normally
/// `fuzz/targets/template.bin`, which the crate compiles in), and the whole corpus under `root`
/// (normally `fuzz/corpus`), replacing the files of each target directory. Returns the files
/// written. Rebuild the crate afterwards so it uses the new template.
///
/// # Errors
/// An I/O error writing a file, or an engine error building the valid files.
pub fn generate(root: &Path, template: &Path) -> io::Result<Vec<PathBuf>> {
    let built = template::build().map_err(to_io)?;
    std::fs::write(template, built.template.pack())?;
    let runs = run_files()?;
    let sets = [
        ("run_file", runs.clone()),
        ("page", pages(&runs)?),
        ("wal_segment", wal_segments(&built.template)?),
        ("meta_log", meta_logs(&built)),
        ("engine_model", model_inputs()),
        ("txn_model", txn_inputs()),
    ];
    let mut written = vec![template.to_path_buf()];
    for (target, files) in sets {
        let dir = root.join(target);
        clear_dir(&dir)?;
        for (name, bytes) in files {
            write(&dir, &name, &bytes)?;
            written.push(dir.join(name));
        }
    }
    Ok(written)
}
