use super::*;
use crate::space::schema::{FieldType, IndexDef, SpaceDef};
use proptest::prelude::*;

fn v(fields: &[Value]) -> Vec<Value> {
    fields.to_vec()
}

fn kind<T: std::fmt::Debug>(result: Result<T, TupleError>) -> (u32, char, UpdateErrorKind) {
    match result {
        Err(TupleError::Update {
            op_no, op, kind, ..
        }) => (op_no, op, kind),
        other => panic!("expected an update error, got {other:?}"),
    }
}

#[test]
fn set_insert_delete_address_fields_like_tarantool() {
    let t = v(&[1.into(), 2.into(), 3.into()]);
    assert_eq!(
        apply(&t, &[UpdateOp::set(2, 9)], None).unwrap(),
        v(&[1.into(), 9.into(), 3.into()])
    );
    assert_eq!(
        apply(&t, &[UpdateOp::set(-1, 9)], None).unwrap()[2],
        Value::from(9)
    );
    assert_eq!(
        apply(&t, &[UpdateOp::set(4, 9)], None).unwrap().len(),
        4,
        "one past the end appends"
    );
    assert_eq!(
        kind(apply(&t, &[UpdateOp::set(5, 9)], None)).2,
        UpdateErrorKind::NoSuchField { len: 3 }
    );
    assert_eq!(
        kind(apply(&t, &[UpdateOp::set(-4, 9)], None)).2,
        UpdateErrorKind::NoSuchField { len: 3 }
    );
    assert_eq!(
        kind(apply(&t, &[UpdateOp::set(0, 9)], None)).2,
        UpdateErrorKind::FieldNumberZero
    );

    assert_eq!(
        apply(&t, &[UpdateOp::insert(1, 0)], None).unwrap()[0],
        Value::from(0)
    );
    assert_eq!(
        apply(&t, &[UpdateOp::insert(4, 0)], None).unwrap()[3],
        Value::from(0)
    );
    assert_eq!(
        apply(&t, &[UpdateOp::insert(-1, 0)], None).unwrap()[3],
        Value::from(0),
        "-1 appends"
    );
    assert_eq!(
        apply(&t, &[UpdateOp::insert(-4, 0)], None).unwrap()[0],
        Value::from(0)
    );
    assert!(apply(&t, &[UpdateOp::insert(5, 0)], None).is_err());

    assert_eq!(
        apply(&t, &[UpdateOp::delete(2, 1)], None).unwrap(),
        v(&[1.into(), 3.into()])
    );
    assert_eq!(
        apply(&t, &[UpdateOp::delete(2, 100)], None).unwrap(),
        v(&[1.into()])
    );
    assert_eq!(
        apply(&t, &[UpdateOp::delete(-1, 1)], None).unwrap().len(),
        2
    );
    assert_eq!(
        kind(apply(&t, &[UpdateOp::delete(1, 0)], None)).2,
        UpdateErrorKind::DeleteCountZero
    );
    assert!(apply(&t, &[UpdateOp::delete(4, 1)], None).is_err());
}

#[test]
fn arithmetic_is_exact_and_overflow_is_an_error() {
    let t = v(&[
        Value::from(u64::MAX),
        Value::from(i64::MIN),
        5.into(),
        1.5.into(),
        "s".into(),
    ]);
    let one = |op: UpdateOp| apply(&t, &[op], None);
    assert_eq!(
        kind(one(UpdateOp::add(1, 1))).2,
        UpdateErrorKind::IntegerOverflow
    );
    assert_eq!(
        kind(one(UpdateOp::sub(2, 1))).2,
        UpdateErrorKind::IntegerOverflow
    );
    assert_eq!(
        one(UpdateOp::sub(1, 1)).unwrap()[0],
        Value::from(u64::MAX - 1)
    );
    assert_eq!(
        one(UpdateOp::add(2, u64::MAX)).unwrap()[1],
        Value::from(i64::MAX as u64)
    );
    assert_eq!(one(UpdateOp::sub(3, 8)).unwrap()[2], Value::from(-3));
    assert_eq!(one(UpdateOp::sub(3, -8)).unwrap()[2], Value::from(13u64));
    assert_eq!(one(UpdateOp::add(3, 0.5)).unwrap()[2], Value::F64(5.5));
    assert_eq!(one(UpdateOp::add(4, 1)).unwrap()[3], Value::F64(2.5));
    assert_eq!(
        one(UpdateOp::add(4, Value::F32(0.5))).unwrap()[3],
        Value::F64(2.0)
    );
    assert_eq!(
        kind(one(UpdateOp::add(5, 1))).2,
        UpdateErrorKind::FieldType {
            expected: "a number",
            found: "string"
        }
    );
    assert_eq!(
        kind(one(UpdateOp::add(3, "x"))).2,
        UpdateErrorKind::ArgumentType {
            expected: "a number",
            found: "string"
        }
    );
}

