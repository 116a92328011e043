//! Spaces: typed tuples with primary and secondary indexes kept consistent.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use strata::fs::MemFs;
use strata::{
    Db, Error, FieldType, IndexDef, IteratorType, Options, Space, SpaceDef, TupleError, UpdateOp,
    WalMode,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    email: String,
    city: String,
    visits: i64,
}

fn user(id: u64, email: &str, city: &str) -> User {
    User {
        id,
        email: email.into(),
        city: city.into(),
        visits: 0,
    }
}

fn users_def() -> SpaceDef {
    SpaceDef::new()
        .field("id", FieldType::Unsigned)
        .field("email", FieldType::String)
        .field("city", FieldType::String)
        .field("visits", FieldType::Integer)
        .index(IndexDef::new("pk", ["id"]))
        .index(IndexDef::new("email", ["email"]))
        .index(IndexDef::new("city", ["city"]).non_unique())
}

fn mem_db(fs: &MemFs) -> Db {
    Db::open(
        "/db",
        Options {
            wal_mode: WalMode::Fsync,
            fs: Arc::new(fs.clone()),
            ..Options::default()
        },
    )
    .unwrap()
}

fn ids(users: &[User]) -> Vec<u64> {
    users.iter().map(|u| u.id).collect()
}

#[test]
fn users_by_email_and_city() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let users = db.create_space("users", users_def()).unwrap();
    users.insert(&user(1, "ann@x", "Oslo")).unwrap();
    users.insert(&user(2, "bob@x", "Rome")).unwrap();
    users.insert(&user(3, "cid@x", "Oslo")).unwrap();

    assert_eq!(
        users.get::<_, User>(&(2,)).unwrap(),
        Some(user(2, "bob@x", "Rome"))
    );
    let in_oslo: Vec<User> = users
        .select("city", &("Oslo",), IteratorType::Eq, 10, 0)
        .unwrap();
    assert_eq!(ids(&in_oslo), [1, 3]);
    let by_email: Vec<User> = users
        .select("email", &("bob@x",), IteratorType::Eq, 10, 0)
        .unwrap();
    assert_eq!(ids(&by_email), [2]);
    let reverse: Vec<User> = users.select("pk", &(), IteratorType::Req, 10, 0).unwrap();
    assert_eq!(ids(&reverse), [3, 2, 1]);
    assert_eq!(
        users.count("city", &("Oslo",), IteratorType::Eq).unwrap(),
        2
    );
    assert_eq!(users.len().unwrap(), 3);

    // Duplicates in the primary and in a unique secondary are refused and change nothing.
    assert!(matches!(
        users.insert(&user(1, "new@x", "Oslo")),
        Err(Error::DuplicateKey { .. })
    ));
    match users.insert(&user(4, "ann@x", "Oslo")) {
        Err(Error::DuplicateKey { index, .. }) => assert_eq!(index, "email"),
        other => panic!("expected a duplicate email, got {other:?}"),
    }
    assert_eq!(users.len().unwrap(), 3);
    assert_eq!(users.count("email", &(), IteratorType::All).unwrap(), 3);

    // Update moves the tuple between city entries; the primary key cannot change.
    let moved: Option<User> = users
        .update(
            &(1,),
            &[UpdateOp::set("city", "Rome"), UpdateOp::add("visits", 5)],
        )
        .unwrap();
    assert_eq!(moved.unwrap().visits, 5);
    let in_rome: Vec<User> = users
        .select("city", &("Rome",), IteratorType::Eq, 10, 0)
        .unwrap();
    assert_eq!(ids(&in_rome), [1, 2]);
    assert!(matches!(
        users.update::<_, User>(&(1,), &[UpdateOp::set("id", 9u64)]),
        Err(Error::Tuple(TupleError::PrimaryKeyModified { .. }))
    ));

    // Delete returns the old tuple and removes every index entry.
    let gone: Option<User> = users.delete(&(2,)).unwrap();
    assert_eq!(gone.map(|u| u.email).as_deref(), Some("bob@x"));
    assert_eq!(
        users.count("email", &("bob@x",), IteratorType::Eq).unwrap(),
        0
    );
    users.insert(&user(5, "bob@x", "Nice")).unwrap();

    // Replace keeps unique secondaries unique.
    users.replace(&user(5, "bob2@x", "Nice")).unwrap();
    assert_eq!(
        users.count("email", &("bob@x",), IteratorType::Eq).unwrap(),
        0
    );

    // Upsert: insert, then update.
    users
        .upsert(&user(6, "dan@x", "Oslo"), &[UpdateOp::add("visits", 1)])
        .unwrap();
    users
        .upsert(&user(6, "dan@x", "Oslo"), &[UpdateOp::add("visits", 1)])
        .unwrap();
    assert_eq!(users.get::<_, User>(&(6,)).unwrap().unwrap().visits, 1);

    // A tuple that breaks the format names the field.
    let bad = (7u64, "e@x", 42, 0);
    match users.insert(&bad) {
        Err(Error::Tuple(TupleError::FieldType { field_name, .. })) => {
            assert_eq!(field_name, "city")
        }
        other => panic!("expected a field type error, got {other:?}"),
    }
    assert!(matches!(
        db.create_space("users", users_def()),
        Err(Error::SpaceExists(_))
    ));
    assert!(matches!(db.space("nope"), Err(Error::SpaceNotFound(_))));
    assert!(matches!(
        users.select::<_, User>("nope", &(), IteratorType::All, 1, 0),
        Err(Error::IndexNotFound { .. })
    ));
}

