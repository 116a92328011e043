//! Merge operators: upserts that store an operand without reading, folded into a value later.
//!
//! [`Keyspace::upsert`](crate::Keyspace::upsert) writes a *Merge* entry holding an operand. A
//! read of the key collects the operands above the key's newest Put or Delete (its *base*) and
//! asks the keyspace's [`MergeOperator`] to fold them; compaction folds chains whose base it can
//! see (`strata_compaction::VersionGc`), and a memtable chain longer than
//! 128 operands is folded in the background (vinyl's upsert squash), so a hot
//! counter never makes reads replay a long chain.
//!
//! The built-in operators are FoundationDB's atomic operations: [`Counter`] (signed 64-bit
//! add), [`Append`] (byte concatenation), [`Min`] and [`Max`] (signed 64-bit).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Memtable chains of this many operands are squashed in the background (vinyl: 128).
pub(crate) const SQUASH_CHAIN_LENGTH: u32 = 128;

/// Folds upsert operands into values. Implementations must be deterministic and associative in
/// the sense that folding a chain in two steps equals folding it at once:
/// `full_merge(k, Some(&full_merge(k, base, older)?), newer) == full_merge(k, base, older ++
/// newer)`, because compaction folds parts of chains and readers fold the rest.
///
/// Thread-safety: called concurrently from readers and background threads.
pub trait MergeOperator: Send + Sync + 'static {
    /// A stable name, stored with the keyspace: reopening the keyspace with an operator of
    /// another name is [`Error::MergeOperatorMismatch`](crate::Error::MergeOperatorMismatch).
    fn name(&self) -> &str;

    /// The value of `key` after applying `operands` (oldest first) to `base` (`None`: the key
    /// had no value). An `Err(message)` rejects an operand: the read fails with
    /// [`Error::Merge`](crate::Error::Merge) naming the key; nothing is changed on disk, and the
    /// chain stays unfolded so every later read reports the same error.
    fn full_merge(
        &self,
        key: &[u8],
        base: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, String>;

    /// Combines `operands` (oldest first, at least two) into one operand with the same effect,
    /// when the base is not known (compaction of a range's newer runs). `None` (the default)
    /// keeps them apart.
    fn partial_merge(&self, key: &[u8], operands: &[&[u8]]) -> Option<Vec<u8>> {
        let _ = (key, operands);
        None
    }
}

impl fmt::Debug for dyn MergeOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MergeOperator({:?})", self.name())
    }
}

impl PartialEq for dyn MergeOperator {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

/// The built-in operator with this name ([`Counter`], [`Append`], [`Min`], [`Max`]), if any.
pub fn builtin(name: &str) -> Option<Arc<dyn MergeOperator>> {
    let all: [Arc<dyn MergeOperator>; 4] = [
        Arc::new(Counter),
        Arc::new(Append),
        Arc::new(Min),
        Arc::new(Max),
    ];
    all.into_iter().find(|op| op.name() == name)
}

/// Folds a chain: `operands` newest first (as read), onto `base`.
pub(crate) fn fold(
    operator: &dyn MergeOperator,
    key: &[u8],
    base: Option<&[u8]>,
    operands_newest_first: &[Bytes],
) -> Result<Vec<u8>, String> {
    let oldest_first: Vec<&[u8]> = operands_newest_first
        .iter()
        .rev()
        .map(|o| o.as_ref())
        .collect();
    operator.full_merge(key, base, &oldest_first)
}

/// The operator as the compaction crate's merge function (operands newest first).
pub(crate) fn full_merge_fn(operator: Arc<dyn MergeOperator>) -> Box<strata_compaction::MergeFn> {
    Box::new(move |key: &[u8], base: Option<&[u8]>, operands: &[Bytes]| {
        fold(operator.as_ref(), key, base, operands)
    })
}

/// The operator's partial merge as the compaction crate's partial merge function.
pub(crate) fn partial_merge_fn(
    operator: Arc<dyn MergeOperator>,
) -> Box<strata_compaction::PartialMergeFn> {
    Box::new(move |key: &[u8], operands: &[Bytes]| {
        let oldest_first: Vec<&[u8]> = operands.iter().rev().map(|o| o.as_ref()).collect();
        operator.partial_merge(key, &oldest_first)
    })
}

fn decode_i64(what: &str, bytes: &[u8]) -> Result<i64, String> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        format!(
            "{what} is {} bytes; expected an 8-byte little-endian i64",
            bytes.len()
        )
    })?;
    Ok(i64::from_le_bytes(array))
}