#[test]
fn bitwise_needs_unsigned_fields() {
    let t = v(&[0b1100.into(), (-1).into()]);
    assert_eq!(
        apply(&t, &[UpdateOp::and(1, 0b1010)], None).unwrap()[0],
        Value::from(0b1000)
    );
    assert_eq!(
        apply(&t, &[UpdateOp::or(1, 0b1010)], None).unwrap()[0],
        Value::from(0b1110)
    );
    assert_eq!(
        apply(&t, &[UpdateOp::xor(1, 0b1010)], None).unwrap()[0],
        Value::from(0b0110)
    );
    assert_eq!(
        kind(apply(&t, &[UpdateOp::or(2, 1)], None)).2,
        UpdateErrorKind::FieldType {
            expected: "an unsigned integer",
            found: "integer"
        }
    );
}

#[test]
fn splice_works_on_bytes_like_tarantool() {
    let splice = |s: &str, offset, length, r: &str| {
        apply(&[s.into()], &[UpdateOp::splice(1, offset, length, r)], None)
            .map(|t| t[0].as_str().map(str::to_owned).unwrap_or_default())
    };
    assert_eq!(splice("abcdef", 2, 3, "XY").unwrap(), "aXYef");
    assert_eq!(splice("abc", -1, 0, "Z").unwrap(), "abcZ");
    assert_eq!(splice("abc", -4, 0, "Z").unwrap(), "Zabc");
    assert_eq!(splice("abc", 10, 5, "Z").unwrap(), "abcZ");
    assert_eq!(splice("abcdef", 2, -1, "").unwrap(), "af");
    assert_eq!(splice("abcdef", 2, -9, "-").unwrap(), "a-bcdef");
    assert_eq!(splice("abc", 1, 100, "").unwrap(), "");
    assert!(matches!(
        kind(splice("abc", -5, 0, "")).2,
        UpdateErrorKind::SpliceOffset { offset: -5, len: 3 }
    ));
    assert!(matches!(
        kind(splice("abc", 0, 0, "")).2,
        UpdateErrorKind::SpliceOffset { offset: 0, .. }
    ));
    assert_eq!(kind(splice("é", 2, 0, "x")).2, UpdateErrorKind::SpliceUtf8);
    assert_eq!(splice("é", 3, 0, "x").unwrap(), "éx");
    assert!(matches!(
        kind(apply(&[1.into()], &[UpdateOp::splice(1, 1, 0, "")], None)).2,
        UpdateErrorKind::FieldType {
            expected: "a string",
            ..
        }
    ));
}

#[test]
fn a_failing_operation_names_itself_and_changes_nothing() {
    let t = v(&[1.into(), "a".into()]);
    let ops = [UpdateOp::set(1, 5), UpdateOp::add(-1, 1)];
    let err = apply(&t, &ops, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "update operation 2 ('+' on field -1): the field must be a number, found string"
    );
    assert_eq!(t, v(&[1.into(), "a".into()]));
    // Later operations see earlier results.
    let ops = [UpdateOp::insert(1, 0), UpdateOp::add(2, 10)];
    assert_eq!(
        apply(&t, &ops, None).unwrap(),
        v(&[0.into(), 11.into(), "a".into()])
    );
}

fn counters() -> SpaceSchema {
    SpaceSchema::new(
        SpaceDef::new()
            .field("id", FieldType::String)
            .field("n", FieldType::Unsigned)
            .nullable_field("note", FieldType::String)
            .index(IndexDef::new("pk", ["id"]))
            .index(IndexDef::new("by_n", ["n"]).non_unique()),
    )
    .unwrap()
}

