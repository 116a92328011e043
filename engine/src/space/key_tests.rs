//! Tests of the key encoding: examples, then properties (typed order == byte order, round trips,
//! canonical form, hostile bytes).

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

const INDEXABLE: [FieldType; 7] = [
    FieldType::Unsigned,
    FieldType::Integer,
    FieldType::Number,
    FieldType::String,
    FieldType::Boolean,
    FieldType::Varbinary,
    FieldType::Uuid,
];

fn enc(ty: FieldType, part: &KeyPart) -> Vec<u8> {
    let mut out = Vec::new();
    encode_part(&mut out, ty, part).unwrap();
    out
}

#[test]
fn examples_are_encoded_as_documented() {
    use KeyPart::*;
    assert_eq!(enc(FieldType::Unsigned, &Null), [0x01]);
    assert_eq!(enc(FieldType::Boolean, &Boolean(true)), [0x11]);
    assert_eq!(enc(FieldType::Unsigned, &Unsigned(0)), [0x28]);
    assert_eq!(enc(FieldType::Unsigned, &Unsigned(1)), [0x29, 0x01]);
    assert_eq!(enc(FieldType::Integer, &Unsigned(300)), [0x2A, 0x01, 0x2C]);
    assert_eq!(enc(FieldType::Integer, &Integer(-1)), [0x27, 0xFE]);
    assert_eq!(enc(FieldType::Integer, &Integer(-256)), [0x26, 0xFE, 0xFF]);
    assert_eq!(
        enc(FieldType::Integer, &Integer(i64::MIN))[..2],
        [0x20, 0x7F]
    );
    assert_eq!(
        enc(FieldType::Unsigned, &Unsigned(u64::MAX)),
        [&[0x30][..], &[0xFF; 8]].concat()
    );
    assert_eq!(enc(FieldType::Number, &Number(f64::NAN)), [0x38]);
    assert_eq!(
        enc(FieldType::Number, &Number(1.0)),
        [0x39, 0xBF, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        enc(FieldType::Number, &Unsigned(1)),
        enc(FieldType::Number, &Number(1.0))
    );
    assert_eq!(
        enc(FieldType::Number, &Number(-0.0)),
        enc(FieldType::Number, &Number(0.0))
    );
    // 2^53 + 1 is not an f64: floor 2^53, remainder 1.
    let big = enc(FieldType::Number, &Unsigned((1 << 53) + 1));
    assert_eq!(big[9..], [0, 1]);
    assert_eq!(
        big[..9],
        enc(FieldType::Number, &Number(9007199254740992.0))[..9]
    );
    assert_eq!(
        enc(FieldType::String, &String("a\0b".into())),
        [0x50, b'a', 0, 0xFF, b'b', 0, 1]
    );
    assert_eq!(enc(FieldType::Varbinary, &Varbinary(vec![])), [0x60, 0, 1]);
    assert_eq!(
        enc(FieldType::Uuid, &Uuid([7; 16])),
        [&[0x70][..], &[7; 16]].concat()
    );
}

#[test]
fn parts_of_the_wrong_type_are_refused() {
    use KeyPart::*;
    let mut out = Vec::new();
    let cases: [(FieldType, KeyPart, &str); 6] = [
        (FieldType::Unsigned, Integer(-1), "a negative integer"),
        (FieldType::Unsigned, Number(1.0), "number"),
        (FieldType::Integer, Number(1.0), "number"),
        (FieldType::String, Varbinary(vec![]), "varbinary"),
        (FieldType::Uuid, String("x".into()), "string"),
        (FieldType::Any, Unsigned(1), "a part of an unindexable type"),
    ];
    for (ty, part, found) in cases {
        assert_eq!(
            encode_part(&mut out, ty, &part),
            Err(PartTypeMismatch {
                expected: ty,
                found
            }),
            "{ty} {part:?}"
        );
        assert!(out.is_empty(), "a refused part writes nothing");
    }
    let err = encode_key(
        &[FieldType::String],
        &[String("a".into()), String("b".into())],
    );
    assert!(matches!(
        err,
        Err(TupleError::TooManyKeyParts {
            parts: 1,
            found: 2,
            ..
        })
    ));
    let err = encode_key(
        &[FieldType::String, FieldType::Unsigned],
        &[Null, Boolean(true)],
    );
    assert!(matches!(
        err,
        Err(TupleError::KeyPartType { part_no: 2, .. })
    ));
}

#[test]
fn numbers_compare_exactly_across_integers_and_floats() {
    use KeyPart::*;
    let ascending = [
        Null,
        Number(f64::NAN),
        Number(f64::NEG_INFINITY),
        Number(-1e300),
        Integer(i64::MIN),
        Integer(-(1 << 53) - 1),
        Number(-9007199254740992.0),
        Integer(-1),
        Number(-0.5),
        Number(0.0),
        Number(1e-300),
        Unsigned(1),
        Number(1.5),
        Number(9007199254740992.0),
        Unsigned((1 << 53) + 1),
        Number(9007199254740994.0),
        Unsigned(u64::MAX - 1),
        Unsigned(u64::MAX),
        Number(18446744073709551616.0),
        Number(f64::INFINITY),
    ];
    for pair in ascending.windows(2) {
        assert_eq!(
            compare_parts(&pair[0], &pair[1]),
            Ordering::Less,
            "{pair:?}"
        );
        assert!(
            enc(FieldType::Number, &pair[0]) < enc(FieldType::Number, &pair[1]),
            "{pair:?}"
        );
    }
    assert_eq!(compare_parts(&Unsigned(0), &Number(-0.0)), Ordering::Equal);
}

#[test]
fn hostile_bytes_are_errors() {
    // An empty key is the empty partial key, not an error.
    assert_eq!(decode_key(&[FieldType::Unsigned], &[]), Ok(vec![]));
    let cases: [(FieldType, &[u8]); 13] = [
        (FieldType::Unsigned, &[0x00]),
        (FieldType::Unsigned, &[0x29]),
        (FieldType::Unsigned, &[0x29, 0x00]),
        (FieldType::Unsigned, &[0x27, 0xFE]),
        (FieldType::Integer, &[0x27, 0xFF]),
        (FieldType::Integer, &[0x20, 0x7F, 0, 0, 0, 0, 0, 0, 0x00]),
        (FieldType::Number, &[0x39, 0xFF]),
        (
            FieldType::Number,
            &[0x39, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
        ),
        (
            FieldType::Number,
            &[0x39, 0xBF, 0xF0, 0, 0, 0, 0, 0, 0, 0, 1],
        ),
        (FieldType::String, &[0x50, b'a']),
        (FieldType::String, &[0x50, 0x00, 0x02]),
        (FieldType::String, &[0x50, 0xC3, 0x00, 0x01]),
        (FieldType::Varbinary, &[0x50, 0x00, 0x01]),
    ];
    for (ty, bytes) in cases {
        assert!(
            matches!(
                decode_key(&[ty], bytes),
                Err(TupleError::MalformedKey { .. })
            ),
            "{ty} {bytes:x?} should not decode"
        );
    }
    // Negative zero has a float encoding, but the encoder never writes it.
    let mut negative_zero = vec![TAG_NUMBER];
    negative_zero.extend_from_slice(&ordered_bits(-0.0).to_be_bytes());
    negative_zero.extend_from_slice(&[0, 0]);
    assert!(decode_key(&[FieldType::Number], &negative_zero).is_err());
    assert!(
        decode_key(&[FieldType::Unsigned], &[0x28, 0x28]).is_err(),
        "trailing part"
    );
    assert!(parts_len(&[FieldType::Unsigned, FieldType::Unsigned], &[0x28]).is_err());
}

#[test]
fn bounds_and_successors() {
    assert_eq!(successor(b"ab"), b"ab\0");
    assert_eq!(prefix_upper_bound(b"a\xFF\xFF"), Some(b"b".to_vec()));
    assert_eq!(prefix_upper_bound(b"\xFF"), None);
    assert_eq!(prefix_upper_bound(b""), None);
    let key = encode_key(&[FieldType::Unsigned], &[KeyPart::Unsigned(5)]).unwrap();
    let range = KeyRange::new(IteratorType::Gt, &key);
    assert!(!range.contains(&key));
    assert!(range.contains(&successor(&prefix_upper_bound(&key).unwrap())));
    let all = KeyRange::new(IteratorType::Lt, &[]);
    assert_eq!(
        all,
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            reverse: true
        }
    );
    let page = KeyRange::new(IteratorType::Ge, &key).after(b"\x29\x07");
    assert!(!page.contains(b"\x29\x07"));
    assert!(page.contains(b"\x29\x08"));
    let page = KeyRange::new(IteratorType::Le, &key).after(b"\x29\x03");
    assert!(page.contains(b"\x29\x02"));
    assert!(!page.contains(b"\x29\x04"));
}

// ------------------------------------------------------------------------------ properties

/// Floats that stress the encoding: boundaries of exact integers and of the integer range.
fn special_float() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![
        0.0,
        -0.0,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        f64::EPSILON,
        f64::MAX,
        f64::MIN,
        9007199254740992.0,
        9007199254740994.0,
        -9007199254740992.0,
        TWO_POW_63,
        -TWO_POW_63,
        TWO_POW_64,
        TWO_POW_64.next_down(),
        1.0,
        -1.0,
        0.5,
    ])
}

