//! Finding the kallsyms tables in a window of physical memory by their structure
//! alone: no symbol, no version table.
//!
//! `scripts/kallsyms` emits, each table 8-byte aligned:
//! - up to 6.1: `offsets`, `relative_base`, `num_syms`, `names`, `markers`,
//!   (6.2–6.3: `seqs_of_names`), `token_table`, `token_index`;
//! - from 6.4: `num_syms`, `names`, `markers`, `token_table`, `token_index`,
//!   `offsets`, `relative_base`, `seqs_of_names`.
//!
//! The search starts at the token table (the tokens for the digits, `"0\01\0…9\0"`,
//! are its most distinctive run), proves it with the token index that follows it,
//! walks back to `num_syms`/`names`/`markers` (the names must parse into exactly
//! `num_syms` entries whose every 256th offset is a marker), then tries the two
//! places the offsets can be and keeps the one whose addresses are sorted.

use serde::{Deserialize, Serialize};
use vmscope_mem::Gva;

/// The run of single-digit tokens every token table has.
pub(crate) const DIGITS: &[u8] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";

/// Most symbols a table may claim (the biggest kernels have well under 1 M).
const MAX_SYMS: u32 = 1 << 22;

/// How far back from the token table `num_syms` may be (names, markers and seqs).
pub(crate) const MAX_BACK: usize = 24 << 20;

/// Where each token starts in the window and how long it is, by byte code.
pub(crate) type Tokens = [(u32, u16); 256];

/// Where each table is, as offsets into the window searched; see
/// [`KallsymsLayout`](super::KallsymsLayout) for the guest-physical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub token_table: usize,
    pub token_index: usize,
    pub markers: usize,
    pub names: usize,
    pub num_syms: usize,
    pub offsets: usize,
    pub relative_base: usize,
    pub seqs_of_names: Option<usize>,
    pub count: u32,
    pub order: TableOrder,
    /// Start and length of each token in the window, by byte code.
    pub tokens: Tokens,
}

/// Which of the two orders `scripts/kallsyms` used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableOrder {
    /// Offsets and base before `num_syms` (up to 6.3).
    OffsetsFirst,
    /// Offsets and base after the token index (6.4 on).
    OffsetsLast,
}

fn align8(x: usize) -> usize {
    x.next_multiple_of(8)
}

pub(crate) fn u16_at(w: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*w.get(at..at.checked_add(2)?)?.first_chunk()?))
}

pub(crate) fn u32_at(w: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*w.get(at..at.checked_add(4)?)?.first_chunk()?))
}

pub(crate) fn u64_at(w: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*w.get(at..at.checked_add(8)?)?.first_chunk()?))
}

/// Every place in `w` the digit run occurs.
pub(crate) fn anchors(w: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memmem::find_iter(w, DIGITS)
}

/// The token table whose digit tokens are at `anchor`, if one is there. `w` must
/// start at an 8-byte aligned guest-physical address.
pub(crate) fn token_table_at(w: &[u8], anchor: usize) -> Option<(usize, usize, Tokens)> {
    // The 48 tokens before '0' are short: a few hundred bytes at most.
    let lowest = anchor.saturating_sub(4096);
    let mut start = anchor & !7;
    loop {
        if let Some(t) = check_tokens(w, start, anchor) {
            return Some((start, t.0, t.1));
        }
        if start < lowest + 8 {
            return None;
        }
        start -= 8;
    }
}

/// Tokens from `start`: 256 NUL-terminated printable strings, token `'0'` at
/// `anchor`, followed (8-aligned) by a `u16` index of their offsets.
fn check_tokens(w: &[u8], start: usize, anchor: usize) -> Option<(usize, Tokens)> {
    let mut tokens = [(0u32, 0u16); 256];
    let mut at = start;
    for tok in tokens.iter_mut() {
        let rest = w.get(at..)?;
        let len = memchr::memchr(0, &rest[..rest.len().min(256)])?;
        if !rest[..len].iter().all(|b| (0x21..0x7f).contains(b)) {
            return None;
        }
        *tok = (at as u32, len as u16);
        at += len + 1;
    }
    if tokens[b'0' as usize].0 as usize != anchor {
        return None;
    }
    let index = align8(at);
    for (i, tok) in tokens.iter().enumerate() {
        if u16_at(w, index + 2 * i)? as usize != tok.0 as usize - start {
            return None;
        }
    }
    Some((index, tokens))
}

/// The byte length and header size of the name entry at `at` (a one-byte length,
/// or two bytes when the first has bit 7 set: "big" symbols since 6.1).
#[inline]
pub(crate) fn entry_len(w: &[u8], at: usize) -> Option<(usize, usize)> {
    let b0 = *w.get(at)? as usize;
    if b0 & 0x80 == 0 {
        Some((b0, 1))
    } else {
        let b1 = *w.get(at + 1)? as usize;
        Some(((b0 & 0x7f) | (b1 << 7), 2))
    }
}

