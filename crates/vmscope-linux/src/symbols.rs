//! A kernel symbol table: names, addresses and `nm`-style type letters, in the order
//! the kernel lists them, with lookup by name and by address.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vmscope_mem::Gva;

use crate::{Error, Result};

/// Where a [`SymbolTable`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SymbolSource {
    /// kallsyms decoded from guest memory: addresses are the running kernel's.
    Kallsyms,
    /// A System.map file: link-time addresses.
    SystemMap,
    /// A Volatility 3 ISF file: link-time addresses.
    Isf,
}

/// One symbol, borrowed from its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its address (for absolute symbols, e.g. per-CPU ones, the raw value: an
    /// offset into each CPU's area).
    pub addr: Gva,
    /// The `nm` type letter (`T`, `t`, `D`, `A`, ...).
    pub kind: char,
    /// Its index in the table.
    pub index: usize,
}

impl Symbol<'_> {
    /// Whether the address is absolute (type `A`/`a`): not moved by KASLR.
    pub fn is_absolute(&self) -> bool {
        self.kind.eq_ignore_ascii_case(&'a')
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: Gva,
    name_start: u32,
    name_len: u32,
    kind: u8,
}

/// A symbol table, in the order its source lists it (kallsyms: address order).
///
/// Lookups by name return the first symbol of that name in table order, as the
/// kernel's `kallsyms_lookup_name` does; by address, the last symbol at or below it.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    source: SymbolSource,
    entries: Vec<Entry>,
    names: String,
    by_name: HashMap<Box<str>, u32>,
    /// Indices sorted by (address, index), non-absolute symbols only.
    by_addr: Vec<u32>,
}

impl SymbolTable {
    /// An empty table.
    pub fn new(source: SymbolSource) -> Self {
        SymbolTable { source, entries: Vec::new(), names: String::new(), by_name: HashMap::new(), by_addr: Vec::new() }
    }

