//! Lookups straight on the tables, decoding only what a lookup needs, as the kernel
//! does: a name by index through the markers, an index by name through
//! `kallsyms_seqs_of_names` (a binary search over names sorted by the build).

use vmscope_mem::{Gpa, Gva};

use super::KallsymsLayout;
use super::decode::address;
use super::layout::{entry_len, u16_at, u32_at};

/// The kallsyms tables in a window of guest-physical bytes, read lazily.
#[derive(Debug, Clone, Copy)]
pub struct TablesView<'w> {
    w: &'w [u8],
    base: Gpa,
    layout: KallsymsLayout,
}

impl<'w> TablesView<'w> {
    /// The tables `layout` describes, inside `window` (guest-physical bytes from `base`).
    pub fn new(window: &'w [u8], base: Gpa, layout: KallsymsLayout) -> Self {
        TablesView { w: window, base, layout }
    }

    fn off(&self, gpa: Gpa) -> Option<usize> {
        usize::try_from(gpa.offset_from(self.base)?).ok()
    }

    /// The type letter and name of symbol `index`.
    pub fn name(&self, index: u32) -> Option<(char, String)> {
        if index >= self.layout.count {
            return None;
        }
        let names = self.off(self.layout.names)?;
        let marker = u32_at(self.w, self.off(self.layout.markers)? + 4 * (index as usize / 256))?;
        let mut at = names + marker as usize;
        for _ in 0..index % 256 {
            let (len, hdr) = entry_len(self.w, at)?;
            at += hdr + len;
        }
        let (len, hdr) = entry_len(self.w, at)?;
        let table = self.off(self.layout.token_table)?;
        let index_at = self.off(self.layout.token_index)?;
        let mut out = Vec::new();
        for &c in self.w.get(at + hdr..at + hdr + len)? {
            let start = table + usize::from(u16_at(self.w, index_at + 2 * usize::from(c))?);
            let rest = self.w.get(start..)?;
            let end = memchr::memchr(0, rest)?;
            out.extend_from_slice(&rest[..end]);
        }
        let (&kind, rest) = out.split_first()?;
        Some((kind as char, String::from_utf8_lossy(rest).into_owned()))
    }

    /// The address of symbol `index`.
    pub fn address(&self, index: u32) -> Option<Gva> {
        if index >= self.layout.count {
            return None;
        }
        let e = u32_at(self.w, self.off(self.layout.offsets)? + 4 * index as usize)? as i32;
        Some(address(e, self.layout.relative_base_value, self.layout.absolute_percpu))
    }

    /// The index of the first symbol called `name`: a binary search over
    /// `kallsyms_seqs_of_names` when the kernel has it (about log2(count) names
    /// decoded), a scan otherwise.
    pub fn lookup(&self, name: &str) -> Option<u32> {
        let Some(seqs) = self.layout.seqs_of_names.and_then(|g| self.off(g)) else {
            return (0..self.layout.count).find(|&i| self.name(i).is_some_and(|(_, n)| n == name));
        };
        let seq = |k: u32| -> Option<u32> {
            let b = self.w.get(seqs + 3 * k as usize..seqs + 3 * k as usize + 3)?;
            Some((u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]))
        };
        // The first position whose name is not below `name`.
        let (mut lo, mut hi) = (0u32, self.layout.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (_, n) = self.name(seq(mid)?)?;
            if n.as_str() < name {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = seq(lo)?;
        (self.name(i)?.1 == name).then_some(i)
    }
}
