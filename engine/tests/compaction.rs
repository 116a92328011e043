//! Compaction with ranges: the level stack stays bounded, compact() leaves one run per range
//! with a space amplification of exactly 1, and read views held across compactions, splits and
//! coalesces keep seeing their data.

use strata::{Db, KeyspaceOptions, Options};

fn options() -> Options {
    Options {
        memory_limit_bytes: 256 * 1024,
        range_size_min_bytes: 4096,
        ..Options::default()
    }
}

fn keyspace_options() -> KeyspaceOptions {
    KeyspaceOptions {
        page_size_bytes: 1024,
        range_size_bytes: Some(64 * 1024),
        ..KeyspaceOptions::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    // Scattered, so every dump touches every range.
    format!("k{:08}", i.wrapping_mul(2_654_435_761) % 1_000_000).into_bytes()
}

#[test]
fn compact_leaves_one_run_per_range_and_no_space_amplification() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let ks = db.keyspace("t", keyspace_options()).unwrap();
    for i in 0..20_000u32 {
        ks.put(key(i), vec![(i % 251) as u8; 64]).unwrap();
    }
    db.flush().unwrap();
    ks.compact().unwrap();
    let stats = db.stats();
    let k = &stats.keyspaces[0];
    assert!(
        k.ranges > 1,
        "the keyspace should have split into several ranges, has {}",
        k.ranges
    );
    assert!(
        k.range_details.iter().all(|r| r.runs == 1),
        "{:?}",
        k.range_details
    );
    assert_eq!(
        k.space_amplification, 1.0,
        "space amplification after compact()"
    );
    assert!(k.compactions > 0 && k.splits > 0);
    for i in (0..20_000u32).step_by(97) {
        assert_eq!(
            ks.get(key(i)).unwrap().map(|v| v.to_vec()),
            Some(vec![(i % 251) as u8; 64])
        );
    }
    assert_eq!(ks.iter().count(), 20_000);
    drop(ks);
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let ks = db.keyspace("t", keyspace_options()).unwrap();
    assert_eq!(ks.iter().count(), 20_000);
    assert_eq!(db.stats().keyspaces[0].space_amplification, 1.0);
}

#[test]
fn read_views_survive_compactions_splits_and_coalesces() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let ks = db.keyspace("t", keyspace_options()).unwrap();
    for i in 0..8_000u32 {
        ks.put(key(i), b"v1").unwrap();
    }
    let snapshot = db.snapshot();
    let mut iter = ks.iter();
    let first = iter.next().unwrap().unwrap();
    // Overwrite and delete everything, so compaction has garbage to drop, then compact.
    for i in 0..8_000u32 {
        if i % 2 == 0 {
            ks.put(key(i), b"v2").unwrap();
        } else {
            ks.delete(key(i)).unwrap();
        }
    }
    ks.compact().unwrap();
    assert!(
        db.stats().keyspaces[0].versions_dropped == 0,
        "versions the snapshot needs must stay"
    );
    assert_eq!(snapshot.iter(&ks).count(), 8_000);
    assert!(snapshot.iter(&ks).all(|r| r.unwrap().1.as_ref() == b"v1"));
    assert_eq!(first.1.as_ref(), b"v1");
    assert_eq!(
        iter.count() + 1,
        8_000,
        "an iterator opened before the compaction sees its own state"
    );
    assert_eq!(ks.iter().count(), 4_000);
    drop(snapshot);
    ks.compact().unwrap();
    let stats = db.stats();
    assert!(
        stats.keyspaces[0].versions_dropped > 0,
        "without the snapshot, old versions go"
    );
    assert_eq!(ks.iter().count(), 4_000);
    assert!(ks.iter().all(|r| r.unwrap().1.as_ref() == b"v2"));
    // Delete everything: ranges shrink and coalesce.
    for i in (0..8_000u32).step_by(2) {
        ks.delete(key(i)).unwrap();
    }
    ks.compact().unwrap();
    for _ in 0..10 {
        ks.compact().unwrap();
    }
    assert_eq!(ks.iter().count(), 0);
    assert!(
        db.stats().keyspaces[0].ranges < stats.keyspaces[0].ranges
            || stats.keyspaces[0].ranges == 1
    );
}

#[test]
fn background_compaction_bounds_runs_per_range() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let ks = db.keyspace("t", keyspace_options()).unwrap();
    for round in 0..40u32 {
        for i in 0..1_000u32 {
            ks.put(key(round * 1_000 + i), vec![1u8; 64]).unwrap();
        }
        db.flush().unwrap();
    }
    // Let the compaction threads settle.
    for _ in 0..200 {
        if db.stats().keyspaces[0].compaction_debt_bytes == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stats = db.stats();
    let k = &stats.keyspaces[0];
    let worst = k.range_details.iter().map(|r| r.runs).max().unwrap_or(0);
    assert!(
        worst <= 8,
        "a range holds {worst} runs after settling: {:?}",
        k.range_details
    );
    assert!(
        k.space_amplification < 2.0,
        "space amplification {}",
        k.space_amplification
    );
    assert!(
        k.levels.iter().any(|l| l.compaction_bytes_written > 0),
        "per-level writes: {:?}",
        k.levels
    );
    assert!(k
        .range_details
        .iter()
        .any(|r| r.compactions > 0 && r.compaction_bytes_out > 0));
    let by_level: f64 = k.levels.iter().map(|l| l.write_amplification).sum();
    let split =
        k.write_amplification_by_level.upper_levels + k.write_amplification_by_level.bottom_level;
    assert!(
        (by_level - split).abs() < 1e-9,
        "levels {by_level} vs upper+bottom {split}"
    );
    assert_eq!(ks.iter().count(), 40_000);
}