fn fold_i64(
    base: Option<&[u8]>,
    operands: &[&[u8]],
    combine: fn(i64, i64) -> i64,
) -> Result<Vec<u8>, String> {
    let mut acc = match base {
        Some(base) => Some(decode_i64("the stored value", base)?),
        None => None,
    };
    for operand in operands {
        let value = decode_i64("an operand", operand)?;
        acc = Some(match acc {
            Some(acc) => combine(acc, value),
            None => value,
        });
    }
    Ok(acc.unwrap_or(0).to_le_bytes().to_vec())
}

fn partial_i64(operands: &[&[u8]], combine: fn(i64, i64) -> i64) -> Option<Vec<u8>> {
    // A malformed operand stays unfolded, so the read that meets it reports it.
    fold_i64(None, operands, combine).ok()
}

/// Signed 64-bit counter (FoundationDB `ADD`): values and operands are 8-byte little-endian
/// `i64`s; the sum wraps on overflow; a missing value counts as 0. Anything not 8 bytes long is
/// rejected. Encode operands with [`Counter::operand`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Counter {
    /// The operand that adds `delta`.
    pub fn operand(delta: i64) -> [u8; 8] {
        delta.to_le_bytes()
    }

    /// Decodes a counter value.
    ///
    /// # Errors
    /// A message if `value` is not 8 bytes long.
    pub fn decode(value: &[u8]) -> Result<i64, String> {
        decode_i64("the value", value)
    }
}

impl MergeOperator for Counter {
    fn name(&self) -> &str {
        "strata.counter"
    }

    fn full_merge(
        &self,
        _key: &[u8],
        base: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, String> {
        fold_i64(base, operands, i64::wrapping_add)
    }

    fn partial_merge(&self, _key: &[u8], operands: &[&[u8]]) -> Option<Vec<u8>> {
        partial_i64(operands, i64::wrapping_add)
    }
}

/// Byte append (FoundationDB `APPEND_IF_FITS` without the limit): the value is the base followed
/// by every operand, oldest first. Values are still bounded by `Options::max_value_len` when
/// written; a folded value may exceed it, which compaction then reports as an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Append;

impl MergeOperator for Append {
    fn name(&self) -> &str {
        "strata.append"
    }

    fn full_merge(
        &self,
        _key: &[u8],
        base: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, String> {
        let len = base.map_or(0, <[u8]>::len) + operands.iter().map(|o| o.len()).sum::<usize>();
        let mut value = Vec::with_capacity(len);
        value.extend_from_slice(base.unwrap_or_default());
        for operand in operands {
            value.extend_from_slice(operand);
        }
        Ok(value)
    }

    fn partial_merge(&self, key: &[u8], operands: &[&[u8]]) -> Option<Vec<u8>> {
        self.full_merge(key, None, operands).ok()
    }
}

/// Signed 64-bit minimum (FoundationDB `MIN`, over `i64` instead of unsigned): the smallest of
/// the value and the operands; a missing value takes the first operand. 8-byte little-endian.
#[derive(Debug, Clone, Copy, Default)]
pub struct Min;

impl MergeOperator for Min {
    fn name(&self) -> &str {
        "strata.min"
    }

    fn full_merge(
        &self,
        _key: &[u8],
        base: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, String> {
        fold_i64(base, operands, std::cmp::min)
    }

    fn partial_merge(&self, _key: &[u8], operands: &[&[u8]]) -> Option<Vec<u8>> {
        partial_i64(operands, std::cmp::min)
    }
}

/// Signed 64-bit maximum (FoundationDB `MAX`, over `i64`); see [`Min`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Max;

impl MergeOperator for Max {
    fn name(&self) -> &str {
        "strata.max"
    }

