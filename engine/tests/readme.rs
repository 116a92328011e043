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

#[test]
fn readme_transaction_and_upsert_example_runs() -> strata::Result<()> {
    use std::sync::Arc;
    use strata::merge::Counter;

    let dir = tempfile::tempdir().map_err(|e| strata::Error::io("tmp", e))?;
    let db = Db::open(dir.path(), Options::default())?;
    let accounts = db.keyspace("accounts", KeyspaceOptions::default())?;
    accounts.put("alice", [10])?;
    db.transact(|tx| {
        let alice = tx.get(&accounts, "alice")?.map_or(0, |v| v[0]);
        let bob = tx.get(&accounts, "bob")?.map_or(0, |v| v[0]);
        tx.put(&accounts, "alice", [alice.saturating_sub(1)])?;
        tx.put(&accounts, "bob", [bob + 1])?;
        Ok(())
    })?;
    assert_eq!(accounts.get("alice")?.as_deref(), Some(&[9u8][..]));
    assert_eq!(accounts.get("bob")?.as_deref(), Some(&[1u8][..]));

    let hits = db.keyspace(
        "hits",
        KeyspaceOptions {
            merge_operator: Some(Arc::new(Counter)),
            ..KeyspaceOptions::default()
        },
    )?;
    hits.upsert("/index.html", Counter::operand(1))?;
    hits.upsert("/index.html", Counter::operand(1))?;
    let value = hits.get("/index.html")?.expect("counted");
    assert_eq!(Counter::decode(&value), Ok(2));
    Ok(())
}
