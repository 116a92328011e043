use super::*;
use crate::space::schema::{IndexDef, SpaceDef};
use proptest::prelude::*;

fn users() -> SpaceSchema {
    SpaceSchema::new(
        SpaceDef::new()
            .field("id", FieldType::Unsigned)
            .field("email", FieldType::String)
            .nullable_field("city", FieldType::String)
            .nullable_field("score", FieldType::Number)
            .nullable_field("extra", FieldType::Any)
            .index(IndexDef::new("primary", ["id"]))
            .index(IndexDef::new("email", ["email"]))
            .index(
                IndexDef::new("city", ["city", "score"])
                    .non_unique()
                    .covering(["extra"]),
            ),
    )
    .unwrap()
}

fn tuple(fields: Vec<Value>) -> Vec<Value> {
    fields
}

#[test]
fn valid_tuples_pass() {
    let s = users();
    s.validate_tuple(&tuple(vec![1.into(), "a@x".into()]))
        .unwrap();
    s.validate_tuple(&tuple(vec![1.into(), "a@x".into(), Value::Nil, 1.5.into()]))
        .unwrap();
    let any = Value::Map(vec![(Value::from("k"), Value::Array(vec![]))]);
    s.validate_tuple(&tuple(vec![
        1.into(),
        "a".into(),
        "c".into(),
        (-3).into(),
        any,
    ]))
    .unwrap();
}

#[test]
fn invalid_tuples_name_the_field() {
    let s = users();
    let err = s.validate_tuple(&[1.into()]).unwrap_err();
    assert_eq!(
        err,
        TupleError::FieldCount {
            min: 2,
            max: Some(5),
            found: 1
        }
    );
    let six = vec![Value::from(1); 6];
    assert!(matches!(
        s.validate_tuple(&six),
        Err(TupleError::FieldCount { found: 6, .. })
    ));
    let err = s.validate_tuple(&[1.into(), 2.into()]).unwrap_err();
    assert_eq!(
        err,
        TupleError::FieldType {
            field_no: 2,
            field_name: "email".into(),
            expected: FieldType::String,
            found: "unsigned"
        }
    );
    assert_eq!(
        err.to_string(),
        "field 2 (email) must be string, found unsigned"
    );
    let err = s.validate_tuple(&[(-1).into(), "a".into()]).unwrap_err();
    assert!(matches!(
        err,
        TupleError::FieldType {
            field_no: 1,
            found: "a negative integer",
            ..
        }
    ));
    let err = s.validate_tuple(&[Value::Nil, "a".into()]).unwrap_err();
    assert!(matches!(err, TupleError::NullField { field_no: 1, .. }));
    let bad_utf8 = decode_tuple(&[0x91, 0xA1, 0xFF]).unwrap().remove(0);
    let err = s.validate_tuple(&[1.into(), bad_utf8]).unwrap_err();
    assert!(matches!(err, TupleError::InvalidUtf8 { field_no: 2, .. }));
    let err = s
        .validate_tuple(&[1.into(), "a".into(), "c".into(), "x".into()])
        .unwrap_err();
    assert!(matches!(
        err,
        TupleError::FieldType {
            field_no: 4,
            expected: FieldType::Number,
            ..
        }
    ));
}

#[test]
fn extra_fields_only_when_allowed() {
    let def = SpaceDef::new()
        .field("id", FieldType::Uuid)
        .index(IndexDef::new("pk", ["id"]));
    let id = Uuid([9; 16]).to_value();
    let strict = SpaceSchema::new(def.clone()).unwrap();
    assert!(strict.validate_tuple(&[id.clone(), 1.into()]).is_err());
    let err = strict
        .validate_tuple(&[Value::Ext(2, vec![1; 15])])
        .unwrap_err();
    assert!(matches!(
        err,
        TupleError::FieldType {
            found: "an ext of type 2 that is not 16 bytes",
            ..
        }
    ));
    let loose = SpaceSchema::new(def.allow_extra_fields()).unwrap();
    loose.validate_tuple(&[id, 1.into(), "x".into()]).unwrap();
}

