//! A small `scripts/kallsyms`: packs symbols into tables laid out as the kernel's
//! build does, so the finder and decoder can be tested against a model.

use super::TableOrder;

/// One symbol: name, type letter, address.
pub(crate) type Sym = (String, char, u64);

/// Options of a packed image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackOptions {
    pub order: TableOrder,
    pub seqs: bool,
    pub absolute_percpu: bool,
    /// Junk bytes before the tables (rounded up to 8).
    pub lead: usize,
}

fn pad8(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(8) {
        v.push(0);
    }
}

/// Builds the token table: every byte used stays itself (digits always), the
/// free printable codes become the most frequent byte pairs.
fn tokens(strings: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut used = [false; 256];
    for s in strings {
        for &b in s {
            used[b as usize] = true;
        }
    }
    for d in b'0'..=b'9' {
        used[d as usize] = true;
    }
    let mut pairs = std::collections::HashMap::<[u8; 2], usize>::new();
    for s in strings {
        for w in s.windows(2) {
            *pairs.entry([w[0], w[1]]).or_default() += 1;
        }
    }
    let mut pairs: Vec<([u8; 2], usize)> = pairs.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut pairs = pairs.into_iter().map(|(p, _)| p.to_vec());
    (0..256usize)
        .map(|c| {
            if used[c] {
                vec![c as u8]
            } else if (0x21..0x7f).contains(&c) {
                pairs.next().unwrap_or_default()
            } else {
                Vec::new()
            }
        })
        .collect()
}

/// Greedy longest-token encoding (every used byte is a token of its own, so it
/// always succeeds).
fn encode(s: &[u8], toks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let best = (0..256)
            .filter(|&c| !toks[c].is_empty() && s[i..].starts_with(&toks[c]))
            .max_by_key(|&c| toks[c].len())
            .expect("every byte of a name has a token of its own");
        out.push(best as u8);
        i += toks[best].len();
    }
    out
}

/// Packs `syms` (sorted here by address) and returns the bytes and the symbols in
/// table order.
pub(crate) fn pack(syms: &[Sym], opts: PackOptions) -> (Vec<u8>, Vec<Sym>) {
    let mut syms = syms.to_vec();
    syms.sort_by_key(|s| s.2);
    let base = syms.iter().map(|s| s.2).filter(|&a| !opts.absolute_percpu || a > i32::MAX as u64).min().unwrap_or(0);
    let strings: Vec<Vec<u8>> = syms.iter().map(|(n, k, _)| [&[*k as u8][..], n.as_bytes()].concat()).collect();
    let toks = tokens(&strings);

    let mut names = Vec::new();
    let mut markers = Vec::new();
    for (i, s) in strings.iter().enumerate() {
        if i % 256 == 0 {
            markers.push(names.len() as u32);
        }
        let e = encode(s, &toks);
        if e.len() < 0x80 {
            names.push(e.len() as u8);
        } else {
            names.push((e.len() & 0x7f) as u8 | 0x80);
            names.push((e.len() >> 7) as u8);
        }
        names.extend_from_slice(&e);
    }
    let offsets: Vec<i32> = syms
        .iter()
        .map(|s| {
            if !opts.absolute_percpu {
                (s.2 - base) as u32 as i32
            } else if s.2 <= i32::MAX as u64 {
                s.2 as i32
            } else {
                base.wrapping_sub(1).wrapping_sub(s.2) as i64 as i32
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..syms.len()).collect();
    order.sort_by(|&a, &b| syms[a].0.cmp(&syms[b].0).then(a.cmp(&b)));

    let mut w = vec![0x5a; opts.lead];
    pad8(&mut w);
    let put_offsets = |w: &mut Vec<u8>| {
        pad8(w);
        for o in &offsets {
            w.extend_from_slice(&o.to_le_bytes());
        }
        pad8(w);
        w.extend_from_slice(&base.to_le_bytes());
    };
    let put_seqs = |w: &mut Vec<u8>| {
        pad8(w);
        for &i in &order {
            w.extend_from_slice(&(i as u32).to_be_bytes()[1..]);
        }
    };
    if opts.order == TableOrder::OffsetsFirst {
        put_offsets(&mut w);
    }
    pad8(&mut w);
    w.extend_from_slice(&(syms.len() as u32).to_le_bytes());
    pad8(&mut w);
    w.extend_from_slice(&names);
    pad8(&mut w);
    for m in &markers {
        w.extend_from_slice(&m.to_le_bytes());
    }
    if opts.order == TableOrder::OffsetsFirst && opts.seqs {
        put_seqs(&mut w);
    }
    pad8(&mut w);
    let table = w.len();
    let mut index = Vec::new();
    for t in &toks {
        index.push((w.len() - table) as u16);
        w.extend_from_slice(t);
        w.push(0);
    }
    pad8(&mut w);
    for i in index {
        w.extend_from_slice(&i.to_le_bytes());
    }
    if opts.order == TableOrder::OffsetsLast {
        put_offsets(&mut w);
        if opts.seqs {
            put_seqs(&mut w);
        }
    }
    w.extend_from_slice(&[0xa5; 64]);
    (w, syms)
}
