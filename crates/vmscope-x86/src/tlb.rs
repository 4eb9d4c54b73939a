//! A software TLB: translations cached by (root, 4 KiB page), bounded, invalidated
//! by epoch.

use vmscope_mem::{Gpa, Gva, PhysMem};

use crate::{AddressSpace, Error, Level, PageSize, Perms, Result, Translation};

/// Hits and misses of a [`Tlb`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlbStats {
    /// Translations served from the cache.
    pub hits: u64,
    /// Translations that walked the page tables.
    pub misses: u64,
}

/// One cached translation, ready to hand out (48 bytes).
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Virtual 4 KiB page | low 12 bits of the epoch it was filled in.
    tag: u64,
    /// Root address | 1 (0 marks an empty slot).
    root: u64,
    /// The translation of the page's first byte.
    t: Translation,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            tag: 0,
            root: 0,
            t: Translation {
                gva: Gva::new(0),
                gpa: Gpa::new(0),
                page_size: PageSize::Size4K,
                perms: Perms { writable: false, user: false, nx: false },
                accessed: false,
                dirty: false,
                global: false,
                entry: 0,
            },
        }
    }
}

/// Two ways of one set. Way 0 is the most recently filled.
#[derive(Debug, Clone, Copy, Default)]
struct Set([Slot; 2]);

const EPOCH_MASK: u64 = 0xfff;

/// A two-way set-associative cache of translations, keyed by (root, virtual 4 KiB
/// page).
///
/// - **Bounded**: `capacity` slots of 48 bytes (rounded up to a power of two, at
///   least 4), allocated once. A fill evicts the older of its set's two ways.
/// - **Invalidation is explicit**: the cache cannot know when the guest ran. Call
///   [`invalidate`](Tlb::invalidate) (O(1), it bumps an epoch) whenever the guest may
///   have changed its page tables, e.g. after every resume.
/// - Large pages are cached per 4 KiB page touched, each slot carrying the real page
///   size; a hit returns exactly what the walk returned at fill time, accessed and
///   dirty bits included (as a hardware TLB would).
/// - Failed walks are not cached.
/// - The key is the root alone: share one TLB only between address spaces that
///   differ by root, not by mode or reserved-bit settings.
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
    sets: Box<[Set]>,
    shift: u32,
    epoch: u64,
    stats: TlbStats,
}

impl Tlb {
    /// A cache of `capacity` translations (rounded up to a power of two, at least 4).
    pub fn new(capacity: usize) -> Self {
        let sets = capacity.max(4).next_power_of_two() / 2;
        Tlb {
            sets: vec![Set::default(); sets].into_boxed_slice(),
            shift: 64 - sets.trailing_zeros(),
            epoch: 0,
            stats: TlbStats::default(),
        }
    }

    /// Slots in the cache.
    pub fn capacity(&self) -> usize {
        self.sets.len() * 2
    }

    /// Forgets every cached translation (O(1)). Returns the new epoch.
    pub fn invalidate(&mut self) -> u64 {
        self.epoch += 1;
        // Slots keep 12 bits of their epoch; when those wrap, an entry from 4096
        // epochs ago would look current, so empty the table then (once per 4096).
        if self.epoch & EPOCH_MASK == 0 {
            self.sets.fill(Set::default());
        }
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
    fn set_of(&self, root: u64, page: u64) -> usize {
        // Fibonacci hashing of page number and root; the shift keeps the top bits.
        let h = ((page >> 12) ^ (root >> 12).rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> self.shift) as usize
    }

    /// The cached translation of `gva` in `space`, if there is one.
    #[inline]
    pub fn lookup(&mut self, space: &AddressSpace, gva: Gva) -> Option<Translation> {
        let root = space.root().gpa().raw() | 1;
        let page = gva.raw() & !0xfff;
        let tag = page | (self.epoch & EPOCH_MASK);
        let set = &self.sets[self.set_of(root, page)].0;
        let s = &if set[0].tag == tag && set[0].root == root {
            set[0]
        } else if set[1].tag == tag && set[1].root == root {
            set[1]
        } else {
            return None;
        };
        self.stats.hits += 1;
        let mut t = s.t;
        t.gpa = Gpa::new(t.gpa.raw() | (gva.raw() & 0xfff));
        t.gva = gva;
        Some(t)
    }

    /// Caches `t`, a translation in `space`, replacing whatever shared its slot.
    #[inline]
    pub fn insert(&mut self, space: &AddressSpace, t: &Translation) {
        let root = space.root().gpa().raw() | 1;
        let page = t.gva.raw() & !0xfff;
        let mut t = *t;
        t.gva = Gva::new(page);
        t.gpa = Gpa::new(t.gpa.raw() & !0xfff);
        let tag = page | (self.epoch & EPOCH_MASK);
        let i = self.set_of(root, page);
        let set = &mut self.sets[i].0;
        let new = Slot { tag, root, t };
        // Refill in place if the key is there already; else way 0 moves to way 1.
        if set[1].tag == tag && set[1].root == root {
            set[1] = new;
        } else {
            if !(set[0].tag == tag && set[0].root == root) {
                set[1] = set[0];
            }
            set[0] = new;
        }
    }

    /// Translates `gva` in `space`, from the cache or by a walk that fills it.
    #[inline]
    pub fn translate<M: PhysMem + ?Sized>(&mut self, mem: &M, space: &AddressSpace, gva: Gva) -> Result<Translation> {
        match self.lookup(space, gva) {
            Some(t) => Ok(t),
            None => self.fill(mem, space, gva),
        }
    }

    /// The miss path, kept out of line so that the hit path stays a few
    /// instructions.
    #[cold]
    #[inline(never)]
    fn fill<M: PhysMem + ?Sized>(&mut self, mem: &M, space: &AddressSpace, gva: Gva) -> Result<Translation> {
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
                    out.push(Err(Error::NotPresent { gva, level: Level::Pt }));
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