#[test]
fn paging_covering_indexes_and_index_builds() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let def = SpaceDef::new()
        .field("id", FieldType::Unsigned)
        .field("city", FieldType::String)
        .field("name", FieldType::String)
        .index(IndexDef::new("pk", ["id"]))
        .index(
            IndexDef::new("city", ["city"])
                .non_unique()
                .covering(["name"]),
        );
    let people = db.create_space("people", def).unwrap();
    for id in 0..1000u64 {
        people
            .insert(&(id, format!("c{}", id % 7), format!("n{id}")))
            .unwrap();
    }
    // Pages with continuation tokens cover everything exactly once.
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (page, next): (Vec<(u64, String, String)>, _) = people
            .select_page("city", &("c3",), IteratorType::Eq, 40, after.as_deref())
            .unwrap();
        seen.extend(page.into_iter().map(|t| t.0));
        match next {
            Some(token) => after = Some(token),
            None => break,
        }
    }
    let expected: Vec<u64> = (0..1000).filter(|i| i % 7 == 3).collect();
    assert_eq!(seen, expected);

    // A covered query reads only the index.
    let rows = people
        .select_fields("city", &("c1",), IteratorType::Eq, 3, &["id", "name"])
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][1].as_str(), Some("n1"));

    // Build an index while another thread keeps writing. The writer is bounded: a writer that
    // keeps changing exactly the rows just ahead of the backfill can starve the build until it
    // pauses (see `Space::create_index`).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (people, stop) = (people.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut id = 1000u64;
            while !stop.load(Ordering::Relaxed) && id < 4000 {
                people
                    .insert(&(id, format!("c{}", id % 7), format!("n{id}")))
                    .unwrap();
                // Deletes scattered over older rows.
                let victim = id - 1 - (id.wrapping_mul(7919) % 900);
                let _: Option<(u64, String, String)> = people.delete(&(victim,)).unwrap();
                id += 1;
            }
        })
    };
    people
        .create_index(IndexDef::new("name", ["name"]))
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = people.len().unwrap();
    assert_eq!(people.count("name", &(), IteratorType::All).unwrap(), total);
    assert_eq!(people.count("city", &(), IteratorType::All).unwrap(), total);
    let by_name: Vec<(u64, String, String)> = people
        .select("name", &(), IteratorType::All, usize::MAX, 0)
        .unwrap();
    for (id, _, name) in &by_name {
        assert_eq!(name, &format!("n{id}"));
    }
    // A unique index that cannot be built is removed again.
    assert!(matches!(
        people.create_index(IndexDef::new("city_unique", ["city"])),
        Err(Error::DuplicateKey { .. })
    ));
    assert!(people.schema().unwrap().index_no("city_unique").is_none());
    people.drop_index("name").unwrap();
    assert!(matches!(
        people.count("name", &(), IteratorType::All),
        Err(Error::IndexNotFound { .. })
    ));
    db.drop_space("people").unwrap();
    assert!(db.space_names().unwrap().is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u8, u8),
    Replace(u64, u8, u8),
    Update(u64, u8),
    Upsert(u64, u8, u8),
    Delete(u64),
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..12;
    let email = 0u8..10;
    let city = 0u8..3;
    prop_oneof![
        4 => (id.clone(), email.clone(), city.clone()).prop_map(|(i, e, c)| Op::Insert(i, e, c)),
        2 => (id.clone(), email.clone(), city.clone()).prop_map(|(i, e, c)| Op::Replace(i, e, c)),
        2 => (id.clone(), email.clone()).prop_map(|(i, e)| Op::Update(i, e)),
        2 => (id.clone(), email, city).prop_map(|(i, e, c)| Op::Upsert(i, e, c)),
        2 => id.prop_map(Op::Delete),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

type Model = BTreeMap<u64, User>;

fn email_taken(model: &Model, email: &str, except: u64) -> bool {
    model.values().any(|u| u.email == email && u.id != except)
}

/// Every index agrees with the model: no missing entry, no stale one.
fn check(users: &Space, model: &Model) {
    let all: Vec<User> = users
        .select("pk", &(), IteratorType::All, usize::MAX, 0)
        .unwrap();
    assert_eq!(all, model.values().cloned().collect::<Vec<_>>());
    let by_email: Vec<User> = users
        .select("email", &(), IteratorType::All, usize::MAX, 0)
        .unwrap();
    let mut expected: Vec<User> = model.values().cloned().collect();
    expected.sort_by(|a, b| a.email.cmp(&b.email));
    assert_eq!(by_email, expected);
    let by_city: Vec<User> = users
        .select("city", &(), IteratorType::All, usize::MAX, 0)
        .unwrap();
    let mut expected: Vec<User> = model.values().cloned().collect();
    expected.sort_by(|a, b| (&a.city, a.id).cmp(&(&b.city, b.id)));
    assert_eq!(by_city, expected);
    for name in ["email", "city"] {
        assert_eq!(
            users.count(name, &(), IteratorType::All).unwrap(),
            model.len() as u64
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(16),
        ..ProptestConfig::default()
    })]

    /// Random DML against a model; after every step and after every reopen or crash (Fsync
    /// mode), every index agrees with the model.
    #[test]
    fn indexes_match_a_model(ops in prop::collection::vec(op(), 1..40)) {
        let fs = MemFs::new();
        let mut db = mem_db(&fs);
        let mut users = db.create_space("users", users_def()).unwrap();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Insert(id, e, c) => {
                    let u = user(id, &format!("e{e}"), &format!("c{c}"));
                    let result = users.insert(&u);
                    if model.contains_key(&id) || email_taken(&model, &u.email, id) {
                        prop_assert!(matches!(result, Err(Error::DuplicateKey { .. })), "{result:?}");
                    } else {
                        result.unwrap();
                        model.insert(id, u);
                    }
                }
                Op::Replace(id, e, c) => {
                    let u = user(id, &format!("e{e}"), &format!("c{c}"));
                    let result = users.replace(&u);
                    if email_taken(&model, &u.email, id) {
                        prop_assert!(matches!(result, Err(Error::DuplicateKey { .. })), "{result:?}");
                    } else {
                        result.unwrap();
                        model.insert(id, u);
                    }
                }
                Op::Update(id, e) => {
                    let email = format!("e{e}");
                    let result = users.update::<_, User>(&(id,), &[UpdateOp::set("email", email.as_str()), UpdateOp::add("visits", 1)]);
                    match model.get(&id).cloned() {
                        None => prop_assert_eq!(result.unwrap(), None),
                        Some(_) if email_taken(&model, &email, id) => {
                            prop_assert!(matches!(result, Err(Error::DuplicateKey { .. })), "{result:?}");
                        }
                        Some(mut u) => {
                            u.email = email;
                            u.visits += 1;
                            prop_assert_eq!(result.unwrap(), Some(u.clone()));
                            model.insert(id, u);
                        }
                    }
                }
                Op::Upsert(id, e, c) => {
                    let u = user(id, &format!("e{e}"), &format!("c{c}"));
                    let result = users.upsert(&u, &[UpdateOp::add("visits", 2)]);
                    match model.get(&id).cloned() {
                        Some(mut old) => {
                            result.unwrap();
                            old.visits += 2;
                            model.insert(id, old);
                        }
                        None if email_taken(&model, &u.email, id) => {
                            prop_assert!(matches!(result, Err(Error::DuplicateKey { .. })), "{result:?}");
                        }
                        None => {
                            result.unwrap();
                            model.insert(id, u);
                        }
                    }
                }
                Op::Delete(id) => {
                    let old: Option<User> = users.delete(&(id,)).unwrap();
                    prop_assert_eq!(old, model.remove(&id));
                }
                Op::Reopen => {
                    drop(users);
                    db.close().unwrap();
                    db = mem_db(&fs);
                    users = db.space("users").unwrap();
                }
                Op::Crash => {
                    drop(users);
                    drop(db);
                    fs.crash();
                    db = mem_db(&fs);
                    users = db.space("users").unwrap();
                }
            }
            check(&users, &model);
        }
    }
}

