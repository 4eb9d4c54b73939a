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
use vmscope_mem::Gpa;

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
    pub relative_base_value: u64,
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
        let Some(found) = layout::locate(window, anchor) else { continue };
        let Some((symbols, relative_base_value, absolute_percpu)) = decode::decode(window, &found) else { continue };
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
