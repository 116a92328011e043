//! Corruption sweep: every kind of damage to every file of a database, each checked against
//! what the format documents allow (issue 9, "Corruption sweep and I/O errors").
//!
//! A pristine database is built once on `MemFs` (`build_pristine`): two keyspaces; keyspace `a`
//! split into ranges holding runs on two and three levels (a compacted bottom run and two dumps
//! above it, 512-byte pages, zstd and lz4); a WAL tail of several 4 KiB segments that no
//! dump has covered; and the metadata log. Then, for every file and on a fresh
//! [`MemFs::fork`] of the pristine file system per case:
//!
//! - bit 0 and bit 7 of every byte are flipped,
//! - the file is truncated at every offset,
//! - each 4 KiB page is zeroed,
//!
//! and the case opens the database, looks up every key ever written (and a few never written),
//! scans each keyspace forward and in reverse, compacts everything, and reads everything again.
//! Each case runs under `catch_unwind` on a worker thread watched for hangs. The outcome must be
//! one the documents allow (`expectation`):
//!
//! - **WAL** (`engine/WAL.md` §6): damage followed by an intact record, or anywhere in a
//!   non-last segment, or in a segment header, is `Error::Corruption` naming the segment (at the
//!   damaged record's offset; `UnsupportedVersion` for the version field). Damage in the last
//!   segment with no intact record after it is a torn tail: the database opens without the
//!   records from the damaged one on, so each keyspace holds exactly the commits up to
//!   `max(its dumped seqno, first lost seqno - 1)`, computed from a model of the workload.
//! - **Metadata log** (`engine/METADATA.md` §6): header damage and damage followed by an intact
//!   frame are `Error::Corruption` (at the frame's offset); damage in the last frame with nothing
//!   intact after it drops that frame, and the database must read exactly as when the log is cut
//!   before its last frame.
//! - **Runs**: never a torn tail. Every read is the right answer or `Error::Corruption` naming
//!   the run, at open or at the read; compaction succeeds or reports such an error (or
//!   `Error::Poisoned` whose reason is that error, when a background compaction read the damage
//!   first).
//!
//! Everywhere else (damage that does not change the bytes, or that the formats cannot see, such as
//! a truncation exactly at a record or frame boundary of a file that is not the last to be
//! appended to): the intact contents, or a typed corruption error at open. A silently lost
//! write is a failure, as is a wrong value, "not found" for a key the damage made unreadable, a
//! scan that ends early without an error, a panic (also on the engine's own threads), an untyped
//! error, or a case that takes longer than `HANG_LIMIT`.
//!
//! The default run samples offsets: every `DEFAULT_STRIDE`-th, plus the WAL and metadata-log
//! headers and the bytes around each record and frame boundary, and a third of each run's footer
//! (about 5,500 cases, 10-15 s in debug on two busy cores). `STRATA_SWEEP=full` sweeps every offset
//! (about 116,000 cases, 5 minutes); `STRATA_SWEEP=<n>` every n-th. The test prints the case
//! counts per outcome and the time taken.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use strata::fs::{Fs, MemFs};
use strata::{Db, Error, KeyspaceOptions, Options, WalMode};

const DIR: &str = "/db";
const KEYSPACES: [&str; 2] = ["a", "b"];
const PAGE: u64 = 4096;
const DEFAULT_STRIDE: u64 = 37;
/// A case running longer than this is reported as a hang.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// Keys to values, per keyspace name; a keyspace that does not exist is absent.
type State = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

