//! Upserts with merge operators: a model test with dumps, compactions, crashes and reopens;
//! squashing of hot chains; operator bookkeeping; rejected operands.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use strata::fs::MemFs;
use strata::merge::{Append, Counter, Max};
use strata::{Db, Error, Keyspace, KeyspaceOptions, Options, WalMode};

const DIR: &str = "/db";

fn options(fs: &MemFs) -> Options {
    Options {
        wal_mode: WalMode::Fsync,
        fs: Arc::new(fs.clone()),
        ..Options::default()
    }
}

fn counter_options() -> KeyspaceOptions {
    KeyspaceOptions {
        page_size_bytes: 512,
        merge_operator: Some(Arc::new(Counter)),
        ..KeyspaceOptions::default()
    }
}

fn open(fs: &MemFs) -> (Db, Keyspace) {
    let db = Db::open(DIR, options(fs)).unwrap();
    let ks = db.keyspace("counters", counter_options()).unwrap();
    (db, ks)
}

fn value(ks: &Keyspace, key: &[u8]) -> Option<i64> {
    ks.get(key).unwrap().map(|v| Counter::decode(&v).unwrap())
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(u8, i64),
    Put(u8, i64),
    Delete(u8),
    BatchUpsert(Vec<(u8, i64)>),
    TxnUpsertThenRead(u8, i64),
    Flush,
    Compact,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..6;
    prop_oneof![
        8 => (key.clone(), -5i64..5).prop_map(|(k, d)| Op::Upsert(k, d)),
        2 => (key.clone(), -50i64..50).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key.clone().prop_map(Op::Delete),
        2 => prop::collection::vec((key.clone(), -5i64..5), 1..4).prop_map(Op::BatchUpsert),
        2 => (key, -5i64..5).prop_map(|(k, d)| Op::TxnUpsertThenRead(k, d)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn check(ks: &Keyspace, model: &BTreeMap<u8, i64>) {
    for k in 0u8..6 {
        assert_eq!(value(ks, &[k]), model.get(&k).copied(), "key {k}");
    }
    let forward: Vec<(u8, i64)> = ks
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k[0], Counter::decode(&v).unwrap())
        })
        .collect();
    let expected: Vec<(u8, i64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(forward, expected);
    let mut backward: Vec<(u8, i64)> = ks
        .iter()
        .rev()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k[0], Counter::decode(&v).unwrap())
        })
        .collect();
    backward.reverse();
    assert_eq!(backward, expected);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    /// Random upserts, puts, deletes, batches and transactions with dumps, compactions,
    /// reopens and crashes (Fsync mode: nothing acknowledged may be lost) against a model.
    #[test]
    fn upserts_match_a_model(ops in prop::collection::vec(op(), 1..60)) {
        let fs = MemFs::new();
        let (mut db, mut ks) = open(&fs);
        let mut model: BTreeMap<u8, i64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Upsert(k, d) => {
                    ks.upsert([k], Counter::operand(d)).unwrap();
                    let v = model.entry(k).or_insert(0);
                    *v = v.wrapping_add(d);
                }
                Op::Put(k, v) => {
                    ks.put([k], v.to_le_bytes()).unwrap();
                    model.insert(k, v);
                }
                Op::Delete(k) => {
                    ks.delete([k]).unwrap();
                    model.remove(&k);
                }
                Op::BatchUpsert(items) => {
                    let mut batch = db.batch();
                    for (k, d) in &items {
                        batch.upsert(&ks, [*k], Counter::operand(*d));
                        let v = model.entry(*k).or_insert(0);
                        *v = v.wrapping_add(*d);
                    }
                    batch.commit().unwrap();
                }
                Op::TxnUpsertThenRead(k, d) => {
                    let mut tx = db.begin();
                    tx.upsert(&ks, [k], Counter::operand(d)).unwrap();
                    let expected = model.get(&k).copied().unwrap_or(0).wrapping_add(d);
                    let read = tx.get(&ks, [k]).unwrap().map(|v| Counter::decode(&v).unwrap());
                    prop_assert_eq!(read, Some(expected));
                    tx.commit().unwrap();
                    model.insert(k, expected);
                }
                Op::Flush => db.flush().unwrap(),
                Op::Compact => ks.compact().unwrap(),
                Op::Reopen => {
                    drop(ks);
                    db.close().unwrap();
                    (db, ks) = open(&fs);
                }
                Op::Crash => {
                    drop(ks);
                    drop(db);
                    fs.crash();
                    (db, ks) = open(&fs);
                }
            }
            check(&ks, &model);
        }
    }
}

