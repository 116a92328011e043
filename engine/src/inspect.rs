//! Read-only inspection of a database's files, for the `strata` tool and for operators.
//!
//! Nothing here modifies a file or takes the database lock: a torn WAL tail is reported, not
//! truncated. Every reader is the engine's own (no second parser), so what these functions
//! accept is exactly what recovery accepts.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;
use strata_sstable::{ReadOptions, Run};

use crate::batch;
use crate::db::LOCK_FILE;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::meta::{self, MetaRecord, MetaState};
use crate::options::KeyspaceOptions;
use crate::version::{parse_run_file_name, run_file_name};
use crate::wal::{self, WalRecoveryMode};

/// One write inside a WAL batch.
#[derive(Debug, Clone, Serialize)]
pub struct WalEntryView {
    /// The entry's seqno.
    pub seqno: u64,
    /// The keyspace id (see [`MetaView::state`] for names).
    pub keyspace: u32,
    /// `put`, `delete` or `merge`.
    pub kind: &'static str,
    /// The key.
    #[serde(serialize_with = "serialize_bytes")]
    pub key: Bytes,
    /// The value.
    #[serde(serialize_with = "serialize_bytes")]
    pub value: Bytes,
}

fn serialize_bytes<S: serde::Serializer>(
    bytes: &Bytes,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// One committed batch (one WAL record).
#[derive(Debug, Clone, Serialize)]
pub struct WalBatchView {
    /// Offset of the record in its segment.
    pub offset: u64,
    /// The batch's first seqno.
    pub first_seqno: u64,
    /// Its writes, in seqno order.
    pub entries: Vec<WalEntryView>,
}

/// One WAL segment file.
#[derive(Debug, Clone, Serialize)]
pub struct WalSegmentView {
    /// Segment id.
    pub id: u64,
    /// Its path.
    pub path: PathBuf,
    /// File size in bytes.
    pub size: u64,
    /// The batches it holds.
    pub batches: Vec<WalBatchView>,
    /// Where a torn tail starts (a crash mid-write; recovery drops it), if any.
    pub torn_tail: Option<u64>,
}

/// Reads WAL segments: every segment of the database directory `path`, or the single segment
/// file `path`. The newest segment (or a single file) may end in a torn tail, which is reported.
///
/// # Errors
/// [`Error::Corruption`] naming the segment and offset for damage other than a torn tail;
/// [`Error::Io`]; [`Error::InvalidArgument`] if `path` is a file that is not a segment.
pub fn read_wal(fs: &dyn Fs, path: &Path) -> Result<Vec<WalSegmentView>> {
    let segments = if path.extension().is_some_and(|e| e == "wal") {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let id = wal::parse_segment_name(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} is not named like a WAL segment",
                path.display()
            ))
        })?;
        vec![wal::SegmentFile {
            id,
            path: path.to_path_buf(),
        }]
    } else {
        wal::list_segments(fs, path)?
    };
    let mut views = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let contents = wal::read_segment(
            fs,
            &segment.path,
            segment.id,
            is_last,
            WalRecoveryMode::TolerateTornTail,
        )?;
        let mut batches = Vec::new();
        for record in &contents.records {
            let decoded = batch::decode(&record.payload).map_err(|what| {
                Error::corruption(&segment.path, record.offset, format!("WAL batch: {what}"))
            })?;
            let entries = decoded
                .entries
                .into_iter()
                .enumerate()
                .map(|(j, e)| WalEntryView {
                    seqno: decoded.first_seqno + j as u64,
                    keyspace: e.keyspace,
                    kind: e.kind.name(),
                    key: e.key,
                    value: e.value,
                })
                .collect();
            batches.push(WalBatchView {
                offset: record.offset,
                first_seqno: decoded.first_seqno,
                entries,
            });
        }
        let size = fs
            .file_len(&segment.path)
            .map_err(|e| Error::io(&segment.path, e))?;
        views.push(WalSegmentView {
            id: segment.id,
            path: segment.path.clone(),
            size,
            batches,
            torn_tail: contents.torn_tail,
        });
    }
    Ok(views)
}

/// One metadata log record, printable and serializable.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct MetaRecordView(MetaRecord);

impl MetaRecordView {
    /// The record's kind, as `engine/METADATA.md` names it (`CreateKeyspace`, `CreateRun`, ...).
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }
}

