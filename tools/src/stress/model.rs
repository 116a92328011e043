//! What the stress test writes: key names, the value of each (key, generation), key states as
//! stored in the expected-state file, and a small deterministic random stream.
//!
//! Every write to key `k` gives it a new *generation* `g` (one more than its last). A put stores
//! [`value_of`]`(k, g)`, a delete removes the key; either way the key's state becomes
//! [`KeyState`] `(g, present)`. Because the value is a pure function of `(k, g)` and starts with
//! both numbers, a verifier holding only the state can tell exactly which write a value came
//! from, and a value that is not `value_of(k, g)` for any `g` is garbage.

use std::fmt;

/// Keyspaces the keys are spread over (in contiguous blocks), so batches span keyspaces and each
/// scan stays inside one.
pub const KEYSPACES: u64 = 2;

/// The keyspace of the counters (merge operator `strata::merge::Counter`).
pub const COUNTER_KEYSPACE: &str = "stress_counters";

/// Counters for `keys` keys. Counter `c` is named [`key_name`]`(keys + c)` in
/// [`COUNTER_KEYSPACE`] and has slot `keys + c` in the expected state.
pub fn counter_keys(keys: u64) -> u64 {
    (keys / 8).max(1)
}

/// The total a counter value encodes (absent: 0, never upserted); an error describing a value
/// that is not an 8-byte counter.
pub fn counter_total(value: Option<&[u8]>) -> Result<u64, String> {
    match value {
        None => Ok(0),
        Some(v) => strata::merge::Counter::decode(v)
            .map(|t| t as u64)
            .map_err(|e| format!("not a counter ({e}): {}", preview(v))),
    }
}

/// The name of keyspace `i`.
pub fn keyspace_name(i: u64) -> String {
    format!("stress{i}")
}

/// The keyspace of key index `key` among `keys`.
pub fn keyspace_of(key: u64, keys: u64) -> u64 {
    (u128::from(key) * u128::from(KEYSPACES) / u128::from(keys.max(1))) as u64
}

/// The key indexes of keyspace `ks`: a half-open interval.
pub fn keyspace_block(ks: u64, keys: u64) -> (u64, u64) {
    // The smallest key index whose keyspace is `ks`, by the inverse of `keyspace_of`.
    let start =
        |ks: u64| (u128::from(ks) * u128::from(keys)).div_ceil(u128::from(KEYSPACES)) as u64;
    (start(ks), start(ks + 1).min(keys))
}

/// Key indexes print as 8 or more digits, so byte order is index order.
pub fn key_name(key: u64) -> Vec<u8> {
    format!("k{key:08}").into_bytes()
}

/// The key index of a key name, if it is one.
pub fn parse_key(name: &[u8]) -> Option<u64> {
    let digits = name.strip_prefix(b"k")?;
    if digits.len() < 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A key that sorts between `key` and `key + 1` and is never written: lookups must miss it.
pub fn missing_key_name(key: u64) -> Vec<u8> {
    let mut name = key_name(key);
    name.push(b'~');
    name
}

/// The value a put of generation `gen` writes to key `key`: `k{key}/{gen}/` and a filler whose
/// length and bytes derive from both (mostly 0..128 bytes, one in 64 values 1-8 KiB so some
/// values span pages); the filler is runs of one letter, so values compress.
pub fn value_of(key: u64, gen: u64) -> Vec<u8> {
    let mut value = format!("k{key:08}/{gen}/").into_bytes();
    let mut rng = Rng::new(key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ gen);
    let len = if rng.below(64) == 0 {
        1024 + rng.below(7 * 1024)
    } else {
        rng.below(128)
    } as usize;
    while value.len() < len + 16 {
        let letter = b'a' + rng.below(26) as u8;
        let run = 1 + rng.below(12) as usize;
        value.extend(std::iter::repeat_n(letter, run));
    }
    value
}

/// Which generation of `key` wrote `value`; an error describing the value if it is not one that
/// [`value_of`] produces for this key.
pub fn parse_value(key: u64, value: &[u8]) -> Result<u64, String> {
    let prefix = format!("k{key:08}/");
    let gen = value
        .strip_prefix(prefix.as_bytes())
        .and_then(|rest| {
            let end = rest.iter().position(|&b| b == b'/')?;
            std::str::from_utf8(&rest[..end]).ok()?.parse::<u64>().ok()
        })
        .filter(|&gen| gen > 0 && value_of(key, gen) == value);
    gen.ok_or_else(|| {
        format!(
            "a value the stress test never writes to this key: {}",
            preview(value)
        )
    })
}

/// At most 64 bytes of `bytes`, as text when printable, else hex, with the full length.
pub fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64)];
    let more = if bytes.len() > head.len() { "..." } else { "" };
    let text = match std::str::from_utf8(head) {
        Ok(t) if !t.chars().any(char::is_control) => format!("{t:?}"),
        _ => head.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    };
    format!("{text}{more} ({} bytes)", bytes.len())
}

