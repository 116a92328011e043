//! [`MetaState`]: what exists, the result of replaying the metadata log.

use std::collections::{BTreeMap, BTreeSet};

use super::record::{MetaRecord, RunInfo};

/// One live keyspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyspaceMeta {
    /// Keyspace id.
    pub(crate) id: u32,
    /// Name, unique among live keyspaces.
    pub(crate) name: String,
    /// The engine-serialized options, as logged.
    pub(crate) options: Vec<u8>,
    /// Created, not dropped runs by run id.
    pub(crate) runs: BTreeMap<u64, RunInfo>,
    /// Every write with seqno `<=` this is in `runs` (0 before the first dump).
    pub(crate) dumped_seqno: u64,
    /// Ranges by range id (empty until compaction by range logs them).
    pub(crate) ranges: BTreeMap<u64, RangeMeta>,
}

/// One range of a keyspace: the key interval `[begin, end)` and the slices of runs inside it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeMeta {
    /// Range id.
    pub(crate) id: u64,
    /// Inclusive lower bound; `None` is minus infinity.
    pub(crate) begin: Option<Vec<u8>>,
    /// Exclusive upper bound; `None` is plus infinity.
    pub(crate) end: Option<Vec<u8>>,
    /// Slices by slice id.
    pub(crate) slices: BTreeMap<u64, SliceMeta>,
}

/// The part `[begin, end)` of a run that a range reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SliceMeta {
    /// Slice id.
    pub(crate) id: u64,
    /// The (live) run the slice reads.
    pub(crate) run: u64,
    /// Inclusive lower bound; `None` is minus infinity.
    pub(crate) begin: Option<Vec<u8>>,
    /// Exclusive upper bound; `None` is plus infinity.
    pub(crate) end: Option<Vec<u8>>,
}

/// Everything the metadata log says exists. Built by applying records in log order with
/// [`MetaState::apply`]; see `engine/METADATA.md` for the rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MetaState {
    /// Live keyspaces by id.
    pub(crate) keyspaces: BTreeMap<u32, KeyspaceMeta>,
    /// Prepared, not yet created runs (run id -> keyspace id). Their keyspace is always live.
    /// Recovery deletes their files and forgets them.
    pub(crate) prepared_runs: BTreeMap<u64, u32>,
    /// Dropped, not yet forgotten runs. Recovery deletes their files and logs `ForgetRun`.
    pub(crate) dropped_runs: BTreeSet<u64>,
    /// Greater than every keyspace id ever logged.
    pub(crate) next_keyspace_id: u32,
    /// Greater than every run id ever logged.
    pub(crate) next_run_id: u64,
    /// Greater than every range id ever logged.
    pub(crate) next_range_id: u64,
    /// Greater than every slice id ever logged.
    pub(crate) next_slice_id: u64,
}

/// `id + 1`, or an error when the id space is exhausted.
fn after<T: TryFrom<u64> + Into<u64> + Copy>(id: T, what: &str) -> Result<T, String> {
    id.into()
        .checked_add(1)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("{what} id {} exhausts the id space", id.into()))
}

/// Checks `begin < end` when both are bounded.
fn check_bounds(begin: Option<&[u8]>, end: Option<&[u8]>, what: &str) -> Result<(), String> {
    match (begin, end) {
        (Some(b), Some(e)) if b >= e => Err(format!("{what} is empty: begin >= end")),
        _ => Ok(()),
    }
}

impl MetaState {
    /// The live keyspace with this id.
    #[allow(dead_code)] // API for stats and tools, not used by the engine yet.
    pub(crate) fn keyspace(&self, id: u32) -> Option<&KeyspaceMeta> {
        self.keyspaces.get(&id)
    }

    /// The live keyspace with this name.
    pub(crate) fn keyspace_by_name(&self, name: &str) -> Option<&KeyspaceMeta> {
        self.keyspaces.values().find(|k| k.name == name)
    }

    /// The keyspace holding live run `run`.
    pub(crate) fn run_keyspace(&self, run: u64) -> Option<u32> {
        self.keyspaces
            .values()
            .find(|k| k.runs.contains_key(&run))
            .map(|k| k.id)
    }

    /// Every run id the log knows (live, prepared or dropped): a run file in the database
    /// directory whose id is not here is a stray the engine may delete.
    pub(crate) fn known_runs(&self) -> BTreeSet<u64> {
        let mut runs: BTreeSet<u64> = self.dropped_runs.clone();
        runs.extend(self.prepared_runs.keys().copied());
        for keyspace in self.keyspaces.values() {
            runs.extend(keyspace.runs.keys().copied());
        }
        runs
    }

