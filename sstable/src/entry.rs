//! Entries: one versioned write, and the order runs keep them in.

use std::cmp::Ordering;

use bytes::Bytes;

/// The largest seqno an entry may carry: 2^56 - 1, so seqno and kind pack into one u64 trailer
/// (`seqno << 8 | kind`).
pub const MAX_SEQNO: u64 = (1 << 56) - 1;

/// The longest user key accepted: 64 KiB.
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// The default limit on value length: 16 MiB. Configurable per writer up to
/// [`MAX_VALUE_LEN_LIMIT`].
pub const DEFAULT_MAX_VALUE_LEN: usize = 16 * 1024 * 1024;

/// The largest value the format allows: 256 MiB. Bounds what a reader may allocate for one page,
/// whatever a damaged or hostile file claims.
pub const MAX_VALUE_LEN_LIMIT: usize = 256 * 1024 * 1024;

/// The largest raw page a reader accepts: one entry of the largest key and value plus headers.
pub const MAX_PAGE_RAW_LEN: usize = MAX_VALUE_LEN_LIMIT + MAX_KEY_LEN + 64;

/// What an entry does to its key.
///
/// Stored as one byte. Zero is deliberately unused, so a zeroed region never decodes as a valid
/// entry. New kinds get new numbers; readers reject numbers they do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EntryKind {
    /// Sets the key to the value (vinyl: REPLACE).
    Put = 1,
    /// Removes the key; the value is empty (vinyl: DELETE).
    Delete = 2,
    /// An upsert operand, applied to the older value by a merge operator (vinyl: UPSERT).
    Merge = 3,
}

impl EntryKind {
    /// Decodes the on-disk byte; `None` for an unknown kind.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(EntryKind::Put),
            2 => Some(EntryKind::Delete),
            3 => Some(EntryKind::Merge),
            _ => None,
        }
    }

    /// A short lowercase name (`put`, `delete`, `merge`) for tools and logs.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Put => "put",
            EntryKind::Delete => "delete",
            EntryKind::Merge => "merge",
        }
    }
}

/// One versioned write: (user key, seqno, kind, value).
///
/// `key` and `value` are shared buffers: cloning an entry never copies its bytes. Values read from
/// a run are slices of the decoded page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The user key.
    pub key: Bytes,
    /// Commit sequence number; at most [`MAX_SEQNO`].
    pub seqno: u64,
    /// What the entry does.
    pub kind: EntryKind,
    /// The value (empty for deletes).
    pub value: Bytes,
}

impl Entry {
    /// Builds an entry, copying `key` and `value` into shared buffers.
    pub fn new(
        key: impl AsRef<[u8]>,
        seqno: u64,
        kind: EntryKind,
        value: impl AsRef<[u8]>,
    ) -> Self {
        Entry {
            key: Bytes::copy_from_slice(key.as_ref()),
            seqno,
            kind,
            value: Bytes::copy_from_slice(value.as_ref()),
        }
    }

    /// Compares two entries in run order (see [`compare_internal`]).
    pub fn cmp_internal(&self, other: &Entry) -> Ordering {
        compare_internal(&self.key, self.seqno, &other.key, other.seqno)
    }
}

/// The order of entries in runs, memtables and merges: user key ascending (bytewise), then seqno
/// descending, so the newest version of a key comes first.
///
/// Seek targets may use seqnos above [`MAX_SEQNO`]: `(k, u64::MAX)` sorts before every real entry
/// of `k`, and `(k, 0)` after or at the last one.
#[inline]
pub fn compare_internal(a_key: &[u8], a_seqno: u64, b_key: &[u8], b_seqno: u64) -> Ordering {
    compare_keys(a_key, b_key).then_with(|| b_seqno.cmp(&a_seqno))
}

/// Keys longer than this are compared with `memcmp`; shorter ones inline, 8 bytes at a time.
const INLINE_COMPARE_MAX: usize = 32;

/// Bytewise order of user keys, the same as `a.cmp(b)`. Short keys (the common case: 8-32
/// bytes) are compared as big-endian words without calling `memcmp`, whose call and size dispatch
/// cost more than the comparison itself; a skiplist search or a page seek makes dozens per
/// operation.
#[inline]
pub fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    if common > INLINE_COMPARE_MAX {
        return a.cmp(b);
    }
    let (a_head, b_head) = (&a[..common], &b[..common]);
    let mut a_words = a_head.chunks_exact(8);
    let mut b_words = b_head.chunks_exact(8);
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        let (x, y) = (big_endian_word(x), big_endian_word(y));
        if x != y {
            return x.cmp(&y);
        }
    }
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

#[inline]
fn big_endian_word(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_be_bytes(word)
}

/// Packs seqno and kind into the trailer stored (as a varint) with every entry.
#[inline]
pub(crate) fn pack_trailer(seqno: u64, kind: EntryKind) -> u64 {
    debug_assert!(seqno <= MAX_SEQNO);
    (seqno << 8) | kind as u64
}

/// Unpacks a trailer; `None` when the kind byte is unknown.
#[inline]
pub(crate) fn unpack_trailer(trailer: u64) -> Option<(u64, EntryKind)> {
    let kind = EntryKind::from_u8((trailer & 0xff) as u8)?;
    Some((trailer >> 8, kind))
}

/// Renders a key for messages: UTF-8 when printable, hex otherwise, cut at 64 bytes.
pub fn display_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(64)];
    let suffix = if key.len() > 64 { "..." } else { "" };
    match std::str::from_utf8(shown) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s}{suffix}"),
        _ => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{suffix}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_keys_is_bytewise_order() {
        // Every length 0..=40 against every other, differing at every position, both ways.
        let mut rng = 0x5eed_u64;
        let mut next = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) as u8
        };
        for a_len in 0..=40usize {
            for b_len in 0..=40usize {
                let a: Vec<u8> = (0..a_len).map(|_| next() % 4).collect();
                let mut b: Vec<u8> = a
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(0))
                    .take(b_len)
                    .collect();
                assert_eq!(compare_keys(&a, &b), a.cmp(&b), "{a:?} {b:?}");
                for at in 0..b_len {
                    let old = b[at];
                    for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                        b[at] = value;
                        assert_eq!(compare_keys(&a, &b), a.cmp(&b), "{a:?} {b:?}");
                        assert_eq!(compare_keys(&b, &a), b.cmp(&a), "{b:?} {a:?}");
                    }
                    b[at] = old;
                }
            }
        }
    }

    #[test]
    fn newest_version_sorts_first() {
        assert_eq!(compare_internal(b"a", 5, b"a", 3), Ordering::Less);
        assert_eq!(compare_internal(b"a", 3, b"b", 9), Ordering::Less);
        assert_eq!(
            compare_internal(b"a", u64::MAX, b"a", MAX_SEQNO),
            Ordering::Less
        );
    }

    #[test]
    fn trailer_round_trips_every_kind() {
        for kind in [EntryKind::Put, EntryKind::Delete, EntryKind::Merge] {
            for seqno in [0, 1, MAX_SEQNO] {
                assert_eq!(
                    unpack_trailer(pack_trailer(seqno, kind)),
                    Some((seqno, kind))
                );
            }
        }
        assert_eq!(unpack_trailer(0), None);
    }

    #[test]
    fn display_key_hexes_binary() {
        assert_eq!(display_key(b"abc"), "abc");
        assert_eq!(display_key(&[0, 255]), "0x00ff");
    }
}
