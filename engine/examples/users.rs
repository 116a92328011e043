//! A small application on spaces: users with a unique email index and a non-unique city index.
//!
//! Run with `cargo run -p strata --example users`.

use serde::{Deserialize, Serialize};
use strata::{Db, FieldType, IndexDef, IteratorType, Options, SpaceDef, UpdateOp};

/// A user; serialized as a MessagePack array in field order, which is what a tuple is.
#[derive(Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    email: String,
    city: String,
    logins: i64,
}

fn main() -> strata::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| strata::Error::io("tempdir", e))?;
    let db = Db::open(dir.path(), Options::default())?;

    let users = db.create_space(
        "users",
        SpaceDef::new()
            .field("id", FieldType::Unsigned)
            .field("email", FieldType::String)
            .field("city", FieldType::String)
            .field("logins", FieldType::Integer)
            .index(IndexDef::new("primary", ["id"]))
            .index(IndexDef::new("email", ["email"]))
            .index(IndexDef::new("city", ["city"]).non_unique()),
    )?;

    for (id, email, city) in [
        (1, "ada@example.com", "London"),
        (2, "alan@example.com", "London"),
        (3, "grace@example.com", "New York"),
    ] {
        users.insert(&User {
            id,
            email: email.into(),
            city: city.into(),
            logins: 0,
        })?;
    }

    // The unique email index refuses a second account with the same address.
    let duplicate = users.insert(&User {
        id: 4,
        email: "ada@example.com".into(),
        city: "Paris".into(),
        logins: 0,
    });
    if let Err(e) = duplicate {
        println!("second ada@example.com: {e}");
    }

    // Lookups by any index.
    let londoners: Vec<User> = users.select("city", &("London",), IteratorType::Eq, 100, 0)?;
    println!(
        "in London: {:?}",
        londoners.iter().map(|u| &u.email).collect::<Vec<_>>()
    );
    let grace: Vec<User> =
        users.select("email", &("grace@example.com",), IteratorType::Eq, 1, 0)?;
    println!("grace: {grace:?}");

    // Updates keep every index consistent: Alan moves to Manchester and logs in.
    users.update::<_, User>(
        &(2,),
        &[
            UpdateOp::set("city", "Manchester"),
            UpdateOp::add("logins", 1),
        ],
    )?;
    println!(
        "London now has {} user(s)",
        users.count("city", &("London",), IteratorType::Eq)?
    );

    // Several operations in one serializable transaction.
    db.transact(|tx| {
        let mut s = users.with(tx);
        let ada: User = s.get(&(1,))?.expect("ada exists");
        s.update::<_, User>(&(1,), &[UpdateOp::add("logins", ada.logins + 1)])?;
        s.delete::<_, User>(&(3,))?;
        Ok(())
    })?;
    let everyone: Vec<User> = users.select("primary", &(), IteratorType::All, 100, 0)?;
    for user in &everyone {
        println!("{user:?}");
    }
    Ok(())
}
