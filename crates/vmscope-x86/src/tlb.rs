//! A software TLB: translations cached by (root, 4 KiB page), bounded, invalidated
//! by epoch.

use vmscope_mem::{Gpa, Gva, PhysMem};

use crate::{AddressSpace, Result, Translation};

/// Hits and misses of a [`Tlb`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlbStats {
    /// Translations served from the cache.
    pub hits: u64,
    /// Translations that walked the page tables.
    pub misses: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The root's address | 1 (so that 0 marks an empty slot).
    root: u64,
    /// The virtual 4 KiB page.
    page: u64,
    epoch: u64,
    /// The translation of `page` itself (offset 0).
    t: Translation,
}

/// A direct-mapped cache of translations, keyed by (root, virtual 4 KiB page).
///
/// - **Bounded**: `capacity` slots (rounded up to a power of two), allocated once.
/// - **Invalidation is explicit**: the cache cannot know when the guest ran. Call
///   [`invalidate`](Tlb::invalidate) (O(1), it bumps an epoch) whenever the guest may
///   have changed its page tables, e.g. after every resume.
/// - Large pages are cached per 4 KiB page touched, each slot carrying the real page
///   size; a hit returns exactly what the walk returned at fill time, accessed and
///   dirty bits included (as a hardware TLB would).
/// - Failed walks are not cached.
///
/// ```
/// use vmscope_mem::Gva;
/// use vmscope_x86::{pte, fixture::PageTableBuilder, PageSize, PagingMode, Tlb};
///
/// let mut b = PageTableBuilder::new(PagingMode::Level4);
/// b.map(Gva::new(0xffff_8880_0000_0000), vmscope_mem::Gpa::new(0x20_0000), PageSize::Size2M, pte::WRITABLE).unwrap();
/// let (mem, space) = b.finish();
/// let mut tlb = Tlb::new(1024);
/// let t = tlb.translate(&mem, &space, Gva::new(0xffff_8880_0000_1234)).unwrap();
/// assert_eq!(t.gpa.raw(), 0x20_1234);
/// tlb.translate(&mem, &space, Gva::new(0xffff_8880_0000_1238)).unwrap();
/// assert_eq!((tlb.stats().hits, tlb.stats().misses), (1, 1));
/// tlb.invalidate(); // the guest ran
/// ```
#[derive(Debug, Clone)]
pub struct Tlb {
    slots: Box<[Slot]>,
    shift: u32,
    epoch: u64,
    stats: TlbStats,
}

const EMPTY: Slot = Slot {
    root: 0,
    page: 0,
    epoch: 0,
    t: Translation {
        gva: Gva::new(0),
        gpa: Gpa::new(0),
        page_size: crate::PageSize::Size4K,
        perms: crate::Perms { writable: false, user: false, nx: false },
        accessed: false,
        dirty: false,
        global: false,
        entry: 0,
    },
};

impl Tlb {
    /// A cache of `capacity` translations (rounded up to a power of two, at least 1).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(1).next_power_of_two();
        Tlb { slots: vec![EMPTY; n].into_boxed_slice(), shift: 64 - n.trailing_zeros(), epoch: 0, stats: TlbStats::default() }
    }

    /// Slots in the cache.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Forgets every cached translation (O(1)). Returns the new epoch.
    pub fn invalidate(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    /// How many times [`invalidate`](Self::invalidate) ran.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> TlbStats {
        self.stats
    }

    #[inline(always)]
    fn slot_of(&self, root: u64, page: u64) -> usize {
        // Fibonacci hashing of page number and root; the shift keeps the top bits.
        let h = ((page >> 12) ^ (root >> 12).rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        if self.shift == 64 { 0 } else { (h >> self.shift) as usize }
    }

    /// The cached translation of `gva` in `space`, if there is one.
    #[inline]
    pub fn lookup(&mut self, space: &AddressSpace, gva: Gva) -> Option<Translation> {
        let root = space.root().gpa().raw() | 1;
        let page = gva.raw() & !0xfff;
        let s = &self.slots[self.slot_of(root, page)];
        if s.root == root && s.page == page && s.epoch == self.epoch {
            self.stats.hits += 1;
            let off = gva.raw() & 0xfff;
            let mut t = s.t;
            t.gva = gva;
            t.gpa = Gpa::new(t.gpa.raw() | off);
            Some(t)
        } else {
            None
        }
    }

    /// Caches `t`, a translation in `space`, replacing whatever shared its slot.
    #[inline]
    pub fn insert(&mut self, space: &AddressSpace, t: &Translation) {
        let root = space.root().gpa().raw() | 1;
        let page = t.gva.raw() & !0xfff;
        let mut t = *t;
        t.gva = Gva::new(page);
        t.gpa = Gpa::new(t.gpa.raw() & !0xfff);
        let i = self.slot_of(root, page);
        self.slots[i] = Slot { root, page, epoch: self.epoch, t };
    }

    /// Translates `gva` in `space`, from the cache or by a walk that fills it.
    #[inline]
    pub fn translate<M: PhysMem + ?Sized>(&mut self, mem: &M, space: &AddressSpace, gva: Gva) -> Result<Translation> {
        if let Some(t) = self.lookup(space, gva) {
            return Ok(t);
        }
        self.stats.misses += 1;
        let t = space.translate(mem, gva)?;
        self.insert(space, &t);
        Ok(t)
    }

    /// Translates every address of `gvas` into `out` (cleared first, one result per
    /// address): hits from the cache, all misses with one
    /// [`AddressSpace::translate_batch`] (one `read_batch` per level).
    pub fn translate_batch<M: PhysMem + ?Sized>(
        &mut self,
        mem: &M,
        space: &AddressSpace,
        gvas: &[Gva],
        out: &mut Vec<Result<Translation>>,
    ) {
        out.clear();
        let mut miss_idx = Vec::new();
        let mut miss_gva = Vec::new();
        for (i, &gva) in gvas.iter().enumerate() {
            match self.lookup(space, gva) {
                Some(t) => out.push(Ok(t)),
                None => {
                    out.push(Ok(EMPTY.t));
                    miss_idx.push(i);
                    miss_gva.push(gva);
                }
            }
        }
        if miss_gva.is_empty() {
            return;
        }
        self.stats.misses += miss_gva.len() as u64;
        let mut walked = Vec::with_capacity(miss_gva.len());
        space.translate_batch(mem, &miss_gva, &mut walked);
        for (i, r) in miss_idx.into_iter().zip(walked) {
            if let Ok(t) = &r {
                self.insert(space, t);
            }
            out[i] = r;
        }
    }
}