#[test]
fn blind_upserts_without_secondary_indexes() {
    let fs = MemFs::new();
    let db = mem_db(&fs);
    let def = SpaceDef::new()
        .field("id", FieldType::Unsigned)
        .field("hits", FieldType::Integer)
        .index(IndexDef::new("pk", ["id"]));
    let counters = db.create_space("counters", def).unwrap();
    for _ in 0..300 {
        counters
            .upsert(&(1u64, 1i64), &[UpdateOp::add("hits", 1)])
            .unwrap();
    }
    // An operation that fails on the stored tuple is skipped, not fatal.
    counters
        .upsert(&(1u64, 1i64), &[UpdateOp::set("hits", "text")])
        .unwrap();
    assert_eq!(
        counters.get::<_, (u64, i64)>(&(1,)).unwrap(),
        Some((1, 300))
    );
    drop(counters);
    db.close().unwrap();
    let db = mem_db(&fs);
    let counters = db.space("counters").unwrap();
    assert_eq!(
        counters.get::<_, (u64, i64)>(&(1,)).unwrap(),
        Some((1, 300))
    );
}

/// Writers move users between cities in transactions, also touching two spaces at once; a
/// reader checks in read-only transactions that the indexes agree.
#[test]
fn concurrent_writers_keep_indexes_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let users = db.create_space("users", users_def()).unwrap();
    for id in 0..20u64 {
        users
            .insert(&user(id, &format!("e{id}"), &format!("c{}", id % 3)))
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..3u64 {
        let (db, users) = (db.clone(), users.clone());
        writers.push(std::thread::spawn(move || {
            for i in 0..150u64 {
                let id = (t * 7 + i * 3) % 20;
                db.transact(|tx| {
                    let mut s = users.with(tx);
                    let u: User = s.get(&(id,))?.expect("users are never deleted");
                    let city = format!("c{}", (u.visits + 1) % 3);
                    s.update::<_, User>(
                        &(id,),
                        &[
                            UpdateOp::set("city", city.as_str()),
                            UpdateOp::add("visits", 1),
                        ],
                    )?;
                    Ok(())
                })
                .unwrap();
            }
        }));
    }
    let reader = {
        let (db, users, stop) = (db.clone(), users.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut tx = db.begin_read_only();
                let s = users.with(&mut tx);
                let by_city: Vec<User> = s.select("city", &(), IteratorType::All, 100).unwrap();
                let by_pk: Vec<User> = s.select("pk", &(), IteratorType::All, 100).unwrap();
                assert_eq!(by_city.len(), 20);
                let mut sorted = by_city.clone();
                sorted.sort_by_key(|u| u.id);
                assert_eq!(sorted, by_pk);
                checks += 1;
            }
            checks
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let all: Vec<User> = users.select("pk", &(), IteratorType::All, 100, 0).unwrap();
    assert_eq!(all.iter().map(|u| u.visits).sum::<i64>(), 450);
    for u in &all {
        assert_eq!(u.city, format!("c{}", u.visits % 3));
    }
}
