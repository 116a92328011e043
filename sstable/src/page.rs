//! Data pages: prefix-compressed entries with a restart array.
//!
//! Raw (decompressed) layout, see FORMAT.md for the byte-level description:
//!
//! ```text
//! entry*  restart_offset (u32 LE) * n_restarts  n_restarts (u32 LE)
//! entry = shared varint | unshared varint | value_len varint | trailer varint | key suffix | value
//! ```
//!
//! Every `restart_interval` entries the key is stored whole (`shared = 0`) and its offset goes into
//! the restart array, so a lookup binary-searches the restarts and then decodes at most
//! `restart_interval` entries. Moving backwards re-scans from the previous restart.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::coding::{put_varint, read_u32_le, varint_fast, varint_len, Reader};
use crate::entry::{compare_internal, pack_trailer, unpack_trailer, EntryKind, MAX_KEY_LEN};
use crate::error::{DecodeError, DecodeResult};
use crate::prefetch::{touch_each, touch_lines};

/// Accumulates entries for one page.
pub(crate) struct PageBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    since_restart: usize,
    restart_interval: usize,
    last_key: Vec<u8>,
    entries: u32,
}

impl PageBuilder {
    pub(crate) fn new(restart_interval: usize) -> Self {
        PageBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            since_restart: 0,
            restart_interval: restart_interval.max(1),
            last_key: Vec::new(),
            entries: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub(crate) fn entries(&self) -> u32 {
        self.entries
    }

    /// Size of the raw page if finished now.
    pub(crate) fn estimated_len(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// Upper bound of what adding this entry would grow the page by.
    pub(crate) fn entry_cost(key_len: usize, value_len: usize) -> usize {
        4 * 5 + 10 + key_len + value_len
    }

    /// Appends an entry. The caller guarantees order and limits.
    pub(crate) fn add(&mut self, key: &[u8], seqno: u64, kind: EntryKind, value: &[u8]) {
        let shared = if self.since_restart < self.restart_interval && self.entries > 0 {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        } else {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        };
        let unshared = &key[shared..];
        self.buf
            .reserve(varint_len(shared as u64) + 3 * 5 + unshared.len() + value.len());
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, unshared.len() as u64);
        put_varint(&mut self.buf, value.len() as u64);
        put_varint(&mut self.buf, pack_trailer(seqno, kind));
        self.buf.extend_from_slice(unshared);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(unshared);
        self.since_restart += 1;
        self.entries += 1;
    }

    /// Finishes the page, returning its raw bytes, and resets the builder.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut page = std::mem::take(&mut self.buf);
        for offset in &self.restarts {
            page.extend_from_slice(&offset.to_le_bytes());
        }
        page.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
        page
    }
}

/// A decoded page whose restart array has been validated.
#[derive(Clone, Debug)]
pub(crate) struct Page {
    data: Bytes,
    /// Offset of the restart array: entries live in `data[..entries_end]`.
    entries_end: usize,
    n_restarts: usize,
}

impl Page {
    /// Validates the restart array of a raw page just decoded from the file.
    pub(crate) fn parse(data: Bytes) -> DecodeResult<Page> {
        let page = Page::parse_trusted(data)?;
        let mut previous = None;
        for i in 0..page.n_restarts {
            let offset = page.restart(i);
            let ok = match previous {
                None => offset == 0,
                Some(prev) => offset > prev && offset < page.entries_end,
            };
            if !ok {
                return Err(DecodeError::new(format!(
                    "restart {i} at offset {offset} is out of order or range"
                )));
            }
            previous = Some(offset);
        }
        Ok(page)
    }

