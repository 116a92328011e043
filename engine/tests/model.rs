//! Model-based test of the whole engine on the in-memory, crash-simulating file system.
//!
//! Random operations run against the database and against a `BTreeMap` model per keyspace. A
//! tiny memory limit makes dumps and compactions happen constantly. After a clean reopen the
//! database equals the model. After a simulated power loss it equals the model after some
//! prefix of the commit order that includes every commit made durable (every commit in `Fsync`
//! mode; up to the last `sync`/`flush` in `Write` mode): acknowledged durable writes are never
//! lost and batches are all or nothing. Without a WAL each keyspace is checked on its own.
//!
//! More cases: `PROPTEST_CASES=500 cargo test -p strata --test model`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use strata::fs::{FaultKind, MemFs};
use strata::{Db, KeyspaceOptions, Options, WalMode};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
const KEYSPACES: usize = 2;

/// A write inside a batch: (keyspace, key, value seed or delete).
type BatchWrite = (usize, u8, Option<(u16, u8)>);

#[derive(Debug, Clone)]
enum Op {
    Put {
        ks: usize,
        key: u8,
        value: (u16, u8),
    },
    Delete {
        ks: usize,
        key: u8,
    },
    Batch(Vec<BatchWrite>),
    Get {
        ks: usize,
        key: u8,
    },
    Range {
        ks: usize,
        lo: Option<u8>,
        hi: Option<u8>,
        reverse: bool,
    },
    TakeSnapshot,
    CheckSnapshots,
    ReleaseSnapshot,
    Flush,
    Compact {
        ks: usize,
    },
    Sync,
    Reopen,
    Crash,
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k:03}").into_bytes()
}

fn value((seed, len): (u16, u8)) -> Vec<u8> {
    (0..usize::from(len))
        .map(|i| (seed as usize + i * 7) as u8)
        .collect()
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let ks = 0..KEYSPACES;
    let k = 0u8..48;
    let v = (any::<u16>(), 0u8..200);
    prop_oneof![
        30 => (ks.clone(), k.clone(), v.clone()).prop_map(|(ks, key, value)| Op::Put { ks, key, value }),
        8 => (ks.clone(), k.clone()).prop_map(|(ks, key)| Op::Delete { ks, key }),
        6 => prop::collection::vec((ks.clone(), k.clone(), prop::option::of(v)), 1..8).prop_map(Op::Batch),
        10 => (ks.clone(), k.clone()).prop_map(|(ks, key)| Op::Get { ks, key }),
        6 => (ks, prop::option::of(k.clone()), prop::option::of(k), any::<bool>())
            .prop_map(|(ks, lo, hi, reverse)| Op::Range { ks, lo, hi, reverse }),
        3 => Just(Op::TakeSnapshot),
        3 => Just(Op::CheckSnapshots),
        2 => Just(Op::ReleaseSnapshot),
        2 => Just(Op::Flush),
        1 => (0..KEYSPACES).prop_map(|ks| Op::Compact { ks }),
        2 => Just(Op::Sync),
        2 => Just(Op::Reopen),
        3 => Just(Op::Crash),
    ]
}

struct Harness {
    fs: MemFs,
    mode: WalMode,
    db: Option<Db>,
    keyspaces: Vec<strata::Keyspace>,
    model: Vec<Model>,
    /// Model states after each commit since the last durable point (the first is durable).
    history: Vec<Vec<Model>>,
    snapshots: Vec<(strata::Snapshot, Vec<Model>)>,
}

const DIR: &str = "/db";

impl Harness {
    fn open(fs: &MemFs, mode: WalMode) -> (Db, Vec<strata::Keyspace>) {
        let options = Options {
            wal_mode: mode,
            memory_limit_bytes: 64 * 1024,
            range_size_min_bytes: 4 * 1024,
            wal_segment_size_bytes: 16 * 1024,
            meta_rewrite_threshold_bytes: 8 * 1024,
            fs: Arc::new(fs.clone()),
            ..Options::default()
        };
        let db = Db::open(Path::new(DIR), options).expect("open");
        let ks_options = KeyspaceOptions {
            page_size_bytes: 512,
            range_size_bytes: Some(2 * 1024),
            ..KeyspaceOptions::default()
        };
        let keyspaces = (0..KEYSPACES)
            .map(|i| {
                db.keyspace(&format!("ks{i}"), ks_options.clone())
                    .expect("keyspace")
            })
            .collect();
        (db, keyspaces)
    }