fn special_integer() -> impl Strategy<Value = i128> {
    let pivots: [i128; 8] = [
        0,
        1 << 53,
        -(1 << 53),
        1 << 63,
        -(1 << 63),
        1 << 64,
        256,
        1 << 62,
    ];
    (prop::sample::select(pivots.to_vec()), -3i128..=3)
        .prop_map(|(p, d)| (p + d).clamp(-(1 << 63), (1 << 64) - 1))
}

fn integer_in_range() -> impl Strategy<Value = i128> {
    prop_oneof![
        special_integer(),
        any::<u64>().prop_map(i128::from),
        any::<i64>().prop_map(i128::from),
        (-300i128..300),
    ]
}

/// A value of a type: null, something from a small pool (so keys collide), or anything.
fn part_of(ty: FieldType) -> BoxedStrategy<KeyPart> {
    let value: BoxedStrategy<KeyPart> = match ty {
        FieldType::Unsigned => prop_oneof![
            (0u64..4).prop_map(KeyPart::Unsigned),
            integer_in_range().prop_map(|i| integer_part(i.max(0))),
        ]
        .boxed(),
        FieldType::Integer => prop_oneof![
            (-2i64..2).prop_map(|i| integer_part(i128::from(i))),
            integer_in_range().prop_map(integer_part),
            any::<i64>().prop_map(KeyPart::Integer),
        ]
        .boxed(),
        FieldType::Number => prop_oneof![
            integer_in_range().prop_map(integer_part),
            special_float().prop_map(KeyPart::Number),
            any::<f64>().prop_map(KeyPart::Number),
            (-4i32..4).prop_map(|i| KeyPart::Number(f64::from(i) / 2.0)),
        ]
        .boxed(),
        FieldType::String => prop_oneof![
            prop::sample::select(vec!["", "a", "a\0", "a\0b", "ab", "\u{ff}"])
                .prop_map(|s| KeyPart::String(s.to_owned())),
            ".{0,6}".prop_map(KeyPart::String),
            vec(
                prop::sample::select(vec!['\0', '\u{1}', 'a', '\u{ff}']),
                0..5
            )
            .prop_map(|c| KeyPart::String(c.into_iter().collect())),
        ]
        .boxed(),
        FieldType::Varbinary => vec(prop::sample::select(vec![0u8, 1, 2, 0xFE, 0xFF]), 0..6)
            .prop_map(KeyPart::Varbinary)
            .boxed(),
        FieldType::Boolean => any::<bool>().prop_map(KeyPart::Boolean).boxed(),
        FieldType::Uuid => prop_oneof![
            prop::sample::select(vec![[0u8; 16], [0xFF; 16], [1; 16]]).prop_map(KeyPart::Uuid),
            any::<[u8; 16]>().prop_map(KeyPart::Uuid),
        ]
        .boxed(),
        FieldType::Any => unreachable!("not indexable"),
    };
    prop_oneof![1 => Just(KeyPart::Null), 6 => value].boxed()
}

