//! `run_file`: the bytes as a whole run file.

use std::cmp::Ordering;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use strata::sstable::{compare_internal, ClockCache, Entry, ReadOptions, Run, RunIter};

use crate::fixup;

/// Entries a scan collects at most: bounds the work per input (a run's entries take at least 5
/// bytes each, so the bound is only reached by large inputs).
const MAX_ENTRIES: usize = 1 << 16;

/// Point lookups and seeks per opened run.
const MAX_PROBES: usize = 48;

/// Body of the `run_file` target; see [`crate::run_file`].
pub(crate) fn run(data: &[u8]) {
    exercise(data.to_vec());
    // The same bytes with every checksum the footer and the index locate made valid again, so
    // mutations reach the index, bloom, properties and page decoders.
    let Some(mut repaired) = fixup::run_metadata(data) else {
        return;
    };
    if let Ok(run) = open(repaired.clone(), false) {
        let pages = run.pages().to_vec();
        drop(run);
        fixup::run_pages(&mut repaired, &pages);
    }
    if repaired != data {
        exercise(repaired);
    }
}

fn open(bytes: Vec<u8>, cached: bool) -> strata::sstable::Result<Run> {
    let mut options = ReadOptions::default();
    if cached {
        options.cache = Arc::new(ClockCache::new(1 << 20));
    }
    Run::open_with(Path::new("fuzz.run"), Box::new(bytes), options)
}

fn exercise(bytes: Vec<u8>) {
    // Without a cache every read decodes and validates its page; through a cache, repeated reads
    // take the cached-page path (`Page::parse_trusted`), which must be just as safe.
    for cached in [false, true] {
        let Ok(run) = open(bytes.clone(), cached) else {
            return;
        };
        check(&run);
    }
}

fn scan(iter: impl Iterator<Item = strata::sstable::Result<Entry>>) -> Result<Vec<Entry>, ()> {
    let mut out = Vec::new();
    for item in iter.take(MAX_ENTRIES) {
        out.push(item.map_err(|_| ())?);
    }
    Ok(out)
}

/// Keys to probe: those seen (or, when nothing decodes, the page index's first keys) and a few
/// synthetic ones around them.
fn probe_keys(run: &Run, seen: &[Entry]) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = seen
        .iter()
        .step_by((seen.len() / MAX_PROBES).max(1))
        .map(|e| e.key.to_vec())
        .collect();
    if keys.is_empty() {
        keys = run
            .pages()
            .iter()
            .take(MAX_PROBES)
            .map(|p| p.first_key.to_vec())
            .collect();
    }
    let props = run.properties();
    let mut synthetic = vec![
        Vec::new(),
        vec![0xff; 4],
        props.min_key.clone(),
        props.max_key.clone(),
    ];
    for key in keys.iter().take(8) {
        let mut after = key.clone();
        after.push(0);
        synthetic.push(after);
        if let Some((_, prefix)) = key.split_last() {
            synthetic.push(prefix.to_vec());
        }
    }
    keys.extend(synthetic);
    keys.truncate(2 * MAX_PROBES);
    keys
}

fn check(run: &Run) {
    let forward = scan(run.iter());
    let backward = scan(run.iter().rev());
    let report = run.verify();
    if let (Ok(f), Ok(b)) = (&forward, &backward) {
        if f.len() < MAX_ENTRIES && b.len() < MAX_ENTRIES {
            assert!(
                f.iter().eq(b.iter().rev()),
                "forward and backward scans of the same run disagree ({} vs {} entries)",
                f.len(),
                b.len()
            );
        }
    }
    let seen: &[Entry] = match (&forward, &backward) {
        (Ok(f), _) => f,
        (_, Ok(b)) => b,
        _ => &[],
    };
    let keys = probe_keys(run, seen);
    if report.is_ok() {
        check_sound(run, forward, &keys);
    } else {
        // Damaged: lookups, seeks and bounded scans must still end in Ok or an error.
        for key in &keys {
            let _ = run.get(key, u64::MAX, |_| true);
            let mut it = RunIter::new(run, Bound::Included(key), Bound::Unbounded);
            let _ = it.seek(key);
            let _ = it.prev();
            let _ = it.seek_for_prev(key);
            let _ = it.next();
            let _ = scan(run.range(Bound::Excluded(key), Bound::Unbounded).rev());
        }
    }
}

/// `verify` found nothing wrong, so every read must succeed and agree with the scan.
fn check_sound(run: &Run, forward: Result<Vec<Entry>, ()>, keys: &[Vec<u8>]) {
    let Ok(entries) = forward else {
        panic!("verify() passed but a forward scan failed");
    };
    if entries.len() == MAX_ENTRIES {
        return;
    }
    assert_eq!(
        entries.len() as u64,
        run.properties().entries,
        "a verified run scans to a different number of entries than its properties say"
    );
    assert!(
        entries
            .windows(2)
            .all(|w| w[0].cmp_internal(&w[1]) == Ordering::Less),
        "a verified run scans out of internal order"
    );
    for key in keys {
        for read_seqno in [u64::MAX, 0, 1 << 20] {
            let mut visited = Vec::new();
            run.get(key, read_seqno, |v| {
                visited.push((v.seqno, v.kind, v.value));
                true
            })
            .unwrap_or_else(|e| panic!("lookup in a verified run failed: {e}"));
            let expected: Vec<_> = entries
                .iter()
                .filter(|e| e.key.as_ref() == key.as_slice() && e.seqno <= read_seqno)
                .map(|e| (e.seqno, e.kind, e.value.clone()))
                .collect();
            assert_eq!(
                visited, expected,
                "lookup at seqno {read_seqno} disagrees with the scan"
            );
        }
        let mut it = RunIter::new(run, Bound::Unbounded, Bound::Unbounded);
        it.seek(key)
            .unwrap_or_else(|e| panic!("seek in a verified run failed: {e}"));
        let want = entries
            .iter()
            .find(|e| compare_internal(&e.key, e.seqno, key, u64::MAX) != Ordering::Less);
        assert_eq!(
            it.valid().then(|| (it.key().to_vec(), it.seqno())),
            want.map(|e| (e.key.to_vec(), e.seqno)),
            "seek disagrees with the scan"
        );
        it.seek_for_prev(key)
            .unwrap_or_else(|e| panic!("seek_for_prev in a verified run failed: {e}"));
        let want = entries
            .iter()
            .rev()
            .find(|e| compare_internal(&e.key, e.seqno, key, 0) != Ordering::Greater);
        assert_eq!(
            it.valid().then(|| (it.key().to_vec(), it.seqno())),
            want.map(|e| (e.key.to_vec(), e.seqno)),
            "seek_for_prev disagrees with the scan"
        );
    }
    // Bounded ranges in both directions.
    for pair in keys.windows(2).take(8) {
        let (lo, hi) = (&pair[0], &pair[1]);
        let bounds = (
            Bound::Included(lo.as_slice()),
            Bound::Excluded(hi.as_slice()),
        );
        let want: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.key.as_ref() >= lo.as_slice() && e.key.as_ref() < hi.as_slice())
            .collect();
        let got = scan(run.range(bounds.0, bounds.1))
            .unwrap_or_else(|()| panic!("range scan of a verified run failed"));
        assert!(got.iter().eq(want.iter().copied()), "range scan disagrees");
        let got = scan(run.range(bounds.0, bounds.1).rev())
            .unwrap_or_else(|()| panic!("reverse range scan of a verified run failed"));
        assert!(
            got.iter().eq(want.iter().rev().copied()),
            "reverse range scan disagrees"
        );
    }
}
