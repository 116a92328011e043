//! Helpers shared by the sstable integration tests.
#![allow(dead_code)]

use std::path::Path;

use strata_sstable::{Entry, EntryKind, ReadOptions, Run, RunWriter, WriterOptions};

/// Writes `entries` (already in internal order) into an in-memory run and returns its bytes.
pub fn write_run(entries: &[Entry], options: WriterOptions) -> Vec<u8> {
    let mut writer = RunWriter::new(Path::new("mem.run"), Vec::new(), options).expect("options");
    for e in entries {
        writer.add(&e.key, e.seqno, e.kind, &e.value).expect("add");
    }
    writer.finish_with_file().expect("finish").1
}

/// Opens run bytes held in memory.
pub fn open_run(bytes: Vec<u8>) -> strata_sstable::Result<Run> {
    Run::open_with(
        Path::new("mem.run"),
        Box::new(bytes),
        ReadOptions::default(),
    )
}

/// A deterministic multi-page, multi-version data set.
pub fn sample_entries(n: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("key-{:05}", i / 3);
        let seqno = 1000 - (i % 3) as u64;
        let kind = match i % 5 {
            0 => EntryKind::Delete,
            1 => EntryKind::Merge,
            _ => EntryKind::Put,
        };
        let value = if kind == EntryKind::Delete {
            String::new()
        } else {
            format!("value-{i}-{}", "x".repeat(i % 40))
        };
        out.push(Entry::new(key, seqno, kind, value));
    }
    out
}