fn options(fs: &MemFs) -> Options {
    Options {
        wal_mode: WalMode::Write,
        wal_segment_size_bytes: 4096,
        range_size_min_bytes: 1024,
        compaction_threads: 1,
        cache_size_bytes: 1 << 20,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        page_size_bytes: 512,
        range_size_bytes: Some(3 * 1024),
        // Small dumps on top of a compacted bottom make three levels per range.
        run_size_ratio: 2.0,
        ..KeyspaceOptions::default()
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A value of `len` bytes that compresses only somewhat (hex digits of a hash).
fn value(tag: &str, n: u64, len: usize) -> Vec<u8> {
    let mut out = format!("{tag}{n}:").into_bytes();
    let mut x = n;
    while out.len() < len {
        x = splitmix64(x);
        out.extend_from_slice(format!("{:x}", x % 4096).as_bytes());
    }
    out.truncate(len);
    out
}

fn a_key(k: u64) -> Vec<u8> {
    format!("a{k:04}").into_bytes()
}

fn b_key(k: u64) -> Vec<u8> {
    format!("b{k:03}").into_bytes()
}

/// One committed batch: its last seqno and its writes (keyspace index, key, value or delete).
struct Commit {
    last_seqno: u64,
    writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
}

/// The workload's history, to compute the state after any per-keyspace seqno.
#[derive(Default)]
struct Model {
    commits: Vec<Commit>,
}

impl Model {
    /// The state holding, for keyspace `i`, every commit with last seqno `<= cut[i]`.
    fn state_at(&self, cut: [u64; 2]) -> State {
        let mut state: State = KEYSPACES
            .iter()
            .map(|n| (n.to_string(), BTreeMap::new()))
            .collect();
        for commit in &self.commits {
            for (ks, key, value) in &commit.writes {
                if commit.last_seqno > cut[*ks] {
                    continue;
                }
                let table = state.get_mut(KEYSPACES[*ks]).expect("keyspace");
                match value {
                    Some(v) => table.insert(key.clone(), v.clone()),
                    None => table.remove(key),
                };
            }
        }
        state
    }

    /// Every key ever written per keyspace, plus some never written.
    fn universe(&self) -> [BTreeSet<Vec<u8>>; 2] {
        let mut keys: [BTreeSet<Vec<u8>>; 2] = Default::default();
        for commit in &self.commits {
            for (ks, key, _) in &commit.writes {
                keys[*ks].insert(key.clone());
            }
        }
        for set in &mut keys {
            for absent in [&b""[..], b"\0", b"a", b"a9999", b"b", b"b999", b"zzzz"] {
                set.insert(absent.to_vec());
            }
        }
        keys
    }
}

/// Commits one batch and records it in the model.
fn commit(
    db: &Db,
    ks: &[strata::Keyspace; 2],
    model: &mut Model,
    writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
) {
    let mut batch = db.batch();
    for (i, key, value) in &writes {
        match value {
            Some(v) => batch.put(&ks[*i], key, v),
            None => batch.delete(&ks[*i], key),
        };
    }
    batch.commit().expect("commit");
    let last_seqno = db.snapshot().seqno();
    model.commits.push(Commit { last_seqno, writes });
}

/// What kind of file a damaged file is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// WAL segment: (offset, end, first seqno) of each record; whether it is the newest.
    Wal {
        records: Vec<(u64, u64, u64)>,
        is_last: bool,
    },
    /// The metadata log: (offset, end) of each frame.
    Meta {
        frames: Vec<(u64, u64)>,
    },
    Run,
}

struct FileInfo {
    path: PathBuf,
    bytes: Vec<u8>,
    kind: Kind,
}

impl FileInfo {
    fn label(&self) -> &'static str {
        match self.kind {
            Kind::Wal { .. } => "wal",
            Kind::Meta { .. } => "meta",
            Kind::Run => "run",
        }
    }
}

struct Pristine {
    fs: MemFs,
    model: Model,
    universe: [BTreeSet<Vec<u8>>; 2],
    intact: State,
    /// Each keyspace's dumped seqno, per the metadata log.
    dumped: [u64; 2],
    files: Vec<FileInfo>,
    /// The state read after cutting the metadata log before frame `f`, for each `f`
    /// (`Err` with the error text if that database does not open).
    meta_cut: Vec<Result<State, String>>,
    /// The kinds of the records in the metadata log's last frame.
    last_frame: Vec<&'static str>,
}

