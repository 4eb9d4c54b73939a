//! Real page tables in synthetic memory, for tests, benchmarks and fuzzing (the
//! role memflow's `DummyOs` plays there).

use vmscope_mem::{Gpa, Gva, MemoryMap, SliceMem};

use crate::{AddressSpace, PageSize, PagingMode, Root, pte};

/// Why [`PageTableBuilder::map`] refused a mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixtureError {
    /// The virtual or physical address is not aligned to the page size, or the
    /// virtual address is not canonical.
    #[error("{gva} -> {gpa}: misaligned or non-canonical for a {size:?} page")]
    Misaligned {
        /// Virtual address.
        gva: Gva,
        /// Physical address.
        gpa: Gpa,
        /// Page size asked for.
        size: PageSize,
    },
    /// Part of the range is mapped already (by a page, or by a table where a large
    /// page should go).
    #[error("{gva}: already mapped")]
    Overlap {
        /// Virtual address.
        gva: Gva,
    },
}

/// Builds page tables the way an OS would, in a growing byte vector that becomes
/// the guest RAM (GPA 0 upwards; tables are allocated from `0x1000` on, so GPA 0 is
/// never a table). Leaves may point anywhere: their frames are not allocated.
///
/// ```
/// use vmscope_mem::{Gpa, Gva};
/// use vmscope_x86::{fixture::PageTableBuilder, pte, PageSize, PagingMode};
///
/// let mut b = PageTableBuilder::new(PagingMode::Level5);
/// b.map(Gva::new(0xff11_0000_0000_0000), Gpa::new(0x4000_0000), PageSize::Size1G, pte::WRITABLE | pte::NX).unwrap();
/// let (mem, space) = b.finish();
/// let t = space.translate(&mem, Gva::new(0xff11_0000_0012_3456)).unwrap();
/// assert_eq!(t.gpa, Gpa::new(0x4012_3456));
/// assert!(t.perms.writable && t.perms.nx && !t.perms.user);
/// ```
#[derive(Debug, Clone)]
pub struct PageTableBuilder {
    mode: PagingMode,
    ram: Vec<u8>,
    root: u64,
    table_flags: u64,
}

impl PageTableBuilder {
    /// An empty address space under `mode`: one zeroed root table at `0x1000`.
    pub fn new(mode: PagingMode) -> Self {
        let mut b = PageTableBuilder { mode, ram: vec![0; 0x1000], root: 0, table_flags: pte::WRITABLE | pte::USER };
        b.root = b.alloc_table().raw();
        b
    }

    /// A Linux PTI pair under `mode`: the kernel root at `0x2000` (8 KiB aligned)
    /// and the user root right after it at `0x3000`, both empty. [`root`](Self::root)
    /// is the kernel root; map into the user root with [`map_in`](Self::map_in) and
    /// `root().pti_user()`.
    pub fn new_pti(mode: PagingMode) -> Self {
        let mut b = Self::new(mode);
        b.root = b.alloc_table().raw();
        b.alloc_table();
        b
    }

    /// Flags (besides present) of the table entries created from now on. The
    /// default, writable | user, lets the leaves decide the effective rights.
    pub fn table_flags(&mut self, flags: u64) -> &mut Self {
        self.table_flags = flags;
        self
    }

    /// A new zeroed page-table page.
    pub fn alloc_table(&mut self) -> Gpa {
        const ZERO: [u8; 0x1000] = [0; 0x1000];
        let at = self.ram.len() as u64;
        self.ram.extend_from_slice(&ZERO);
        Gpa::new(at)
    }

    /// The root table.
    pub fn root(&self) -> Root {
        Root::new(Gpa::new(self.root))
    }

    /// The address space being built.
    pub fn space(&self) -> AddressSpace {
        AddressSpace::new(self.root(), self.mode)
    }

    /// Maps one page of `size` at `gva` to `gpa` with leaf `flags` (present and,
    /// for large pages, the page-size bit are added).
    pub fn map(&mut self, gva: Gva, gpa: Gpa, size: PageSize, flags: u64) -> Result<(), FixtureError> {
        self.map_in(self.root(), gva, gpa, size, flags)
    }

    /// [`map`](Self::map) into the tables under another `root` (e.g. the user half
    /// of a PTI pair, or a second process) sharing this RAM.
    pub fn map_in(&mut self, root: Root, gva: Gva, gpa: Gpa, size: PageSize, flags: u64) -> Result<(), FixtureError> {
        let bytes = size.bytes();
        if !gva.is_aligned(bytes) || !gpa.is_aligned(bytes) || !self.mode.is_canonical(gva) {
            return Err(FixtureError::Misaligned { gva, gpa, size });
        }
        let mut table = root.gpa().raw();
        for def in self.mode.levels() {
            let at = (table + def.index(gva.raw()) * 8) as usize;
            let e = self.read(at);
            if def.entry_span() == bytes {
                if e & pte::PRESENT != 0 {
                    return Err(FixtureError::Overlap { gva });
                }
                let ps = if bytes > 0x1000 { pte::PAGE_SIZE } else { 0 };
                self.write(at, gpa.raw() | flags | ps | pte::PRESENT);
                return Ok(());
            }
            if e & pte::PRESENT == 0 {
                let t = self.alloc_table().raw();
                self.write(at, t | self.table_flags | pte::PRESENT);
                table = t;
            } else if e & pte::PAGE_SIZE != 0 {
                return Err(FixtureError::Overlap { gva });
            } else {
                table = e & pte::ADDR_MASK;
            }
        }
        unreachable!("every page size matches one level")
    }

    /// Maps `len` bytes (a multiple of `size`) at `gva` to `gpa` with pages of `size`.
    pub fn map_range(&mut self, gva: Gva, gpa: Gpa, len: u64, size: PageSize, flags: u64) -> Result<(), FixtureError> {
        let mut off = 0;
        while off < len {
            let (Some(v), Some(p)) = (gva.checked_add(off), gpa.checked_add(off)) else {
                return Err(FixtureError::Misaligned { gva, gpa, size });
            };
            self.map(v, p, size, flags)?;
            off += size.bytes();
        }
        Ok(())
    }

    /// The raw RAM, to corrupt tables on purpose.
    pub fn ram_mut(&mut self) -> &mut [u8] {
        &mut self.ram
    }

    /// Writes a raw entry (little-endian) at `gpa`, growing RAM if needed.
    pub fn write_u64(&mut self, gpa: Gpa, value: u64) {
        let at = gpa.raw() as usize;
        if self.ram.len() < at + 8 {
            self.ram.resize((at + 8).next_multiple_of(0x1000), 0);
        }
        self.write(at, value);
    }

    /// The RAM as guest memory (one flat region) and the address space.
    pub fn finish(self) -> (SliceMem<Vec<u8>>, AddressSpace) {
        let space = self.space();
        let map = MemoryMap::flat(self.ram.len() as u64);
        (SliceMem::new(self.ram, map), space)
    }

    fn read(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.ram[at..at + 8]);
        u64::from_le_bytes(b)
    }

    fn write(&mut self, at: usize, v: u64) {
        self.ram[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
}
