//! Checking what the database holds against the expected state: the whole database at
//! start-up (after a crash), and each read the workload makes while it runs.
//!
//! # Start-up
//!
//! Every keyspace is scanned forwards and backwards and every key is looked up (scan, reverse
//! scan and point lookups must agree, and only keys the test writes may exist). Then:
//!
//! - an open batch record: after a crash during its commit all its keys hold their old states or
//!   all hold their new states; once acknowledged, all hold the new ones;
//! - a key with a write in flight holds the old or the new state, the new one if the write was
//!   acknowledged (`current == pending`);
//! - every other key holds exactly its current state.
//!
//! Counters (the upsert keyspace) are checked the same way with totals for states: an upsert in
//! flight left the old total or the old total plus its delta, an acknowledged one the new total,
//! a counter with none in flight exactly its total; inside a batch or transaction record, all
//! old or all new together with the record's other keys.
//!
//! Those are the *strong* checks, which hold after a process kill in `Write` and `Fsync` mode and
//! after a clean close in any mode. After a kill in `None` mode the engine promises only what
//! was dumped, so the *weak* checks apply: every key is absent or holds a value of a generation
//! that was written to it (no garbage, nothing from the future), every counter a total between
//! 0 and the highest it was given (deltas are positive), and batches are not checked.
//!
//! Nothing is changed until every check passed; then the expected state is settled to what was
//! found (pending marks resolved, batch records cleared), each change crash-safe on its own, so
//! a kill during settling leaves a state the next start-up verifies the same way.

use std::collections::BTreeMap;
use std::fmt;

use strata::{Bytes, Keyspace};

use super::expected::{BatchStatus, ExpectedState};
use super::model::{
    counter_total, key_name, keyspace_block, missing_key_name, parse_key, KeyState,
};
use super::StressError;

/// A key that does not hold what it must.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The key index (`u64::MAX` when the key is not one the test writes).
    pub key: u64,
    /// What was checked.
    pub what: String,
    /// What the key had to hold.
    pub expected: String,
    /// What the database returned.
    pub found: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key == u64::MAX {
            "-".to_string()
        } else {
            String::from_utf8_lossy(&key_name(self.key)).into_owned()
        };
        write!(
            f,
            "key {key}: {}: expected {}, found {}",
            self.what, self.expected, self.found
        )
    }
}

/// What a read returned, described for a failure message.
pub fn describe_found(key: u64, value: Option<&[u8]>) -> String {
    match value {
        None => "absent".into(),
        Some(v) => match KeyState::found(key, Some(v), 0) {
            Ok(state) => state.to_string(),
            Err(garbage) => garbage,
        },
    }
}

/// What a read of counter slot `slot` returned, described for a failure message.
pub fn describe_counter(value: Option<&[u8]>) -> String {
    match counter_total(value) {
        Ok(0) if value.is_none() => "absent (total 0)".into(),
        Ok(total) => format!("total {total}"),
        Err(garbage) => garbage,
    }
}

/// True if `value` is what a key in `state` holds, or for a counter slot (`key >= keys`) a
/// counter whose total is `state.0`.
fn matches_slot(keys: u64, key: u64, state: KeyState, value: Option<&[u8]>) -> bool {
    if key >= keys {
        counter_total(value) == Ok(state.0)
    } else {
        matches(key, state, value)
    }
}

/// `state` of slot `key` in words (a total for a counter slot).
fn describe_state(keys: u64, key: u64, state: KeyState) -> String {
    if key >= keys {
        format!("total {}", state.0)
    } else {
        state.to_string()
    }
}

/// `value` of slot `key` in words.
fn describe_slot(keys: u64, key: u64, value: Option<&[u8]>) -> String {
    if key >= keys {
        describe_counter(value)
    } else {
        describe_found(key, value)
    }
}

/// True if `value` is what a key in `state` holds.
pub fn matches(key: u64, state: KeyState, value: Option<&[u8]>) -> bool {
    match value {
        None => !state.present(),
        Some(v) => state.value(key).is_some_and(|want| want == v),
    }
}

