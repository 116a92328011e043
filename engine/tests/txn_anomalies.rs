//! Hermitage-style anomaly scripts (https://github.com/ept/hermitage): each a deterministic
//! interleaving of two or three transactions that a serializable database must not let produce
//! the anomaly. Keys 1 and 2 start at 10 and 20.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use strata::{Db, Error, Keyspace, KeyspaceOptions, Options, Transaction};

fn setup() -> (tempfile::TempDir, Db, Keyspace) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("test", KeyspaceOptions::default()).unwrap();
    ks.put("1", "10").unwrap();
    ks.put("2", "20").unwrap();
    (dir, db, ks)
}

fn get(tx: &Transaction, ks: &Keyspace, key: &str) -> Option<String> {
    tx.get(ks, key)
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn scan(tx: &Transaction, ks: &Keyspace) -> Vec<(String, String)> {
    tx.iter(ks)
        .map(|r| {
            let (k, v) = r.unwrap();
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn committed(ks: &Keyspace, key: &str) -> Option<String> {
    ks.get(key)
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn assert_conflict(result: strata::Result<()>) {
    match result {
        Err(Error::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn g0_write_cycles_are_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    t1.put(&ks, "1", "11").unwrap();
    t2.put(&ks, "1", "12").unwrap();
    t1.put(&ks, "2", "21").unwrap();
    t1.commit().unwrap();
    t2.put(&ks, "2", "22").unwrap();
    t2.commit().unwrap();
    // Blind writes: both commit, and the result is T1 then T2, never a mix.
    assert_eq!(committed(&ks, "1").as_deref(), Some("12"));
    assert_eq!(committed(&ks, "2").as_deref(), Some("22"));
}

#[test]
fn g1a_aborted_reads_are_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let t2 = db.begin();
    t1.put(&ks, "1", "101").unwrap();
    assert_eq!(get(&t2, &ks, "1").as_deref(), Some("10"));
    t1.rollback();
    assert_eq!(get(&t2, &ks, "1").as_deref(), Some("10"));
    t2.commit().unwrap();
}

#[test]
fn g1b_intermediate_reads_are_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let t2 = db.begin();
    t1.put(&ks, "1", "101").unwrap();
    assert_eq!(get(&t2, &ks, "1").as_deref(), Some("10"));
    t1.put(&ks, "1", "11").unwrap();
    t1.commit().unwrap();
    // T2 read key 1 before T1 committed: it keeps its view and never sees 101 (nor 11).
    assert_eq!(get(&t2, &ks, "1").as_deref(), Some("10"));
    t2.commit().unwrap();
    assert_eq!(db.stats().transactions.sent_to_read_view, 1);
}

#[test]
fn g1c_circular_information_flow_is_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    t1.put(&ks, "1", "11").unwrap();
    t2.put(&ks, "2", "22").unwrap();
    assert_eq!(get(&t1, &ks, "2").as_deref(), Some("20"));
    assert_eq!(get(&t2, &ks, "1").as_deref(), Some("10"));
    t1.commit().unwrap();
    assert_conflict(t2.commit());
    assert_eq!(committed(&ks, "2").as_deref(), Some("20"));
}

#[test]
fn otv_observed_transaction_vanishes_is_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    let t3 = db.begin();
    t1.put(&ks, "1", "11").unwrap();
    t1.put(&ks, "2", "19").unwrap();
    t2.put(&ks, "1", "12").unwrap();
    t1.commit().unwrap();
    assert_eq!(get(&t3, &ks, "1").as_deref(), Some("11"));
    t2.put(&ks, "2", "18").unwrap();
    assert_eq!(get(&t3, &ks, "2").as_deref(), Some("19"));
    t2.commit().unwrap();
    // T2's commit overwrote key 1, which T3 read: T3 now reads the view before T2.
    assert_eq!(get(&t3, &ks, "2").as_deref(), Some("19"));
    assert_eq!(get(&t3, &ks, "1").as_deref(), Some("11"));
    t3.commit().unwrap();
}

#[test]
fn pmp_predicate_many_preceders_is_prevented() {
    let (_dir, db, ks) = setup();
    let t1 = db.begin();
    let before = scan(&t1, &ks);
    assert_eq!(before.len(), 2);
    let mut t2 = db.begin();
    t2.put(&ks, "3", "30").unwrap();
    t2.commit().unwrap();
    // No phantom: T1 keeps reading the view before T2's insert.
    assert_eq!(scan(&t1, &ks), before);
    t1.commit().unwrap();
}

#[test]
fn pmp_write_predicate_is_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    // T1 updates every row it sees; T2 deletes one concurrently.
    for (k, v) in scan(&t1, &ks) {
        let bumped = (v.parse::<u32>().unwrap() + 10).to_string();
        t1.put(&ks, &k, bumped).unwrap();
    }
    t2.delete(&ks, "2").unwrap();
    t2.commit().unwrap();
    assert_conflict(t1.commit());
}

#[test]
fn p4_lost_update_is_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    assert_eq!(get(&t1, &ks, "1").as_deref(), Some("10"));
    assert_eq!(get(&t2, &ks, "1").as_deref(), Some("10"));
    t1.put(&ks, "1", "11").unwrap();
    t2.put(&ks, "1", "11").unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
}

#[test]
fn g_single_read_skew_is_prevented() {
    let (_dir, db, ks) = setup();
    let t1 = db.begin();
    let mut t2 = db.begin();
    assert_eq!(get(&t1, &ks, "1").as_deref(), Some("10"));
    assert_eq!(get(&t2, &ks, "1").as_deref(), Some("10"));
    assert_eq!(get(&t2, &ks, "2").as_deref(), Some("20"));
    t2.put(&ks, "1", "12").unwrap();
    t2.put(&ks, "2", "18").unwrap();
    t2.commit().unwrap();
    assert_eq!(get(&t1, &ks, "2").as_deref(), Some("20"));
    t1.commit().unwrap();
}

#[test]
fn g_single_read_skew_with_a_later_write_conflicts() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    assert_eq!(get(&t1, &ks, "1").as_deref(), Some("10"));
    t2.put(&ks, "1", "12").unwrap();
    t2.put(&ks, "2", "18").unwrap();
    t2.commit().unwrap();
    assert_eq!(get(&t1, &ks, "2").as_deref(), Some("20"));
    // T1 reads the view before T2, so it cannot write any more.
    match t1.put(&ks, "3", "x") {
        Err(Error::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn g2_item_write_skew_is_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    for tx in [&t1, &t2] {
        assert_eq!(get(tx, &ks, "1").as_deref(), Some("10"));
        assert_eq!(get(tx, &ks, "2").as_deref(), Some("20"));
    }
    t1.put(&ks, "1", "11").unwrap();
    t2.put(&ks, "2", "21").unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
}

#[test]
fn g2_anti_dependency_cycles_are_prevented() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    assert_eq!(scan(&t1, &ks).len(), 2);
    assert_eq!(scan(&t2, &ks).len(), 2);
    t1.put(&ks, "3", "30").unwrap();
    t2.put(&ks, "4", "42").unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
}

#[test]
fn plain_writes_also_invalidate_transaction_reads() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    assert_eq!(get(&t1, &ks, "1").as_deref(), Some("10"));
    t1.put(&ks, "2", "x").unwrap();
    ks.put("1", "plain").unwrap();
    assert_conflict(t1.commit());
}

