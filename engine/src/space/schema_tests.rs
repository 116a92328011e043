use super::*;

fn users() -> SpaceDef {
    SpaceDef::new()
        .field("id", FieldType::Unsigned)
        .field("email", FieldType::String)
        .nullable_field("city", FieldType::String)
        .nullable_field("extra", FieldType::Any)
        .index(IndexDef::new("primary", ["id"]))
        .index(IndexDef::new("email", ["email"]))
        .index(
            IndexDef::new("city", ["city"])
                .non_unique()
                .covering(["email"]),
        )
}

#[test]
fn a_good_definition_resolves() {
    let schema = SpaceSchema::new(users()).unwrap();
    assert_eq!(schema.indexes().len(), 3);
    assert_eq!(schema.primary().part_types(), &[FieldType::Unsigned]);
    let city = schema.index(2).unwrap();
    assert!(!city.is_unique());
    assert!(city.is_nullable());
    assert_eq!(
        city.entry_types(),
        &[FieldType::String, FieldType::Unsigned]
    );
    assert_eq!(city.covering(), &[1]);
    assert_eq!(schema.min_field_count, 2);
    assert_eq!(schema.index_no("city"), Some(2));
    assert_eq!(schema.field_position("email"), Some(1));
    assert_eq!(schema.def(), &users());
    assert!(matches!(
        schema.index(3),
        Err(TupleError::NoSuchIndex { index_no: 3 })
    ));
}

#[test]
fn numbers_refer_to_fields_one_based() {
    let def = SpaceDef::new()
        .field("a", FieldType::Integer)
        .field("b", FieldType::String)
        .index(IndexDef::new("pk", [2, 1]));
    let schema = SpaceSchema::new(def).unwrap();
    let positions: Vec<usize> = schema
        .primary()
        .parts()
        .iter()
        .map(|p| p.position)
        .collect();
    assert_eq!(positions, vec![1, 0]);
    for bad in [0, 3, -1] {
        let def = SpaceDef::new()
            .field("a", FieldType::Integer)
            .index(IndexDef::new("pk", [bad]));
        assert!(
            matches!(
                def.validate(),
                Err(TupleError::UnknownField { role: "parts", .. })
            ),
            "field number {bad}"
        );
    }
}

#[test]
fn every_wrong_definition_has_its_error() {
    let base = || {
        SpaceDef::new()
            .field("id", FieldType::Unsigned)
            .field("v", FieldType::Any)
    };
    let pk = || IndexDef::new("pk", ["id"]);
    type Expected = fn(&TupleError) -> bool;
    let cases: Vec<(SpaceDef, Expected)> = vec![
        (
            SpaceDef {
                version: 2,
                ..base().index(pk())
            },
            |e| {
                matches!(
                    e,
                    TupleError::UnsupportedVersion {
                        found: 2,
                        supported: 1
                    }
                )
            },
        ),
        (base().field("", FieldType::String).index(pk()), |e| {
            matches!(e, TupleError::EmptyFieldName { field_no: 3 })
        }),
        (base().field("id", FieldType::String).index(pk()), |e| {
            matches!(
                e,
                TupleError::DuplicateFieldName {
                    first_no: 1,
                    second_no: 3,
                    ..
                }
            )
        }),
        (base(), |e| matches!(e, TupleError::NoPrimaryIndex)),
        (base().index(IndexDef::new("", ["id"])), |e| {
            matches!(e, TupleError::EmptyIndexName { index_no: 0 })
        }),
        (base().index(pk()).index(pk()), |e| {
            matches!(e, TupleError::DuplicateIndexName { .. })
        }),
        (
            base().index(IndexDef::new("pk", Vec::<FieldRef>::new())),
            |e| matches!(e, TupleError::EmptyIndexParts { .. }),
        ),
        (
            base().index(IndexDef::new("pk", ["nope"])),
            |e| matches!(e, TupleError::UnknownField { field, .. } if field == "nope"),
        ),
        (base().index(IndexDef::new("pk", ["id", "id"])), |e| {
            matches!(e, TupleError::DuplicateIndexPart { field_no: 1, .. })
        }),
        (base().index(IndexDef::new("pk", ["id", "v"])), |e| {
            matches!(e, TupleError::FieldNotIndexable { field_no: 2, .. })
        }),
        (base().index(pk().non_unique()), |e| {
            matches!(e, TupleError::PrimaryNotUnique { .. })
        }),
        (
            SpaceDef::new()
                .nullable_field("id", FieldType::Unsigned)
                .index(pk()),
            |e| matches!(e, TupleError::NullablePrimaryPart { field_no: 1, .. }),
        ),
        (base().index(pk().covering(["v"])), |e| {
            matches!(e, TupleError::CoveringPrimary { .. })
        }),
        (base().index(pk()).index(IndexDef::new("s", ["v"])), |e| {
            matches!(e, TupleError::FieldNotIndexable { .. })
        }),
        (
            base()
                .field("s", FieldType::String)
                .index(pk())
                .index(IndexDef::new("s", ["s"]).covering(["id"])),
            |e| matches!(e, TupleError::RedundantCoveringField { field_no: 1, .. }),
        ),
        (
            base()
                .field("s", FieldType::String)
                .index(pk())
                .index(IndexDef::new("s", ["s"]).covering(["s"])),
            |e| matches!(e, TupleError::RedundantCoveringField { field_no: 3, .. }),
        ),
        (
            base()
                .field("s", FieldType::String)
                .index(pk())
                .index(IndexDef::new("s", ["s"]).covering(["v", "v"])),
            |e| matches!(e, TupleError::DuplicateIndexPart { field_no: 2, .. }),
        ),
        (
            base()
                .index(pk())
                .index(IndexDef::new("s", ["id"]).covering(["zz"])),
            |e| {
                matches!(
                    e,
                    TupleError::UnknownField {
                        role: "covering fields",
                        ..
                    }
                )
            },
        ),
    ];
    for (i, (def, expected)) in cases.into_iter().enumerate() {
        let err = def.validate().expect_err(&format!("case {i} should fail"));
        assert!(expected(&err), "case {i}: unexpected error {err:?}");
    }
}

#[test]
fn definitions_round_trip_through_msgpack() {
    let def = users().allow_extra_fields();
    let bytes = def.to_msgpack();
    // The layout SPACES.md documents: a map with named keys, types as lower-case strings.
    let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
    let text = value.to_string();
    for expected in [
        r#""version": 1"#,
        r#""field_type": "unsigned""#,
        r#""parts": ["id"]"#,
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    assert_eq!(SpaceDef::from_msgpack(&bytes).unwrap(), def);
    // Field references keep their kind: numbers stay numbers.
    let def = SpaceDef::new()
        .field("a", FieldType::Uuid)
        .index(IndexDef::new("pk", [1]));
    assert_eq!(SpaceDef::from_msgpack(&def.to_msgpack()).unwrap(), def);
}

#[test]
fn newer_or_garbled_definitions_are_refused() {
    let newer = SpaceDef {
        version: SPACE_DEF_VERSION + 1,
        ..users()
    };
    assert!(matches!(
        SpaceDef::from_msgpack(&newer.to_msgpack()),
        Err(TupleError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        SpaceDef::from_msgpack(b"\xc1"),
        Err(TupleError::MalformedDef { .. })
    ));
    let bytes = users().to_msgpack();
    for len in 0..bytes.len() {
        assert!(
            SpaceDef::from_msgpack(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
}