/// Checks a read of `key` made while other threads may write it. `pre` is the key's
/// acknowledged state loaded before the read began (the read must see it or something newer);
/// `post` and `post_pending` were loaded after the read view was fixed (the read cannot see
/// anything newer). Generations between the known states are unknown writes, puts or deletes.
///
/// # Errors
/// A description of what the read could have returned.
pub fn check_read(
    key: u64,
    pre: KeyState,
    post: KeyState,
    post_pending: Option<KeyState>,
    found: Option<&[u8]>,
) -> Result<(), String> {
    let hi = post_pending.map_or(post.gen(), |p| p.gen().max(post.gen()));
    if hi == pre.gen() {
        return if matches(key, pre, found) {
            Ok(())
        } else {
            Err(pre.to_string())
        };
    }
    let range = || format!("{pre} or a later write up to generation {hi}");
    let known = |gen: u64| {
        [Some(pre), Some(post), post_pending]
            .into_iter()
            .flatten()
            .find(|s| s.gen() == gen)
    };
    match found {
        Some(v) => {
            let state = KeyState::found(key, Some(v), 0).map_err(|_| range())?;
            let in_window = (pre.gen()..=hi).contains(&state.gen());
            let contradicts = known(state.gen()).is_some_and(|s| !s.present());
            if in_window && !contradicts {
                Ok(())
            } else {
                Err(range())
            }
        }
        None => {
            // Absent is possible if some state in the window is (or may be) a delete.
            let possible = (pre.gen()..=hi).any(|gen| known(gen).is_none_or(|s| !s.present()));
            if possible {
                Ok(())
            } else {
                Err(range())
            }
        }
    }
}

/// What the start-up verification found.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// Keys checked.
    pub keys: u64,
    /// Counters checked.
    pub counters: u64,
    /// Keys and counters present.
    pub present: u64,
    /// Writes in flight at the crash that turned out not to have happened / to have happened.
    pub pending_old: u64,
    /// See `pending_old`.
    pub pending_new: u64,
    /// Batches in flight at the crash that turned out not applied / applied.
    pub batches_old: u64,
    /// See `batches_old`.
    pub batches_new: u64,
    /// Keys that differ from the expected state but were allowed to (weak checks only).
    pub weak_differences: u64,
    /// Whether only the weak checks applied.
    pub weak: bool,
}

/// Reads every key of every keyspace by scans both ways and point lookups, checking they agree.
fn read_all(
    keyspaces: &[Keyspace],
    keys: u64,
    failures: &mut Vec<Failure>,
) -> Result<Vec<Option<Bytes>>, StressError> {
    let mut found: Vec<Option<Bytes>> = vec![None; keys as usize];
    for (ks_index, ks) in keyspaces.iter().enumerate() {
        let (lo, hi) = keyspace_block(ks_index as u64, keys);
        let mut scanned = BTreeMap::new();
        let mut last: Option<u64> = None;
        let mut forward_count = 0usize;
        for item in ks.iter() {
            let (name, value) = item.map_err(StressError::Engine)?;
            forward_count += 1;
            let Some(key) = parse_key(&name).filter(|k| (lo..hi).contains(k)) else {
                failures.push(Failure {
                    key: u64::MAX,
                    what: format!("scan of keyspace {}", ks.name()),
                    expected: format!("only keys k{lo:08}..k{hi:08} (end exclusive)"),
                    found: format!("key {}", super::model::preview(&name)),
                });
                continue;
            };
            if last.is_some_and(|l| l >= key) {
                failures.push(Failure {
                    key,
                    what: format!("forward scan of keyspace {}", ks.name()),
                    expected: format!("a key after {:?}", last.map(key_name)),
                    found: "keys out of order".into(),
                });
            }
            last = Some(key);
            scanned.insert(key, value);
        }
        let mut reverse_count = 0usize;
        let mut previous: Option<u64> = None;
        for item in ks.iter().rev() {
            let (name, value) = item.map_err(StressError::Engine)?;
            reverse_count += 1;
            let Some(key) = parse_key(&name).filter(|k| (lo..hi).contains(k)) else {
                continue; // the forward scan reported it
            };
            let same = scanned.get(&key).is_some_and(|v| *v == value);
            let ordered = previous.is_none_or(|p| p > key);
            if !same || !ordered {
                failures.push(Failure {
                    key,
                    what: format!("reverse scan of keyspace {}", ks.name()),
                    expected: "the forward scan's pairs in reverse order".into(),
                    found: describe_found(key, Some(&value)),
                });
            }
            previous = Some(key);
        }
        if reverse_count != forward_count {
            failures.push(Failure {
                key: u64::MAX,
                what: format!("reverse scan of keyspace {}", ks.name()),
                expected: format!("{forward_count} pairs, as the forward scan"),
                found: format!("{reverse_count} pairs"),
            });
        }
        for key in lo..hi {
            let got = ks.get(key_name(key)).map_err(StressError::Engine)?;
            let scan = scanned.remove(&key);
            if got != scan {
                // Read again: a mismatch that goes away points at a race with a background
                // dump or compaction rather than at what is on disk.
                let again = ks.get(key_name(key)).map_err(StressError::Engine)?;
                let rescan = ks
                    .range(key_name(key)..=key_name(key))
                    .next()
                    .transpose()
                    .map_err(StressError::Engine)?
                    .map(|(_, v)| v);
                failures.push(Failure {
                    key,
                    what: "point lookup against the scan".into(),
                    expected: format!("the scan's {}", describe_found(key, scan.as_deref())),
                    found: format!(
                        "{} (read again: lookup {}, one-key scan {})",
                        describe_found(key, got.as_deref()),
                        describe_found(key, again.as_deref()),
                        describe_found(key, rescan.as_deref())
                    ),
                });
            }
            if key % 16 == 0 {
                if let Some(v) = ks.get(missing_key_name(key)).map_err(StressError::Engine)? {
                    failures.push(Failure {
                        key,
                        what: "lookup of a key never written (the key with '~' appended)".into(),
                        expected: "absent".into(),
                        found: super::model::preview(&v),
                    });
                }
            }
            found[key as usize] = got;
        }
    }
    Ok(found)
}

