//! The paging modes as data: one level table, read by every walk in this crate.

use std::fmt;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gpa, Gva};

use crate::pte;

/// A paging-structure level, named as the Intel SDM names its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// Page table: maps 4 KiB pages.
    Pt = 1,
    /// Page directory: 2 MiB pages or page tables.
    Pd = 2,
    /// Page-directory-pointer table: 1 GiB pages or page directories.
    Pdpt = 3,
    /// PML4: page-directory-pointer tables only.
    Pml4 = 4,
    /// PML5 (LA57 only): PML4 tables only.
    Pml5 = 5,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Pt => "PT",
            Level::Pd => "PD",
            Level::Pdpt => "PDPT",
            Level::Pml4 => "PML4",
            Level::Pml5 => "PML5",
        })
    }
}

/// What one level of the walk is: everything the walk loop needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelDef {
    /// Which level.
    pub level: Level,
    /// The lowest virtual-address bit this level indexes with (9 bits from here).
    pub shift: u32,
    /// Whether an entry here may map a page: always at the PT, with PS=1 at the PD
    /// and PDPT, never above.
    pub maps_pages: bool,
    /// Frame-address bits that must be zero in a large-page entry here (the bits
    /// between the PAT bit 12 and the page size).
    pub large_reserved: u64,
}

impl LevelDef {
    /// Bytes mapped by one entry of this level.
    #[inline]
    pub const fn entry_span(&self) -> u64 {
        1 << self.shift
    }

    /// This level's index of `va`.
    #[inline]
    pub const fn index(&self, va: u64) -> u64 {
        (va >> self.shift) & 0x1ff
    }
}

/// The five x86-64 levels, root first. 4-level paging uses the last four.
pub const LEVELS: [LevelDef; 5] = [
    LevelDef { level: Level::Pml5, shift: 48, maps_pages: false, large_reserved: 0 },
    LevelDef { level: Level::Pml4, shift: 39, maps_pages: false, large_reserved: 0 },
    LevelDef { level: Level::Pdpt, shift: 30, maps_pages: true, large_reserved: 0x3fff_e000 },
    LevelDef { level: Level::Pd, shift: 21, maps_pages: true, large_reserved: 0x001f_e000 },
    LevelDef { level: Level::Pt, shift: 12, maps_pages: true, large_reserved: 0 },
];

/// 4-level (48-bit virtual addresses) or 5-level (LA57, 57-bit) paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PagingMode {
    /// CR4.LA57 = 0: PML4 at the root, 48-bit canonical addresses.
    #[default]
    Level4,
    /// CR4.LA57 = 1: PML5 at the root, 57-bit canonical addresses.
    Level5,
}

impl fmt::Display for PagingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PagingMode::Level4 => "4-level paging",
            PagingMode::Level5 => "5-level paging",
        })
    }
}

impl PagingMode {
    /// The mode CR4 selects (bit 12, LA57).
    pub const fn from_cr4(cr4: u64) -> Self {
        if cr4 & (1 << 12) != 0 { PagingMode::Level5 } else { PagingMode::Level4 }
    }

    /// The levels of a walk, root first.
    #[inline]
    pub fn levels(self) -> &'static [LevelDef] {
        match self {
            PagingMode::Level4 => &LEVELS[1..],
            PagingMode::Level5 => &LEVELS[..],
        }
    }

    /// Number of levels: 4 or 5.
    #[inline]
    pub const fn depth(self) -> usize {
        match self {
            PagingMode::Level4 => 4,
            PagingMode::Level5 => 5,
        }
    }

    /// Width of a virtual address: 48 or 57 bits.
    #[inline]
    pub const fn va_bits(self) -> u32 {
        match self {
            PagingMode::Level4 => 48,
            PagingMode::Level5 => 57,
        }
    }

    /// Whether bits 63 down to `va_bits - 1` of `gva` are all equal.
    #[inline]
    pub const fn is_canonical(self, gva: Gva) -> bool {
        self.canonicalize(gva.raw()) == gva.raw()
    }

    /// `va` with its top bits made copies of bit `va_bits - 1`.
    #[inline]
    pub const fn canonicalize(self, va: u64) -> u64 {
        let unused = 64 - self.va_bits();
        (((va << unused) as i64) >> unused) as u64
    }

    /// The lowest canonical address of the upper (kernel) half.
    pub const fn upper_half_start(self) -> Gva {
        Gva::new(self.canonicalize(1 << (self.va_bits() - 1)))
    }
}

/// The physical address of the root table (what CR3 points at), page aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Root(Gpa);

impl Root {
    /// The root table at `gpa`, with the low 12 bits cleared.
    pub const fn new(gpa: Gpa) -> Self {
        Root(Gpa::new(gpa.raw() & !0xfff))
    }

    /// The root from a CR3 value: drops the PCID or PWT/PCD bits (11:0), the
    /// no-flush bit 63 and LAM bits 62:61.
    pub const fn from_cr3(cr3: u64) -> Self {
        Root(Gpa::new(cr3 & pte::ADDR_MASK))
    }

    /// The table's address.
    pub const fn gpa(self) -> Gpa {
        self.0
    }

    /// The kernel root of a Linux PTI pair: the PGD with bit 12 clear. Linux
    /// allocates the kernel and user PGDs as one 8 KiB-aligned pair.
    pub const fn pti_kernel(self) -> Root {
        Root(Gpa::new(self.0.raw() & !0x1000))
    }

    /// The user root of a Linux PTI pair: kernel PGD | 0x1000. It maps user space
    /// and only the entry trampoline of the kernel.
    pub const fn pti_user(self) -> Root {
        Root(Gpa::new(self.0.raw() | 0x1000))
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "root {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_edges() {
        let m4 = PagingMode::Level4;
        assert!(m4.is_canonical(Gva::new(0x0000_7fff_ffff_ffff)));
        assert!(!m4.is_canonical(Gva::new(0x0000_8000_0000_0000)));
        assert!(m4.is_canonical(Gva::new(0xffff_8000_0000_0000)));
        assert_eq!(m4.upper_half_start(), Gva::new(0xffff_8000_0000_0000));
        let m5 = PagingMode::Level5;
        assert!(m5.is_canonical(Gva::new(0x00ff_ffff_ffff_ffff)));
        assert!(m5.is_canonical(Gva::new(0xff11_0000_0000_0000)));
        assert!(!m5.is_canonical(Gva::new(0x0100_0000_0000_0000)));
        assert_eq!(PagingMode::from_cr4(0x1000), m5);
        assert_eq!(PagingMode::from_cr4(0x20), m4);
    }

    #[test]
    fn pti_roots_are_4k_apart() {
        let r = Root::from_cr3(0x8000_0000_0123_5805);
        assert_eq!(r.gpa(), Gpa::new(0x0123_5000));
        assert_eq!(r.pti_kernel().gpa(), Gpa::new(0x0123_4000));
        assert_eq!(r.pti_user(), r);
        assert_eq!(r.pti_kernel().pti_user(), r);
    }
}