    /// Locates the restart array of a page that [`Page::parse`] already validated (one held in
    /// the page cache): O(1) instead of O(restarts). Still bounds-checked, so a wrong call can
    /// yield decode errors but never a panic.
    pub(crate) fn parse_trusted(data: Bytes) -> DecodeResult<Page> {
        let len = data.len();
        let n_restarts = read_u32_le(&data, len.wrapping_sub(4))
            .ok_or_else(|| DecodeError::new(format!("page of {len} bytes has no restart count")))?
            as usize;
        let array_len = n_restarts
            .checked_mul(4)
            .and_then(|n| n.checked_add(4))
            .filter(|&n| n <= len)
            .ok_or_else(|| {
                DecodeError::new(format!(
                    "{n_restarts} restarts do not fit in a page of {len} bytes"
                ))
            })?;
        let entries_end = len - array_len;
        if n_restarts == 0 || entries_end == 0 {
            return Err(DecodeError::new("page holds no entries"));
        }
        Ok(Page {
            data,
            entries_end,
            n_restarts,
        })
    }

    fn restart(&self, i: usize) -> usize {
        read_u32_le(&self.data, self.entries_end + 4 * i).unwrap_or(u32::MAX) as usize
    }

    /// The entry region, `data[..entries_end]`.
    fn entries(&self) -> &[u8] {
        self.data.get(..self.entries_end).unwrap_or_default()
    }

    /// Loads the first byte of every restart entry (of the first 32): a binary search over
    /// them would otherwise take their cache misses one after another.
    #[inline]
    fn touch_restarts(&self) {
        touch_each(
            self.entries(),
            (0..self.n_restarts.min(32)).map(|i| self.restart(i)),
        );
    }

    /// The key and seqno of restart entry `i`, borrowed from the page: a restart stores its whole
    /// key, so a seek can compare it without copying it into a cursor's key buffer. Checks the
    /// entry exactly as [`PageCursor`] decoding it would.
    fn restart_key(&self, i: usize) -> DecodeResult<(&[u8], u64)> {
        let entries = self.entries();
        let entry = EntryLayout::decode(entries, self.restart(i), 0)?;
        let key = entries.get(entry.suffix..entry.value).unwrap_or_default();
        Ok((key, entry.seqno))
    }

    /// Checks what [`Page::parse`] leaves to the checksum, for `Run::verify`: every restart
    /// points at the start of an entry (walking from the first) that stores its whole key. Reads
    /// start at restarts (seeks, backward steps), so a restart into the middle of an entry would
    /// make them decode bytes the forward scan never sees. O(entries + restarts).
    pub(crate) fn check_restarts(&self) -> DecodeResult<()> {
        let mut cursor = PageCursor::new(self.clone());
        cursor.seek_to_first()?;
        // Restart 0 is offset 0, the first entry (checked by `parse`); both sequences ascend,
        // so a restart passed without meeting an entry start points into an entry.
        let mut next_restart = 1;
        while let Some(pos) = cursor.pos() {
            if next_restart < self.n_restarts && self.restart(next_restart) < pos {
                return Err(DecodeError::new(format!(
                    "restart {next_restart} at offset {} is not the start of an entry",
                    self.restart(next_restart)
                )));
            }
            if next_restart < self.n_restarts && self.restart(next_restart) == pos {
                next_restart += 1;
            }
            cursor.next()?;
        }
        if next_restart < self.n_restarts {
            return Err(DecodeError::new(format!(
                "restart {next_restart} at offset {} is past the last entry",
                self.restart(next_restart)
            )));
        }
        for i in 0..self.n_restarts {
            // A restart entry must decode with no previous key (shared = 0).
            PageCursor::new(self.clone()).seek_to_restart(i)?;
        }
        Ok(())
    }
}

/// Where the parts of one entry lie in a page's entry region, every check passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntryLayout {
    /// Bytes of the previous key the entry's key starts with.
    shared: usize,
    /// Offset of the key suffix.
    suffix: usize,
    /// Offset of the value (the end of the key suffix).
    value: usize,
    /// Offset just past the value: where the next entry starts.
    end: usize,
    seqno: u64,
    kind: EntryKind,
}

