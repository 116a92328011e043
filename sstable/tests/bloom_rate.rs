//! The bloom filter's measured false-positive rate matches its configuration.

mod common;

use strata_sstable::{key_fingerprint, Entry, EntryKind, WriterOptions};

#[test]
fn false_positive_rate_is_within_twice_the_configured_rate() {
    let n = 100_000u32;
    let entries: Vec<Entry> = (0..n)
        .map(|i| Entry::new(format!("present-{i:08}"), 1, EntryKind::Put, b""))
        .collect();
    for configured in [0.01, 0.05] {
        let options = WriterOptions {
            bloom_fp_rate: configured,
            ..WriterOptions::default()
        };
        let run = common::open_run(common::write_run(&entries, options)).expect("open");
        assert!(
            entries
                .iter()
                .all(|e| run.bloom_may_contain(key_fingerprint(&e.key))),
            "no false negatives"
        );
        let false_positives = (0..n)
            .filter(|i| run.bloom_may_contain(key_fingerprint(format!("absent-{i:08}").as_bytes())))
            .count();
        let measured = false_positives as f64 / f64::from(n);
        assert!(
            measured <= 2.0 * configured && measured >= configured / 2.0,
            "configured {configured}, measured {measured}"
        );
    }
}