/// Builds the pristine database (see the module documentation) and everything the expectations
/// need.
fn build_pristine() -> Pristine {
    let fs = MemFs::new();
    let mut model = Model::default();
    let db = Db::open(DIR, options(&fs)).expect("open");
    let ks = [
        db.keyspace("a", ks_options()).expect("keyspace a"),
        db.keyspace("b", ks_options()).expect("keyspace b"),
    ];
    // Bottom level: 300 keys, compacted (and split into ranges).
    for j in 0..30u64 {
        let mut writes: Vec<_> = (0..10)
            .map(|i| {
                let k = j * 10 + i;
                (0, a_key(k), Some(value("a", k, 40 + (k as usize % 30))))
            })
            .collect();
        writes.push((1, b_key(j), Some(value("b", j, 30))));
        commit(&db, &ks, &mut model, writes);
        if j == 14 {
            db.flush().expect("flush 0");
        }
    }
    db.flush().expect("flush 1");
    ks[0].compact().expect("compact");
    // A middle level: overwrites and deletes.
    for j in 0..6u64 {
        let mut writes: Vec<_> = (0..8)
            .map(|i| {
                let k = (j * 8 + i) * 3 % 300;
                (0, a_key(k), Some(value("m", k + 1000, 35)))
            })
            .collect();
        writes.push((0, a_key(j * 23 % 300), None));
        writes.push((0, a_key(j * 41 % 300 + 1), None));
        commit(&db, &ks, &mut model, writes);
    }
    db.flush().expect("flush 2");
    // The newest level.
    for j in 0..3u64 {
        let mut writes: Vec<_> = (0..4)
            .map(|i| {
                let k = (j * 4 + i) * 23 % 300;
                (0, a_key(k), Some(value("n", k + 2000, 25)))
            })
            .collect();
        writes.push((0, a_key(j * 59 % 300 + 2), None));
        writes.push((1, b_key(j * 7), None));
        commit(&db, &ks, &mut model, writes);
    }
    db.flush().expect("flush 3");
    // The WAL tail: several 4 KiB segments, no dump.
    for j in 0..36u64 {
        let writes = vec![
            (0, a_key(j * 7 % 300), Some(value("w", j, 120))),
            (0, a_key(300 + j), Some(value("x", j, 90))),
            (0, a_key(j * 13 % 300 + 5), None),
            (1, b_key(j % 40), Some(value("y", j, 60))),
        ];
        commit(&db, &ks, &mut model, writes);
    }
    let stats = db.stats();
    let a_stats = stats
        .keyspaces
        .iter()
        .find(|k| k.name == "a")
        .expect("stats of a");
    assert!(
        a_stats.ranges >= 2,
        "keyspace a has {} ranges: {:?}",
        a_stats.ranges,
        a_stats.range_details
    );
    let levels = |r: &strata::RangeStats| r.runs_per_level.iter().filter(|&&n| n > 0).count();
    assert!(
        a_stats.range_details.iter().all(|r| levels(r) >= 2)
            && a_stats.range_details.iter().any(|r| levels(r) >= 3),
        "the ranges of a should hold runs on several levels: {:?}",
        a_stats.range_details
    );
    assert_eq!(
        a_stats.compaction_debt_bytes, 0,
        "the pristine database must not want a background compaction"
    );
    drop(ks);
    db.close().expect("close");

    let intact = model.state_at([u64::MAX; 2]);
    let universe = model.universe();
    let meta = strata::inspect::read_meta(&fs, Path::new(DIR)).expect("read meta");
    let mut dumped = [0; 2];
    for k in &meta.state.keyspaces {
        let i = KEYSPACES
            .iter()
            .position(|n| *n == k.name)
            .expect("known keyspace");
        dumped[i] = k.dumped_seqno;
    }
    let wal = strata::inspect::read_wal(&fs, Path::new(DIR)).expect("read wal");
    assert!(wal.len() >= 3, "the WAL should span several segments");
    let mut files = Vec::new();
    for (n, segment) in wal.iter().enumerate() {
        let bytes = fs.read_file(&segment.path).expect("read segment");
        let mut records = Vec::new();
        for (i, batch) in segment.batches.iter().enumerate() {
            let end = segment
                .batches
                .get(i + 1)
                .map_or(bytes.len() as u64, |b| b.offset);
            records.push((batch.offset, end, batch.first_seqno));
        }
        assert!(!records.is_empty(), "segment {} is empty", segment.id);
        files.push(FileInfo {
            path: segment.path.clone(),
            bytes,
            kind: Kind::Wal {
                records,
                is_last: n + 1 == wal.len(),
            },
        });
    }
    let meta_bytes = fs.read_file(&meta.path).expect("read meta.log");
    let frames: Vec<(u64, u64)> = meta
        .frames
        .iter()
        .enumerate()
        .map(|(i, (offset, _))| {
            let end = meta
                .frames
                .get(i + 1)
                .map_or(meta_bytes.len() as u64, |f| f.0);
            (*offset, end)
        })
        .collect();
    let meta_cut = frames
        .iter()
        .map(|&(start, _)| {
            let copy = fs.fork();
            copy.truncate(&meta.path, start).expect("cut meta.log");
            read_state(&copy)
        })
        .collect();
    let last_frame = meta
        .frames
        .last()
        .map(|(_, records)| records.iter().map(|r| r.kind()).collect())
        .unwrap_or_default();
    files.push(FileInfo {
        path: meta.path.clone(),
        bytes: meta_bytes,
        kind: Kind::Meta { frames },
    });
    let mut runs = 0;
    for path in fs.files() {
        if path.extension().is_some_and(|e| e == "run") {
            runs += 1;
            let bytes = fs.read_file(&path).expect("read run");
            files.push(FileInfo {
                path,
                bytes,
                kind: Kind::Run,
            });
        }
    }
    assert!(runs >= 4, "expected several runs, found {runs}");
    let pristine = Pristine {
        fs,
        model,
        universe,
        intact,
        dumped,
        files,
        meta_cut,
        last_frame,
    };
    assert_eq!(
        read_state(&pristine.fs.fork()).as_ref(),
        Ok(&pristine.intact),
        "the pristine database does not read as the model"
    );
    pristine
}

