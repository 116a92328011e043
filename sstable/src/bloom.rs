//! The run's bloom filter over user keys.
//!
//! Keys are first reduced to a 64-bit fingerprint with SipHash-1-3 under fixed keys
//! ([`key_fingerprint`]); the `bloomfilter` crate's filter is built over fingerprints. This keeps
//! the writer's memory at 8 bytes per distinct key until `finish` sizes the filter exactly (as
//! RocksDB's full filters do), and lets a caller hash a key once and probe many runs.

use std::hash::{Hash, Hasher};

use bloomfilter::Bloom;
use siphasher::sip::SipHasher13;

use crate::error::{DecodeError, DecodeResult};

/// Hash functions above this are refused when loading a filter: a hostile `k` would otherwise
/// turn every probe into a near-endless loop.
const MAX_HASH_FUNCTIONS: u32 = 64;

/// The bloom filter's view of a user key. Stable across platforms and versions of this crate:
/// SipHash-1-3 with keys (0x7374_7261_7461_0001, 0x626c_6f6f_6d00_0001) over the raw key bytes.
pub fn key_fingerprint(key: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0x7374_7261_7461_0001, 0x626c_6f6f_6d00_0001);
    hasher.write(key);
    hasher.finish()
}

/// What the filter stores: a fingerprint, hashed by the filter as its 8 little-endian bytes.
/// (`Hash for u64` would use native byte order and make filters non-portable across endianness.)
struct Fingerprint(u64);

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0.to_le_bytes());
    }
}

/// A loaded bloom filter.
pub(crate) struct RunBloom {
    filter: Bloom<Fingerprint>,
}

impl RunBloom {
    /// Builds a filter for the given distinct fingerprints at the given false-positive rate.
    /// Returns `None` when there is nothing to filter or the rate disables the filter (>= 1.0).
    pub(crate) fn build(fingerprints: &[u64], fp_rate: f64) -> Option<Vec<u8>> {
        if fingerprints.is_empty() || !(fp_rate > 0.0 && fp_rate < 1.0) {
            return None;
        }
        let seed = *b"strata-run-bloom-filter-seed-v1!";
        let mut filter =
            Bloom::new_for_fp_rate_with_seed(fingerprints.len(), fp_rate, &seed).ok()?;
        for fingerprint in fingerprints {
            filter.set(&Fingerprint(*fingerprint));
        }
        Some(filter.into_bytes())
    }

    /// Loads a serialized filter, refusing shapes that would panic or hang a probe.
    pub(crate) fn load(bytes: &[u8]) -> DecodeResult<RunBloom> {
        // The crate's header: version (1), bitmap length in bytes (8), hash count (4), seed (32).
        const HEADER_LEN: usize = 45;
        if bytes.len() <= HEADER_LEN {
            return Err(DecodeError::new(format!(
                "bloom filter of {} bytes has an empty bitmap",
                bytes.len()
            )));
        }
        let filter =
            Bloom::from_slice(bytes).map_err(|e| DecodeError::new(format!("bloom filter: {e}")))?;
        let k = filter.number_of_hash_functions();
        if k == 0 || k > MAX_HASH_FUNCTIONS {
            return Err(DecodeError::new(format!(
                "bloom filter uses {k} hash functions"
            )));
        }
        Ok(RunBloom { filter })
    }

    pub(crate) fn may_contain(&self, fingerprint: u64) -> bool {
        self.filter.check(&Fingerprint(fingerprint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_no_false_negatives_and_rejects_hostile_shapes() {
        let fps: Vec<u64> = (0..1000u32)
            .map(|i| key_fingerprint(&i.to_be_bytes()))
            .collect();
        let bytes = RunBloom::build(&fps, 0.01).unwrap();
        let bloom = RunBloom::load(&bytes).unwrap();
        assert!(fps.iter().all(|&f| bloom.may_contain(f)));
        assert!(RunBloom::build(&fps, 1.0).is_none());
        assert!(RunBloom::build(&[], 0.01).is_none());

        let mut hostile = bytes.clone();
        hostile[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            RunBloom::load(&hostile).is_err(),
            "k = u32::MAX must be refused"
        );
        let mut empty = bytes[..45].to_vec();
        empty[1..9].copy_from_slice(&0u64.to_le_bytes());
        assert!(
            RunBloom::load(&empty).is_err(),
            "an empty bitmap must be refused"
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        // Pinned: changing the fingerprint silently breaks every existing run's filter.
        assert_eq!(key_fingerprint(b""), key_fingerprint(&[]));
        assert_eq!(key_fingerprint(b"strata"), 0xbbe1_7771_32d9_5457);
    }
}
