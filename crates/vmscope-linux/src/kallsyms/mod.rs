//! kallsyms: the kernel's own compressed symbol table, found in guest memory by its
//! structure and decoded into a [`SymbolTable`] equal to the guest's
//! `/proc/kallsyms` (its vmlinux part).
//!
//! ```
//! use vmscope_linux::kallsyms;
//!
//! // Arbitrary bytes are not a kallsyms table: an answer, never a panic.
//! assert!(kallsyms::decode_window(&[0u8; 4096], vmscope_mem::Gpa::new(0)).is_err());
//! ```

mod decode;
mod layout;
mod lazy;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gpa, Gva};

pub use layout::TableOrder;
pub use lazy::TablesView;

use crate::symbols::SymbolTable;
use crate::{Error, Result};

/// Where the kallsyms tables are in guest-physical memory, and how they encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KallsymsLayout {
    /// `kallsyms_num_syms`.
    pub num_syms: Gpa,
    /// `kallsyms_names`.
    pub names: Gpa,
    /// `kallsyms_markers`.
    pub markers: Gpa,
    /// `kallsyms_token_table`.
    pub token_table: Gpa,
    /// `kallsyms_token_index`.
    pub token_index: Gpa,
    /// `kallsyms_offsets`.
    pub offsets: Gpa,
    /// `kallsyms_relative_base`.
    pub relative_base: Gpa,
    /// `kallsyms_seqs_of_names` (6.2 on).
    pub seqs_of_names: Option<Gpa>,
    /// Number of symbols.
    pub count: u32,
    /// The value of `kallsyms_relative_base` (relocated: the running kernel's).
    pub relative_base_value: Gva,
    /// Whether non-negative offsets are absolute (per-CPU symbols on x86-64 SMP).
    pub absolute_percpu: bool,
    /// Which order the tables are in.
    pub order: TableOrder,
}

/// Decoded kallsyms: the symbol table and where it was found.
#[derive(Debug, Clone)]
pub struct Kallsyms {
    /// Where the tables are.
    pub layout: KallsymsLayout,
    /// Every symbol, in kallsyms (address) order.
    pub symbols: SymbolTable,
}

/// Finds and decodes kallsyms in `window`, the guest-physical bytes from `base`
/// (8-byte aligned). Tries every digit-token run in the window until one proves to
/// be a complete, consistent set of tables.
pub fn decode_window(window: &[u8], base: Gpa) -> Result<Kallsyms> {
    if !base.is_aligned(8) {
        return Err(Error::Kallsyms(format!("window base {base} is not 8-byte aligned")));
    }
    let mut anchors = 0;
    for anchor in layout::anchors(window) {
        anchors += 1;
        let Some(found) = layout::locate(window, anchor) else {
            continue;
        };
        let Some((symbols, relative_base_value, absolute_percpu)) = decode::decode(window, &found) else {
            continue;
        };
        let at = |off: usize| Gpa::new(base.raw() + off as u64);
        let layout = KallsymsLayout {
            num_syms: at(found.num_syms),
            names: at(found.names),
            markers: at(found.markers),
            token_table: at(found.token_table),
            token_index: at(found.token_index),
            offsets: at(found.offsets),
            relative_base: at(found.relative_base),
            seqs_of_names: found.seqs_of_names.map(at),
            count: found.count,
            relative_base_value,
            absolute_percpu,
            order: found.order,
        };
        return Ok(Kallsyms { layout, symbols });
    }
    Err(Error::Kallsyms(format!(
        "no consistent kallsyms tables in {} bytes from {base} ({anchors} digit-token runs tried)",
        window.len()
    )))
}

pub(crate) use layout::{DIGITS, MAX_BACK};

