//! Page-table entries: bits, page sizes, permissions, and the per-entry step every
//! walk in this crate shares.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gpa, Gva};

use crate::{Error, LevelDef};

/// Present.
pub const PRESENT: u64 = 1 << 0;
/// Writable (read/write).
pub const WRITABLE: u64 = 1 << 1;
/// User-accessible (user/supervisor).
pub const USER: u64 = 1 << 2;
/// Page-level write-through.
pub const PWT: u64 = 1 << 3;
/// Page-level cache disable.
pub const PCD: u64 = 1 << 4;
/// Accessed.
pub const ACCESSED: u64 = 1 << 5;
/// Dirty (leaf entries only).
pub const DIRTY: u64 = 1 << 6;
/// Page size: this PD or PDPT entry maps a 2 MiB or 1 GiB page (PAT in a PT entry).
pub const PAGE_SIZE: u64 = 1 << 7;
/// Global (leaf entries only).
pub const GLOBAL: u64 = 1 << 8;
/// Execute-disable.
pub const NX: u64 = 1 << 63;
/// Bits 51:12: the frame or next-table address (with MAXPHYADDR = 52).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The size of a page a translation ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PageSize {
    /// 4 KiB, mapped by a PT entry.
    Size4K,
    /// 2 MiB, mapped by a PD entry with PS = 1.
    Size2M,
    /// 1 GiB, mapped by a PDPT entry with PS = 1.
    Size1G,
}

impl PageSize {
    /// Bytes in the page.
    #[inline]
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The size of a page mapped at a level whose entries cover `1 << shift` bytes.
    #[inline]
    pub(crate) const fn from_shift(shift: u32) -> Self {
        match shift {
            30 => PageSize::Size1G,
            21 => PageSize::Size2M,
            _ => PageSize::Size4K,
        }
    }
}

/// Effective access rights of a translation, combined along the walk the way the
/// CPU combines them: writable and user only if *every* level allows it, no-execute
/// if *any* level forbids execution. (Present is implied: a translation exists only
/// if every level was present.) CR0.WP, SMEP/SMAP and protection keys are the
/// accessor's business and not applied here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Perms {
    /// Writes allowed (R/W set at every level).
    pub writable: bool,
    /// User-mode access allowed (U/S set at every level).
    pub user: bool,
    /// Instruction fetches forbidden (XD set at some level).
    pub nx: bool,
}

impl Perms {
    /// Combines the AND and the OR of every entry on a walk.
    #[inline]
    pub(crate) const fn from_walk(and: u64, or: u64) -> Self {
        Perms { writable: and & WRITABLE != 0, user: and & USER != 0, nx: or & NX != 0 }
    }
}

/// A successful translation of one virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Translation {
    /// The virtual address translated.
    pub gva: Gva,
    /// Where it lands in guest-physical memory.
    pub gpa: Gpa,
    /// The size of the page it lies in.
    pub page_size: PageSize,
    /// Effective permissions along the walk.
    pub perms: Perms,
    /// The leaf entry's accessed bit.
    pub accessed: bool,
    /// The leaf entry's dirty bit.
    pub dirty: bool,
    /// The leaf entry's global bit.
    pub global: bool,
    /// The raw leaf entry.
    pub entry: u64,
}

impl Translation {
    /// The first virtual address of the page.
    #[inline]
    pub fn page_gva(&self) -> Gva {
        self.gva.page_base(self.page_size.bytes())
    }

    /// The first guest-physical address of the page.
    #[inline]
    pub fn page_gpa(&self) -> Gpa {
        self.gpa.page_base(self.page_size.bytes())
    }

    /// Bytes from `gva` to the end of its page: how far the translation stays
    /// physically contiguous at least.
    #[inline]
    pub fn bytes_to_page_end(&self) -> u64 {
        self.page_size.bytes() - self.gva.offset_in_page(self.page_size.bytes())
    }
}

/// What one present entry means for a walk.
pub(crate) enum Step {
    /// Go on with the table at this address.
    Table(u64),
    /// The entry maps a page starting at this physical address.
    Leaf(u64),
}

/// Decodes one entry at `def`'s level: the single place where entry semantics live.
/// `reserved` holds the reserved physical-address and NX bits of the address space.
/// The caller checks the present bit first (and treats absence its own way).
#[inline(always)]
pub(crate) fn step(def: &LevelDef, entry: u64, reserved: u64, va: u64) -> Result<Step, Error> {
    let leaf = def.shift == 12 || entry & PAGE_SIZE != 0;
    if entry & reserved != 0 || (leaf && entry & def.large_reserved != 0) {
        return Err(Error::ReservedBits { gva: Gva::new(va), level: def.level, entry });
    }
    if !leaf {
        return Ok(Step::Table(entry & ADDR_MASK));
    }
    if !def.maps_pages {
        return Err(Error::IllegalLargePage { gva: Gva::new(va), level: def.level, entry });
    }
    Ok(Step::Leaf(entry & ADDR_MASK & !(def.entry_span() - 1)))
}