    fn new(mode: WalMode) -> Self {
        let fs = MemFs::new();
        let (db, keyspaces) = Harness::open(&fs, mode);
        let model = vec![Model::new(); KEYSPACES];
        Harness {
            fs,
            mode,
            db: Some(db),
            keyspaces,
            history: vec![model.clone()],
            model,
            snapshots: Vec::new(),
        }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("db is open")
    }

    fn committed(&mut self) {
        if self.mode == WalMode::Fsync {
            self.history = vec![self.model.clone()];
        } else {
            self.history.push(self.model.clone());
        }
    }

    fn made_durable(&mut self) {
        self.history = vec![self.model.clone()];
    }

    fn contents(&self, ks: usize) -> Model {
        self.keyspaces[ks]
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
            .collect()
    }

    fn check_all(&self) {
        for ks in 0..KEYSPACES {
            assert_eq!(
                self.contents(ks),
                self.model[ks],
                "keyspace {ks} differs from the model"
            );
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Put {
                ks,
                key: k,
                value: v,
            } => {
                self.keyspaces[ks].put(key(k), value(v)).expect("put");
                self.model[ks].insert(key(k), value(v));
                self.committed();
            }
            Op::Delete { ks, key: k } => {
                self.keyspaces[ks].delete(key(k)).expect("delete");
                self.model[ks].remove(&key(k));
                self.committed();
            }
            Op::Batch(writes) => {
                let mut batch = self.db().batch();
                for (ks, k, v) in &writes {
                    match v {
                        Some(v) => batch.put(&self.keyspaces[*ks], key(*k), value(*v)),
                        None => batch.delete(&self.keyspaces[*ks], key(*k)),
                    };
                }
                batch.commit().expect("batch");
                for (ks, k, v) in writes {
                    match v {
                        Some(v) => self.model[ks].insert(key(k), value(v)),
                        None => self.model[ks].remove(&key(k)),
                    };
                }
                self.committed();
            }
            Op::Get { ks, key: k } => {
                let got = self.keyspaces[ks]
                    .get(key(k))
                    .expect("get")
                    .map(|v| v.to_vec());
                assert_eq!(got.as_ref(), self.model[ks].get(&key(k)), "get {k}");
            }
            Op::Range {
                ks,
                lo,
                hi,
                reverse,
            } => {
                let lower = lo.map_or(Bound::Unbounded, |k| Bound::Included(key(k)));
                let upper = hi.map_or(Bound::Unbounded, |k| Bound::Excluded(key(k)));
                if let (Some(l), Some(h)) = (lo, hi) {
                    if l > h {
                        return; // BTreeMap::range panics on inverted bounds
                    }
                }
                let iter = self.keyspaces[ks].range((lower.clone(), upper.clone()));
                let got: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
                    iter.rev()
                        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
                        .collect()
                } else {
                    iter.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
                        .collect()
                };
                let mut want: Vec<(Vec<u8>, Vec<u8>)> = self.model[ks]
                    .range((lower, upper))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if reverse {
                    want.reverse();
                }
                assert_eq!(got, want, "range {lo:?}..{hi:?} reverse={reverse}");
            }
            Op::TakeSnapshot => {
                let snapshot = self.db().snapshot();
                self.snapshots.push((snapshot, self.model.clone()));
            }
            Op::CheckSnapshots => {
                for (snapshot, model) in &self.snapshots {
                    for (keyspace, expected) in self.keyspaces.iter().zip(model) {
                        let got: Model = snapshot
                            .iter(keyspace)
                            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
                            .collect();
                        assert_eq!(
                            &got,
                            expected,
                            "snapshot at seqno {} differs",
                            snapshot.seqno()
                        );
                    }
                }
            }
            Op::ReleaseSnapshot => {
                if !self.snapshots.is_empty() {
                    self.snapshots.remove(0);
                }
            }
            Op::Flush => {
                self.db().flush().expect("flush");
                self.made_durable();
            }
            Op::Compact { ks } => {
                self.keyspaces[ks].compact().expect("compact");
                let stats = self.db().stats();
                let ranges = &stats.keyspaces[ks].range_details;
                assert!(
                    ranges.iter().all(|r| r.runs <= 1),
                    "a range holds several runs after compact: {ranges:?}"
                );
                self.made_durable();
            }
            Op::Sync => {
                self.db().sync().expect("sync");
                self.made_durable();
            }
            Op::Reopen => {
                self.snapshots.clear();
                self.keyspaces.clear();
                self.db.take().expect("db").close().expect("close");
                let (db, keyspaces) = Harness::open(&self.fs, self.mode);
                self.db = Some(db);
                self.keyspaces = keyspaces;
                self.made_durable();
                self.check_all();
            }
            Op::Crash => {
                self.snapshots.clear();
                self.keyspaces.clear();
                // Freeze the file system first: nothing the closing database does may reach it.
                self.fs.fail_at(self.fs.op_count(), FaultKind::Eio, true);
                drop(self.db.take());
                self.fs.crash();
                self.fs.clear_faults();
                let (db, keyspaces) = Harness::open(&self.fs, self.mode);
                self.db = Some(db);
                self.keyspaces = keyspaces;
                let actual: Vec<Model> = (0..KEYSPACES).map(|ks| self.contents(ks)).collect();
                if self.mode == WalMode::None {
                    // Without a WAL each keyspace is durable up to its own last dump: each must
                    // match a prefix of its own history, independently of the others.
                    for ks in 0..KEYSPACES {
                        assert!(
                            self.history
                                .iter()
                                .any(|candidate| candidate[ks] == actual[ks]),
                            "keyspace {ks} matches no state since the last durable point"
                        );
                    }
                    self.model = actual;
                    self.made_durable();
                    return;
                }
                let Some(position) = self
                    .history
                    .iter()
                    .rposition(|candidate| *candidate == actual)
                else {
                    panic!(
                        "after a crash the database matches no prefix of the {} commits since the last durable point\nactual: {actual:?}\nlast durable: {:?}",
                        self.history.len() - 1,
                        self.history.first()
                    );
                };
                self.model = self.history[position].clone();
                self.made_durable();
            }
        }
    }
}