impl std::fmt::Display for MetaRecordView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A run as the metadata log records it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// Run id (file `<id>.run`).
    pub id: u64,
    /// Smallest seqno in the run.
    pub min_seqno: u64,
    /// Largest seqno in the run.
    pub max_seqno: u64,
    /// Entries.
    pub entries: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// Smallest key.
    pub min_key: Vec<u8>,
    /// Largest key.
    pub max_key: Vec<u8>,
}

/// A slice: the part `[begin, end)` of a run that a range reads.
#[derive(Debug, Clone, Serialize)]
pub struct SliceView {
    /// Slice id.
    pub id: u64,
    /// The run it reads.
    pub run: u64,
    /// Inclusive lower bound (`None`: unbounded).
    pub begin: Option<Vec<u8>>,
    /// Exclusive upper bound (`None`: unbounded).
    pub end: Option<Vec<u8>>,
}

/// A range of a keyspace with its slices.
#[derive(Debug, Clone, Serialize)]
pub struct RangeView {
    /// Range id.
    pub id: u64,
    /// Inclusive lower bound (`None`: minus infinity).
    pub begin: Option<Vec<u8>>,
    /// Exclusive upper bound (`None`: infinity).
    pub end: Option<Vec<u8>>,
    /// Its slices, by id.
    pub slices: Vec<SliceView>,
}

/// A keyspace as the metadata log records it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyspaceView {
    /// Keyspace id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Every write with a seqno at or below this is in runs.
    pub dumped_seqno: u64,
    /// Options it was created with (`None` if they do not decode).
    pub options: Option<KeyspaceOptions>,
    /// Live runs, by id.
    pub runs: Vec<RunView>,
    /// Ranges in key order, tiling the keyspace.
    pub ranges: Vec<RangeView>,
}

/// The state the metadata log replays to.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    /// Live keyspaces by id.
    pub keyspaces: Vec<KeyspaceView>,
    /// Runs prepared but never created (recovery deletes their files).
    pub prepared_runs: Vec<u64>,
    /// Runs dropped but not yet forgotten (recovery deletes their files).
    pub dropped_runs: Vec<u64>,
    /// The next run id.
    pub next_run_id: u64,
    /// The next keyspace id.
    pub next_keyspace_id: u32,
}

fn state_view(state: &MetaState) -> StateView {
    StateView {
        keyspaces: state
            .keyspaces
            .values()
            .map(|k| KeyspaceView {
                id: k.id,
                name: k.name.clone(),
                dumped_seqno: k.dumped_seqno,
                options: KeyspaceOptions::decode(&k.options).ok(),
                runs: k
                    .runs
                    .iter()
                    .map(|(&id, info)| RunView {
                        id,
                        min_seqno: info.min_seqno,
                        max_seqno: info.max_seqno,
                        entries: info.entries,
                        file_size: info.file_size,
                        min_key: info.min_key.clone(),
                        max_key: info.max_key.clone(),
                    })
                    .collect(),
                ranges: {
                    let mut ranges: Vec<RangeView> = k
                        .ranges
                        .values()
                        .map(|r| RangeView {
                            id: r.id,
                            begin: r.begin.clone(),
                            end: r.end.clone(),
                            slices: r
                                .slices
                                .values()
                                .map(|sl| SliceView {
                                    id: sl.id,
                                    run: sl.run,
                                    begin: sl.begin.clone(),
                                    end: sl.end.clone(),
                                })
                                .collect(),
                        })
                        .collect();
                    ranges.sort_by(|a, b| match (&a.begin, &b.begin) {
                        (None, None) => std::cmp::Ordering::Equal,
                        (None, Some(_)) => std::cmp::Ordering::Less,
                        (Some(_), None) => std::cmp::Ordering::Greater,
                        (Some(x), Some(y)) => x.cmp(y),
                    });
                    ranges
                },
            })
            .collect(),
        prepared_runs: state.prepared_runs.keys().copied().collect(),
        dropped_runs: state.dropped_runs.iter().copied().collect(),
        next_run_id: state.next_run_id,
        next_keyspace_id: state.next_keyspace_id,
    }
}

/// The metadata log, frame by frame, and the state it replays to.
#[derive(Debug, Clone, Serialize)]
pub struct MetaView {
    /// The log file.
    pub path: PathBuf,
    /// (offset, records) of every frame; one frame is one atomic group.
    pub frames: Vec<(u64, Vec<MetaRecordView>)>,
    /// Where a torn tail starts, if the file is longer than its valid frames.
    pub torn_tail: Option<u64>,
    /// The replayed state.
    pub state: StateView,
}