impl EntryLayout {
    /// Decodes and checks the entry at `offset` of `entries`, whose predecessor's key is
    /// `prev_key_len` bytes long (0 for a restart, which must store its whole key).
    #[inline(always)]
    fn decode(entries: &[u8], offset: usize, prev_key_len: usize) -> DecodeResult<EntryLayout> {
        match EntryLayout::decode_fast(entries, offset, prev_key_len) {
            Some(layout) => Ok(layout),
            None => EntryLayout::decode_checked(entries, offset, prev_key_len),
        }
    }

    /// The common case with no error reporting: every varint has 8 readable bytes (so all but
    /// the last few bytes of a page) and at most 8 bytes, and every check passes. `None` sends
    /// the entry to [`EntryLayout::decode_checked`], which accepts exactly the same entries and
    /// says what is wrong with the others.
    #[inline(always)]
    fn decode_fast(entries: &[u8], offset: usize, prev_key_len: usize) -> Option<EntryLayout> {
        let head = u64::from_le_bytes(
            entries
                .get(offset..offset.checked_add(8)?)?
                .try_into()
                .ok()?,
        );
        // Keys and values under 128 bytes: the three lengths are one byte each, read from one
        // load. Otherwise each length is decoded on its own.
        let (shared, unshared, value_len, mut pos) = if head & 0x0080_8080 == 0 {
            let byte = |i: u32| (head >> (8 * i)) as usize & 0x7f;
            (byte(0), byte(1), byte(2), offset + 3)
        } else {
            let (shared, n) = varint_fast(entries, offset)?;
            let mut pos = offset + n;
            let (unshared, n) = varint_fast(entries, pos)?;
            pos += n;
            let (value_len, n) = varint_fast(entries, pos)?;
            pos += n;
            let len = |v: u64| usize::try_from(v).ok();
            (len(shared)?, len(unshared)?, len(value_len)?, pos)
        };
        let (trailer, n) = varint_fast(entries, pos)?;
        pos += n;
        let (seqno, kind) = unpack_trailer(trailer)?;
        if shared > prev_key_len || shared + unshared > MAX_KEY_LEN {
            return None;
        }
        // `pos` is inside the slice and `unshared` at most 64 KiB; `value_len` may be anything.
        let value = pos + unshared;
        let end = value.checked_add(value_len)?;
        if end > entries.len() {
            return None;
        }
        Some(EntryLayout {
            shared,
            suffix: pos,
            value,
            end,
            seqno,
            kind,
        })
    }

    /// The general decoder, with an error for every way an entry can be wrong.
    #[inline(never)]
    fn decode_checked(
        entries: &[u8],
        offset: usize,
        prev_key_len: usize,
    ) -> DecodeResult<EntryLayout> {
        let mut r = Reader::at(entries, offset);
        let shared = r.varint_len("shared key length", MAX_KEY_LEN)?;
        let unshared = r.varint_len("unshared key length", MAX_KEY_LEN)?;
        let value_len = r.varint_len("value length", entries.len())?;
        let trailer = r.varint("trailer")?;
        if shared > prev_key_len || shared + unshared > MAX_KEY_LEN {
            return Err(DecodeError::new(format!(
                "entry at page offset {offset} shares {shared} bytes with a {prev_key_len}-byte key"
            )));
        }
        let (seqno, kind) = unpack_trailer(trailer).ok_or_else(|| {
            DecodeError::new(format!(
                "entry at page offset {offset} has unknown kind {}",
                trailer & 0xff
            ))
        })?;
        let suffix = r.pos();
        r.bytes(unshared, "key suffix")?;
        let value = r.pos();
        r.bytes(value_len, "value")?;
        Ok(EntryLayout {
            shared,
            suffix,
            value,
            end: r.pos(),
            seqno,
            kind,
        })
    }
}

