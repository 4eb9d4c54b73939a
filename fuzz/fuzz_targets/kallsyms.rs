//! kallsyms tables found by structure in arbitrary bytes: the finder and decoder
//! never panic and always terminate; whatever decodes is self-consistent (the lazy
//! view over the tables agrees with the eager table). Byte 0 selects the input:
//! even, the rest is the window as is; odd, the rest names symbols that are packed
//! into real-shaped tables (both table orders, with or without seqs) and then
//! corrupted by the trailing bytes — so the fuzzer starts deep inside the format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmscope_linux::kallsyms::{TableOrder, TablesView, decode_window};
use vmscope_mem::Gpa;

#[allow(dead_code)]
#[path = "../../crates/vmscope-linux/src/kallsyms/pack.rs"]
mod pack;

fn check(window: &[u8]) {
    let base = Gpa::new(0x20_0000);
    let Ok(k) = decode_window(window, base) else {
        return;
    };
    assert_eq!(k.symbols.len(), k.layout.count as usize);
    let view = TablesView::new(window, base, k.layout);
    for i in [0, k.layout.count / 2, k.layout.count.saturating_sub(1)] {
        let s = k.symbols.get(i as usize).expect("index below count");
        assert_eq!(view.address(i), Some(s.addr));
        if let Some((kind, name)) = view.name(i) {
            assert_eq!((kind, name.as_str()), (s.kind, s.name));
        }
        let _ = view.lookup(s.name);
        let _ = k.symbols.symbolize(s.addr);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check(rest);
        return;
    }
    // Symbols from the input: up to 300 names of [a-z0-9_], addresses spread out.
    let (names, flips) = rest.split_at(rest.len() * 3 / 4);
    let syms: Vec<pack::Sym> = names
        .chunks(6)
        .take(300)
        .enumerate()
        .map(|(i, c)| {
            let name: String = c
                .iter()
                .map(|b| b"abcdefghijklmnopqrstuvwxyz0123456789_"[*b as usize % 37] as char)
                .collect();
            let kind = if c.first().is_some_and(|b| b & 0x80 != 0) {
                't'
            } else {
                'T'
            };
            (
                format!("s{name}"),
                kind,
                0xffff_ffff_8100_0000 + 0x40 * i as u64 + u64::from(c[0]),
            )
        })
        .collect();
    if syms.is_empty() {
        return;
    }
    let opts = pack::PackOptions {
        order: if mode & 2 == 0 {
            TableOrder::OffsetsFirst
        } else {
            TableOrder::OffsetsLast
        },
        seqs: mode & 4 != 0,
        absolute_percpu: mode & 8 == 0,
        lead: usize::from(mode >> 4),
    };
    let (mut window, _) = pack::pack(&syms, opts);
    for pair in flips.chunks_exact(3) {
        let at = (usize::from(pair[0]) << 8 | usize::from(pair[1])) % window.len();
        window[at] = pair[2];
    }
    check(&window);
});