fn field_type() -> impl Strategy<Value = FieldType> {
    prop::sample::select(INDEXABLE.to_vec())
}

/// A list of types and two keys over them (possibly partial) that often share leading parts.
fn two_keys() -> impl Strategy<Value = (Vec<FieldType>, Vec<KeyPart>, Vec<KeyPart>)> {
    vec(field_type(), 1..4)
        .prop_flat_map(|types| {
            let n = types.len();
            let key = |types: &[FieldType]| types.iter().map(|&t| part_of(t)).collect::<Vec<_>>();
            (
                Just(types.clone()),
                key(&types),
                key(&types),
                0..=n,
                0..=n,
                0..=n,
            )
        })
        .prop_map(|(types, a, mut b, shared, len_a, len_b)| {
            // Copy a prefix of `a` into `b` so deeper parts get compared too.
            b[..shared].clone_from_slice(&a[..shared]);
            let (mut a, mut b) = (a, b);
            a.truncate(len_a);
            b.truncate(len_b.max(shared.min(len_a)));
            (types, a, b)
        })
}

/// Whether `decoded` is what decoding `original` should give back.
fn same_value(ty: FieldType, original: &KeyPart, decoded: &KeyPart) -> bool {
    match ty {
        // Whole numbers lose the integer/float distinction.
        FieldType::Number => compare_parts(original, decoded) == Ordering::Equal,
        // Non-negative integers come back as `Unsigned`, negative ones as `Integer`.
        FieldType::Integer | FieldType::Unsigned => {
            compare_parts(original, decoded) == Ordering::Equal
                && match decoded {
                    KeyPart::Integer(i) => *i < 0,
                    _ => true,
                }
        }
        _ => original == decoded,
    }
}