    /// Runs whose files recovery deletes (prepared or dropped), before logging `ForgetRun` for
    /// each of them.
    pub(crate) fn garbage_runs(&self) -> BTreeSet<u64> {
        let mut runs = self.dropped_runs.clone();
        runs.extend(self.prepared_runs.keys().copied());
        runs
    }

    /// The (keyspace, range) holding slice `slice`.
    pub(crate) fn slice_location(&self, slice: u64) -> Option<(u32, u64)> {
        self.keyspaces.values().find_map(|k| {
            k.ranges
                .values()
                .find(|r| r.slices.contains_key(&slice))
                .map(|r| (k.id, r.id))
        })
    }

    /// The keyspace holding range `range`.
    pub(crate) fn range_keyspace(&self, range: u64) -> Option<u32> {
        self.keyspaces
            .values()
            .find(|k| k.ranges.contains_key(&range))
            .map(|k| k.id)
    }

    /// True if run `run` is live, prepared or dropped.
    fn run_is_known(&self, run: u64) -> bool {
        self.prepared_runs.contains_key(&run)
            || self.dropped_runs.contains(&run)
            || self.run_keyspace(run).is_some()
    }

    fn live_keyspace_mut(&mut self, id: u32) -> Result<&mut KeyspaceMeta, String> {
        self.keyspaces
            .get_mut(&id)
            .ok_or_else(|| format!("keyspace {id} does not exist"))
    }

    fn note_run_id(&mut self, run: u64) -> Result<(), String> {
        self.next_run_id = self.next_run_id.max(after(run, "run")?);
        Ok(())
    }

