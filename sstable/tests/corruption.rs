//! Damaged run files: every bit flip and every truncation ends in a typed corruption error or in
//! results identical to the undamaged file, never a panic. Because every byte of a run is covered
//! by a checksum (or is the magic number), every damage must also be *detected*: by `open`, or by
//! `verify` when it lies in a data page.

mod common;

use strata_sstable::{Compression, Entry, Run, WriterOptions, MAX_SEQNO};

use common::{open_run, sample_entries, write_run};

/// The versions one point lookup returned: (seqno, value), newest first.
type Versions = Vec<(u64, Vec<u8>)>;

/// Everything a reader can observe: forward scan, reverse scan, and a point lookup per key.
#[derive(Debug, PartialEq)]
struct Observed {
    forward: Option<Vec<Entry>>,
    reverse: Option<Vec<Entry>>,
    lookups: Vec<Option<Versions>>,
}

fn check_error(context: &str, error: &strata_sstable::Error) {
    assert!(
        error.is_corruption(),
        "{context}: expected a corruption error, got {error}"
    );
}

/// Observes `run`; an operation that fails must fail with a corruption error and is recorded as
/// `None`.
fn observe(run: &Run, keys: &[Vec<u8>], context: &str) -> Observed {
    let forward = match run.iter().collect::<Result<Vec<_>, _>>() {
        Ok(v) => Some(v),
        Err(e) => {
            check_error(context, &e);
            None
        }
    };
    let reverse = match run.iter().rev().collect::<Result<Vec<_>, _>>() {
        Ok(v) => Some(v),
        Err(e) => {
            check_error(context, &e);
            None
        }
    };
    let lookups = keys
        .iter()
        .map(|key| {
            let mut versions = Vec::new();
            match run.get(key, MAX_SEQNO, |v| {
                versions.push((v.seqno, v.value.to_vec()));
                true
            }) {
                Ok(_) => Some(versions),
                Err(e) => {
                    check_error(context, &e);
                    None
                }
            }
        })
        .collect();
    Observed {
        forward,
        reverse,
        lookups,
    }
}

/// Each observed result is either the original one or an error.
fn assert_same_or_failed(original: &Observed, damaged: &Observed, context: &str) {
    if let Some(v) = &damaged.forward {
        assert_eq!(
            Some(v),
            original.forward.as_ref(),
            "{context}: forward scan silently differs"
        );
    }
    if let Some(v) = &damaged.reverse {
        assert_eq!(
            Some(v),
            original.reverse.as_ref(),
            "{context}: reverse scan silently differs"
        );
    }
    for (got, want) in damaged.lookups.iter().zip(&original.lookups) {
        if let Some(v) = got {
            assert_eq!(Some(v), want.as_ref(), "{context}: lookup silently differs");
        }
    }
}

fn sweep(compression: Compression) -> usize {
    let entries = sample_entries(90);
    let options = WriterOptions {
        page_size: 256,
        restart_interval: 4,
        compression,
        ..WriterOptions::default()
    };
    let bytes = write_run(&entries, options);
    let original_run = open_run(bytes.clone()).expect("open original");
    assert!(original_run.pages().len() >= 5, "want a multi-page run");
    let mut keys: Vec<Vec<u8>> = entries.iter().map(|e| e.key.to_vec()).collect();
    keys.dedup();
    keys.push(b"absent-key".to_vec());
    let original = observe(&original_run, &keys, "original");
    assert!(original.forward.is_some() && original.lookups.iter().all(Option::is_some));

    let mut cases = 0;
    for offset in 0..bytes.len() {
        for bit in [0u8, 7] {
            let mut damaged = bytes.clone();
            damaged[offset] ^= 1 << bit;
            let context = format!("{compression} flip bit {bit} at {offset}");
            match open_run(damaged) {
                Err(e) => check_error(&context, &e),
                Ok(run) => {
                    assert_same_or_failed(&original, &observe(&run, &keys, &context), &context);
                    let report = run.verify();
                    assert!(
                        !report.is_ok(),
                        "{context}: damage went undetected by open and verify"
                    );
                }
            }
            cases += 1;
        }
    }
    for len in 0..bytes.len() {
        let context = format!("{compression} truncated to {len}");
        match open_run(bytes[..len].to_vec()) {
            Err(e) => check_error(&context, &e),
            Ok(_) => panic!("{context}: a truncated run opened"),
        }
        cases += 1;
    }
    cases
}

#[test]
fn every_flip_and_truncation_is_detected_uncompressed() {
    assert!(sweep(Compression::None) > 1000);
}

#[test]
fn every_flip_and_truncation_is_detected_lz4() {
    assert!(sweep(Compression::Lz4) > 1000);
}

#[test]
fn every_flip_and_truncation_is_detected_zstd() {
    assert!(sweep(Compression::Zstd { level: 3 }) > 1000);
}
