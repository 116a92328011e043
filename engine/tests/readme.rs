//! The README's usage example, run against a temporary directory so it cannot drift from the API.

use strata::{Db, KeyspaceOptions, Options, WalMode};

#[test]
fn readme_example_runs() -> strata::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| strata::Error::io("tmp", e))?;
    let db = Db::open(
        dir.path(),
        Options {
            wal_mode: WalMode::Fsync,
            ..Options::default()
        },
    )?;
    let users = db.keyspace("users", KeyspaceOptions::default())?;
    let index = db.keyspace("users_by_email", KeyspaceOptions::default())?;

    // One atomic, durable commit across keyspaces.
    let mut batch = db.batch();
    batch
        .put(&users, "u:42", "alice")
        .put(&index, "alice@example.com", "u:42");
    batch.commit()?;

    // Reads: point, range (double-ended), prefix, and read views.
    assert_eq!(users.get("u:42")?.as_deref(), Some(&b"alice"[..]));
    let view = db.snapshot();
    users.delete("u:42")?;
    assert!(view.get(&users, "u:42")?.is_some());
    let mut seen = Vec::new();
    for pair in index.prefix("alice@").rev() {
        let (key, value) = pair?;
        seen.push((key, value));
    }
    assert_eq!(seen.len(), 1);
    drop((users, index, view));
    db.close()?;
    Ok(())
}