/// Reads every counter of the counter keyspace by a scan and point lookups, checking they agree
/// and that it holds nothing else; appends the values to `found` (slot order).
fn read_counters(
    ks: &Keyspace,
    keys: u64,
    counters: u64,
    failures: &mut Vec<Failure>,
    found: &mut Vec<Option<Bytes>>,
) -> Result<(), StressError> {
    let mut scanned = BTreeMap::new();
    for item in ks.iter() {
        let (name, value) = item.map_err(StressError::Engine)?;
        match parse_key(&name).filter(|k| (keys..keys + counters).contains(k)) {
            Some(key) => {
                scanned.insert(key, value);
            }
            None => failures.push(Failure {
                key: u64::MAX,
                what: format!("scan of keyspace {}", ks.name()),
                expected: format!("only counters k{keys:08}..k{:08}", keys + counters),
                found: format!("key {}", super::model::preview(&name)),
            }),
        }
    }
    for key in keys..keys + counters {
        let got = ks.get(key_name(key)).map_err(StressError::Engine)?;
        let scan = scanned.remove(&key);
        if got != scan {
            failures.push(Failure {
                key,
                what: "counter lookup against the scan".into(),
                expected: format!("the scan's {}", describe_counter(scan.as_deref())),
                found: describe_counter(got.as_deref()),
            });
        }
        found.push(got);
    }
    Ok(())
}

