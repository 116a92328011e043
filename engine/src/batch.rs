//! The encoding of a committed batch inside a WAL record's payload.
//!
//! ```text
//! payload := version (u8 = 1) | first_seqno (u64 LE) | count varint | entry * count
//! entry   := keyspace_id varint | kind u8 | key_len varint | key | value_len varint | value
//! ```
//! Entry `i` gets seqno `first_seqno + i`. The first seqno has a fixed width so a committer can
//! encode its batch before it holds the commit lock and patch the seqno in once it is assigned
//! ([`set_first_seqno`]). See `engine/WAL.md`.

use bytes::Bytes;
use strata_sstable::{EntryKind, MAX_KEY_LEN, MAX_SEQNO};

const BATCH_VERSION: u8 = 1;

/// One write inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchEntry {
    pub keyspace: u32,
    pub kind: EntryKind,
    pub key: Bytes,
    pub value: Bytes,
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Encodes a batch whose first entry gets `first_seqno`.
pub(crate) fn encode(first_seqno: u64, entries: &[BatchEntry], out: &mut Vec<u8>) {
    out.push(BATCH_VERSION);
    out.extend_from_slice(&first_seqno.to_le_bytes());
    put_varint(out, entries.len() as u64);
    for e in entries {
        put_varint(out, u64::from(e.keyspace));
        out.push(e.kind as u8);
        put_varint(out, e.key.len() as u64);
        out.extend_from_slice(&e.key);
        put_varint(out, e.value.len() as u64);
        out.extend_from_slice(&e.value);
    }
}

/// Overwrites the first seqno of a payload produced by [`encode`] (which starts at `start`).
pub(crate) fn set_first_seqno(payload: &mut [u8], first_seqno: u64) {
    if let Some(slot) = payload.get_mut(1..9) {
        slot.copy_from_slice(&first_seqno.to_le_bytes());
    }
}

/// Bytes `encode` will produce (for reserving).
pub(crate) fn encoded_len(entries: &[BatchEntry]) -> usize {
    12 + entries
        .iter()
        .map(|e| 22 + e.key.len() + e.value.len())
        .sum::<usize>()
}

struct Reader<'a> {
    bytes: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self, what: &str) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| format!("{what} past the end"))?;
        self.pos += 1;
        Ok(byte)
    }

    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("{what}: varint too long"))
    }

    fn slice(&mut self, len: u64, what: &str) -> Result<Bytes, String> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("{what} of {len} bytes runs past the end"))?;
        let slice = self.bytes.slice(self.pos..end);
        self.pos = end;
        Ok(slice)
    }
}

/// A decoded batch: its first seqno and entries (keys and values are slices of the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedBatch {
    pub first_seqno: u64,
    pub entries: Vec<BatchEntry>,
}

/// Decodes a payload; the error says what is wrong (the caller adds file and offset).
pub(crate) fn decode(payload: &Bytes) -> Result<DecodedBatch, String> {
    let mut r = Reader {
        bytes: payload,
        pos: 0,
    };
    let version = r.byte("version")?;
    if version != BATCH_VERSION {
        return Err(format!("unknown batch version {version}"));
    }
    let seqno_bytes = r.slice(8, "first seqno")?;
    let first_seqno = u64::from_le_bytes(
        seqno_bytes
            .as_ref()
            .try_into()
            .map_err(|_| "first seqno".to_string())?,
    );
    let count = r.varint("entry count")?;
    // Each entry takes at least 4 bytes, which bounds the allocation by the payload.
    if count == 0 || count > (payload.len() / 4) as u64 {
        return Err(format!(
            "entry count {count} is impossible for a {}-byte payload",
            payload.len()
        ));
    }
    if first_seqno
        .checked_add(count - 1)
        .is_none_or(|last| last > MAX_SEQNO)
    {
        return Err(format!("seqnos {first_seqno}+{count} exceed the maximum"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..count {
        let keyspace = u32::try_from(r.varint("keyspace id")?)
            .map_err(|_| format!("entry {i}: keyspace id too large"))?;
        let kind_byte = r.byte("kind")?;
        let kind = EntryKind::from_u8(kind_byte)
            .ok_or_else(|| format!("entry {i}: unknown kind {kind_byte}"))?;
        let key_len = r.varint("key length")?;
        if key_len > MAX_KEY_LEN as u64 {
            return Err(format!("entry {i}: key length {key_len} exceeds the limit"));
        }
        let key = r.slice(key_len, "key")?;
        let value_len = r.varint("value length")?;
        let value = r.slice(value_len, "value")?;
        entries.push(BatchEntry {
            keyspace,
            kind,
            key,
            value,
        });
    }
    if r.pos != payload.len() {
        return Err(format!(
            "{} trailing bytes after the batch",
            payload.len() - r.pos
        ));
    }
    Ok(DecodedBatch {
        first_seqno,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<BatchEntry> {
        vec![
            BatchEntry {
                keyspace: 1,
                kind: EntryKind::Put,
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
            },
            BatchEntry {
                keyspace: 300,
                kind: EntryKind::Delete,
                key: Bytes::from_static(b""),
                value: Bytes::new(),
            },
        ]
    }

    #[test]
    fn round_trips() {
        let mut out = Vec::new();
        encode(1 << 40, &sample(), &mut out);
        assert!(out.len() <= encoded_len(&sample()));
        let decoded = decode(&Bytes::from(out)).unwrap();
        assert_eq!(decoded.first_seqno, 1 << 40);
        assert_eq!(decoded.entries, sample());
        let mut out = Vec::new();
        encode(0, &sample(), &mut out);
        set_first_seqno(&mut out, 99);
        assert_eq!(decode(&Bytes::from(out)).unwrap().first_seqno, 99);
    }

    #[test]
    fn every_truncation_and_flip_is_an_error_or_decodes_without_panic() {
        let mut out = Vec::new();
        encode(7, &sample(), &mut out);
        for len in 0..out.len() {
            assert!(decode(&Bytes::copy_from_slice(&out[..len])).is_err());
        }
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                let _ = decode(&Bytes::from(bad));
            }
        }
    }
}