/// Opens the database on `fs` and reads its whole state by scans.
fn read_state(fs: &MemFs) -> Result<State, String> {
    let db = Db::open(DIR, options(fs)).map_err(|e| e.to_string())?;
    let mut state = State::new();
    for name in db.keyspace_names() {
        let ks = db
            .keyspace(&name, ks_options())
            .map_err(|e| e.to_string())?;
        let table = ks
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<strata::Result<_>>()
            .map_err(|e| e.to_string())?;
        state.insert(name, table);
    }
    db.close().map_err(|e| e.to_string())?;
    Ok(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Flip { offset: u64, mask: u8 },
    Truncate { len: u64 },
    ZeroPage { offset: u64 },
}

impl Damage {
    /// The damaged byte range `[start, end)` of a file of `len` bytes (for a truncation: what
    /// is cut off).
    fn range(self, len: u64) -> (u64, u64) {
        match self {
            Damage::Flip { offset, .. } => (offset, offset + 1),
            Damage::Truncate { len: cut } => (cut, len),
            Damage::ZeroPage { offset } => (offset, (offset + PAGE).min(len)),
        }
    }

    fn apply(self, fs: &MemFs, path: &Path) {
        match self {
            Damage::Flip { offset, mask } => fs.corrupt(path, offset, mask).expect("flip"),
            Damage::Truncate { len } => fs.truncate(path, len).expect("truncate"),
            Damage::ZeroPage { offset } => fs.zero_range(path, offset, PAGE).expect("zero"),
        }
    }

    fn changes(self, bytes: &[u8]) -> bool {
        match self {
            Damage::ZeroPage { offset } => {
                let (s, e) = self.range(bytes.len() as u64);
                bytes[s as usize..e as usize].iter().any(|&b| b != 0)
                    || offset >= bytes.len() as u64
            }
            _ => true,
        }
    }
}

/// What a case may end in.
#[derive(Debug, Clone)]
enum Expect {
    /// Opens, and every read matches one of these states exactly; no error anywhere.
    Opens(Vec<(&'static str, State)>),
    /// `Db::open` fails with `Error::Corruption` naming the file (at this offset, if given), or
    /// with `Error::UnsupportedVersion` if `version_ok`.
    Refuses {
        offset: Option<u64>,
        version_ok: bool,
    },
    /// The intact state, or a typed corruption error naming the file, at open or later.
    IntactOrError,
    /// The intact state, or a typed corruption error naming the file at open (damage that the
    /// format's rules do not describe; losing data here is a silent loss).
    IntactOrRefuses,
}

impl Expect {
    fn name(&self) -> &'static str {
        match self {
            Expect::Opens(_) => "opens",
            Expect::Refuses { .. } => "refuses",
            Expect::IntactOrError => "intact-or-error",
            Expect::IntactOrRefuses => "intact-or-refuses",
        }
    }
}

/// The state after losing every WAL record from seqno `lost_from` on (a torn tail).
fn torn_state(p: &Pristine, lost_from: u64) -> State {
    let keep = lost_from.saturating_sub(1);
    p.model
        .state_at([p.dumped[0].max(keep), p.dumped[1].max(keep)])
}

/// What `engine/WAL.md` §6 and `engine/METADATA.md` §6 allow for `damage` to `file`.
fn expectation(p: &Pristine, file: &FileInfo, damage: Damage) -> Expect {
    let len = file.bytes.len() as u64;
    if !damage.changes(&file.bytes) {
        return Expect::Opens(vec![("intact", p.intact.clone())]);
    }
    let (start, end) = damage.range(len);
    let truncation = matches!(damage, Damage::Truncate { .. });
    match &file.kind {
        Kind::Run => Expect::IntactOrError,
        Kind::Wal { records, is_last } => {
            let first_seqno = records[0].2;
            if start < 24 {
                // The segment header. A last segment shorter than a header, or all zero, was
                // torn while being created: it holds nothing.
                let all_zero = matches!(damage, Damage::ZeroPage { .. }) && end >= len;
                if *is_last && (truncation || all_zero) {
                    return Expect::Opens(vec![("torn header", torn_state(p, first_seqno))]);
                }
                let version =
                    matches!(damage, Damage::Flip { offset, .. } if (8..12).contains(&offset));
                return Expect::Refuses {
                    offset: (!version).then_some(0),
                    version_ok: version,
                };
            }
            let r = records
                .iter()
                .position(|&(s, e, _)| s <= start && start < e)
                .expect("damage inside a record");
            let (offset, _, seqno) = records[r];
            let intact_after = records.iter().any(|&(s, _, _)| s >= end);
            if intact_after {
                return Expect::Refuses {
                    offset: Some(offset),
                    version_ok: false,
                };
            }
            if *is_last {
                return Expect::Opens(vec![("torn tail", torn_state(p, seqno))]);
            }
            if truncation && start == offset {
                // A non-last segment cut exactly at a record boundary looks complete.
                return Expect::IntactOrRefuses;
            }
            Expect::Refuses {
                offset: Some(offset),
                version_ok: false,
            }
        }
        Kind::Meta { frames } => {
            if start < 16 {
                let version =
                    matches!(damage, Damage::Flip { offset, .. } if (8..12).contains(&offset));
                return Expect::Refuses {
                    offset: Some(0),
                    version_ok: version,
                };
            }
            let f = frames
                .iter()
                .position(|&(s, e)| s <= start && start < e)
                .expect("damage inside a frame");
            if frames.iter().any(|&(s, _)| s >= end) {
                return Expect::Refuses {
                    offset: Some(frames[f].0),
                    version_ok: false,
                };
            }
            if f + 1 == frames.len() {
                // Indistinguishable from a torn last append: that frame is dropped.
                return match &p.meta_cut[f] {
                    Ok(state) => Expect::Opens(vec![("last frame dropped", state.clone())]),
                    Err(_) => Expect::Refuses {
                        offset: None,
                        version_ok: false,
                    },
                };
            }
            // More than the last frame lost: a crash cannot do that.
            Expect::IntactOrRefuses
        }
    }
}

/// One case's description, for failure reports.
fn describe(file: &FileInfo, damage: Damage) -> String {
    format!(
        "{:?} of {} ({} bytes)",
        damage,
        file.path.display(),
        file.bytes.len()
    )
}

/// How a case ended (for the counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Refused,
    /// Opened and read as the named expected state, with this many reads failing.
    Opened {
        state: &'static str,
        read_errors: bool,
    },
}

/// Checks an error against the damaged file: a typed corruption error naming it. Also accepted:
/// a poisoned database whose reason is such an error (a background compaction read the damage
/// first), and for the metadata log, corruption reported on a file the log names wrongly (a run
/// it lists that is gone).
fn typed_corruption(e: &Error, file: &Path) -> Result<(), String> {
    let names = |path: &Path| path == file;
    let meta = file.ends_with("meta.log");
    match e {
        Error::Corruption { path, .. } | Error::UnsupportedVersion { path, .. } if names(path) => {
            Ok(())
        }
        Error::Corruption { what, .. } if meta && what.contains("metadata log") => Ok(()),
        Error::Poisoned { reason }
            if reason.contains("corruption in")
                && reason.contains(&file.display().to_string())
                && !reason.contains("panicked") =>
        {
            Ok(())
        }
        other => Err(format!(
            "expected a corruption error naming {}, got {other:?}",
            file.display()
        )),
    }
}

/// The candidate states still consistent with what was read, and whether any read failed.
struct Reader<'a> {
    candidates: Vec<(&'static str, &'a State)>,
    errors_ok: bool,
    errors: usize,
    file: &'a Path,
}

