//! End-to-end behaviour of the public API on the real file system.

use strata::{Db, Error, KeyspaceOptions, Options};

fn kv(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn collect(
    iter: impl Iterator<Item = strata::Result<(strata::Key, strata::Value)>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
        .collect()
}

#[test]
fn writes_survive_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let ks = db.keyspace("t", KeyspaceOptions::default()).unwrap();
        ks.put("b", "2").unwrap();
        ks.put("a", "1").unwrap();
        ks.put("c", "3").unwrap();
        db.flush().unwrap();
        ks.delete("b").unwrap();
        ks.put("d", "4").unwrap();
        assert_eq!(
            collect(ks.iter()),
            kv(&[("a", "1"), ("c", "3"), ("d", "4")])
        );
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.keyspace_names(), vec!["t".to_string()]);
    let ks = db.keyspace("t", KeyspaceOptions::default()).unwrap();
    assert_eq!(ks.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(ks.get("b").unwrap(), None);
    assert_eq!(
        collect(ks.iter()),
        kv(&[("a", "1"), ("c", "3"), ("d", "4")])
    );
    assert_eq!(
        collect(ks.iter().rev()),
        kv(&[("d", "4"), ("c", "3"), ("a", "1")])
    );
    assert_eq!(collect(ks.range("b".."d")), kv(&[("c", "3")]));
    assert_eq!(
        ks.first().unwrap().map(|(k, _)| k.to_vec()),
        Some(b"a".to_vec())
    );
    assert_eq!(
        ks.last().unwrap().map(|(k, _)| k.to_vec()),
        Some(b"d".to_vec())
    );
}

#[test]
fn snapshots_and_iterators_are_read_views() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("t", KeyspaceOptions::default()).unwrap();
    ks.put("k1", "old").unwrap();
    ks.put("k2", "old").unwrap();
    let snapshot = db.snapshot();
    let mut iter = ks.iter();
    ks.put("k1", "new").unwrap();
    ks.delete("k2").unwrap();
    ks.put("k3", "new").unwrap();
    db.flush().unwrap();
    assert_eq!(
        snapshot.get(&ks, "k1").unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(
        snapshot.get(&ks, "k2").unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(snapshot.get(&ks, "k3").unwrap(), None);
    assert_eq!(
        collect(snapshot.iter(&ks)),
        kv(&[("k1", "old"), ("k2", "old")])
    );
    assert_eq!(iter.next().unwrap().unwrap().1.as_ref(), b"old");
    assert_eq!(collect(ks.iter()), kv(&[("k1", "new"), ("k3", "new")]));
}

#[test]
fn batches_prefixes_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let a = db.keyspace("a", KeyspaceOptions::default()).unwrap();
    let b = db.keyspace("b", KeyspaceOptions::default()).unwrap();
    let mut batch = db.batch();
    batch
        .put(&a, "user:1", "x")
        .put(&a, "user:2", "y")
        .put(&b, "other", "z")
        .delete(&a, "user:1");
    batch.commit().unwrap();
    assert_eq!(collect(a.prefix("user:")), kv(&[("user:2", "y")]));
    assert_eq!(b.get("other").unwrap().as_deref(), Some(&b"z"[..]));
    assert!(matches!(
        a.put(vec![0u8; 70_000], "v"),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        Db::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    db.drop_keyspace("b").unwrap();
    assert!(matches!(b.get("other"), Err(Error::KeyspaceNotFound(_))));
    assert_eq!(db.keyspace_names(), vec!["a".to_string()]);
}