#[cfg(test)]
mod pack;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::pack::{PackOptions, Sym, pack};
    use super::*;

    fn names() -> impl Strategy<Value = String> {
        "[a-z_][a-zA-Z0-9_.]{0,40}"
    }

    fn symbols(max: usize) -> impl Strategy<Value = Vec<Sym>> {
        let kernel =
            (names(), prop::sample::select(vec!['T', 't', 'D', 'd', 'R', 'r', 'B', 'b', 'W']), 0u64..(64 << 20))
                .prop_map(|(n, k, off)| (n, k, 0xffff_ffff_8100_0000 + off));
        let percpu = (names(), 0u64..0x40000).prop_map(|(n, a)| (n, 'A', a));
        // At least two: a kernel has tens of thousands, and a table of one symbol
        // (offsets last, absolute per-CPU) is not told apart from other bytes; the
        // decoder does not try (a case proptest found, 1 run in about 60).
        prop::collection::vec(prop_oneof![9 => kernel, 1 => percpu], 2..max)
    }

    fn options() -> impl Strategy<Value = PackOptions> {
        (any::<bool>(), any::<bool>(), 0usize..64).prop_map(|(first, seqs, lead)| PackOptions {
            order: if first { TableOrder::OffsetsFirst } else { TableOrder::OffsetsLast },
            seqs,
            absolute_percpu: true,
            lead,
        })
    }

    #[test]
    fn big_names_and_plain_offsets() {
        // A name longer than 127 token bytes takes a two-byte length; without
        // absolute per-CPU symbols every offset is an unsigned distance from the base.
        let long = "x".repeat(300) + "0123456789";
        let syms: Vec<Sym> = vec![("_text".into(), 'T', 0xffff_ffff_8100_0000), (long, 't', 0xffff_ffff_8100_0040)];
        let opts = PackOptions { order: TableOrder::OffsetsLast, seqs: false, absolute_percpu: false, lead: 8 };
        let (bytes, want) = pack(&syms, opts);
        let k = decode_window(&bytes, Gpa::new(0x1000)).unwrap();
        assert!(!k.layout.absolute_percpu);
        let got: Vec<Sym> = k.symbols.iter().map(|s| (s.name.to_owned(), s.kind, s.addr.raw())).collect();
        assert_eq!(got, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Packed tables decode back to the model, in both orders, with and
        /// without `kallsyms_seqs_of_names`; lazy lookups agree with the table.
        #[test]
        fn decodes_what_was_packed(syms in symbols(1200), opts in options(), probe in 0usize..1200) {
            let (bytes, want) = pack(&syms, opts);
            let k = decode_window(&bytes, Gpa::new(0x10_0000)).unwrap();
            prop_assert_eq!(k.layout.order, opts.order);
            prop_assert_eq!(k.layout.seqs_of_names.is_some(), opts.seqs);
            prop_assert_eq!(k.layout.count as usize, want.len());
            let got: Vec<Sym> = k.symbols.iter().map(|s| (s.name.to_owned(), s.kind, s.addr.raw())).collect();
            prop_assert_eq!(&got, &want);

            let view = TablesView::new(&bytes, Gpa::new(0x10_0000), k.layout);
            let i = probe % want.len();
            prop_assert_eq!(view.name(i as u32), Some((want[i].1, want[i].0.clone())));
            prop_assert_eq!(view.address(i as u32), Some(Gva::new(want[i].2)));
            let first = want.iter().position(|s| s.0 == want[i].0).map(|p| p as u32);
            prop_assert_eq!(view.lookup(&want[i].0), first);
            prop_assert_eq!(k.symbols.lookup(&want[i].0).map(|s| s.index as u32), first);
        }

        /// Arbitrary bytes, and real-looking tables with bytes flipped, never panic.
        #[test]
        fn arbitrary_bytes_never_panic(noise in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decode_window(&noise, Gpa::new(0));
            let mut with_anchor = noise.clone();
            with_anchor.extend_from_slice(DIGITS);
            with_anchor.extend_from_slice(&noise);
            let _ = decode_window(&with_anchor, Gpa::new(0));
        }

        #[test]
        fn corrupted_tables_never_panic(syms in symbols(300), opts in options(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
            let (mut bytes, _) = pack(&syms, opts);
            for (at, v) in flips {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if let Ok(k) = decode_window(&bytes, Gpa::new(0)) {
                let view = TablesView::new(&bytes, Gpa::new(0), k.layout);
                let _ = view.lookup("startup_64");
                let _ = view.name(k.layout.count.saturating_sub(1));
            }
        }
    }
}