/// Reads the metadata log of the database in `dir` without modifying it.
///
/// # Errors
/// [`Error::Corruption`] naming `meta.log` and the offset of a damaged frame (other than a torn
/// tail) or of a record that does not apply; [`Error::Io`].
pub fn read_meta(fs: &dyn Fs, dir: &Path) -> Result<MetaView> {
    let contents = meta::read_log(fs, dir)?;
    let path = dir.join(meta::LOG_FILE);
    let mut state = MetaState::default();
    let mut frames = Vec::new();
    for (offset, records) in contents.frames {
        for record in &records {
            state.apply(record).map_err(|e| {
                Error::corruption(
                    &path,
                    offset,
                    format!("{} does not apply: {e}", record.kind()),
                )
            })?;
        }
        frames.push((offset, records.into_iter().map(MetaRecordView).collect()));
    }
    let torn_tail = (contents.valid_len < contents.file_len).then_some(contents.valid_len);
    Ok(MetaView {
        path,
        frames,
        torn_tail,
        state: state_view(&state),
    })
}

/// One problem `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyProblem {
    /// The damaged or missing file.
    pub path: PathBuf,
    /// Offset of the damage, when known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub what: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbVerifyReport {
    /// Live runs checked page by page.
    pub runs_checked: usize,
    /// Pages read.
    pub pages_checked: u64,
    /// Entries decoded.
    pub entries_checked: u64,
    /// WAL segments read.
    pub wal_segments_checked: usize,
    /// WAL batches decoded.
    pub wal_batches_checked: u64,
    /// Everything wrong. Empty means the database is sound.
    pub problems: Vec<VerifyProblem>,
    /// Files that are not part of the database (reported, not a problem).
    pub stray_files: Vec<PathBuf>,
}

impl DbVerifyReport {
    /// True if nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(error: &Error, fallback: &Path) -> VerifyProblem {
    match error {
        Error::Corruption { path, offset, what } => VerifyProblem {
            path: path.clone(),
            offset: Some(*offset),
            what: what.clone(),
        },
        other => VerifyProblem {
            path: fallback.to_path_buf(),
            offset: None,
            what: other.to_string(),
        },
    }
}