#[test]
fn a_scan_only_covers_what_it_returned() {
    let (_dir, db, ks) = setup();
    let mut t1 = db.begin();
    {
        let mut it = t1.range(&ks, "0".."9");
        let (first, _) = it.next().unwrap().unwrap();
        assert_eq!(&first[..], b"1");
    }
    t1.put(&ks, "x", "y").unwrap();
    // Beyond the last key returned: no conflict.
    ks.put("5", "50").unwrap();
    t1.commit().unwrap();

    let mut t2 = db.begin();
    {
        let mut it = t2.range(&ks, "0".."9");
        it.next().unwrap().unwrap();
        it.next().unwrap().unwrap();
    }
    t2.put(&ks, "x", "z").unwrap();
    // In the gap between two returned keys: a phantom, so a conflict.
    ks.put("1a", "phantom").unwrap();
    assert_conflict(t2.commit());
}

#[test]
fn read_your_own_writes_in_gets_and_scans_both_ways() {
    let (_dir, db, ks) = setup();
    let mut tx = db.begin();
    tx.put(&ks, "0", "00").unwrap();
    tx.delete(&ks, "1").unwrap();
    tx.put(&ks, "2", "22").unwrap();
    tx.put(&ks, "3", "30").unwrap();
    assert_eq!(get(&tx, &ks, "1"), None);
    assert_eq!(get(&tx, &ks, "2").as_deref(), Some("22"));
    let forward: Vec<String> = scan(&tx, &ks)
        .into_iter()
        .map(|(k, v)| k + "=" + &v)
        .collect();
    assert_eq!(forward, ["0=00", "2=22", "3=30"]);
    let backward: Vec<String> = tx
        .iter(&ks)
        .rev()
        .map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap())
        .collect();
    assert_eq!(backward, ["3", "2", "0"]);
    // Both ends at once meet in the middle without repeating a key.
    let mut it = tx.iter(&ks);
    let a = it.next().unwrap().unwrap().0;
    let b = it.next_back().unwrap().unwrap().0;
    let c = it.next().unwrap().unwrap().0;
    assert_eq!((&a[..], &b[..], &c[..]), (&b"0"[..], &b"3"[..], &b"2"[..]));
    assert!(it.next().is_none() && it.next_back().is_none());
    // Nothing is visible outside until commit.
    assert_eq!(committed(&ks, "0"), None);
    tx.commit().unwrap();
    assert_eq!(committed(&ks, "0").as_deref(), Some("00"));
    assert_eq!(committed(&ks, "1"), None);
}