impl Reader<'_> {
    fn error(&mut self, e: &Error, what: &str) -> Result<(), String> {
        if !self.errors_ok {
            return Err(format!("{what}: unexpected error {e}"));
        }
        typed_corruption(e, self.file).map_err(|m| format!("{what}: {m}"))?;
        self.errors += 1;
        Ok(())
    }

    /// Keeps the candidates for which `check` holds; fails if none is left.
    fn narrow(&mut self, what: &str, check: impl Fn(&State) -> bool) -> Result<(), String> {
        self.candidates.retain(|(_, s)| check(s));
        if self.candidates.is_empty() {
            return Err(format!("{what}: matches no allowed state"));
        }
        Ok(())
    }

    fn read_all(
        &mut self,
        db: &Db,
        universe: &[BTreeSet<Vec<u8>>; 2],
        when: &str,
    ) -> Result<(), String> {
        let names = db.keyspace_names();
        self.narrow(&format!("{when}: keyspaces {names:?}"), |s| {
            s.keys().cloned().collect::<Vec<_>>() == names
        })?;
        for name in &names {
            let i = KEYSPACES
                .iter()
                .position(|n| n == name)
                .ok_or("unknown keyspace")?;
            let ks = db
                .keyspace(name, ks_options())
                .map_err(|e| format!("{when}: open keyspace {name}: {e}"))?;
            for key in &universe[i] {
                let what = format!("{when}: get {name}/{}", String::from_utf8_lossy(key));
                match ks.get(key) {
                    Ok(got) => self.narrow(
                        &format!("{what} = {:?}", got.as_deref().map(String::from_utf8_lossy)),
                        |s| s[name].get(key).map(|v| &v[..]) == got.as_deref(),
                    )?,
                    Err(e) => self.error(&e, &what)?,
                }
            }
            for reverse in [false, true] {
                let what = format!("{when}: scan {name} (reverse: {reverse})");
                let mut seen = Vec::new();
                let mut failed = false;
                let iter = ks.iter();
                let items: Box<dyn Iterator<Item = strata::Result<(strata::Key, strata::Value)>>> =
                    if reverse {
                        Box::new(iter.rev())
                    } else {
                        Box::new(iter)
                    };
                for item in items {
                    match item {
                        Ok((k, v)) => seen.push((k.to_vec(), v.to_vec())),
                        Err(e) => {
                            self.error(&e, &what)?;
                            failed = true;
                            break;
                        }
                    }
                }
                self.narrow(
                    &format!("{what}: {} items, failed: {failed}", seen.len()),
                    |s| {
                        let table = &s[name];
                        let expected: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = if reverse {
                            Box::new(table.iter().rev())
                        } else {
                            Box::new(table.iter())
                        };
                        let expected: Vec<_> = expected.take(seen.len() + 1).collect();
                        let prefix_ok = seen.len() <= expected.len()
                            && seen
                                .iter()
                                .zip(&expected)
                                .all(|((k, v), (ek, ev))| k == *ek && v == *ev);
                        prefix_ok && (failed || seen.len() == table.len())
                    },
                )?;
            }
        }
        Ok(())
    }
}