    fn full_merge(
        &self,
        _key: &[u8],
        base: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>, String> {
        fold_i64(base, operands, std::cmp::max)
    }

    fn partial_merge(&self, _key: &[u8], operands: &[&[u8]]) -> Option<Vec<u8>> {
        partial_i64(operands, std::cmp::max)
    }
}

/// Folds the upsert chain topped by the Merge entry `(key, seqno)` into one Put in the same
/// memtable (vinyl's upsert squash). The Put carries the same seqno and the value a reader at
/// `seqno` sees, so it changes no reader's answer; it is not logged (recovery replays the
/// chain, and the next long chain is squashed again). Runs on a dump thread. Skipped when the
/// memtable was dumped meanwhile (the chain then lives in a run, where compaction folds it) or
/// when an operand is rejected (reads report it).
///
/// Reading at `seqno` is safe from version garbage collection: older versions of the key lie
/// in older memtables (never collected) or in runs, all below this memtable's first seqno, where
/// the newest version of a key is always kept.
pub(crate) fn squash(
    db: &crate::db::DbInner,
    ks: &crate::keyspace::KeyspaceInner,
    key: &Bytes,
    seqno: u64,
) {
    let version = ks.current();
    let Some(memtable) = version.memtables().find(|m| m.accepts(seqno)).cloned() else {
        return;
    };
    match crate::read::get_in(ks, &version, key, seqno) {
        Ok(Some(value)) => {
            let charge = memtable.insert_squashed(key, seqno, &value);
            db.quota.charge(charge);
            ks.counters
                .squashes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(None) => {}
        Err(e) => log::debug!("strata: squash of a key in {:?} skipped: {e}", ks.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(op: &dyn MergeOperator, base: Option<i64>, operands: &[i64]) -> Result<i64, String> {
        let base = base.map(i64::to_le_bytes);
        let operands: Vec<[u8; 8]> = operands.iter().map(|o| o.to_le_bytes()).collect();
        let refs: Vec<&[u8]> = operands.iter().map(|o| &o[..]).collect();
        let value = op.full_merge(b"k", base.as_ref().map(|b| &b[..]), &refs)?;
        Counter::decode(&value)
    }

    #[test]
    fn counter_adds_and_wraps() {
        assert_eq!(merge(&Counter, None, &[1, 2, 3]), Ok(6));
        assert_eq!(merge(&Counter, Some(10), &[-3]), Ok(7));
        assert_eq!(merge(&Counter, Some(i64::MAX), &[1]), Ok(i64::MIN));
        assert_eq!(merge(&Counter, None, &[]), Ok(0));
    }

    #[test]
    fn min_and_max_keep_the_extreme() {
        assert_eq!(merge(&Min, Some(5), &[7, -2, 3]), Ok(-2));
        assert_eq!(merge(&Max, Some(5), &[7, -2, 3]), Ok(7));
        assert_eq!(merge(&Max, None, &[-4]), Ok(-4));
    }

    #[test]
    fn malformed_operands_are_rejected_with_a_message() {
        let err = Counter
            .full_merge(b"k", None, &[b"abc"])
            .expect_err("3 bytes is not a counter");
        assert!(err.contains("3 bytes"), "{err}");
        assert!(Counter.full_merge(b"k", Some(b"x"), &[&[0; 8]]).is_err());
        assert_eq!(Counter.partial_merge(b"k", &[b"abc", &[0; 8]]), None);
    }

    #[test]
    fn append_concatenates_oldest_first() {
        let value = Append
            .full_merge(b"k", Some(b"a"), &[b"b", b"cd"])
            .expect("append never fails");
        assert_eq!(value, b"abcd");
        assert_eq!(
            Append.partial_merge(b"k", &[b"x", b"y"]),
            Some(b"xy".to_vec())
        );
    }

    #[test]
    fn partial_then_full_equals_full() {
        let ops: Vec<[u8; 8]> = [4i64, -9, 12].iter().map(|o| o.to_le_bytes()).collect();
        let refs: Vec<&[u8]> = ops.iter().map(|o| &o[..]).collect();
        for op in [&Counter as &dyn MergeOperator, &Min, &Max] {
            let whole = op.full_merge(b"k", Some(&3i64.to_le_bytes()), &refs);
            let partial = op.partial_merge(b"k", &refs[1..]).expect("foldable");
            let stepwise = op.full_merge(b"k", Some(&3i64.to_le_bytes()), &[refs[0], &partial]);
            assert_eq!(whole, stepwise, "{}", op.name());
        }
    }

    #[test]
    fn builtins_are_found_by_name() {
        for name in [
            "strata.counter",
            "strata.append",
            "strata.min",
            "strata.max",
        ] {
            assert_eq!(
                builtin(name).map(|op| op.name().to_string()).as_deref(),
                Some(name)
            );
        }
        assert!(builtin("user.thing").is_none());
    }

    #[test]
    fn fold_takes_operands_newest_first() {
        let newest_first = [Bytes::from_static(b"c"), Bytes::from_static(b"b")];
        let value = fold(&Append, b"k", Some(b"a"), &newest_first).expect("append");
        assert_eq!(value, b"abc");
    }
}
