//! `wal_segment`: the bytes as a WAL segment of the template database.
//!
//! The segment is stored under the name its header claims (`{id:020}.wal`; id 1 when the bytes
//! do not start with a segment header) next to the template's metadata log and runs, so the
//! records replay into real keyspaces. Then: `inspect::read_wal` (the whole directory and the
//! single file), `Db::open` in both recovery modes, every read, `inspect::verify`, a write, a
//! clean close and a second recovery.

use std::collections::BTreeMap;
use std::path::Path;

use strata::fs::MemFs;
use strata::inspect::{self, WalSegmentView};
use strata::{Db, KeyspaceOptions, WalRecovery};

use crate::fixup;
use crate::template::{self, Contents, DIR};

/// Body of the `wal_segment` target; see [`crate::wal_segment`].
pub(crate) fn run(data: &[u8]) {
    exercise(data);
    let repaired = fixup::wal_segment(data);
    if repaired != data {
        exercise(&repaired);
    }
}

/// The largest segment id the harness names a file with. Recovery computes the next segment ids
/// as `last + 1` and `last + 2` unchecked, so a segment file named with id `u64::MAX - 1` or
/// above panics on overflow in debug builds (and wraps in release): a known finding, with
/// reproducers in `fuzz/artifacts-found/`. Until the engine rejects such names, larger ids are
/// stored as segment 1 (whose header then names another id: a typed error), so fuzzing can go
/// on past it.
const MAX_SEGMENT_ID: u64 = u64::MAX - 2;

fn exercise(segment: &[u8]) {
    let id = fixup::wal_segment_id(segment)
        .filter(|&id| id <= MAX_SEGMENT_ID)
        .unwrap_or(1);
    for recovery in [WalRecovery::TolerateTornTail, WalRecovery::SkipCorrupted] {
        let t = template::get();
        let fs = t.file_system(t.final_meta());
        let path = Path::new(DIR).join(format!("{id:020}.wal"));
        if template::write_file(&fs, &path, segment).is_err() {
            return;
        }
        let views = inspect::read_wal(&fs, Path::new(DIR));
        let _ = inspect::read_wal(&fs, &path);
        let Ok(db) = Db::open(DIR, template::options(&fs, recovery)) else {
            continue;
        };
        // Merge operands in a keyspace without a merge operator make its reads fail (a typed
        // error); anything else read from records that decoded must read back.
        let has_merges = views.as_ref().map_or(true, |v| {
            v.iter()
                .flat_map(|s| &s.batches)
                .flat_map(|b| &b.entries)
                .any(|e| e.kind == "merge")
        });
        let state = match template::try_read_all(&db) {
            Ok(state) => state,
            Err(_) if has_merges => continue,
            Err(e) => panic!("reading a recovered database failed: {e}"),
        };
        check_reads(&db, &state);
        if recovery == WalRecovery::TolerateTornTail {
            let views = views.unwrap_or_else(|e| {
                panic!("Db::open accepted a WAL segment that inspect::read_wal rejects: {e}")
            });
            if let Some(expected) = expected_state(&fs, &views) {
                assert_eq!(
                    state, expected,
                    "the recovered database differs from the WAL records inspect::read_wal shows"
                );
            }
        }
        let report = inspect::verify(&fs, Path::new(DIR), &mut |_, _| {})
            .unwrap_or_else(|e| panic!("inspect::verify failed outright: {e}"));
        let _ = report.is_ok();
        write_close_reopen(&fs, db, state, recovery, false);
    }
}