/// Verifies every checksum of the database in `dir`: the metadata log, every WAL segment and
/// batch, and every page of every live run (which must exist with the size the log records and
/// whose keys and seqnos must lie within what the log says). Reads everything; changes nothing.
///
/// `progress` is called with (bytes done, bytes total) as runs are verified.
///
/// # Errors
/// Only [`Error::Io`] listing the directory; everything else found becomes a problem in the
/// report.
pub fn verify(
    fs: &dyn Fs,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<DbVerifyReport> {
    let mut report = DbVerifyReport::default();
    let names = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    let meta_view = match read_meta(fs, dir) {
        Ok(view) => Some(view),
        Err(e) => {
            report.problems.push(problem(&e, &dir.join(meta::LOG_FILE)));
            None
        }
    };
    match read_wal(fs, dir) {
        Ok(segments) => {
            report.wal_segments_checked = segments.len();
            report.wal_batches_checked = segments.iter().map(|s| s.batches.len() as u64).sum();
        }
        Err(e) => report.problems.push(problem(&e, dir)),
    }
    let Some(meta_view) = meta_view else {
        return Ok(report);
    };
    let live: Vec<(String, RunView)> = meta_view
        .state
        .keyspaces
        .iter()
        .flat_map(|k| k.runs.iter().map(move |r| (k.name.clone(), r.clone())))
        .collect();
    let total: u64 = live.iter().map(|(_, r)| r.file_size).sum();
    let mut done = 0;
    for (keyspace, run_view) in &live {
        let path = dir.join(run_file_name(run_view.id));
        match check_run(fs, &path, run_view) {
            Ok((pages, entries, problems)) => {
                report.runs_checked += 1;
                report.pages_checked += pages;
                report.entries_checked += entries;
                report.problems.extend(problems);
            }
            Err(e) => {
                let mut p = problem(&e, &path);
                p.what = format!("run {} of keyspace {keyspace:?}: {}", run_view.id, p.what);
                report.problems.push(p);
            }
        }
        done += run_view.file_size;
        progress(done, total);
    }
    let meta_path = dir.join(meta::LOG_FILE);
    for keyspace in &meta_view.state.keyspaces {
        report.problems.extend(check_ranges(&meta_path, keyspace));
    }
    let known: std::collections::BTreeSet<u64> = live.iter().map(|(_, r)| r.id).collect();
    for name in names {
        let path = dir.join(&name);
        let expected = name == meta::LOG_FILE
            || name == LOCK_FILE
            || wal::parse_segment_name(&name).is_some()
            || parse_run_file_name(&name).is_some_and(|id| known.contains(&id));
        if !expected {
            report.stray_files.push(path);
        }
    }
    Ok(report)
}

/// Ranges must tile the keyspace, and every slice must read a live run of the keyspace, lie within
/// its range, and overlap the keys its run holds.
fn check_ranges(meta_path: &Path, keyspace: &KeyspaceView) -> Vec<VerifyProblem> {
    let mut problems = Vec::new();
    let mut problem = |what: String| {
        problems.push(VerifyProblem {
            path: meta_path.to_path_buf(),
            offset: None,
            what: format!("keyspace {:?}: {what}", keyspace.name),
        })
    };
    let ranges = &keyspace.ranges;
    let tiled = ranges.first().is_some_and(|r| r.begin.is_none())
        && ranges.last().is_some_and(|r| r.end.is_none())
        && ranges.windows(2).all(|w| w[0].end == w[1].begin);
    if !tiled {
        problem("ranges do not tile the key space".into());
    }
    for range in ranges {
        for slice in &range.slices {
            let Some(run) = keyspace.runs.iter().find(|r| r.id == slice.run) else {
                problem(format!(
                    "slice {} of range {} reads run {}, which is not live",
                    slice.id, range.id, slice.run
                ));
                continue;
            };
            let within_begin = match (&range.begin, &slice.begin) {
                (None, _) => true,
                (Some(r), Some(b)) => b >= r,
                (Some(_), None) => false,
            };
            let within_end = match (&range.end, &slice.end) {
                (None, _) => true,
                (Some(r), Some(e)) => e <= r,
                (Some(_), None) => false,
            };
            if !(within_begin && within_end) {
                problem(format!(
                    "slice {} lies outside its range {}",
                    slice.id, range.id
                ));
            }
            let overlaps = slice.end.as_ref().is_none_or(|e| run.min_key < *e)
                && slice.begin.as_ref().is_none_or(|b| run.max_key >= *b);
            if run.entries > 0 && !overlaps {
                problem(format!(
                    "slice {} of range {} does not overlap the keys of run {}",
                    slice.id, range.id, run.id
                ));
            }
        }
    }
    problems
}

fn check_run(fs: &dyn Fs, path: &Path, view: &RunView) -> Result<(u64, u64, Vec<VerifyProblem>)> {
    let size = fs.file_len(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::corruption(path, 0, "run file named by the metadata log is missing")
        }
        _ => Error::io(path, e),
    })?;
    if size != view.file_size {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "file is {size} bytes, the metadata log says {}",
                view.file_size
            ),
        ));
    }
    let data = fs.open_read(path).map_err(|e| Error::io(path, e))?;
    let run = Run::open_with(path, Box::new(data), ReadOptions::default())?;
    let sst = run.verify();
    let mut problems: Vec<VerifyProblem> = sst
        .problems
        .iter()
        .map(|p| VerifyProblem {
            path: path.to_path_buf(),
            offset: Some(p.offset),
            what: p.what.clone(),
        })
        .collect();
    let props = run.properties();
    if props.entries != view.entries
        || props.min_seqno != view.min_seqno
        || props.max_seqno != view.max_seqno
    {
        problems.push(VerifyProblem {
            path: path.to_path_buf(),
            offset: None,
            what: "run properties differ from the metadata log's record of the run".into(),
        });
    }
    Ok((sst.pages, sst.entries, problems))
}

/// True if some process holds the database in `dir` open (its lock is taken).
///
/// # Errors
/// [`Error::Io`] if the lock file cannot be opened.
pub fn is_locked(fs: &dyn Fs, dir: &Path) -> Result<bool> {
    let path = dir.join(LOCK_FILE);
    if !fs.exists(&path) {
        return Ok(false);
    }
    match fs.lock(&path) {
        Ok(_lock) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
        Err(e) => Err(Error::io(&path, e)),
    }
}