/// Runs one case on its own copy of the file system.
fn run_case(
    p: &Pristine,
    file: &FileInfo,
    damage: Damage,
    expect: &Expect,
) -> Result<Outcome, String> {
    let fs = p.fs.fork();
    damage.apply(&fs, &file.path);
    let opened = Db::open(DIR, options(&fs));
    let (db, candidates, errors_ok) = match (expect, opened) {
        (Expect::Refuses { offset, version_ok }, Err(e)) => {
            return match &e {
                Error::Corruption {
                    path, offset: at, ..
                } if path == &file.path => match offset {
                    Some(o) if o != at => Err(format!("refused at offset {at}, expected {o}: {e}")),
                    _ => Ok(Outcome::Refused),
                },
                Error::UnsupportedVersion { path, .. } if *version_ok && path == &file.path => {
                    Ok(Outcome::Refused)
                }
                _ => Err(format!("refused with the wrong error: {e:?}")),
            };
        }
        (Expect::Refuses { .. }, Ok(_)) => {
            return Err("opened, but the rules say it must refuse".into())
        }
        (Expect::Opens(_), Err(e)) => return Err(format!("refused to open: {e}")),
        (Expect::IntactOrError | Expect::IntactOrRefuses, Err(e)) => {
            typed_corruption(&e, &file.path).map_err(|m| format!("open: {m}"))?;
            return Ok(Outcome::Refused);
        }
        (Expect::Opens(states), Ok(db)) => {
            let candidates = states.iter().map(|(n, s)| (*n, s)).collect::<Vec<_>>();
            (db, candidates, false)
        }
        (Expect::IntactOrError, Ok(db)) => (db, vec![("intact", &p.intact)], true),
        (Expect::IntactOrRefuses, Ok(db)) => (db, vec![("intact", &p.intact)], false),
    };
    let mut reader = Reader {
        candidates,
        errors_ok,
        errors: 0,
        file: &file.path,
    };
    reader.read_all(&db, &p.universe, "after open")?;
    match db.compact_all() {
        Ok(()) => {}
        Err(e) => reader.error(&e, "compact")?,
    }
    reader.read_all(&db, &p.universe, "after compaction")?;
    match db.close() {
        Ok(()) => {}
        Err(Error::Poisoned { reason }) if reader.errors > 0 && errors_ok => {
            if reason.contains("panicked") {
                return Err(format!("close: poisoned by a panic: {reason}"));
            }
        }
        Err(e) => return Err(format!("close: {e}")),
    }
    Ok(Outcome::Opened {
        state: reader.candidates[0].0,
        read_errors: reader.errors > 0,
    })
}

thread_local! {
    /// Set while a worker runs a case: its panics are caught and reported by the case.
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
}

