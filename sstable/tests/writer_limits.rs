//! The writer refuses bad input with typed errors and stays usable.

use std::path::Path;

use strata_sstable::{EntryKind, Error, RunWriter, WriterOptions, MAX_KEY_LEN, MAX_SEQNO};

fn writer(options: WriterOptions) -> RunWriter<Vec<u8>> {
    RunWriter::new(Path::new("limits.run"), Vec::new(), options).expect("options")
}

#[test]
fn oversized_keys_values_and_seqnos_are_errors() {
    let mut w = writer(WriterOptions {
        max_value_len: 10,
        ..WriterOptions::default()
    });
    assert!(matches!(
        w.add(&vec![0; MAX_KEY_LEN + 1], 1, EntryKind::Put, b""),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        w.add(b"k", 1, EntryKind::Put, &[0; 11]),
        Err(Error::ValueTooLarge { len: 11, max: 10 })
    ));
    assert!(matches!(
        w.add(b"k", MAX_SEQNO + 1, EntryKind::Put, b""),
        Err(Error::SeqnoOutOfRange { .. })
    ));
    // The largest legal key and value still go in after the refusals.
    w.add(&vec![1; MAX_KEY_LEN], MAX_SEQNO, EntryKind::Put, &[0; 10])
        .expect("limits are inclusive");
    assert_eq!(w.finish().expect("finish").entries, 1);
}

#[test]
fn out_of_order_and_duplicate_entries_are_errors() {
    let mut w = writer(WriterOptions::default());
    w.add(b"b", 5, EntryKind::Put, b"").expect("first");
    assert!(matches!(
        w.add(b"a", 9, EntryKind::Put, b""),
        Err(Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        w.add(b"b", 5, EntryKind::Put, b""),
        Err(Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        w.add(b"b", 6, EntryKind::Put, b""),
        Err(Error::OutOfOrder { .. })
    ));
    w.add(b"b", 4, EntryKind::Delete, b"")
        .expect("older version of the same key");
    w.add(b"c", 9, EntryKind::Merge, b"+1").expect("next key");
    let props = w.finish().expect("finish");
    assert_eq!(
        (
            props.entries,
            props.distinct_keys,
            props.deletes,
            props.merges
        ),
        (3, 2, 1, 1)
    );
}

#[test]
fn bad_options_are_errors() {
    for options in [
        WriterOptions {
            page_size: 10,
            ..WriterOptions::default()
        },
        WriterOptions {
            restart_interval: 0,
            ..WriterOptions::default()
        },
        WriterOptions {
            bloom_fp_rate: 0.0,
            ..WriterOptions::default()
        },
        WriterOptions {
            compression: strata_sstable::Compression::Zstd { level: 99 },
            ..WriterOptions::default()
        },
    ] {
        assert!(matches!(
            RunWriter::new(Path::new("x"), Vec::new(), options),
            Err(Error::InvalidOption(_))
        ));
    }
}

#[test]
fn an_empty_run_is_valid() {
    let bytes = writer(WriterOptions::default())
        .finish_with_file()
        .expect("finish")
        .1;
    let run = strata_sstable::Run::open_with(Path::new("e"), Box::new(bytes), Default::default())
        .expect("open");
    assert_eq!(run.iter().count(), 0);
    assert!(run.verify().is_ok());
    assert!(!run.key_in_range(b""));
}
