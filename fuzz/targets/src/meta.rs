//! `meta_log`: the bytes as the metadata log of the template database.
//!
//! The log is stored as `meta.log` next to every run file the template ever wrote, so records
//! naming those runs find them. Then: `inspect::read_meta`, `inspect::verify`, `Db::open`, every
//! read, a write, a full compaction (which rewrites the ranges and runs the log describes), a
//! clean close and a second recovery.

use std::path::Path;

use strata::inspect;
use strata::{Db, WalRecovery};

use crate::fixup;
use crate::template::{self, DIR};
use crate::wal::{check_reads, write_close_reopen};

/// Body of the `meta_log` target; see [`crate::meta_log`].
pub(crate) fn run(data: &[u8]) {
    exercise(data);
    let repaired = fixup::meta_log(data);
    if repaired != data {
        exercise(&repaired);
    }
}

fn exercise(log: &[u8]) {
    let t = template::get();
    let fs = t.file_system(log);
    let dir = Path::new(DIR);
    let view = inspect::read_meta(&fs, dir);
    if let Ok(view) = &view {
        // Replaying must give a state whose every part can be printed (tools do that).
        for (_, records) in &view.frames {
            for record in records {
                let _ = (record.kind(), record.to_string());
            }
        }
    }
    let sound = inspect::verify(&fs, dir, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("inspect::verify failed outright: {e}"))
        .is_ok();
    let Ok(db) = Db::open(DIR, template::options(&fs, WalRecovery::TolerateTornTail)) else {
        return;
    };
    let view = match view {
        Ok(view) => view,
        Err(e) => panic!("Db::open accepted a metadata log that inspect::read_meta rejects: {e}"),
    };
    // Known finding (README.md, "Findings"): a log in which a keyspace holds a run with seqnos
    // above the keyspace's dumped seqno opens (and `verify` passes), the next commit goes to the
    // WAL above the run's seqnos, and recovery then refuses that WAL as having lost records.
    let run_above_dumped = view
        .state
        .keyspaces
        .iter()
        .any(|k| k.runs.iter().any(|r| r.max_seqno > k.dumped_seqno));
    let state = template::read_all(&db);
    check_reads(&db, &state);
    // A full compaction reads every run through the ranges and slices the log described and
    // writes the result back through the log; it may fail (typed), never panic. When `verify`
    // found the log consistent with the runs, it must not change what reads return. (Without
    // that condition it can: a log whose record of a run disagrees with the run's own
    // properties opens, and reads and compaction then see different things; see README.md,
    // "Findings".)
    let compacted = db.compact_all().is_ok();
    let after = template::read_all(&db);
    if compacted && sound {
        assert_eq!(
            after, state,
            "a full compaction changed the database's contents"
        );
    }
    write_close_reopen(
        &fs,
        db,
        after,
        WalRecovery::TolerateTornTail,
        run_above_dumped,
    );
}
