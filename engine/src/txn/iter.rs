//! A transaction's scans: its own writes merged over a committed-state [`Iter`], both ways.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::conflict::{Interval, Upper};
use crate::db::DbInner;
use crate::error::{Error, Result};
use crate::iter::Iter;
use crate::keyspace::{Key, KeyspaceInner, Value};
use crate::read::{resolve_operands, Chain};

/// Iterator over a transaction's view of a key range (see
/// [`Transaction::range`](crate::Transaction::range)). Double-ended; yields `Err` once and then
/// ends if a read fails. When dropped, a read-write transaction's read set shrinks from the
/// whole range to what the iterator returned.
pub struct TxnIter {
    state: Option<State>,
    /// An error to yield first (the scan could not start).
    error: Option<Error>,
}

struct State {
    db: Arc<DbInner>,
    keyspace: Arc<KeyspaceInner>,
    committed: Iter,
    /// The transaction's own writes in the range, in key order.
    local: VecDeque<(Bytes, Chain)>,
    /// A committed pair taken from each end but not returned yet.
    front: Option<(Key, Value)>,
    back: Option<(Key, Value)>,
    committed_done: bool,
    bounds: (Bound<Bytes>, Bound<Bytes>),
    /// (conflict-manager slot, scan id) of a tracked scan.
    scan: Option<(u64, u64)>,
    front_last: Option<Bytes>,
    back_last: Option<Bytes>,
    /// An end returned `None`: the whole range was seen.
    exhausted: bool,
    done: bool,
}

impl std::fmt::Debug for TxnIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnIter")
            .field("local", &self.state.as_ref().map(|s| s.local.len()))
            .finish()
    }
}

impl TxnIter {
    pub(crate) fn new(
        db: Arc<DbInner>,
        keyspace: Arc<KeyspaceInner>,
        committed: Iter,
        local: Vec<(Bytes, Chain)>,
        bounds: (Bound<Bytes>, Bound<Bytes>),
        scan: Option<(u64, u64)>,
    ) -> TxnIter {
        TxnIter {
            state: Some(State {
                db,
                keyspace,
                committed,
                local: local.into(),
                front: None,
                back: None,
                committed_done: false,
                bounds,
                scan,
                front_last: None,
                back_last: None,
                exhausted: false,
                done: false,
            }),
            error: None,
        }
    }

    pub(crate) fn failed(error: Error) -> TxnIter {
        TxnIter {
            state: None,
            error: Some(error),
        }
    }
}

enum End {
    Front,
    Back,
}

impl State {
    /// The next committed pair from `end`, or the one buffered at the other end once the
    /// committed iterator is used up from both sides.
    fn pull_committed(&mut self, end: &End) -> Result<Option<(Key, Value)>> {
        let buffered = match end {
            End::Front => &mut self.front,
            End::Back => &mut self.back,
        };
        if let Some(pair) = buffered.take() {
            return Ok(Some(pair));
        }
        if !self.committed_done {
            let next = match end {
                End::Front => self.committed.next(),
                End::Back => self.committed.next_back(),
            };
            match next {
                Some(pair) => return pair.map(Some),
                None => self.committed_done = true,
            }
        }
        Ok(match end {
            End::Front => self.back.take(),
            End::Back => self.front.take(),
        })
    }

    fn step(&mut self, end: End) -> Result<Option<(Key, Value)>> {
        loop {
            let committed = self.pull_committed(&end)?;
            let local_key = match end {
                End::Front => self.local.front().map(|(k, _)| k.clone()),
                End::Back => self.local.back().map(|(k, _)| k.clone()),
            };
            // Which side comes first from this end: committed (`Less`), local (`Greater`), or
            // both at the same key (`Equal`).
            let order = match (&committed, &local_key) {
                (None, None) => return Ok(None),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((c, _)), Some(l)) => match end {
                    End::Front => c.as_ref().cmp(l.as_ref()),
                    End::Back => l.as_ref().cmp(c.as_ref()),
                },
            };
            if order == std::cmp::Ordering::Less {
                return Ok(committed);
            }
            // The local side goes now: put back a committed pair that comes later.
            let base = if order == std::cmp::Ordering::Equal {
                committed.map(|(_, v)| v)
            } else {
                if let Some(pair) = committed {
                    match end {
                        End::Front => self.front = Some(pair),
                        End::Back => self.back = Some(pair),
                    }
                }
                None
            };
            let taken = match end {
                End::Front => self.local.pop_front(),
                End::Back => self.local.pop_back(),
            };
            let Some((key, chain)) = taken else {
                return Ok(None);
            };
            let value = if chain.base.is_some() {
                chain.resolve(&self.keyspace, &key)?
            } else {
                Some(resolve_operands(
                    &self.keyspace,
                    &key,
                    base,
                    &chain.operands,
                )?)
            };
            if let Some(value) = value {
                return Ok(Some((key, value)));
            }
        }
    }

    fn finish(
        &mut self,
        end: End,
        step: Result<Option<(Key, Value)>>,
    ) -> Option<Result<(Key, Value)>> {
        match step {
            Ok(Some((key, value))) => {
                match end {
                    End::Front => self.front_last = Some(key.clone()),
                    End::Back => self.back_last = Some(key.clone()),
                }
                Some(Ok((key, value)))
            }
            Ok(None) => {
                self.exhausted = true;
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// What the scan returned, gaps included: from the range's start to the last key returned
    /// from the front, and from the last key returned from the back to the range's end.
    fn covered(&self) -> Vec<Interval> {
        let (lower, upper) = &self.bounds;
        let whole = Interval::from_bounds(lower, upper);
        if self.exhausted {
            return vec![whole];
        }
        let mut covered = Vec::new();
        if let Some(last) = &self.front_last {
            covered.push(Interval {
                lower: whole.lower.clone(),
                upper: Upper::Included(last.clone()),
            });
        }
        if let Some(last) = &self.back_last {
            covered.push(Interval {
                lower: last.clone(),
                upper: whole.upper,
            });
        }
        covered
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if let Some((slot, scan_id)) = self.scan {
            let covered = self.covered();
            self.db.conflicts.end_scan(slot, scan_id, covered);
        }
    }
}

impl Iterator for TxnIter {
    type Item = Result<(Key, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let state = self.state.as_mut()?;
        if state.done {
            return None;
        }
        let step = state.step(End::Front);
        state.finish(End::Front, step)
    }
}

impl DoubleEndedIterator for TxnIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let state = self.state.as_mut()?;
        if state.done {
            return None;
        }
        let step = state.step(End::Back);
        state.finish(End::Back, step)
    }
}