/// Panics outside cases (the engine's own threads), with the thread name.
static STRAY_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs a panic hook (once) that keeps caught case panics quiet and records the rest.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(Cell::get) {
                return;
            }
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("unnamed");
            if !name.starts_with("sweep") && name != "main" && !name.starts_with("corruption_sweep")
            {
                STRAY_PANICS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("thread {name}: {info}"));
            }
            default(info);
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// The offsets swept in `file` for `stride`: every `stride`-th, plus headers, footers and the
/// bytes around every record and frame boundary.
fn offsets(file: &FileInfo, stride: u64) -> BTreeSet<u64> {
    let len = file.bytes.len() as u64;
    let mut set: BTreeSet<u64> = (0..len).step_by(stride as usize).collect();
    // Headers (and a run's 64-byte footer, one byte in three of it when sampling: a run case that
    // opens reads everything, so it costs tens of times a refused one).
    let (head, tail, tail_step) = match file.kind {
        Kind::Wal { .. } => (24, 4, 1),
        Kind::Meta { .. } => (16, 4, 1),
        Kind::Run => (8, 64, stride.min(3)),
    };
    set.extend(0..head.min(len));
    set.extend((len.saturating_sub(tail)..len).step_by(tail_step as usize));
    set.insert(len.saturating_sub(1));
    let boundaries: Vec<u64> = match &file.kind {
        Kind::Wal { records, .. } => records.iter().map(|r| r.0).collect(),
        Kind::Meta { frames } => frames.iter().map(|f| f.0).collect(),
        Kind::Run => Vec::new(),
    };
    for b in boundaries {
        for delta in [0, 1, 4, 8, 9, 16, 17] {
            if b + delta < len {
                set.insert(b + delta);
            }
        }
        if b > 0 {
            set.insert(b - 1);
        }
    }
    set
}

/// Every case of the sweep: (file index, damage).
fn cases(p: &Pristine, stride: u64) -> Vec<(usize, Damage)> {
    let mut out = Vec::new();
    for (f, file) in p.files.iter().enumerate() {
        let len = file.bytes.len() as u64;
        for &offset in &offsets(file, stride) {
            for mask in [0x01, 0x80] {
                out.push((f, Damage::Flip { offset, mask }));
            }
            out.push((f, Damage::Truncate { len: offset }));
        }
        for offset in (0..len).step_by(PAGE as usize) {
            out.push((f, Damage::ZeroPage { offset }));
        }
    }
    out
}

/// What the sweep saw.
#[derive(Default)]
struct Tally {
    cases: usize,
    /// Per file label and outcome.
    outcomes: BTreeMap<(&'static str, &'static str, Outcome), usize>,
    failures: Vec<String>,
}

/// A worker's running case: its index and when it started.
type Running = Mutex<Option<(usize, Instant)>>;

/// Locks `mutex`, ignoring poisoning (a case's panic is caught and reported).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `cases` on worker threads, each under `catch_unwind`, with a watchdog for hangs.
fn sweep(p: Arc<Pristine>, cases: Vec<(usize, Damage)>, workers: usize) -> Tally {
    install_panic_hook();
    let cases = Arc::new(cases);
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Per worker: (case index, start time) of the running case.
    let running: Arc<Vec<Running>> = Arc::new((0..workers).map(|_| Mutex::new(None)).collect());
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (p, cases, next, tally, running) = (
                Arc::clone(&p),
                Arc::clone(&cases),
                Arc::clone(&next),
                Arc::clone(&tally),
                Arc::clone(&running),
            );
            std::thread::Builder::new()
                .name(format!("sweep-{w}"))
                .spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(f, damage)) = cases.get(i) else {
                        break;
                    };
                    *lock(&running[w]) = Some((i, Instant::now()));
                    let file = &p.files[f];
                    let expect = expectation(&p, file, damage);
                    IN_CASE.with(|c| c.set(true));
                    let result = panic::catch_unwind(AssertUnwindSafe(|| {
                        run_case(&p, file, damage, &expect)
                    }));
                    IN_CASE.with(|c| c.set(false));
                    *lock(&running[w]) = None;
                    let mut t = lock(&tally);
                    t.cases += 1;
                    match result {
                        Ok(Ok(outcome)) => {
                            *t.outcomes
                                .entry((file.label(), expect.name(), outcome))
                                .or_default() += 1;
                        }
                        Ok(Err(message)) => t.failures.push(format!(
                            "{} (expected: {}): {message}",
                            describe(file, damage),
                            expect.name()
                        )),
                        Err(payload) => t.failures.push(format!(
                            "{}: PANIC: {}",
                            describe(file, damage),
                            panic_message(&*payload)
                        )),
                    }
                })
                .expect("spawn a sweep worker")
        })
        .collect();
    // The watchdog: a hung case cannot be stopped, so report it and leave the thread behind.
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        for slot in running.iter() {
            if let Some((i, started)) = *lock(slot) {
                if started.elapsed() > HANG_LIMIT {
                    let (f, damage) = cases[i];
                    panic!(
                        "HANG: {} has run for over {HANG_LIMIT:?}",
                        describe(&p.files[f], damage)
                    );
                }
            }
        }
    }
    for h in handles {
        h.join().expect("sweep worker");
    }
    Arc::try_unwrap(tally)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| panic!("tally still shared"))
}

