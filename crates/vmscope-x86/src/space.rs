//! An address space (root + mode) and its single-address walk: the one loop.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gpa, Gva, PhysMem};

use crate::pte::{self, Perms, Step};
use crate::{Error, Level, PageSize, PagingMode, Result, Root, Translation};

/// One virtual address space: where its root table is and how to walk it.
///
/// Cheap to copy; it holds no memory and no cache. Pair it with a
/// [`Tlb`](crate::Tlb) to cache translations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddressSpace {
    root: Root,
    mode: PagingMode,
    /// Entry bits that are reserved in this space: physical-address bits at or above
    /// MAXPHYADDR, and XD while EFER.NXE = 0.
    reserved: u64,
}

impl AddressSpace {
    /// The address space rooted at `root` under `mode`, with MAXPHYADDR = 52 and
    /// EFER.NXE = 1 (what every 64-bit Linux runs with).
    pub const fn new(root: Root, mode: PagingMode) -> Self {
        AddressSpace { root, mode, reserved: 0 }
    }

    /// The address space a vCPU is in: root from CR3, mode from CR4.LA57.
    pub const fn from_cr3(cr3: u64, cr4: u64) -> Self {
        Self::new(Root::from_cr3(cr3), PagingMode::from_cr4(cr4))
    }

    /// Treats physical-address bits `bits..52` of every entry as reserved
    /// (`bits` is the CPU's MAXPHYADDR, CPUID 0x8000_0008 EAX bits 7:0; clamped to 32..=52).
    pub const fn with_max_phys_bits(mut self, bits: u32) -> Self {
        let bits = if bits < 32 {
            32
        } else if bits > 52 {
            52
        } else {
            bits
        };
        let phys = pte::ADDR_MASK & !((1u64 << bits) - 1);
        self.reserved = (self.reserved & pte::NX) | phys;
        self
    }

    /// Whether EFER.NXE is set; when it is not, bit 63 of an entry is reserved.
    pub const fn with_nx_enabled(mut self, nxe: bool) -> Self {
        self.reserved = if nxe { self.reserved & !pte::NX } else { self.reserved | pte::NX };
        self
    }

    /// The same mode and settings, with another root.
    pub const fn with_root(mut self, root: Root) -> Self {
        self.root = root;
        self
    }

    /// The user half of a Linux PTI pair (root | 0x1000).
    pub const fn pti_user(self) -> Self {
        self.with_root(self.root.pti_user())
    }

    /// The kernel half of a Linux PTI pair (root & !0x1000).
    pub const fn pti_kernel(self) -> Self {
        self.with_root(self.root.pti_kernel())
    }

    /// The root table.
    pub const fn root(&self) -> Root {
        self.root
    }

    /// The paging mode.
    pub const fn mode(&self) -> PagingMode {
        self.mode
    }

    pub(crate) const fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Translates `gva` by walking the page tables in `mem`: at most one 8-byte read
    /// per level, no allocation.
    #[inline]
    pub fn translate<M: PhysMem + ?Sized>(&self, mem: &M, gva: Gva) -> Result<Translation> {
        let va = gva.raw();
        if !self.mode.is_canonical(gva) {
            return Err(Error::NonCanonical { gva, mode: self.mode });
        }
        let mut table = self.root.gpa().raw();
        let (mut and, mut or) = (!0u64, 0u64);
        for def in self.mode.levels() {
            let at = table + def.index(va) * 8;
            let entry = mem.read_u64(Gpa::new(at)).map_err(|e| read_error(e, gva, def.level, table))?;
            if entry & pte::PRESENT == 0 {
                return Err(Error::NotPresent { gva, level: def.level });
            }
            and &= entry;
            or |= entry;
            match pte::step(def, entry, self.reserved, va)? {
                Step::Table(next) => table = next,
                Step::Leaf(frame) => return Ok(leaf(gva, frame, def.shift, entry, and, or)),
            }
        }
        // Each mode's last level is the PT, whose entries are always leaves.
        unreachable!("the walk ends at the PT level")
    }
}

/// The translation of `gva` through the leaf `entry` mapping a page of
/// `1 << shift` bytes at `frame`.
#[inline(always)]
pub(crate) fn leaf(gva: Gva, frame: u64, shift: u32, entry: u64, and: u64, or: u64) -> Translation {
    let off = gva.raw() & ((1u64 << shift) - 1);
    Translation {
        gva,
        gpa: Gpa::new(frame | off),
        page_size: PageSize::from_shift(shift),
        perms: Perms::from_walk(and, or),
        accessed: entry & pte::ACCESSED != 0,
        dirty: entry & pte::DIRTY != 0,
        global: entry & pte::GLOBAL != 0,
        entry,
    }
}

/// Maps a failed table read to this crate's error: a hole means the table is
/// outside guest RAM.
#[cold]
pub(crate) fn read_error(e: vmscope_mem::Error, gva: Gva, level: Level, table: u64) -> Error {
    match e {
        vmscope_mem::Error::Unbacked { .. } | vmscope_mem::Error::Overflow { .. } => {
            Error::OutsideRam { gva, level, table: Gpa::new(table) }
        }
        source => Error::Read { gva, level, table: Gpa::new(table), source: Box::new(source) },
    }
}
