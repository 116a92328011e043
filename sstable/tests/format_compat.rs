//! Runs written by earlier builds stay readable. `testdata/v<N>/` holds files written by format
//! version N; this test opens, verifies and fully reads each one and compares it with the data it
//! was written from. Regenerate (only when adding a new format version's directory) with
//! `STRATA_WRITE_TESTDATA=1 cargo test -p strata-sstable --test format_compat`.

mod common;

use std::path::{Path, PathBuf};

use strata_sstable::{
    Compression, Entry, ReadOptions, Run, RunWriter, WriterOptions, FORMAT_VERSION,
};

fn testdata(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/v{version}"))
}

fn cases() -> Vec<(&'static str, Compression)> {
    vec![
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd { level: 3 }),
    ]
}

fn expected() -> Vec<Entry> {
    common::sample_entries(300)
}

#[test]
fn version_1_runs_still_read() {
    let dir = testdata(1);
    if std::env::var_os("STRATA_WRITE_TESTDATA").is_some() {
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (name, compression) in cases() {
            let path = dir.join(format!("sample-{name}.run"));
            let _ = std::fs::remove_file(&path);
            let options = WriterOptions {
                page_size: 512,
                restart_interval: 4,
                compression,
                ..WriterOptions::default()
            };
            let mut writer = RunWriter::create(&path, options).expect("create");
            for e in expected() {
                writer.add(&e.key, e.seqno, e.kind, &e.value).expect("add");
            }
            writer.finish().expect("finish");
        }
    }
    assert_eq!(
        FORMAT_VERSION, 1,
        "a new format version needs its own testdata directory and test"
    );
    for (name, compression) in cases() {
        let path = dir.join(format!("sample-{name}.run"));
        let run = Run::open(&path, ReadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(run.properties().format_version, 1);
        assert_eq!(run.properties().compression, Some(compression));
        assert!(run.pages().len() > 10);
        let report = run.verify();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        let entries: Vec<Entry> = run.iter().collect::<Result<_, _>>().expect("scan");
        assert_eq!(entries, expected(), "{name}: contents changed");
        for e in expected() {
            let mut found = false;
            run.get(&e.key, e.seqno, |v| {
                found = v.seqno == e.seqno && v.value == e.value;
                false
            })
            .expect("get");
            assert!(found, "{name}: lookup of {:?}@{}", e.key, e.seqno);
        }
    }
}