/// Every read of a recovered database must succeed: its runs are the template's (intact) and
/// its memtables came from records that decoded.
pub(crate) fn check_reads(db: &Db, state: &BTreeMap<String, Contents>) {
    for (name, contents) in state {
        let Ok(ks) = db.keyspace(name, KeyspaceOptions::default()) else {
            continue;
        };
        let reverse: Vec<(Vec<u8>, Vec<u8>)> = ks
            .iter()
            .rev()
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .unwrap_or_else(|e| panic!("reverse scan failed: {e}"))
            })
            .collect();
        assert!(
            reverse
                .iter()
                .rev()
                .map(|(k, v)| (k, v))
                .eq(contents.iter()),
            "keyspace {name:?}: reverse scan differs from the forward scan"
        );
        for (key, value) in contents.iter().step_by((contents.len() / 16).max(1)) {
            let got = ks
                .get(key)
                .unwrap_or_else(|e| panic!("get failed: {e}"))
                .map(|v| v.to_vec());
            assert_eq!(
                got.as_ref(),
                Some(value),
                "keyspace {name:?}: get disagrees"
            );
        }
        assert_eq!(
            ks.get(b"absent-key").map(|v| v.is_none()).ok(),
            Some(!contents.contains_key(&b"absent-key"[..]))
        );
    }
}

/// What the template's keyspaces hold after replaying `views`, if that is unambiguous: each
/// key takes the value of its entry with the highest seqno above its keyspace's dumped seqno.
/// `None` when two entries of a key share a seqno or an entry is a merge operand (no operator).
fn expected_state(fs: &MemFs, views: &[WalSegmentView]) -> Option<BTreeMap<String, Contents>> {
    let meta = inspect::read_meta(fs, Path::new(DIR)).ok()?;
    let t = template::get();
    // (keyspace id, key) -> (seqno, value or delete) of the newest entry seen.
    type Newest = BTreeMap<(u32, Vec<u8>), (u64, Option<Vec<u8>>)>;
    let mut newest = Newest::new();
    for entry in views
        .iter()
        .flat_map(|s| &s.batches)
        .flat_map(|b| &b.entries)
    {
        let Some(ks) = meta.state.keyspaces.iter().find(|k| k.id == entry.keyspace) else {
            continue;
        };
        if entry.seqno <= ks.dumped_seqno {
            continue;
        }
        let value = match entry.kind {
            "put" => Some(entry.value.to_vec()),
            "delete" => None,
            _ => return None,
        };
        let slot = (entry.keyspace, entry.key.to_vec());
        match newest.get(&slot) {
            Some((seqno, _)) if *seqno == entry.seqno => return None,
            Some((seqno, _)) if *seqno > entry.seqno => {}
            _ => {
                newest.insert(slot, (entry.seqno, value));
            }
        }
    }
    let mut state = t.contents.clone();
    for ((ks_id, key), (_, value)) in newest {
        let name = meta
            .state
            .keyspaces
            .iter()
            .find(|k| k.id == ks_id)?
            .name
            .clone();
        let contents = state.entry(name).or_default();
        match value {
            Some(v) => contents.insert(key, v),
            None => contents.remove(&key),
        };
    }
    Some(state)
}

/// Writes one more key, closes cleanly and recovers again: the second recovery must find what
/// the first one did plus the new key. With `may_not_reopen` (a known finding, see the caller)
/// the second recovery may fail with a typed error instead.
pub(crate) fn write_close_reopen(
    fs: &MemFs,
    db: Db,
    mut state: BTreeMap<String, Contents>,
    recovery: WalRecovery,
    may_not_reopen: bool,
) {
    let Some(name) = state.keys().next().cloned() else {
        return;
    };
    let Ok(ks) = db.keyspace(&name, KeyspaceOptions::default()) else {
        return;
    };
    if ks.put("fuzz-marker", "written after recovery").is_err() {
        return;
    }
    state
        .entry(name)
        .or_default()
        .insert(b"fuzz-marker".to_vec(), b"written after recovery".to_vec());
    drop(ks);
    if db.close().is_err() {
        return;
    }
    let db = match Db::open(DIR, template::options(fs, recovery)) {
        Ok(db) => db,
        Err(_) if may_not_reopen => return,
        Err(e) => panic!("a cleanly closed database does not reopen: {e}"),
    };
    assert_eq!(
        template::read_all(&db),
        state,
        "a clean close and reopen changed the database"
    );
    let _ = db.close();
}