#[test]
fn bytes_that_are_not_one_array_are_refused() {
    assert!(matches!(
        decode_tuple(&[]),
        Err(TupleError::MalformedTuple { .. })
    ));
    assert!(matches!(
        decode_tuple(&[0x92, 0x01]),
        Err(TupleError::MalformedTuple { .. })
    ));
    assert!(matches!(
        decode_tuple(&[0x91, 0x01, 0x01]),
        Err(TupleError::MalformedTuple { .. })
    ));
    assert!(matches!(
        decode_tuple(&[0x05]),
        Err(TupleError::NotAnArray { found: "unsigned" })
    ));
    // A huge length prefix on a short input must not allocate the announced size.
    assert!(decode_tuple(&[0xDD, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
    // `depth` arrays, the innermost holding a string.
    let nested = |depth| {
        let mut bytes: Vec<u8> = std::iter::repeat_n(0x91, depth).collect();
        bytes.extend_from_slice(&[0xA1, b'x']);
        bytes
    };
    assert!(decode_tuple(&nested(MAX_TUPLE_DEPTH)).is_ok());
    assert!(decode_tuple(&nested(MAX_TUPLE_DEPTH + 2)).is_err());
    assert!(decode_tuple(&nested(100_000)).is_err());
    assert_eq!(
        decode_tuple(&encode_tuple(&[])).unwrap(),
        Vec::<Value>::new()
    );
    let long: Vec<Value> = (0..70_000u32).map(Value::from).collect();
    assert_eq!(decode_tuple(&encode_tuple(&long)).unwrap(), long);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    email: String,
    city: Option<String>,
    score: Option<f64>,
    #[serde(with = "serde_bytes")]
    extra: Vec<u8>,
}

#[test]
fn typed_structs_are_tuples() {
    let user = User {
        id: 7,
        email: "e".into(),
        city: None,
        score: Some(2.5),
        extra: vec![0, 1],
    };
    let bytes = to_tuple(&user).unwrap();
    assert_eq!(
        bytes[0], 0x95,
        "a struct encodes as an array of its 5 fields"
    );
    let fields = users().decode_tuple(&bytes).unwrap();
    assert_eq!(fields[2], Value::Nil);
    assert_eq!(fields[4], Value::Binary(vec![0, 1]));
    assert_eq!(from_tuple::<User>(&bytes).unwrap(), user);
    assert_eq!(
        from_fields::<User>(&to_fields(&user).unwrap()).unwrap(),
        user
    );
    // Named encoding makes a map, which is not a tuple.
    let named = rmp_serde::to_vec_named(&user).unwrap();
    assert!(matches!(
        decode_tuple(&named),
        Err(TupleError::NotAnArray { found: "map" })
    ));
    assert!(matches!(
        to_tuple(&5u8),
        Err(TupleError::NotAnArray { found: "unsigned" })
    ));
    assert!(matches!(
        from_tuple::<User>(&[0x91, 0x01]),
        Err(TupleError::Serde { .. })
    ));
    // Rust tuples are tuples too; `Uuid` is ext type 2.
    let id = Uuid([3; 16]);
    let fields = to_fields(&(id, 1u8)).unwrap();
    assert_eq!(fields[0], Value::Ext(2, vec![3; 16]));
    assert_eq!(from_fields::<(Uuid, u8)>(&fields).unwrap(), (id, 1));
    assert!(from_fields::<(Uuid,)>(&[Value::Ext(3, vec![3; 16])]).is_err());
    assert!(from_fields::<(Uuid,)>(&[Value::Ext(2, vec![3; 15])]).is_err());
}

#[test]
fn entries_are_secondary_key_then_primary_key() {
    let s = users();
    let fields = vec![
        Value::from(5),
        "e@x".into(),
        "paris".into(),
        2.into(),
        "x".into(),
    ];
    let pk = s.key(0, &fields).unwrap();
    assert_eq!(
        pk,
        key::encode_key(&[FieldType::Unsigned], &[KeyPart::Unsigned(5)]).unwrap()
    );
    let primary = s.entry(0, &fields).unwrap();
    assert_eq!(
        primary,
        IndexEntry {
            key: pk.clone(),
            value: vec![],
            key_has_null: false
        }
    );
    let email = s.entry(1, &fields).unwrap();
    assert_eq!(email.key, [s.key(1, &fields).unwrap(), pk.clone()].concat());
    assert!(
        email.value.is_empty(),
        "an index without covering fields stores nothing"
    );
    let city = s.entry(2, &fields).unwrap();
    assert_eq!(city.value, encode_tuple(&["x".into()]));
    let (own, rest) = s.split_entry_key(2, &city.key).unwrap();
    assert_eq!(own, s.key(2, &fields).unwrap());
    assert_eq!(rest, pk);
    assert_eq!(
        s.covered_fields(2, &city.key, &city.value).unwrap(),
        vec![
            (0, Value::from(5)),
            (2, "paris".into()),
            // A whole number in a number part decodes as a float.
            (3, Value::F64(2.0)),
            (4, "x".into()),
        ]
    );
    assert!(s.covers(2, &[0, 2, 3, 4]));
    assert!(!s.covers(2, &[1]));
    assert!(s.covers(0, &[1]));
    assert!(!s.covers(9, &[]));
    // Trailing nullable fields that are missing read as null.
    let short = vec![Value::from(6), "f@x".into()];
    let entry = s.entry(2, &short).unwrap();
    assert!(entry.key_has_null);
    assert_eq!(
        s.covered_fields(2, &entry.key, &entry.value).unwrap()[3],
        (4, Value::Nil)
    );
    assert!(matches!(
        s.entry(3, &short),
        Err(TupleError::NoSuchIndex { index_no: 3 })
    ));
    assert!(matches!(
        s.key(1, &[6.into(), 7.into()]),
        Err(TupleError::FieldType { field_no: 2, .. })
    ));
    assert!(s.covered_fields(2, &entry.key, &encode_tuple(&[])).is_err());
}

#[test]
fn search_keys_are_checked_per_part() {
    let s = users();
    let full = s.search_key(2, &["paris".into(), 2.5.into()]).unwrap();
    let partial = s.search_key(2, &["paris".into()]).unwrap();
    assert!(full.starts_with(&partial));
    assert_eq!(s.search_key(2, &[]).unwrap(), Vec::<u8>::new());
    assert_eq!(s.search_key(2, &[Value::Nil]).unwrap(), vec![0x01]);
    let err = s
        .search_key(2, &["a".into(), 1.into(), 2.into()])
        .unwrap_err();
    assert!(matches!(
        err,
        TupleError::TooManyKeyParts {
            parts: 2,
            found: 3,
            ..
        }
    ));
    let err = s.search_key(2, &["a".into(), "b".into()]).unwrap_err();
    assert_eq!(
        err,
        TupleError::KeyPartType {
            index: "city".into(),
            part_no: 2,
            expected: FieldType::Number,
            found: "string"
        }
    );
    let err = s.search_key(0, &[Value::Nil]).unwrap_err();
    assert!(matches!(err, TupleError::NullKeyPart { part_no: 1, .. }));
    // The key of a stored tuple and the search key for its values are the same bytes.
    let fields = vec![Value::from(5), "e@x".into(), "paris".into(), 2.5.into()];
    assert_eq!(s.key(2, &fields).unwrap(), full);
}

proptest! {
    #[test]
    fn hostile_tuple_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let s = users();
        if let Ok(fields) = s.decode_tuple(&bytes) {
            for index_no in 0..3 {
                let entry = s.entry(index_no, &fields).unwrap();
                let covered = s.covered_fields(index_no, &entry.key, &entry.value).unwrap();
                prop_assert!(!covered.is_empty());
            }
        }
    }
}