#[test]
fn schema_updates_check_the_result_and_the_primary_key() {
    let s = counters();
    let t = v(&["k".into(), 1.into()]);
    assert_eq!(
        s.update(&t, &[UpdateOp::add("n", 2)]).unwrap(),
        v(&["k".into(), 3.into()])
    );
    assert_eq!(
        s.update(&t, &[UpdateOp::set("note", "hi")]).unwrap().len(),
        3
    );
    assert!(matches!(
        s.update(&t, &[UpdateOp::set("id", "other")]),
        Err(TupleError::PrimaryKeyModified { .. })
    ));
    assert_eq!(
        s.update(&t, &[UpdateOp::set("id", "k")]).unwrap(),
        t,
        "same key is allowed"
    );
    assert!(matches!(
        s.update(&t, &[UpdateOp::sub("n", 2)]),
        Err(TupleError::FieldType {
            field_no: 2,
            found: "a negative integer",
            ..
        })
    ));
    assert!(matches!(
        s.update(&t, &[UpdateOp::delete(2, 1)]),
        Err(TupleError::FieldCount { .. })
    ));
    let err = s.update(&t, &[UpdateOp::set("nope", 1)]).unwrap_err();
    assert!(matches!(
        err,
        TupleError::Update {
            kind: UpdateErrorKind::UnknownFieldName,
            ..
        }
    ));
    assert!(
        apply(&t, &[UpdateOp::set("n", 1)], None).is_err(),
        "names need a schema"
    );
}

#[test]
fn upsert_inserts_updates_or_skips() {
    let s = counters();
    let new = v(&["k".into(), 1.into()]);
    let ops = [UpdateOp::add("n", 1)];
    assert_eq!(
        s.upsert(None, &new, &ops).unwrap(),
        UpsertOutcome::Inserted(new.clone())
    );
    let old = v(&["k".into(), 5.into()]);
    assert_eq!(
        s.upsert(Some(&old), &new, &ops).unwrap(),
        UpsertOutcome::Updated(v(&["k".into(), 6.into()]))
    );
    let overflow = [UpdateOp::sub("n", 10)];
    assert!(matches!(
        s.upsert(Some(&old), &new, &overflow).unwrap(),
        UpsertOutcome::Skipped(_)
    ));
    let pk = [UpdateOp::set(1, "z")];
    assert!(matches!(
        s.upsert(Some(&old), &new, &pk).unwrap(),
        UpsertOutcome::Skipped(TupleError::PrimaryKeyModified { .. })
    ));
    // Statement-time errors are errors even when a tuple exists.
    assert!(s.upsert(Some(&old), &v(&[1.into()]), &ops).is_err());
    assert!(s
        .upsert(Some(&old), &new, &[UpdateOp::add("n", "x")])
        .is_err());
    assert!(s.upsert(None, &new, &[UpdateOp::delete(1, 0)]).is_err());
}

#[test]
fn touches_fields_exact_and_blind() {
    let pk = [0];
    let touch = |ops: &[UpdateOp], len| touches_fields(ops, len, &pk, None).unwrap();
    assert!(!touch(&[UpdateOp::set(2, 1)], Some(3)));
    assert!(touch(&[UpdateOp::set(1, 1)], Some(3)));
    assert!(touch(&[UpdateOp::set(-3, 1)], Some(3)));
    assert!(!touch(&[UpdateOp::set(-2, 1)], Some(3)));
    assert!(touch(&[UpdateOp::insert(1, 1)], Some(3)));
    assert!(!touch(
        &[UpdateOp::insert(2, 1), UpdateOp::delete(2, 1)],
        Some(3)
    ));
    assert!(touch(&[UpdateOp::delete(1, 1)], Some(3)));
    // Blind: conservative.
    assert!(!touch(&[UpdateOp::set(2, 1), UpdateOp::add(3, 1)], None));
    assert!(touch(&[UpdateOp::set(-1, 1)], None));
    assert!(touch(
        &[UpdateOp::insert(1, 1), UpdateOp::delete(1, 1)],
        None
    ));
    assert!(touch(&[UpdateOp::insert(2, 1), UpdateOp::set(1, 1)], None));
    assert!(!touch(&[UpdateOp::insert(3, 1), UpdateOp::set(2, 1)], None));
    assert!(touches_fields(&[UpdateOp::set(0, 1)], None, &pk, None).is_err());
}