#[test]
fn savepoints_roll_back_later_writes_only() {
    let (_dir, db, ks) = setup();
    let mut tx = db.begin();
    tx.put(&ks, "a", "1").unwrap();
    let sp = tx.savepoint();
    tx.put(&ks, "a", "2").unwrap();
    tx.put(&ks, "b", "2").unwrap();
    assert_eq!(get(&tx, &ks, "a").as_deref(), Some("2"));
    tx.rollback_to(sp).unwrap();
    assert_eq!(get(&tx, &ks, "a").as_deref(), Some("1"));
    assert_eq!(get(&tx, &ks, "b"), None);
    let other = db.begin().savepoint();
    assert!(matches!(
        tx.rollback_to(other),
        Err(Error::InvalidArgument(_))
    ));
    tx.commit().unwrap();
    assert_eq!(committed(&ks, "a").as_deref(), Some("1"));
    assert_eq!(committed(&ks, "b"), None);
}

#[test]
fn read_only_transactions_never_conflict_and_cannot_write() {
    let (_dir, db, ks) = setup();
    let mut ro = db.begin_read_only();
    assert_eq!(get(&ro, &ks, "1").as_deref(), Some("10"));
    ks.put("1", "11").unwrap();
    ks.put("2", "21").unwrap();
    assert_eq!(get(&ro, &ks, "2").as_deref(), Some("20"));
    assert!(matches!(
        ro.put(&ks, "1", "x"),
        Err(Error::InvalidArgument(_))
    ));
    ro.commit().unwrap();
}

#[test]
fn large_transactions_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_transaction_bytes: 10_000,
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let ks = db.keyspace("t", KeyspaceOptions::default()).unwrap();
    let mut tx = db.begin();
    let mut result = Ok(());
    for i in 0..100 {
        result = tx.put(&ks, format!("k{i}"), [0u8; 200]);
        if result.is_err() {
            break;
        }
    }
    match result {
        Err(Error::TransactionTooLarge { limit, .. }) => assert_eq!(limit, 10_000),
        other => panic!("expected TransactionTooLarge, got {other:?}"),
    }
    assert!(
        db.stats().memory.used_bytes >= 9_000,
        "buffered writes count"
    );
    drop(tx);
    assert!(db.stats().memory.used_bytes < 1_000, "released on rollback");
}

#[test]
fn transact_retries_conflicts() {
    let (_dir, db, ks) = setup();
    let mut attempts = 0;
    let value = db
        .transact(|tx| {
            attempts += 1;
            let v = get(tx, &ks, "1").unwrap();
            if attempts == 1 {
                // Someone else changes the key between our read and our commit.
                ks.put("1", "99").unwrap();
            }
            tx.put(&ks, "1", format!("{v}+"))?;
            Ok(v)
        })
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(value, "99");
    assert_eq!(committed(&ks, "1").as_deref(), Some("99+"));
    let stats = db.stats().transactions;
    assert!(stats.conflicts >= 1 && stats.commits >= 1, "{stats:?}");
    assert_eq!(stats.active, 0);
}

#[test]
fn empty_and_inverted_ranges_hold_nothing() {
    let (_dir, db, ks) = setup();
    let mut tx = db.begin();
    tx.put(&ks, "5", "x").unwrap();
    assert_eq!(tx.range(&ks, "9".."1").count(), 0);
    assert_eq!(tx.range(&ks, "5".."5").count(), 0);
    use std::ops::Bound::Excluded;
    let excluded: (std::ops::Bound<&str>, std::ops::Bound<&str>) = (Excluded("5"), Excluded("5"));
    assert_eq!(tx.range::<&str, _>(&ks, excluded).count(), 0);
    assert_eq!(tx.range(&ks, "5"..="5").count(), 1);
    tx.commit().unwrap();
}