fn run(mode: WalMode, ops: Vec<Op>) {
    let mut harness = Harness::new(mode);
    for op in ops {
        harness.apply(op);
    }
    harness.check_all();
    let stats = harness.db().stats();
    assert_eq!(stats.keyspaces.len(), KEYSPACES);
}

proptest! {
    // `cases` set explicitly overrides PROPTEST_CASES, so read it here (24 by default).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fsync_mode_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..250)) {
        run(WalMode::Fsync, ops);
    }

    #[test]
    fn write_mode_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..250)) {
        run(WalMode::Write, ops);
    }

    #[test]
    fn no_wal_mode_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..250)) {
        run(WalMode::None, ops);
    }
}

/// A long deterministic history that must exercise dumps, compactions, WAL rotation and
/// metadata log rewrites, so the random cases above are known to reach them.
#[test]
fn long_history_dumps_compacts_and_crashes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    for mode in [WalMode::Fsync, WalMode::Write, WalMode::None] {
        let mut runner = TestRunner::deterministic();
        let ops = prop::collection::vec(op_strategy(), 3000)
            .new_tree(&mut runner)
            .expect("ops")
            .current();
        let mut harness = Harness::new(mode);
        let mut dumps = 0;
        let mut compactions = 0;
        let mut splits = 0;
        for op in ops {
            if matches!(op, Op::Crash | Op::Reopen) {
                let stats = harness.db().stats();
                dumps += stats.keyspaces.iter().map(|k| k.dumps).sum::<u64>();
                compactions += stats.keyspaces.iter().map(|k| k.compactions).sum::<u64>();
                splits += stats.keyspaces.iter().map(|k| k.splits).sum::<u64>();
            }
            harness.apply(op);
        }
        harness.check_all();
        assert!(dumps > 20, "{mode:?}: only {dumps} dumps");
        assert!(compactions > 3, "{mode:?}: only {compactions} compactions");
        assert!(splits > 0, "{mode:?}: no range split");
    }
}