#[test]
fn hot_counters_are_squashed_in_the_background() {
    let fs = MemFs::new();
    let (db, ks) = open(&fs);
    let snapshot = db.snapshot();
    for _ in 0..1000 {
        ks.upsert("hot", Counter::operand(1)).unwrap();
    }
    assert_eq!(value(&ks, b"hot"), Some(1000));
    // Squashes run on the dump thread; wait for at least one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.stats().keyspaces[0].squashes == 0 {
        assert!(std::time::Instant::now() < deadline, "no squash happened");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(value(&ks, b"hot"), Some(1000));
    assert_eq!(
        snapshot.get(&ks, "hot").unwrap(),
        None,
        "older views are untouched"
    );
    drop(ks);
    db.close().unwrap();
    let (_db, ks) = open(&fs);
    assert_eq!(value(&ks, b"hot"), Some(1000));
}

#[test]
fn the_operator_name_is_stored_and_checked() {
    let fs = MemFs::new();
    let (db, ks) = open(&fs);
    ks.upsert("k", Counter::operand(5)).unwrap();
    drop(ks);
    db.close().unwrap();

    let db = Db::open(DIR, options(&fs)).unwrap();
    let other = KeyspaceOptions {
        merge_operator: Some(Arc::new(Max)),
        ..KeyspaceOptions::default()
    };
    match db.keyspace("counters", other) {
        Err(Error::MergeOperatorMismatch { stored, given, .. }) => {
            assert_eq!(stored.as_deref(), Some("strata.counter"));
            assert_eq!(given.as_deref(), Some("strata.max"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(matches!(
        db.keyspace("counters", KeyspaceOptions::default()),
        Err(Error::MergeOperatorMismatch { .. })
    ));
    // Tools open keyspaces they did not create: built-in operators come along.
    let raw = db.existing_keyspace("counters").unwrap();
    assert_eq!(value(&raw, b"k"), Some(5));
    assert!(matches!(
        db.existing_keyspace("nope"),
        Err(Error::KeyspaceNotFound(_))
    ));
    let ks = db.keyspace("counters", counter_options()).unwrap();
    assert_eq!(value(&ks, b"k"), Some(5));
    assert_eq!(
        db.stats().keyspaces[0].merge_operator.as_deref(),
        Some("strata.counter")
    );

    let plain = db.keyspace("plain", KeyspaceOptions::default()).unwrap();
    assert!(matches!(
        plain.upsert("k", "x"),
        Err(Error::InvalidArgument(_))
    ));
    let mut batch = db.batch();
    batch.upsert(&plain, "k", "x");
    assert!(matches!(batch.commit(), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_rejected_operand_fails_only_its_key_and_survives_compaction() {
    let fs = MemFs::new();
    let (db, ks) = open(&fs);
    ks.upsert("a", Counter::operand(1)).unwrap();
    ks.upsert("bad", "not eight bytes").unwrap();
    ks.upsert("c", Counter::operand(3)).unwrap();
    for round in 0..2 {
        match ks.get("bad") {
            Err(Error::Merge { key, message, .. }) => {
                assert_eq!(key, b"bad");
                assert!(message.contains("15 bytes"), "{message}");
            }
            other => panic!("round {round}: expected a merge error, got {other:?}"),
        }
        assert_eq!(value(&ks, b"a"), Some(1));
        assert_eq!(value(&ks, b"c"), Some(3));
        let scanned: Vec<_> = ks.iter().collect();
        assert!(scanned
            .iter()
            .any(|r| matches!(r, Err(Error::Merge { .. }))));
        // Compaction keeps the bad chain and folds the good ones.
        ks.compact().unwrap();
    }
    // A put over the bad key repairs it.
    ks.put("bad", Counter::operand(7)).unwrap();
    assert_eq!(value(&ks, b"bad"), Some(7));
    drop(ks);
    drop(db);
}

#[test]
fn builtin_append_and_snapshots_fold_correctly() {
    let fs = MemFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    let log = db
        .keyspace(
            "log",
            KeyspaceOptions {
                merge_operator: Some(Arc::new(Append)),
                ..KeyspaceOptions::default()
            },
        )
        .unwrap();
    log.put("k", "a").unwrap();
    log.upsert("k", "b").unwrap();
    let view = db.snapshot();
    log.upsert("k", "c").unwrap();
    db.flush().unwrap();
    log.upsert("k", "d").unwrap();
    log.compact().unwrap();
    assert_eq!(log.get("k").unwrap().as_deref(), Some(&b"abcd"[..]));
    assert_eq!(view.get(&log, "k").unwrap().as_deref(), Some(&b"ab"[..]));
}