    /// Applies one record, validating it against the current state. A record that does not
    /// apply leaves the state unchanged; a group is all-or-nothing only through
    /// [`MetaState::apply_group`], which applies it to a clone.
    ///
    /// # Errors
    /// A message saying why the record does not fit the state.
    pub(crate) fn apply(&mut self, record: &MetaRecord) -> Result<(), String> {
        match record {
            MetaRecord::CreateKeyspace { id, name, options } => {
                if self.keyspaces.contains_key(id) {
                    return Err(format!("keyspace {id} already exists"));
                }
                if let Some(other) = self.keyspace_by_name(name) {
                    return Err(format!(
                        "keyspace name {name:?} is already used by keyspace {}",
                        other.id
                    ));
                }
                let next = after(*id, "keyspace")?;
                self.next_keyspace_id = self.next_keyspace_id.max(next);
                self.keyspaces.insert(
                    *id,
                    KeyspaceMeta {
                        id: *id,
                        name: name.clone(),
                        options: options.clone(),
                        ..KeyspaceMeta::default()
                    },
                );
            }
            MetaRecord::DropKeyspace { id } => {
                let keyspace = self
                    .keyspaces
                    .remove(id)
                    .ok_or_else(|| format!("keyspace {id} does not exist"))?;
                self.dropped_runs.extend(keyspace.runs.keys().copied());
                let prepared: Vec<u64> = self
                    .prepared_runs
                    .iter()
                    .filter(|(_, k)| *k == id)
                    .map(|(run, _)| *run)
                    .collect();
                for run in prepared {
                    self.prepared_runs.remove(&run);
                    self.dropped_runs.insert(run);
                }
            }
            MetaRecord::PrepareRun { keyspace, run } => {
                if !self.keyspaces.contains_key(keyspace) {
                    return Err(format!("keyspace {keyspace} does not exist"));
                }
                if self.run_is_known(*run) {
                    return Err(format!("run {run} already exists"));
                }
                self.note_run_id(*run)?;
                self.prepared_runs.insert(*run, *keyspace);
            }
            MetaRecord::CreateRun {
                keyspace,
                run,
                info,
            } => {
                match self.prepared_runs.get(run) {
                    Some(k) if k == keyspace => {}
                    Some(k) => {
                        return Err(format!(
                            "run {run} was prepared for keyspace {k}, not {keyspace}"
                        ))
                    }
                    None => return Err(format!("run {run} is not prepared")),
                }
                self.live_keyspace_mut(*keyspace)?
                    .runs
                    .insert(*run, info.clone());
                self.prepared_runs.remove(run);
            }
            MetaRecord::DropRun { keyspace, run } => {
                let ks = self.live_keyspace_mut(*keyspace)?;
                if !ks.runs.contains_key(run) {
                    return Err(format!(
                        "run {run} is not a live run of keyspace {keyspace}"
                    ));
                }
                if let Some((range, slice)) = ks.ranges.values().find_map(|r| {
                    r.slices
                        .values()
                        .find(|s| s.run == *run)
                        .map(|s| (r.id, s.id))
                }) {
                    return Err(format!(
                        "run {run} is still read by slice {slice} of range {range}"
                    ));
                }
                ks.runs.remove(run);
                self.dropped_runs.insert(*run);
            }
            MetaRecord::ForgetRun { run } => {
                if !self.dropped_runs.remove(run) && self.prepared_runs.remove(run).is_none() {
                    return Err(format!("run {run} is neither dropped nor prepared"));
                }
            }
            MetaRecord::Dumped { keyspace, seqno } => {
                let ks = self.live_keyspace_mut(*keyspace)?;
                if *seqno < ks.dumped_seqno {
                    return Err(format!(
                        "dumped seqno of keyspace {keyspace} would go back from {} to {seqno}",
                        ks.dumped_seqno
                    ));
                }
                ks.dumped_seqno = *seqno;
            }
            MetaRecord::NextIds {
                keyspace,
                run,
                range,
                slice,
            } => {
                self.next_keyspace_id = self.next_keyspace_id.max(*keyspace);
                self.next_run_id = self.next_run_id.max(*run);
                self.next_range_id = self.next_range_id.max(*range);
                self.next_slice_id = self.next_slice_id.max(*slice);
            }
            MetaRecord::DroppedRun { run } => {
                if self.run_is_known(*run) {
                    return Err(format!("run {run} already exists"));
                }
                self.note_run_id(*run)?;
                self.dropped_runs.insert(*run);
            }
            MetaRecord::InsertRange {
                keyspace,
                range,
                begin,
                end,
            } => {
                if let Some(k) = self.range_keyspace(*range) {
                    return Err(format!("range {range} already exists in keyspace {k}"));
                }
                check_bounds(begin.as_deref(), end.as_deref(), "range")?;
                let next = after(*range, "range")?;
                self.live_keyspace_mut(*keyspace)?.ranges.insert(
                    *range,
                    RangeMeta {
                        id: *range,
                        begin: begin.clone(),
                        end: end.clone(),
                        slices: BTreeMap::new(),
                    },
                );
                self.next_range_id = self.next_range_id.max(next);
            }
            MetaRecord::DeleteRange { keyspace, range } => {
                let ks = self.live_keyspace_mut(*keyspace)?;
                match ks.ranges.get(range) {
                    None => {
                        return Err(format!("range {range} is not in keyspace {keyspace}"));
                    }
                    Some(r) if !r.slices.is_empty() => {
                        return Err(format!(
                            "range {range} still holds {} slices",
                            r.slices.len()
                        ));
                    }
                    Some(_) => {}
                }
                ks.ranges.remove(range);
            }
            MetaRecord::InsertSlice {
                keyspace,
                range,
                slice,
                run,
                begin,
                end,
            } => {
                if let Some((k, r)) = self.slice_location(*slice) {
                    return Err(format!(
                        "slice {slice} already exists in range {r} of keyspace {k}"
                    ));
                }
                check_bounds(begin.as_deref(), end.as_deref(), "slice")?;
                let next = after(*slice, "slice")?;
                let ks = self.live_keyspace_mut(*keyspace)?;
                if !ks.runs.contains_key(run) {
                    return Err(format!(
                        "run {run} is not a live run of keyspace {keyspace}"
                    ));
                }
                let r = ks
                    .ranges
                    .get_mut(range)
                    .ok_or_else(|| format!("range {range} is not in keyspace {keyspace}"))?;
                r.slices.insert(
                    *slice,
                    SliceMeta {
                        id: *slice,
                        run: *run,
                        begin: begin.clone(),
                        end: end.clone(),
                    },
                );
                self.next_slice_id = self.next_slice_id.max(next);
            }
            MetaRecord::DeleteSlice {
                keyspace,
                range,
                slice,
            } => {
                let removed = self
                    .live_keyspace_mut(*keyspace)?
                    .ranges
                    .get_mut(range)
                    .and_then(|r| r.slices.remove(slice));
                if removed.is_none() {
                    return Err(format!(
                        "slice {slice} is not in range {range} of keyspace {keyspace}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Applies a group all-or-nothing: on error `self` is unchanged.
    ///
    /// # Errors
    /// The index and kind of the first record that does not apply, and why.
    #[allow(dead_code)] // API for stats and tools, not used by the engine yet.
    pub(crate) fn apply_group(&mut self, records: &[MetaRecord]) -> Result<(), String> {
        let mut next = self.clone();
        for (i, record) in records.iter().enumerate() {
            next.apply(record)
                .map_err(|e| format!("record {i} ({}): {e}", record.kind()))?;
        }
        *self = next;
        Ok(())
    }

    /// Records that rebuild exactly this state when applied, in order, to an empty state (the
    /// body of a rewritten log).
    pub(crate) fn snapshot_records(&self) -> Vec<MetaRecord> {
        let mut records = Vec::new();
        for &run in &self.dropped_runs {
            records.push(MetaRecord::DroppedRun { run });
        }
        for ks in self.keyspaces.values() {
            records.push(MetaRecord::CreateKeyspace {
                id: ks.id,
                name: ks.name.clone(),
                options: ks.options.clone(),
            });
            if ks.dumped_seqno > 0 {
                records.push(MetaRecord::Dumped {
                    keyspace: ks.id,
                    seqno: ks.dumped_seqno,
                });
            }
            for (&run, info) in &ks.runs {
                records.push(MetaRecord::PrepareRun {
                    keyspace: ks.id,
                    run,
                });
                records.push(MetaRecord::CreateRun {
                    keyspace: ks.id,
                    run,
                    info: info.clone(),
                });
            }
            for range in ks.ranges.values() {
                records.push(MetaRecord::InsertRange {
                    keyspace: ks.id,
                    range: range.id,
                    begin: range.begin.clone(),
                    end: range.end.clone(),
                });
                for slice in range.slices.values() {
                    records.push(MetaRecord::InsertSlice {
                        keyspace: ks.id,
                        range: range.id,
                        slice: slice.id,
                        run: slice.run,
                        begin: slice.begin.clone(),
                        end: slice.end.clone(),
                    });
                }
            }
        }
        for (&run, &keyspace) in &self.prepared_runs {
            records.push(MetaRecord::PrepareRun { keyspace, run });
        }
        records.push(MetaRecord::NextIds {
            keyspace: self.next_keyspace_id,
            run: self.next_run_id,
            range: self.next_range_id,
            slice: self.next_slice_id,
        });
        records
    }

    /// Checks the invariants `apply` maintains (used by tests and the `invariants` feature).
    ///
    /// # Errors
    /// The first violated invariant.
    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut runs_seen = BTreeSet::new();
        let mut ranges_seen = BTreeSet::new();
        let mut slices_seen = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (&id, ks) in &self.keyspaces {
            if ks.id != id || id >= self.next_keyspace_id {
                return Err(format!("keyspace {id}: bad id"));
            }
            if !names.insert(ks.name.as_str()) {
                return Err(format!("keyspace name {:?} used twice", ks.name));
            }
            for (&range_id, range) in &ks.ranges {
                if range.id != range_id
                    || range_id >= self.next_range_id
                    || !ranges_seen.insert(range_id)
                {
                    return Err(format!("range {range_id}: bad or duplicate id"));
                }
                for (&slice_id, slice) in &range.slices {
                    if slice.id != slice_id
                        || slice_id >= self.next_slice_id
                        || !slices_seen.insert(slice_id)
                    {
                        return Err(format!("slice {slice_id}: bad or duplicate id"));
                    }
                    if !ks.runs.contains_key(&slice.run) {
                        return Err(format!("slice {slice_id} reads a run that is not live"));
                    }
                }
            }
            for &run in ks.runs.keys() {
                if !runs_seen.insert(run) {
                    return Err(format!("run {run} is live twice"));
                }
            }
        }
        for (&run, keyspace) in &self.prepared_runs {
            if !self.keyspaces.contains_key(keyspace) || !runs_seen.insert(run) {
                return Err(format!("prepared run {run}: dead keyspace or duplicate"));
            }
        }
        for &run in &self.dropped_runs {
            if !runs_seen.insert(run) {
                return Err(format!("dropped run {run} is also live or prepared"));
            }
        }
        if runs_seen.last().is_some_and(|&r| r >= self.next_run_id) {
            return Err("next_run_id is not above every run id".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: u64) -> RunInfo {
        RunInfo {
            min_seqno: n,
            max_seqno: n + 1,
            entries: 2,
            file_size: 100 * n,
            min_key: vec![n as u8],
            max_key: vec![n as u8, 0xff],
        }
    }

    fn apply_all(state: &mut MetaState, records: &[MetaRecord]) {
        for r in records {
            state.apply(r).unwrap();
        }
        state.check_invariants().unwrap();
    }

    #[test]
    fn run_lifecycle() {
        let mut s = MetaState::default();
        apply_all(
            &mut s,
            &[
                MetaRecord::CreateKeyspace {
                    id: 0,
                    name: "a".into(),
                    options: vec![],
                },
                MetaRecord::PrepareRun {
                    keyspace: 0,
                    run: 5,
                },
            ],
        );
        assert_eq!(s.prepared_runs.get(&5), Some(&0));
        assert_eq!(s.next_run_id, 6);
        apply_all(
            &mut s,
            &[
                MetaRecord::CreateRun {
                    keyspace: 0,
                    run: 5,
                    info: info(1),
                },
                MetaRecord::Dumped {
                    keyspace: 0,
                    seqno: 2,
                },
            ],
        );
        assert!(s.prepared_runs.is_empty());
        assert_eq!(s.keyspace_by_name("a").unwrap().runs[&5], info(1));
        assert_eq!(s.keyspace(0).unwrap().dumped_seqno, 2);
        apply_all(
            &mut s,
            &[MetaRecord::DropRun {
                keyspace: 0,
                run: 5,
            }],
        );
        assert!(s.dropped_runs.contains(&5));
        assert_eq!(s.garbage_runs(), BTreeSet::from([5]));
        apply_all(&mut s, &[MetaRecord::ForgetRun { run: 5 }]);
        assert!(s.known_runs().is_empty());
        assert_eq!(s.next_run_id, 6);
    }

    #[test]
    fn invalid_records_are_rejected() {
        let mut s = MetaState::default();
        let ks = |id: u32, name: &str| MetaRecord::CreateKeyspace {
            id,
            name: name.into(),
            options: vec![],
        };
        apply_all(&mut s, &[ks(1, "a")]);
        let bad = [
            ks(1, "b"),
            ks(2, "a"),
            MetaRecord::DropKeyspace { id: 9 },
            MetaRecord::PrepareRun {
                keyspace: 9,
                run: 1,
            },
            MetaRecord::CreateRun {
                keyspace: 1,
                run: 1,
                info: info(1),
            },
            MetaRecord::DropRun {
                keyspace: 1,
                run: 1,
            },
            MetaRecord::ForgetRun { run: 1 },
            MetaRecord::DeleteRange {
                keyspace: 1,
                range: 1,
            },
            MetaRecord::InsertRange {
                keyspace: 1,
                range: 1,
                begin: Some(b"b".to_vec()),
                end: Some(b"a".to_vec()),
            },
            MetaRecord::DeleteSlice {
                keyspace: 1,
                range: 1,
                slice: 1,
            },
            ks(u32::MAX, "max"),
        ];
        for record in &bad {
            let before = s.clone();
            assert!(
                s.apply_group(std::slice::from_ref(record)).is_err(),
                "{record:?}"
            );
            assert_eq!(s, before);
        }
        apply_all(
            &mut s,
            &[
                MetaRecord::PrepareRun {
                    keyspace: 1,
                    run: 3,
                },
                MetaRecord::Dumped {
                    keyspace: 1,
                    seqno: 10,
                },
            ],
        );
        for record in [
            MetaRecord::PrepareRun {
                keyspace: 1,
                run: 3,
            },
            MetaRecord::CreateRun {
                keyspace: 2,
                run: 3,
                info: info(1),
            },
            MetaRecord::Dumped {
                keyspace: 1,
                seqno: 9,
            },
            MetaRecord::DroppedRun { run: 3 },
        ] {
            assert!(
                s.apply_group(std::slice::from_ref(&record)).is_err(),
                "{record:?}"
            );
        }
    }

    #[test]
    fn drop_keyspace_moves_live_and_prepared_runs_to_dropped() {
        let mut s = MetaState::default();
        apply_all(
            &mut s,
            &[
                MetaRecord::CreateKeyspace {
                    id: 0,
                    name: "a".into(),
                    options: vec![],
                },
                MetaRecord::CreateKeyspace {
                    id: 1,
                    name: "b".into(),
                    options: vec![],
                },
                MetaRecord::PrepareRun {
                    keyspace: 0,
                    run: 1,
                },
                MetaRecord::CreateRun {
                    keyspace: 0,
                    run: 1,
                    info: info(1),
                },
                MetaRecord::PrepareRun {
                    keyspace: 0,
                    run: 2,
                },
                MetaRecord::PrepareRun {
                    keyspace: 1,
                    run: 3,
                },
                MetaRecord::InsertRange {
                    keyspace: 0,
                    range: 0,
                    begin: None,
                    end: None,
                },
                MetaRecord::InsertSlice {
                    keyspace: 0,
                    range: 0,
                    slice: 0,
                    run: 1,
                    begin: None,
                    end: None,
                },
                MetaRecord::DropKeyspace { id: 0 },
            ],
        );
        assert_eq!(s.dropped_runs, BTreeSet::from([1, 2]));
        assert_eq!(s.prepared_runs, BTreeMap::from([(3, 1)]));
        assert_eq!(s.slice_location(0), None);
        assert_eq!(s.range_keyspace(0), None);
        // The name is free again; the id is not reused by the counter.
        apply_all(
            &mut s,
            &[MetaRecord::CreateKeyspace {
                id: 2,
                name: "a".into(),
                options: vec![],
            }],
        );
        assert_eq!(s.next_keyspace_id, 3);
    }

    #[test]
    fn slices_pin_runs_and_ranges() {
        let mut s = MetaState::default();
        apply_all(
            &mut s,
            &[
                MetaRecord::CreateKeyspace {
                    id: 0,
                    name: "a".into(),
                    options: vec![],
                },
                MetaRecord::PrepareRun {
                    keyspace: 0,
                    run: 0,
                },
                MetaRecord::CreateRun {
                    keyspace: 0,
                    run: 0,
                    info: info(0),
                },
                MetaRecord::InsertRange {
                    keyspace: 0,
                    range: 4,
                    begin: None,
                    end: Some(b"m".to_vec()),
                },
                MetaRecord::InsertSlice {
                    keyspace: 0,
                    range: 4,
                    slice: 7,
                    run: 0,
                    begin: None,
                    end: Some(b"m".to_vec()),
                },
            ],
        );
        assert_eq!((s.next_range_id, s.next_slice_id), (5, 8));
        assert_eq!(s.slice_location(7), Some((0, 4)));
        let drop_run = MetaRecord::DropRun {
            keyspace: 0,
            run: 0,
        };
        assert!(s.clone().apply(&drop_run).is_err());
        let delete_range = MetaRecord::DeleteRange {
            keyspace: 0,
            range: 4,
        };
        assert!(s.clone().apply(&delete_range).is_err());
        s.apply_group(&[
            MetaRecord::DeleteSlice {
                keyspace: 0,
                range: 4,
                slice: 7,
            },
            delete_range,
            drop_run,
        ])
        .unwrap();
        s.check_invariants().unwrap();
    }

    #[test]
    fn snapshot_records_rebuild_the_state() {
        let mut s = MetaState::default();
        apply_all(
            &mut s,
            &[
                MetaRecord::CreateKeyspace {
                    id: 0,
                    name: "gone".into(),
                    options: vec![],
                },
                MetaRecord::CreateKeyspace {
                    id: 1,
                    name: "kept".into(),
                    options: vec![9],
                },
                MetaRecord::PrepareRun {
                    keyspace: 0,
                    run: 0,
                },
                MetaRecord::CreateRun {
                    keyspace: 0,
                    run: 0,
                    info: info(0),
                },
                MetaRecord::PrepareRun {
                    keyspace: 1,
                    run: 1,
                },
                MetaRecord::CreateRun {
                    keyspace: 1,
                    run: 1,
                    info: info(1),
                },
                MetaRecord::PrepareRun {
                    keyspace: 1,
                    run: 2,
                },
                MetaRecord::PrepareRun {
                    keyspace: 1,
                    run: 3,
                },
                MetaRecord::Dumped {
                    keyspace: 1,
                    seqno: 44,
                },
                MetaRecord::DropKeyspace { id: 0 },
                MetaRecord::InsertRange {
                    keyspace: 1,
                    range: 0,
                    begin: None,
                    end: None,
                },
                MetaRecord::InsertSlice {
                    keyspace: 1,
                    range: 0,
                    slice: 0,
                    run: 1,
                    begin: None,
                    end: None,
                },
                MetaRecord::ForgetRun { run: 3 },
                MetaRecord::NextIds {
                    keyspace: 10,
                    run: 20,
                    range: 30,
                    slice: 40,
                },
            ],
        );
        let mut rebuilt = MetaState::default();
        rebuilt.apply_group(&s.snapshot_records()).unwrap();
        assert_eq!(rebuilt, s);
    }
}