#[test]
fn ops_round_trip_through_msgpack() {
    let ops = vec![
        UpdateOp::set(1, "x"),
        UpdateOp::add("n", -2),
        UpdateOp::sub(-1, 1.5),
        UpdateOp::and(2, 7),
        UpdateOp::or(2, u64::MAX),
        UpdateOp::xor(2, 0),
        UpdateOp::splice(3, -1, 2, "abc"),
        UpdateOp::insert(-1, Value::Nil),
        UpdateOp::delete(4, 3),
    ];
    let bytes = encode_ops(&ops);
    assert_eq!(decode_ops(&bytes).unwrap(), ops);
    assert_eq!(
        encode_ops(&[UpdateOp::set(1, 2)]),
        [0x91, 0x93, 0xA1, b'=', 0x01, 0x02]
    );
    // The example in SPACES.md.
    assert_eq!(
        encode_ops(&[UpdateOp::set(2, "x"), UpdateOp::add("n", 1)]),
        [0x92, 0x93, 0xA1, 0x3D, 0x02, 0xA1, 0x78, 0x93, 0xA1, 0x2B, 0xA1, 0x6E, 0x01]
    );
    for bad in [
        &[0x91, 0x92, 0xA1, b'=', 0x01][..],
        &[0x91, 0x93, 0xA1, b'?', 0x01, 0x01],
        &[0x01],
    ] {
        assert!(
            matches!(decode_ops(bad), Err(TupleError::MalformedOps { .. })),
            "{bad:x?}"
        );
    }
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        any::<f64>().prop_map(Value::F64),
        "[a-zé]{0,4}".prop_map(Value::from),
        Just(Value::Nil),
    ]
}

fn any_op() -> impl Strategy<Value = UpdateOp> {
    let field = (-5i32..6).prop_map(FieldRef::Number);
    prop_oneof![
        (field.clone(), any_value()).prop_map(|(f, v)| UpdateOp::Set { field: f, value: v }),
        (field.clone(), any_value()).prop_map(|(f, v)| UpdateOp::Add { field: f, value: v }),
        (field.clone(), any_value()).prop_map(|(f, v)| UpdateOp::Sub { field: f, value: v }),
        (field.clone(), any::<u64>()).prop_map(|(f, v)| UpdateOp::Xor { field: f, value: v }),
        (field.clone(), -6i64..6, -6i64..6, "[xé]{0,2}").prop_map(|(f, o, l, r)| {
            UpdateOp::Splice {
                field: f,
                offset: o,
                length: l,
                replacement: r,
            }
        }),
        (field.clone(), any_value()).prop_map(|(f, v)| UpdateOp::Insert { field: f, value: v }),
        (field, 0u32..4).prop_map(|(f, c)| UpdateOp::Delete { field: f, count: c }),
    ]
}

proptest! {
    #[test]
    fn random_updates_never_panic_and_untouched_fields_stay(
        tuple in proptest::collection::vec(any_value(), 0..5),
        ops in proptest::collection::vec(any_op(), 0..4),
    ) {
        let result = apply(&tuple, &ops, None);
        let exact = touches_fields(&ops, Some(tuple.len()), &[0, 1], None);
        let blind = touches_fields(&ops, None, &[0, 1], None);
        if let Ok(new) = &result {
            let kept = |q: usize| tuple.get(q).is_some() && new.get(q) == tuple.get(q);
            let exact = exact.unwrap();
            prop_assert!(!(exact && ops.is_empty() && tuple.len() >= 2));
            if !exact && tuple.len() >= 2 {
                prop_assert!(kept(0) && kept(1), "{:?} -> {:?}", tuple, new);
            }
            if !blind.unwrap() && tuple.len() >= 2 {
                prop_assert!(kept(0) && kept(1), "blind check missed {:?}", ops);
            }
        }
        // Compared as bytes: NaN arguments are not equal to themselves.
        let bytes = encode_ops(&ops);
        prop_assert_eq!(encode_ops(&decode_ops(&bytes).unwrap()), bytes);
    }

    #[test]
    fn hostile_op_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        if let Ok(ops) = decode_ops(&bytes) {
            let again = encode_ops(&ops);
            prop_assert_eq!(encode_ops(&decode_ops(&again).unwrap()), again);
        }
    }
}