proptest! {
    #[test]
    fn single_part_byte_order_is_typed_order(
        (ty, a, b) in field_type().prop_flat_map(|t| (Just(t), part_of(t), part_of(t)))
    ) {
        let (ea, eb) = (enc(ty, &a), enc(ty, &b));
        prop_assert_eq!(compare_parts(&a, &b), ea.cmp(&eb), "{:?} vs {:?}: {:x?} {:x?}", a, b, ea, eb);
    }

    #[test]
    fn multi_part_byte_order_is_typed_order((types, a, b) in two_keys()) {
        let ea = encode_key(&types, &a).unwrap();
        let eb = encode_key(&types, &b).unwrap();
        prop_assert_eq!(compare_keys(&a, &b), ea.cmp(&eb), "{:?} vs {:?}", a, b);
        // A partial key is a byte prefix of the full key.
        for k in 0..=a.len() {
            prop_assert!(ea.starts_with(&encode_key(&types, &a[..k]).unwrap()));
        }
    }

    #[test]
    fn decode_inverts_encode((types, a, _b) in two_keys()) {
        let bytes = encode_key(&types, &a).unwrap();
        let decoded = decode_key(&types, &bytes).unwrap();
        prop_assert_eq!(decoded.len(), a.len());
        for ((ty, x), y) in types.iter().zip(&a).zip(&decoded) {
            prop_assert!(same_value(*ty, x, y), "{:?} decoded as {:?}", x, y);
        }
        prop_assert_eq!(encode_key(&types, &decoded).unwrap(), bytes.clone());
        if a.len() == types.len() {
            prop_assert_eq!(parts_len(&types, &bytes).unwrap(), bytes.len());
        }
        // Splitting a concatenation (secondary key ++ primary key) finds the seam.
        let mut entry = bytes.clone();
        entry.extend_from_slice(&[0x28]);
        if a.len() == types.len() {
            prop_assert_eq!(parts_len(&types, &entry).unwrap(), bytes.len());
        }
    }

    #[test]
    fn hostile_bytes_never_panic_and_what_decodes_is_canonical(
        types in vec(field_type(), 1..4),
        bytes in prop_oneof![
            vec(any::<u8>(), 0..24),
            vec(prop::sample::select(vec![0u8, 1, 0x10, 0x20, 0x27, 0x28, 0x29, 0x30, 0x38, 0x39,
                0x50, 0x60, 0x70, 0x7F, 0x80, 0xBF, 0xF0, 0xFE, 0xFF]), 0..24),
        ],
    ) {
        if let Ok(parts) = decode_key(&types, &bytes) {
            prop_assert_eq!(encode_key(&types, &parts).unwrap(), bytes.clone());
        }
        if let Ok(len) = parts_len(&types, &bytes) {
            prop_assert!(len <= bytes.len());
        }
    }

    #[test]
    fn mutated_keys_never_panic_and_what_decodes_is_canonical(
        (types, a, _b) in two_keys(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_key(&types, &a).unwrap();
        if bytes.is_empty() {
            return Ok(());
        }
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(parts) = decode_key(&types, &bytes) {
            prop_assert_eq!(encode_key(&types, &parts).unwrap(), bytes.clone());
        }
        let _ = parts_len(&types, &bytes);
    }

    #[test]
    fn key_ranges_select_what_the_iterator_means(
        (types, search, _b) in two_keys(),
        stored in vec(two_keys(), 0..12),
        iterator in prop::sample::select(vec![IteratorType::Eq, IteratorType::Req,
            IteratorType::All, IteratorType::Ge, IteratorType::Gt, IteratorType::Le,
            IteratorType::Lt]),
    ) {
        // Full stored keys over `types`: take parts from the generated keys where types agree.
        let full: Vec<Vec<KeyPart>> = stored
            .into_iter()
            .map(|(t, a, _)| {
                types.iter().enumerate().map(|(i, ty)| match (t.get(i), a.get(i)) {
                    (Some(u), Some(p)) if u == ty => p.clone(),
                    _ if i < search.len() => search[i].clone(),
                    _ => KeyPart::Null,
                }).collect()
            })
            .collect();
        let range = KeyRange::new(iterator, &encode_key(&types, &search).unwrap());
        prop_assert_eq!(range.reverse, iterator.is_reverse());
        for key in &full {
            let head = compare_keys(&key[..search.len()], &search);
            let expected = search.is_empty() || match iterator {
                IteratorType::Eq | IteratorType::Req => head == Ordering::Equal,
                IteratorType::All => true,
                IteratorType::Ge => head != Ordering::Less,
                IteratorType::Gt => head == Ordering::Greater,
                IteratorType::Le => head != Ordering::Greater,
                IteratorType::Lt => head == Ordering::Less,
            };
            let bytes = encode_key(&types, key).unwrap();
            prop_assert_eq!(range.contains(&bytes), expected, "{:?} {:?} {:?}", iterator, search, key);
        }
    }
}