    /// Builds a table from `(name, address, type letter)` triples, in order.
    pub fn from_iter<'a>(source: SymbolSource, syms: impl IntoIterator<Item = (&'a str, Gva, char)>) -> Self {
        let mut t = Self::new(source);
        for (name, addr, kind) in syms {
            t.push(name, addr, kind);
        }
        t.finish();
        t
    }

    pub(crate) fn push(&mut self, name: &str, addr: Gva, kind: char) {
        let name_start = self.names.len() as u32;
        self.names.push_str(name);
        let kind = if kind.is_ascii() { kind as u8 } else { b'?' };
        self.entries.push(Entry { addr, name_start, name_len: name.len() as u32, kind });
    }

    /// Builds the lookup indices; call after the last push.
    pub(crate) fn finish(&mut self) {
        self.by_name = HashMap::with_capacity(self.entries.len());
        for i in (0..self.entries.len()).rev() {
            let name: Box<str> = self.name_of(i).into();
            self.by_name.insert(name, i as u32);
        }
        let mut by_addr: Vec<u32> = (0..self.entries.len() as u32)
            .filter(|&i| !self.entries[i as usize].kind.eq_ignore_ascii_case(&b'a'))
            .collect();
        by_addr.sort_by_key(|&i| (self.entries[i as usize].addr, i));
        self.by_addr = by_addr;
    }

    fn name_of(&self, i: usize) -> &str {
        let e = &self.entries[i];
        self.names.get(e.name_start as usize..(e.name_start + e.name_len) as usize).unwrap_or("")
    }

    fn sym(&self, i: usize) -> Symbol<'_> {
        let e = &self.entries[i];
        Symbol { name: self.name_of(i), addr: e.addr, kind: e.kind as char, index: i }
    }

    /// Where the table came from.
    pub fn source(&self) -> SymbolSource {
        self.source
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Symbol `index`.
    pub fn get(&self, index: usize) -> Option<Symbol<'_>> {
        (index < self.entries.len()).then(|| self.sym(index))
    }

    /// The first symbol called `name`.
    pub fn lookup(&self, name: &str) -> Option<Symbol<'_>> {
        self.by_name.get(name).map(|&i| self.sym(i as usize))
    }

    /// Every symbol called `name`, in table order.
    pub fn lookup_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Symbol<'a>> + 'a {
        let first = self.by_name.get(name).map_or(self.entries.len(), |&i| i as usize);
        (first..self.entries.len()).filter(move |&i| self.name_of(i) == name).map(|i| self.sym(i))
    }

    /// The address of the first symbol called `name`.
    pub fn addr(&self, name: &str) -> Option<Gva> {
        self.lookup(name).map(|s| s.addr)
    }

    /// Like [`addr`](Self::addr), but an error naming the symbol when it is missing.
    pub fn require(&self, name: &str) -> Result<Gva> {
        self.addr(name).ok_or_else(|| Error::SymbolMissing(name.into()))
    }

    /// The symbol containing `addr` — the last one at or below it — and the offset
    /// into it. Absolute symbols are not considered.
    pub fn symbolize(&self, addr: Gva) -> Option<(Symbol<'_>, u64)> {
        let n = self.by_addr.partition_point(|&i| self.entries[i as usize].addr <= addr);
        let i = *self.by_addr.get(n.checked_sub(1)?)? as usize;
        let s = self.sym(i);
        Some((s, addr.offset_from(s.addr)?))
    }

    /// Bytes from `sym` to the next symbol at a higher address (in table order
    /// after it, as kallsyms is sorted): the size of a table or function.
    pub fn extent(&self, sym: Symbol<'_>) -> Option<u64> {
        let next = self.iter().skip(sym.index + 1).find(|n| n.addr > sym.addr)?;
        next.addr.offset_from(sym.addr)
    }

    /// Every symbol, in table order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Symbol<'_>> + '_ {
        (0..self.entries.len()).map(|i| self.sym(i))
    }

    /// The same table with every non-absolute address moved by `delta` (to turn
    /// link-time addresses into a KASLR kernel's, or back), modulo 2^64 as the
    /// kernel relocates itself.
    pub fn slid(&self, delta: i64) -> SymbolTable {
        let mut t = self.clone();
        for e in &mut t.entries {
            if !e.kind.eq_ignore_ascii_case(&b'a') {
                e.addr = Gva::new(e.addr.raw().wrapping_add_signed(delta));
            }
        }
        t.finish();
        t
    }

    /// The table in `/proc/kallsyms` format (`%016x %c %s\n` per symbol), as the
    /// kernel prints its own symbols to root. Symbols with empty names are skipped,
    /// as the kernel skips them.
    pub fn to_proc_kallsyms(&self) -> String {
        let mut out = String::with_capacity(self.entries.len() * 40);
        for s in self.iter().filter(|s| !s.name.is_empty()) {
            let _ = writeln!(out, "{:016x} {} {}", s.addr, s.kind, s.name);
        }
        out
    }

    /// Parses a System.map (`address type name` per line; blank lines skipped).
    pub fn from_system_map(text: &str) -> Result<SymbolTable> {
        let mut t = Self::new(SymbolSource::SystemMap);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| Error::SystemMap { line: n + 1, why: why.into() };
            let mut it = line.split_whitespace();
            let (Some(a), Some(k), Some(name)) = (it.next(), it.next(), it.next()) else {
                return Err(bad("expected `address type name`"));
            };
            let addr = Gva::new(u64::from_str_radix(a, 16).map_err(|_| bad("the address is not hexadecimal"))?);
            let mut kc = k.chars();
            let (Some(kind), None) = (kc.next(), kc.next()) else {
                return Err(bad("the type is not one letter"));
            };
            t.push(name, addr, kind);
        }
        if t.is_empty() {
            return Err(Error::SystemMap { line: 0, why: "no symbols".into() });
        }
        t.finish();
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let t = SymbolTable::from_iter(
            SymbolSource::Kallsyms,
            [
                ("fixed_percpu_data", 0, 'A'),
                ("_text", 0x1000, 'T'),
                ("dup", 0x1010, 't'),
                ("dup", 0x1020, 't'),
                ("end", 0x2000, 'D'),
            ]
            .map(|(n, a, k)| (n, Gva::new(a), k)),
        );
        assert_eq!(t.addr("_text"), Some(Gva::new(0x1000)));
        assert_eq!(t.lookup("dup").map(|s| s.addr), Some(Gva::new(0x1010)));
        assert_eq!(t.lookup_all("dup").count(), 2);
        let (s, off) = t.symbolize(Gva::new(0x1015)).unwrap();
        assert_eq!((s.name, off), ("dup", 5));
        assert!(t.symbolize(Gva::new(0x10)).is_none(), "absolute symbols are not used for symbolization");
        assert_eq!(t.to_proc_kallsyms().lines().next(), Some("0000000000000000 A fixed_percpu_data"));
        let s = t.slid(0x100);
        assert_eq!((s.addr("_text"), s.addr("fixed_percpu_data")), (Some(Gva::new(0x1100)), Some(Gva::new(0))));
    }

    #[test]
    fn system_map() {
        let t = SymbolTable::from_system_map("ffffffff81000000 T _text\n\nffffffff82000000 D linux_banner\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.addr("linux_banner"), Some(Gva::new(0xffff_ffff_8200_0000)));
        assert!(matches!(SymbolTable::from_system_map("zz T a"), Err(Error::SystemMap { line: 1, .. })));
    }
}