/// A position inside a [`Page`]. Invalid until positioned; decoding errors leave it invalid.
pub(crate) struct PageCursor {
    page: Page,
    /// Offset of the current entry; `None` when not positioned on an entry.
    pos: Option<usize>,
    next: usize,
    key: Vec<u8>,
    seqno: u64,
    kind: EntryKind,
    value: (usize, usize),
}

impl PageCursor {
    pub(crate) fn new(page: Page) -> Self {
        PageCursor {
            page,
            pos: None,
            next: 0,
            key: Vec::new(),
            seqno: 0,
            kind: EntryKind::Put,
            value: (0, 0),
        }
    }

    pub(crate) fn valid(&self) -> bool {
        self.pos.is_some()
    }

    pub(crate) fn pos(&self) -> Option<usize> {
        self.pos
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn seqno(&self) -> u64 {
        self.seqno
    }

    pub(crate) fn kind(&self) -> EntryKind {
        self.kind
    }

    pub(crate) fn value(&self) -> Bytes {
        self.page.data.slice(self.value.0..self.value.1)
    }

    pub(crate) fn value_slice(&self) -> &[u8] {
        &self.page.data[self.value.0..self.value.1]
    }

    /// Repositions the cursor on another page, keeping its key buffer (so a cursor moving from
    /// page to page does not allocate). Invalid until positioned.
    pub(crate) fn reset(&mut self, page: Page) {
        self.page = page;
        self.pos = None;
        self.next = 0;
    }

    /// Decodes the entry at `offset`, whose predecessor's key is in `self.key`.
    fn decode_at(&mut self, offset: usize) -> DecodeResult<()> {
        self.pos = None;
        let entries = self.page.entries();
        let entry = EntryLayout::decode(entries, offset, self.key.len())?;
        self.key.truncate(entry.shared);
        self.key
            .extend_from_slice(entries.get(entry.suffix..entry.value).unwrap_or_default());
        self.seqno = entry.seqno;
        self.kind = entry.kind;
        self.value = (entry.value, entry.end);
        self.next = entry.end;
        self.pos = Some(offset);
        Ok(())
    }

    fn seek_to_restart(&mut self, i: usize) -> DecodeResult<()> {
        self.key.clear();
        let offset = self.page.restart(i);
        self.decode_at(offset)?;
        // A restart entry stores its whole key; a non-zero shared length was caught by decode_at
        // because the key buffer was empty.
        Ok(())
    }

    pub(crate) fn seek_to_first(&mut self) -> DecodeResult<()> {
        self.seek_to_restart(0)
    }

    pub(crate) fn seek_to_last(&mut self) -> DecodeResult<()> {
        self.seek_to_restart(self.page.n_restarts - 1)?;
        while self.next < self.page.entries_end {
            let next = self.next;
            self.decode_at(next)?;
        }
        Ok(())
    }

    /// Moves to the next entry; becomes invalid past the last one.
    pub(crate) fn next(&mut self) -> DecodeResult<()> {
        if self.pos.is_none() {
            return Ok(());
        }
        if self.next >= self.page.entries_end {
            self.pos = None;
            return Ok(());
        }
        let next = self.next;
        self.decode_at(next)
    }

    /// Moves to the previous entry; becomes invalid before the first one.
    pub(crate) fn prev(&mut self) -> DecodeResult<()> {
        let Some(current) = self.pos else {
            return Ok(());
        };
        if current == 0 {
            self.pos = None;
            return Ok(());
        }
        // The last restart strictly before the current entry.
        let mut lo = 0;
        let mut hi = self.page.n_restarts;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.page.restart(mid) < current {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.seek_to_restart(lo)?;
        while self.next < current {
            let next = self.next;
            self.decode_at(next)?;
        }
        if self.next != current {
            return Err(DecodeError::new(format!(
                "entries do not chain to page offset {current}"
            )));
        }
        Ok(())
    }

    /// Positions at the first entry >= (key, seqno) in internal order; invalid if none.
    pub(crate) fn seek(&mut self, key: &[u8], seqno: u64) -> DecodeResult<()> {
        self.pos = None;
        // The last restart whose key is < target; scanning starts there. Restart keys are
        // compared where they lie in the page; only the one the scan starts from is decoded.
        self.page.touch_restarts();
        let mut lo = 0;
        let mut hi = self.page.n_restarts;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let (restart_key, restart_seqno) = self.page.restart_key(mid)?;
            if compare_internal(restart_key, restart_seqno, key, seqno) == Ordering::Less {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        // Warm the restart interval the scan walks (the nexts after a seek usually stay in it).
        let scan_end = if lo + 1 < self.page.n_restarts {
            self.page.restart(lo + 1)
        } else {
            self.page.entries_end
        };
        touch_lines(self.page.entries(), self.page.restart(lo), scan_end, 64);
        self.seek_to_restart(lo)?;
        while compare_internal(&self.key, self.seqno, key, seqno) == Ordering::Less {
            if self.next >= self.page.entries_end {
                self.pos = None;
                return Ok(());
            }
            let next = self.next;
            self.decode_at(next)?;
        }
        Ok(())
    }

    /// Positions at the last entry <= (key, seqno) in internal order; invalid if none.
    pub(crate) fn seek_for_prev(&mut self, key: &[u8], seqno: u64) -> DecodeResult<()> {
        self.seek(key, seqno)?;
        if !self.valid() {
            return self.seek_to_last();
        }
        if compare_internal(&self.key, self.seqno, key, seqno) == Ordering::Greater {
            self.prev()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(n: u32, interval: usize) -> Page {
        let mut b = PageBuilder::new(interval);
        for i in 0..n {
            let key = format!("key{:04}", i / 2);
            let seqno = 100 - u64::from(i % 2);
            b.add(
                key.as_bytes(),
                seqno,
                EntryKind::Put,
                format!("v{i}").as_bytes(),
            );
        }
        Page::parse(Bytes::from(b.finish())).unwrap()
    }

    fn collect_forward(page: &Page) -> Vec<(Vec<u8>, u64)> {
        let mut c = PageCursor::new(page.clone());
        c.seek_to_first().unwrap();
        let mut out = Vec::new();
        while c.valid() {
            out.push((c.key().to_vec(), c.seqno()));
            c.next().unwrap();
        }
        out
    }

    #[test]
    fn forward_and_backward_agree() {
        for interval in [1, 2, 16] {
            let page = build(37, interval);
            let forward = collect_forward(&page);
            assert_eq!(forward.len(), 37);
            let mut c = PageCursor::new(page);
            c.seek_to_last().unwrap();
            let mut backward = Vec::new();
            while c.valid() {
                backward.push((c.key().to_vec(), c.seqno()));
                c.prev().unwrap();
            }
            backward.reverse();
            assert_eq!(forward, backward);
        }
    }

    #[test]
    fn seeks_land_on_internal_order() {
        let page = build(40, 4);
        let mut c = PageCursor::new(page);
        c.seek(b"key0005", u64::MAX).unwrap();
        assert_eq!((c.key(), c.seqno()), (&b"key0005"[..], 100));
        c.seek(b"key0005", 99).unwrap();
        assert_eq!((c.key(), c.seqno()), (&b"key0005"[..], 99));
        c.seek(b"key0005", 50).unwrap();
        assert_eq!((c.key(), c.seqno()), (&b"key0006"[..], 100));
        c.seek(b"zzz", 0).unwrap();
        assert!(!c.valid());
        c.seek_for_prev(b"key0005", 0).unwrap();
        assert_eq!((c.key(), c.seqno()), (&b"key0005"[..], 99));
        c.seek_for_prev(b"key0005", u64::MAX).unwrap();
        assert_eq!((c.key(), c.seqno()), (&b"key0004"[..], 99));
        c.seek_for_prev(b"a", 0).unwrap();
        assert!(!c.valid());
        c.seek_for_prev(b"zzz", 0).unwrap();
        assert_eq!(c.key(), b"key0019");
    }

    #[test]
    fn check_restarts_finds_restarts_off_entry_boundaries() {
        let good = build(20, 4);
        good.check_restarts().unwrap();
        // Entry 1 of a page with restart interval 1 starts where restart 1 points; move it one
        // byte into the entry.
        let mut raw = good_raw(6, 1);
        let n = raw.len();
        let restart1 = n - 4 - 4 * 6 + 4;
        let bad_offset = u32::from_le_bytes(raw[restart1..restart1 + 4].try_into().unwrap()) + 1;
        raw[restart1..restart1 + 4].copy_from_slice(&bad_offset.to_le_bytes());
        let page = Page::parse(Bytes::from(raw)).unwrap();
        assert!(page.check_restarts().is_err());
    }

    fn good_raw(n: u32, interval: usize) -> Vec<u8> {
        let mut b = PageBuilder::new(interval);
        for i in 0..n {
            b.add(format!("key{i:04}").as_bytes(), 9, EntryKind::Put, b"v");
        }
        b.finish()
    }

    /// The fast entry decoder must never accept what the checked one rejects, nor lay out an
    /// entry differently: over damaged copies of a page mixing 1- to 10-byte trailers and 1- and
    /// 2-byte value lengths, at every offset and for several previous-key lengths.
    #[test]
    fn fast_entry_decoder_agrees_with_the_checked_one() {
        let mut b = PageBuilder::new(3);
        let seqnos = [0, 1, 300, 1 << 20, 1 << 40, crate::entry::MAX_SEQNO];
        for i in 0..30usize {
            let key = format!("key{:03}{}", i, "x".repeat(i % 5));
            let value = vec![b'v'; [0, 5, 130, 300][i % 4]];
            let kind = [EntryKind::Put, EntryKind::Delete, EntryKind::Merge][i % 3];
            b.add(key.as_bytes(), seqnos[i % seqnos.len()], kind, &value);
        }
        let raw = b.finish();
        let page = Page::parse(Bytes::from(raw.clone())).unwrap();
        let entries = page.entries().to_vec();
        // Undamaged, the fast path takes most entries (walking them in order).
        let (mut offset, mut prev_key_len, mut fast) = (0, 0, 0);
        while offset < entries.len() {
            let checked = EntryLayout::decode_checked(&entries, offset, prev_key_len).unwrap();
            if let Some(layout) = EntryLayout::decode_fast(&entries, offset, prev_key_len) {
                assert_eq!(layout, checked);
                fast += 1;
            }
            prev_key_len = checked.shared + (checked.value - checked.suffix);
            offset = checked.end;
        }
        assert!(fast >= 20, "the fast path took only {fast} of 30 entries");
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let mut damaged = entries.clone();
            for _ in 0..1 + random() % 3 {
                let at = (random() % damaged.len() as u64) as usize;
                damaged[at] = random() as u8;
            }
            for offset in 0..damaged.len() {
                for prev_key_len in [0, 3, 9, 64] {
                    if let Some(layout) = EntryLayout::decode_fast(&damaged, offset, prev_key_len) {
                        assert_eq!(
                            EntryLayout::decode_checked(&damaged, offset, prev_key_len),
                            Ok(layout),
                            "offset {offset}, previous key {prev_key_len} bytes"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bad_restart_arrays() {
        assert!(Page::parse(Bytes::from_static(&[])).is_err());
        assert!(Page::parse(Bytes::from_static(&[0, 0, 0, 0])).is_err());
        assert!(Page::parse(Bytes::from_static(&[1, 2, 0xff, 0xff, 0xff, 0x0f])).is_err());
        // One restart that does not start at zero.
        assert!(Page::parse(Bytes::from_static(&[9, 9, 1, 0, 0, 0, 1, 0, 0, 0])).is_err());
    }
}