/// A key's state: the generation of its last write and whether that write was a put.
///
/// Stored as one `u64` (`gen << 1 | present`), so a state is written to the expected-state file
/// with one 8-byte write, which a process kill cannot tear. `0` is "never written".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyState(pub u64);

impl KeyState {
    /// Never written (generation 0, absent).
    #[cfg(test)]
    pub const NEW: KeyState = KeyState(0);

    /// The state after a write of generation `gen`.
    pub fn new(gen: u64, present: bool) -> KeyState {
        KeyState(gen << 1 | u64::from(present))
    }

    /// The generation of the last write (0: none).
    pub fn gen(self) -> u64 {
        self.0 >> 1
    }

    /// True if the key holds `value_of(key, gen)`; false if it is absent.
    pub fn present(self) -> bool {
        self.0 & 1 == 1
    }

    /// The state after the next write: a put or a delete of generation `gen + 1`.
    pub fn next(self, put: bool) -> KeyState {
        KeyState::new(self.gen() + 1, put)
    }

    /// The value a reader must find in this state.
    pub fn value(self, key: u64) -> Option<Vec<u8>> {
        self.present().then(|| value_of(key, self.gen()))
    }

    /// What a read found, as a state: absent is generation-less, so it takes `absent_gen`.
    pub fn found(key: u64, value: Option<&[u8]>, absent_gen: u64) -> Result<KeyState, String> {
        match value {
            None => Ok(KeyState::new(absent_gen, false)),
            Some(v) => parse_value(key, v).map(|gen| KeyState::new(gen, true)),
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.gen(), self.present()) {
            (0, _) => f.write_str("absent (never written)"),
            (gen, true) => write!(f, "the value of generation {gen}"),
            (gen, false) => write!(f, "absent (deleted by generation {gen})"),
        }
    }
}

/// A splitmix64 stream: deterministic per seed, so a failing schedule can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A uniform number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// Mixes a seed with a stream number, so each thread and cycle gets its own stream.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    Rng::new(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_back_to_their_generation_and_reject_others() {
        for key in [0, 7, 12_345_678] {
            for gen in [1, 2, 99, 1 << 40] {
                let v = value_of(key, gen);
                assert_eq!(parse_value(key, &v), Ok(gen));
                assert!(parse_value(key + 1, &v).is_err(), "another key's value");
                let mut damaged = v.clone();
                let last = damaged.len() - 1;
                damaged[last] ^= 1;
                assert!(parse_value(key, &damaged).is_err(), "a damaged value");
            }
        }
        assert!(parse_value(3, b"").is_err());
        assert!(
            parse_value(3, b"k00000003/0/").is_err(),
            "generation 0 is never written"
        );
    }

    #[test]
    fn key_names_sort_by_index_and_parse_back() {
        let names: Vec<Vec<u8>> = [0u64, 9, 10, 12_345_678, 99_999_999]
            .iter()
            .map(|&k| key_name(k))
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(parse_key(&key_name(4711)), Some(4711));
        assert_eq!(parse_key(&missing_key_name(4711)), None);
        assert!(key_name(5) < missing_key_name(5) && missing_key_name(5) < key_name(6));
    }

    #[test]
    fn keyspace_blocks_tile_the_keys() {
        for keys in [1u64, 2, 3, 10, 1001] {
            let mut next = 0;
            for ks in 0..KEYSPACES {
                let (lo, hi) = keyspace_block(ks, keys);
                assert_eq!(lo, next, "keys {keys} keyspace {ks}");
                for key in lo..hi {
                    assert_eq!(keyspace_of(key, keys), ks);
                }
                next = hi;
            }
            assert_eq!(next, keys);
        }
    }

    #[test]
    fn key_states_pack_generation_and_presence() {
        let s = KeyState::NEW.next(true);
        assert_eq!((s.gen(), s.present()), (1, true));
        let d = s.next(false);
        assert_eq!((d.gen(), d.present()), (2, false));
        assert_eq!(d.value(3), None);
        assert_eq!(s.value(3), Some(value_of(3, 1)));
        assert_eq!(
            KeyState::found(3, Some(&value_of(3, 5)), 9),
            Ok(KeyState::new(5, true))
        );
        assert_eq!(KeyState::found(3, None, 9), Ok(KeyState::new(9, false)));
    }
}