/// Verifies the database against `state` and, if everything holds, settles `state` to it.
///
/// # Errors
/// [`StressError::Failed`] with every failing key (nothing settled then); engine and
/// expected-state errors.
pub fn verify_database(
    keyspaces: &[Keyspace],
    counters: &Keyspace,
    state: &ExpectedState,
    weak: bool,
) -> Result<VerifyReport, StressError> {
    let keys = state.keys();
    let slots = state.slots();
    let mut failures = Vec::new();
    let mut found = read_all(keyspaces, keys, &mut failures)?;
    read_counters(counters, keys, state.counters(), &mut failures, &mut found)?;
    let value = |key: u64| found[key as usize].as_deref();
    let matches = |key: u64, s: KeyState, v: Option<&[u8]>| matches_slot(keys, key, s, v);
    let describe_found = |key: u64, v: Option<&[u8]>| describe_slot(keys, key, v);
    let mut report = VerifyReport {
        keys,
        counters: state.counters(),
        present: found.iter().filter(|v| v.is_some()).count() as u64,
        weak,
        ..VerifyReport::default()
    };
    // The settled state of every key that changes, applied only if nothing failed.
    let mut settle: Vec<(u64, KeyState)> = Vec::new();
    let mut in_batch = vec![false; slots as usize];
    let batches = state.open_batches().map_err(StressError::State)?;
    for (thread, status, batch) in &batches {
        for k in batch {
            in_batch[k.key as usize] = true;
        }
        if weak {
            continue; // the per-key weak checks below cover these keys
        }
        let all_old = batch.iter().all(|k| matches(k.key, k.old, value(k.key)));
        let all_new = batch.iter().all(|k| matches(k.key, k.new, value(k.key)));
        let ok = all_new || (all_old && *status == BatchStatus::Committing);
        if !ok {
            for k in batch {
                failures.push(Failure {
                    key: k.key,
                    what: format!(
                        "batch of thread {thread} ({} keys, {}): all or nothing",
                        batch.len(),
                        if *status == BatchStatus::Acknowledged {
                            "acknowledged"
                        } else {
                            "committing at the crash"
                        }
                    ),
                    expected: if *status == BatchStatus::Acknowledged {
                        describe_state(keys, k.key, k.new)
                    } else {
                        format!(
                            "{} (all keys old) or {} (all new)",
                            describe_state(keys, k.key, k.old),
                            describe_state(keys, k.key, k.new)
                        )
                    },
                    found: describe_found(k.key, value(k.key)),
                });
            }
            continue;
        }
        if all_new {
            report.batches_new += 1;
        } else {
            report.batches_old += 1;
        }
        for k in batch {
            settle.push((k.key, if all_new { k.new } else { k.old }));
        }
    }
    for key in 0..slots {
        if in_batch[key as usize] && !weak {
            continue;
        }
        let current = state.current(key);
        let pending = state.pending(key);
        let got = value(key);
        if weak && key >= keys {
            let hi = pending.map_or(current.0, |p| p.0.max(current.0));
            match counter_total(got) {
                Ok(total) if total <= hi => {
                    if total != current.0 {
                        report.weak_differences += 1;
                    }
                    if total != current.0 || pending.is_some() {
                        settle.push((key, KeyState(total)));
                    }
                }
                Ok(_) | Err(_) => failures.push(Failure {
                    key,
                    what: "counter after a kill without a WAL (weak check)".into(),
                    expected: format!("a total of 0..={hi}"),
                    found: describe_counter(got),
                }),
            }
            continue;
        }
        if weak {
            let hi = pending.map_or(current.gen(), |p| p.gen().max(current.gen()));
            match KeyState::found(key, got, hi) {
                Ok(s) if s.gen() <= hi => {
                    if !matches(key, current, got) {
                        report.weak_differences += 1;
                    }
                    if s != current || pending.is_some() {
                        settle.push((key, s));
                    }
                }
                Ok(_) | Err(_) => failures.push(Failure {
                    key,
                    what: "after a kill without a WAL (weak check)".into(),
                    expected: format!("absent or a value of generation 1..={hi}"),
                    found: describe_found(key, got),
                }),
            }
            continue;
        }
        match pending {
            None => {
                if !matches(key, current, got) {
                    failures.push(Failure {
                        key,
                        what: "no write in flight".into(),
                        expected: describe_state(keys, key, current),
                        found: describe_found(key, got),
                    });
                }
            }
            Some(new) if new == current => {
                // Acknowledged; only the pending mark was left to clear.
                if matches(key, new, got) {
                    settle.push((key, new));
                } else {
                    failures.push(Failure {
                        key,
                        what: "acknowledged write".into(),
                        expected: describe_state(keys, key, new),
                        found: describe_found(key, got),
                    });
                }
            }
            Some(new) => {
                if matches(key, new, got) {
                    report.pending_new += 1;
                    settle.push((key, new));
                } else if matches(key, current, got) {
                    report.pending_old += 1;
                    settle.push((key, current));
                } else {
                    failures.push(Failure {
                        key,
                        what: "write in flight at the crash".into(),
                        expected: format!(
                            "{} (old) or {} (new)",
                            describe_state(keys, key, current),
                            describe_state(keys, key, new)
                        ),
                        found: describe_found(key, got),
                    });
                }
            }
        }
    }
    if !failures.is_empty() {
        return Err(StressError::Failed(failures));
    }
    for (key, s) in settle {
        state.settle(key, s).map_err(StressError::State)?;
    }
    for (thread, _, _) in &batches {
        state.clear_batch(*thread).map_err(StressError::State)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::model::value_of;
    use super::*;

    fn put(gen: u64) -> KeyState {
        KeyState::new(gen, true)
    }

    fn del(gen: u64) -> KeyState {
        KeyState::new(gen, false)
    }

    /// A database with the stress keyspaces (the counter keyspace last) and an expected state
    /// for 10 keys and 1 counter (slot 10), in `dir`.
    fn setup(dir: &std::path::Path) -> (strata::Db, Vec<Keyspace>, ExpectedState) {
        let db = strata::Db::open(dir.join("db"), strata::Options::default()).unwrap();
        let keyspaces = (0..super::super::model::KEYSPACES)
            .map(|i| {
                db.keyspace(
                    &super::super::model::keyspace_name(i),
                    strata::KeyspaceOptions::default(),
                )
                .unwrap()
            })
            .chain(std::iter::once(
                db.keyspace(
                    super::super::model::COUNTER_KEYSPACE,
                    strata::KeyspaceOptions {
                        merge_operator: Some(std::sync::Arc::new(strata::merge::Counter)),
                        ..strata::KeyspaceOptions::default()
                    },
                )
                .unwrap(),
            ))
            .collect();
        let (state, _) = ExpectedState::open_or_create(&dir.join("expected"), 10).unwrap();
        (db, keyspaces, state)
    }

    fn write(keyspaces: &[Keyspace], key: u64, state: KeyState) {
        let ks = &keyspaces[super::super::model::keyspace_of(key, 10) as usize];
        match state.value(key) {
            Some(v) => ks.put(key_name(key), v).unwrap(),
            None => ks.delete(key_name(key)).unwrap(),
        }
    }

    fn failed_keys(result: Result<VerifyReport, StressError>) -> Vec<u64> {
        match result {
            Err(StressError::Failed(failures)) => failures.iter().map(|f| f.key).collect(),
            other => panic!("expected a verification failure, got {other:?}"),
        }
    }

    #[test]
    fn a_half_applied_batch_fails_and_a_whole_one_settles() {
        use super::super::expected::BatchKey;
        let tmp = tempfile::tempdir().unwrap();
        let (_db, ks, state) = setup(tmp.path());
        // Keys 2 (keyspace 0) and 7 (keyspace 1): a batch committing at the "crash".
        let batch = [
            BatchKey {
                key: 2,
                old: KeyState(0),
                new: put(1),
            },
            BatchKey {
                key: 7,
                old: KeyState(0),
                new: put(1),
            },
        ];
        state.begin_batch(0, &batch).unwrap();
        write(&ks, 2, put(1));
        assert_eq!(
            failed_keys(verify_database(&ks[..2], &ks[2], &state, false)),
            vec![2, 7]
        );
        // Nothing was settled by the failed verification.
        assert_eq!(state.open_batches().unwrap().len(), 1);
        write(&ks, 7, put(1));
        let report = verify_database(&ks[..2], &ks[2], &state, false).unwrap();
        assert_eq!((report.batches_new, report.batches_old), (1, 0));
        assert!(state.open_batches().unwrap().is_empty());
        assert_eq!((state.current(2), state.current(7)), (put(1), put(1)));
        assert_eq!(state.pending(7), None);
    }

    #[test]
    fn writes_in_flight_resolve_to_old_or_new_and_acknowledged_ones_must_be_there() {
        let tmp = tempfile::tempdir().unwrap();
        let (_db, ks, state) = setup(tmp.path());
        for key in 0..4 {
            state.begin_write(key, put(1)).unwrap();
            state.ack_write(key, put(1)).unwrap();
            write(&ks, key, put(1));
        }
        state.begin_write(0, del(2)).unwrap(); // in flight, not applied
        state.begin_write(1, put(2)).unwrap(); // in flight, applied
        write(&ks, 1, put(2));
        state.begin_write(3, put(2)).unwrap(); // in flight, the database holds something else
        write(&ks, 3, put(5));
        assert_eq!(
            failed_keys(verify_database(&ks[..2], &ks[2], &state, false)),
            vec![3]
        );
        // The weak checks (a kill without a WAL) accept generation 5 only if it was written.
        assert_eq!(
            failed_keys(verify_database(&ks[..2], &ks[2], &state, true)),
            vec![3]
        );
        write(&ks, 3, put(1));
        let report = verify_database(&ks[..2], &ks[2], &state, false).unwrap();
        assert_eq!((report.pending_old, report.pending_new), (2, 1));
        assert_eq!((state.current(0), state.current(1)), (put(1), put(2)));
        // An acknowledged write that is missing fails.
        state.begin_write(2, put(2)).unwrap();
        state.ack_write(2, put(2)).unwrap();
        assert_eq!(
            failed_keys(verify_database(&ks[..2], &ks[2], &state, false)),
            vec![2]
        );
        assert!(
            verify_database(&ks[..2], &ks[2], &state, true).is_ok(),
            "without a WAL it may be lost"
        );
        assert_eq!(state.current(2), put(1), "settled to what was found");
    }

    #[test]
    fn counters_hold_their_totals_old_or_new_in_flight_and_all_or_nothing_in_batches() {
        use super::super::expected::BatchKey;
        use strata::merge::Counter;
        let tmp = tempfile::tempdir().unwrap();
        let (_db, ks, state) = setup(tmp.path());
        let c = 10; // the only counter's slot
        let total = |t: u64| KeyState(t);
        state.begin_write(c, total(5)).unwrap();
        ks[2].upsert(key_name(c), Counter::operand(5)).unwrap();
        state.ack_write(c, total(5)).unwrap();
        // An upsert of 3 in flight, not applied: old accepted.
        state.begin_write(c, total(8)).unwrap();
        let report = verify_database(&ks[..2], &ks[2], &state, false).unwrap();
        assert_eq!(report.pending_old, 1);
        assert_eq!(state.current(c), total(5));
        // Acknowledged but lost: fails (strong), accepted (weak).
        state.begin_write(c, total(8)).unwrap();
        state.ack_write(c, total(8)).unwrap();
        assert_eq!(
            failed_keys(verify_database(&ks[..2], &ks[2], &state, false)),
            vec![c]
        );
        assert!(verify_database(&ks[..2], &ks[2], &state, true).is_ok());
        assert_eq!(state.current(c), total(5));
        // A total above anything given fails even the weak check.
        ks[2].upsert(key_name(c), Counter::operand(100)).unwrap();
        assert_eq!(
            failed_keys(verify_database(&ks[..2], &ks[2], &state, true)),
            vec![c]
        );
        ks[2].upsert(key_name(c), Counter::operand(-100)).unwrap();
        // A batch of a key and the counter, half applied: both fail.
        let batch = [
            BatchKey {
                key: 1,
                old: KeyState(0),
                new: put(1),
            },
            BatchKey {
                key: c,
                old: total(5),
                new: total(7),
            },
        ];
        state.begin_batch(0, &batch).unwrap();
        ks[2].upsert(key_name(c), Counter::operand(2)).unwrap();
        assert_eq!(
            failed_keys(verify_database(&ks[..2], &ks[2], &state, false)),
            vec![1, c]
        );
        write(&ks, 1, put(1));
        let report = verify_database(&ks[..2], &ks[2], &state, false).unwrap();
        assert_eq!(report.batches_new, 1);
        assert_eq!(state.current(c), total(7));
    }

    #[test]
    fn a_quiet_key_must_hold_exactly_its_state() {
        let v3 = value_of(1, 3);
        assert!(check_read(1, put(3), put(3), None, Some(&v3)).is_ok());
        assert!(check_read(1, put(3), put(3), None, None).is_err());
        assert!(check_read(1, put(3), put(3), None, Some(&value_of(1, 2))).is_err());
        assert!(check_read(1, del(3), del(3), None, None).is_ok());
        assert!(check_read(1, del(3), del(3), None, Some(&value_of(1, 3))).is_err());
    }

    #[test]
    fn a_key_written_meanwhile_may_hold_any_state_of_the_window() {
        // pre gen 3 (put), a put of gen 4 in flight.
        assert!(check_read(1, put(3), put(3), Some(put(4)), Some(&value_of(1, 4))).is_ok());
        assert!(check_read(1, put(3), put(3), Some(put(4)), Some(&value_of(1, 3))).is_ok());
        assert!(
            check_read(1, put(3), put(3), Some(put(4)), None).is_err(),
            "no delete"
        );
        assert!(check_read(1, put(3), put(3), Some(put(4)), Some(&value_of(1, 5))).is_err());
        assert!(check_read(1, put(3), put(3), Some(put(4)), Some(&value_of(1, 2))).is_err());
        // A delete of gen 4 in flight.
        assert!(check_read(1, put(3), put(3), Some(del(4)), None).is_ok());
        // Gens 4 and 5 unknown (acknowledged 6 after the read): absent is possible.
        assert!(check_read(1, put(3), put(6), None, None).is_ok());
        assert!(check_read(1, put(3), put(6), None, Some(&value_of(1, 5))).is_ok());
        // A value of a generation known to be a delete is wrong.
        assert!(check_read(1, put(3), del(4), None, Some(&value_of(1, 4))).is_err());
        assert!(check_read(1, put(3), put(4), None, Some(b"garbage")).is_err());
    }
}