/// Whether `count` names parse from `names` with every 256th entry at the offset
/// its marker says, ending right before `markers`.
fn names_match_markers(w: &[u8], names: usize, count: u32, markers: usize) -> bool {
    let mut at = names;
    for i in 0..count as usize {
        if i % 256 == 0 {
            match u32_at(w, markers + 4 * (i / 256)) {
                Some(m) if m as usize == at - names => {}
                _ => return false,
            }
        }
        match entry_len(w, at) {
            Some((len, hdr)) if len > 0 => at += hdr + len,
            _ => return false,
        }
        if at > markers {
            return false;
        }
    }
    align8(at) == markers
}

/// Cheap pre-check: `m` markers at `at`, starting at 0, strictly increasing, all
/// below `limit`.
fn markers_plausible(w: &[u8], at: usize, m: usize, limit: usize) -> bool {
    let mut prev = None;
    for k in 0..m {
        let Some(v) = u32_at(w, at + 4 * k) else {
            return false;
        };
        let ok = match prev {
            None => v == 0,
            Some(p) => v > p && (v as usize) < limit,
        };
        if !ok {
            return false;
        }
        prev = Some(v);
    }
    true
}

/// `(num_syms at, count, markers at, seqs_of_names at if between markers and tokens)`.
fn find_names(w: &[u8], token_table: usize) -> Option<(usize, u32, usize, Option<usize>)> {
    let lowest = token_table.saturating_sub(MAX_BACK);
    let mut q = (token_table & !7).checked_sub(16)?;
    while q >= lowest {
        let n = u32_at(w, q)?;
        if (1..=MAX_SYMS).contains(&n) && u32_at(w, q + 4) == Some(0) {
            let m = (n as usize).div_ceil(256);
            let names = q + 8;
            let direct = token_table.checked_sub(align8(4 * m));
            let with_seqs =
                token_table.checked_sub(align8(3 * n as usize)).and_then(|s| Some((s.checked_sub(align8(4 * m))?, s)));
            for (markers, seqs) in
                [direct.map(|mk| (mk, None)), with_seqs.map(|(mk, s)| (mk, Some(s)))].into_iter().flatten()
            {
                if markers > names
                    && markers_plausible(w, markers, m, markers - names)
                    && names_match_markers(w, names, n, markers)
                {
                    return Some((q, n, markers, seqs));
                }
            }
        }
        if q < 8 {
            return None;
        }
        q -= 8;
    }
    None
}

/// Whether the `count` offsets at `at`, resolved against the base at `base_at`,
/// give non-decreasing kernel addresses.
fn offsets_sorted(w: &[u8], at: usize, count: u32, base_at: usize) -> bool {
    let Some(base) = u64_at(w, base_at) else {
        return false;
    };
    // The base is a kernel-half address under 4- or 5-level paging.
    if base >> 47 != 0x1_ffff && base >> 56 != 0xff {
        return false;
    }
    let base = Gva::new(base);
    let Some(raw) = w.get(at..at + 4 * count as usize) else {
        return false;
    };
    let absolute_percpu = raw.chunks_exact(4).any(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) < 0);
    let mut prev = Gva::new(0);
    for c in raw.chunks_exact(4) {
        let a = super::decode::address(i32::from_le_bytes([c[0], c[1], c[2], c[3]]), base, absolute_percpu);
        if a < prev {
            return false;
        }
        prev = a;
    }
    true
}

/// Whether the `count` 3-byte entries at `at` are a permutation of `0..count`.
fn is_permutation(w: &[u8], at: usize, count: u32) -> bool {
    let Some(raw) = w.get(at..at + 3 * count as usize) else {
        return false;
    };
    let mut seen = vec![false; count as usize];
    for c in raw.chunks_exact(3) {
        let v = (usize::from(c[0]) << 16) | (usize::from(c[1]) << 8) | usize::from(c[2]);
        match seen.get_mut(v) {
            Some(s) if !*s => *s = true,
            _ => return false,
        }
    }
    true
}

/// Finds every kallsyms table around the token table whose digits are at `anchor`.
pub(crate) fn locate(w: &[u8], anchor: usize) -> Option<Found> {
    let (token_table, token_index, tokens) = token_table_at(w, anchor)?;
    let (num_syms, count, markers, seqs_between) = find_names(w, token_table)?;
    let n = count as usize;
    // Offsets first: base right before num_syms, offsets before it.
    let first = num_syms.checked_sub(8).and_then(|rb| Some((rb.checked_sub(align8(4 * n))?, rb)));
    // Offsets last: after the token index.
    let last_offsets = align8(token_index + 512);
    let last = (last_offsets, align8(last_offsets + 4 * n));
    let (order, offsets, relative_base) = match first {
        Some((o, rb)) if offsets_sorted(w, o, count, rb) => (TableOrder::OffsetsFirst, o, rb),
        _ if offsets_sorted(w, last.0, count, last.1) => (TableOrder::OffsetsLast, last.0, last.1),
        _ => return None,
    };
    let seqs_of_names = match order {
        TableOrder::OffsetsFirst => seqs_between.filter(|&s| is_permutation(w, s, count)),
        TableOrder::OffsetsLast => Some(relative_base + 8).filter(|&s| is_permutation(w, s, count)),
    };
    Some(Found {
        token_table,
        token_index,
        markers,
        names: num_syms + 8,
        num_syms,
        offsets,
        relative_base,
        seqs_of_names,
        count,
        order,
        tokens,
    })
}
