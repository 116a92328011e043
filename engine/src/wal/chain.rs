//! The seqno chain check of recovery: records of the log must continue each other.
//!
//! The reader (`reader.rs`) finds damage *inside* a segment. It cannot see records that are
//! missing as a whole: a segment that is not the last one cut exactly at a record boundary, or
//! a whole segment gone from the middle of the log, reads as a clean, shorter log, and the
//! acknowledged commits in it would be lost without a word. Their seqnos tell: within a session
//! the engine writes every batch to the log in seqno order, one record per batch, so each record's
//! first seqno is the previous record's last seqno plus one.
//!
//! A gap is legitimate only when the seqnos in it were never logged: commits made with
//! `WalMode::None` (then dumped, or lost by a crash and handed out again), or records deleted
//! with their segments once dumped. In both cases every seqno of the gap is at or below the
//! highest dumped seqno of some keyspace (the next session starts after the highest seqno the runs
//! hold, and runs never hold a seqno above their keyspace's dumped seqno). So a gap that ends
//! above the highest dumped seqno is damage. A gap below it might still have held writes of a
//! keyspace dumped less far; that is not detectable from the seqnos alone.

use std::path::{Path, PathBuf};

use super::WalRecoveryMode;
use crate::error::{Error, Result};

/// Follows the records of the log in order (see the module documentation).
#[derive(Debug)]
pub(crate) struct SeqnoChain {
    /// The highest dumped seqno of any keyspace: a gap may end at or below it.
    dumped: u64,
    /// The last seqno of the previous record (0 before the first).
    last: u64,
    /// The end of the log so far: the last segment read and the end of its last valid record.
    end: Option<(PathBuf, u64)>,
    mode: WalRecoveryMode,
}

impl SeqnoChain {
    /// A chain for a log replayed onto keyspaces whose highest dumped seqno is `dumped`.
    pub(crate) fn new(dumped: u64, mode: WalRecoveryMode) -> Self {
        SeqnoChain {
            dumped,
            last: 0,
            end: None,
            mode,
        }
    }

    /// Checks the next record in log order: at `offset` of segment `path`, holding the seqnos
    /// `first..=last`.
    ///
    /// # Errors
    /// [`Error::Corruption`] when seqnos between the previous record and this one are missing and
    /// were never dumped: named after where they should have been (the end of the previous
    /// segment, or this record's offset if it is the first or they share a segment). In
    /// [`WalRecoveryMode::SkipCorrupted`] the gap is logged instead.
    pub(crate) fn record(&mut self, path: &Path, offset: u64, first: u64, last: u64) -> Result<()> {
        let expected = self.last + 1;
        if first > expected && first - 1 > self.dumped {
            let (at_path, at) = match &self.end {
                Some((prev, end)) if prev != path => (prev.clone(), *end),
                _ => (path.to_path_buf(), offset),
            };
            let what = format!(
                "WAL records with seqnos {expected}..={} are missing: the record at offset \
                 {offset} of {} starts at seqno {first} but the log before it ends at seqno {}, \
                 and no keyspace is dumped past {} (a segment cut at a record boundary, or \
                 removed)",
                first - 1,
                path.display(),
                self.last,
                self.dumped
            );
            if self.mode == WalRecoveryMode::SkipCorrupted {
                log::warn!("strata: {}: {what}", at_path.display());
            } else {
                return Err(Error::corruption(at_path, at, what));
            }
        }
        self.last = self.last.max(last);
        Ok(())
    }

    /// Notes that segment `path` was read up to `valid_len` (it may hold no record at all).
    pub(crate) fn segment_end(&mut self, path: &Path, valid_len: u64) {
        self.end = Some((path.to_path_buf(), valid_len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn contiguous_records_and_dumped_gaps_pass() {
        let mut chain = SeqnoChain::new(10, WalRecoveryMode::TolerateTornTail);
        // The log may start anywhere up to just past the dumped seqno.
        chain.record(&p("1.wal"), 24, 8, 9).unwrap();
        chain.record(&p("1.wal"), 60, 10, 12).unwrap();
        chain.segment_end(&p("1.wal"), 90);
        chain.record(&p("2.wal"), 24, 13, 13).unwrap();
        let mut fresh = SeqnoChain::new(0, WalRecoveryMode::TolerateTornTail);
        fresh.record(&p("1.wal"), 24, 1, 1).unwrap();
        // A session after commits without a log that were dumped up to 40.
        let mut none = SeqnoChain::new(40, WalRecoveryMode::TolerateTornTail);
        none.record(&p("1.wal"), 24, 5, 9).unwrap();
        none.segment_end(&p("1.wal"), 50);
        none.record(&p("2.wal"), 24, 41, 41).unwrap();
    }

    #[test]
    fn a_gap_above_the_dumped_seqno_is_corruption_where_records_are_missing() {
        let mut chain = SeqnoChain::new(3, WalRecoveryMode::TolerateTornTail);
        chain.record(&p("1.wal"), 24, 4, 6).unwrap();
        chain.segment_end(&p("1.wal"), 80);
        let err = chain.record(&p("2.wal"), 24, 9, 9).unwrap_err();
        match err {
            Error::Corruption { path, offset, what } => {
                assert_eq!((path, offset), (p("1.wal"), 80), "{what}");
                assert!(what.contains("seqnos 7..=8"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        // The first record of the log starting past the dumped seqno: earlier records are gone.
        let mut first = SeqnoChain::new(3, WalRecoveryMode::TolerateTornTail);
        let err = first.record(&p("5.wal"), 24, 7, 7).unwrap_err();
        assert!(
            matches!(err, Error::Corruption { offset: 24, .. }),
            "{err:?}"
        );
        // An empty segment in between: the missing records were at its end.
        let mut empty = SeqnoChain::new(0, WalRecoveryMode::TolerateTornTail);
        empty.record(&p("1.wal"), 24, 1, 1).unwrap();
        empty.segment_end(&p("1.wal"), 50);
        empty.segment_end(&p("2.wal"), 24);
        let err = empty.record(&p("3.wal"), 24, 5, 5).unwrap_err();
        assert!(
            matches!(&err, Error::Corruption { path, offset: 24, .. } if path == &p("2.wal")),
            "{err:?}"
        );
    }

    #[test]
    fn skip_corrupted_passes_gaps() {
        let mut chain = SeqnoChain::new(0, WalRecoveryMode::SkipCorrupted);
        chain.record(&p("1.wal"), 24, 1, 1).unwrap();
        chain.record(&p("1.wal"), 50, 5, 5).unwrap();
        chain.record(&p("1.wal"), 80, 6, 6).unwrap();
    }
}