fn stride_from_env() -> u64 {
    match std::env::var("STRATA_SWEEP").as_deref() {
        Ok("full") => 1,
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("STRATA_SWEEP={text:?}: expected `full` or a stride")),
        Err(_) => DEFAULT_STRIDE,
    }
}

#[test]
fn every_damage_to_every_file_is_detected_or_harmless() {
    let started = Instant::now();
    let pristine = Arc::new(build_pristine());
    let stride = stride_from_env();
    let all = cases(&pristine, stride);
    let total_bytes: usize = pristine.files.iter().map(|f| f.bytes.len()).sum();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let build_secs = started.elapsed().as_secs_f64();
    let tally = sweep(Arc::clone(&pristine), all, workers);
    let secs = started.elapsed().as_secs_f64();
    let mut per_file: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for f in &pristine.files {
        let e = per_file.entry(f.label()).or_default();
        e.0 += 1;
        e.1 += f.bytes.len() as u64;
    }
    println!(
        "corruption sweep (stride {stride}): {} cases over {} files ({total_bytes} bytes: {per_file:?}) \
         in {secs:.1} s (build {build_secs:.1} s, {workers} workers)",
        tally.cases,
        pristine.files.len()
    );
    for ((label, expect, outcome), n) in &tally.outcomes {
        println!("  {label:5} {expect:18} {outcome:?}: {n}");
    }
    let dropped_last = pristine
        .meta_cut
        .last()
        .cloned()
        .unwrap_or(Err("no frame".into()));
    println!(
        "  the metadata log's last frame holds {:?}; without it the database {}",
        pristine.last_frame,
        match &dropped_last {
            Ok(state) if *state == pristine.intact => "reads the same".to_string(),
            Ok(_) => "opens with different contents (the documented loss)".to_string(),
            Err(e) => format!("does not open: {e}"),
        }
    );
    if let Ok(path) = std::env::var("STRATA_SWEEP_FAILURES") {
        std::fs::write(&path, tally.failures.join("\n")).expect("write the failure list");
    }
    let stray = lock(&STRAY_PANICS).clone();
    assert!(
        stray.is_empty(),
        "panics on the engine's threads:\n{}",
        stray.join("\n")
    );
    assert!(
        tally.failures.is_empty(),
        "{} of {} cases failed:\n{}",
        tally.failures.len(),
        tally.cases,
        tally
            .failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The checks can fail: the wrong expectation for a damaged WAL header or a torn tail is a
    // failed case.
    let wal = |last: bool| {
        pristine
            .files
            .iter()
            .find(|f| matches!(f.kind, Kind::Wal { is_last, .. } if is_last == last))
            .expect("a WAL segment")
    };
    let intact = Expect::Opens(vec![("intact", pristine.intact.clone())]);
    let header_flip = Damage::Flip { offset: 0, mask: 1 };
    assert!(run_case(&pristine, wal(false), header_flip, &intact).is_err());
    let last = wal(true);
    let torn = Damage::Truncate {
        len: last.bytes.len() as u64 - 1,
    };
    assert!(matches!(
        expectation(&pristine, last, torn),
        Expect::Opens(ref states) if states[0].1 != pristine.intact
    ));
    assert!(run_case(&pristine, last, torn, &intact).is_err());
    // The sweep must exercise every kind of outcome, or it is not testing what it claims.
    let seen = |label: &str, pred: &dyn Fn(&Outcome) -> bool| {
        tally
            .outcomes
            .keys()
            .any(|(l, _, o)| *l == label && pred(o))
    };
    assert!(seen("wal", &|o| *o == Outcome::Refused));
    assert!(seen("wal", &|o| matches!(
        o,
        Outcome::Opened {
            state: "torn tail",
            ..
        }
    )));
    assert!(seen("meta", &|o| *o == Outcome::Refused));
    assert!(seen("meta", &|o| matches!(
        o,
        Outcome::Opened {
            state: "last frame dropped",
            ..
        }
    )));
    assert!(seen("run", &|o| *o == Outcome::Refused));
    assert!(seen("run", &|o| matches!(
        o,
        Outcome::Opened {
            read_errors: true,
            ..
        }
    )));
}
