//! The read-only inspection API sees what the engine wrote and reports damage by file.

use std::path::Path;
use std::sync::Arc;

use strata::fs::{Fs, MemFs};
use strata::{inspect, Db, KeyspaceOptions, Options};

fn populated() -> MemFs {
    let fs = MemFs::new();
    let options = Options {
        fs: Arc::new(fs.clone()),
        ..Options::default()
    };
    let db = Db::open("/db", options).expect("setting up the database");
    let ks = db
        .keyspace(
            "events",
            KeyspaceOptions {
                page_size_bytes: 512,
                ..Default::default()
            },
        )
        .expect("setting up the database");
    for i in 0..500u32 {
        ks.put(format!("key{i:05}"), vec![b'v'; 40])
            .expect("setting up the database");
    }
    db.flush().expect("setting up the database");
    ks.put("after-flush", "x").expect("setting up the database");
    ks.delete("key00001").expect("setting up the database");
    drop(ks);
    db.close().expect("setting up the database");
    fs
}

#[test]
fn wal_meta_and_verify_reflect_the_database() {
    let fs = populated();
    let dir = Path::new("/db");
    let segments = inspect::read_wal(&fs, dir).unwrap();
    let entries: Vec<_> = segments
        .iter()
        .flat_map(|s| s.batches.iter().flat_map(|b| b.entries.iter()))
        .collect();
    assert!(entries
        .iter()
        .any(|e| e.key.as_ref() == b"after-flush" && e.kind == "put"));
    assert!(entries
        .iter()
        .any(|e| e.key.as_ref() == b"key00001" && e.kind == "delete"));

    let meta = inspect::read_meta(&fs, dir).unwrap();
    assert_eq!(meta.state.keyspaces.len(), 1);
    let keyspace = &meta.state.keyspaces[0];
    assert_eq!(keyspace.name, "events");
    assert!(keyspace.runs.iter().map(|r| r.entries).sum::<u64>() >= 500);
    assert!(meta
        .frames
        .iter()
        .flat_map(|(_, r)| r)
        .any(|r| r.kind() == "CreateRun"));

    let report = inspect::verify(&fs, dir, &mut |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        report.runs_checked >= 1 && report.pages_checked > 10 && report.wal_batches_checked >= 2
    );
    assert!(!inspect::is_locked(&fs, dir).unwrap());
}

#[test]
fn verify_names_a_damaged_run() {
    let fs = populated();
    let dir = Path::new("/db");
    let run = fs
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "run"))
        .unwrap();
    fs.corrupt(&run, 100, 0x40).unwrap();
    let report = inspect::verify(&fs, dir, &mut |_, _| {}).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems.iter().any(|p| p.path == run),
        "{:?}",
        report.problems
    );
    assert!(fs.file_len(&run).unwrap() > 100);
}
