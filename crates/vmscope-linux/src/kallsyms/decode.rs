//! Expanding the compressed names and resolving the addresses of located tables.

use vmscope_mem::Gva;

use super::layout::{Found, entry_len, u64_at};
use crate::symbols::{SymbolSource, SymbolTable};

/// A symbol's address from its 32-bit table entry, as `kallsyms_sym_address` computes
/// it: with absolute per-CPU symbols (x86-64 SMP), non-negative entries are absolute
/// values and negative ones count down from `base - 1`; otherwise every entry is an
/// unsigned offset from `base`. Modulo 2^64, as the kernel's `unsigned long`
/// arithmetic is.
#[inline]
pub(crate) fn address(entry: i32, base: Gva, absolute_percpu: bool) -> Gva {
    let base = base.raw();
    Gva::new(if !absolute_percpu {
        base.wrapping_add(u64::from(entry as u32))
    } else if entry >= 0 {
        entry as u64
    } else {
        base.wrapping_sub(1).wrapping_sub(i64::from(entry) as u64)
    })
}

/// Decodes every symbol of the tables `f` found in `w`. Returns `None` if a name
/// runs past the window (which `locate` already ruled out) or uses no token.
pub(crate) fn decode(w: &[u8], f: &Found) -> Option<(SymbolTable, Gva, bool)> {
    let tok: Vec<&[u8]> =
        f.tokens.iter().map(|&(at, len)| w.get(at as usize..at as usize + len as usize)).collect::<Option<_>>()?;
    let base = Gva::new(u64_at(w, f.relative_base)?);
    let n = f.count as usize;
    let raw = w.get(f.offsets..f.offsets + 4 * n)?;
    let entries: Vec<i32> = raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let absolute_percpu = entries.iter().any(|&e| e < 0);

    let mut table = SymbolTable::new(SymbolSource::Kallsyms);
    let mut name = Vec::with_capacity(128);
    let mut at = f.names;
    for &entry in &entries {
        let (len, hdr) = entry_len(w, at)?;
        let codes = w.get(at + hdr..at + hdr + len)?;
        at += hdr + len;
        name.clear();
        for &c in codes {
            name.extend_from_slice(tok[c as usize]);
        }
        let (&kind, rest) = name.split_first()?;
        let s = String::from_utf8_lossy(rest);
        table.push(&s, address(entry, base, absolute_percpu), kind as char);
    }
    table.finish();
    Some((table, base, absolute_percpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let raw = 0xffff_ffff_8100_0000;
        let base = Gva::new(raw);
        assert_eq!(address(0x1000, base, true), Gva::new(0x1000), "non-negative entries are absolute");
        assert_eq!(address(-1, base, true), base, "-1 is the base itself");
        assert_eq!(address(-0x11, base, true), Gva::new(raw + 0x10));
        assert_eq!(address(0x10, base, false), Gva::new(raw + 0x10));
        assert_eq!(address(-1, base, false), Gva::new(raw.wrapping_add(0xffff_ffff)));
    }
}
