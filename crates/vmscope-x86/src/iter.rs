//! Iteration over every mapped range of an address space.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gpa, Gva, PhysMem};

use crate::pte::{self, Perms, Step};
use crate::space::read_error;
use crate::{AddressSpace, Error, LevelDef, PageSize, Result};

/// A run of virtual memory mapped to contiguous guest-physical memory.
///
/// Runs are merged from adjacent leaf entries when all of these hold: the pages are
/// virtually contiguous, physically contiguous, of the same [`PageSize`], with equal
/// effective [`Perms`]. So a run is homogeneous: one page size, one set of rights,
/// and `gpa + (va - gva)` translates any address in it. Accessed, dirty and global
/// bits, and caching attributes, are not compared (they differ page by page) and are
/// not reported; translate an address for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mapping {
    /// First virtual address (canonical).
    pub gva: Gva,
    /// Where it lands.
    pub gpa: Gpa,
    /// Length in bytes: a multiple of `page_size`.
    pub len: u64,
    /// The size of every page in the run.
    pub page_size: PageSize,
    /// Effective permissions of every page in the run.
    pub perms: Perms,
}

impl Mapping {
    /// The last virtual address of the run.
    pub fn last_gva(&self) -> Gva {
        Gva::new(self.gva.raw().wrapping_add(self.len - 1))
    }

    /// Whether `gva` lies in the run.
    pub fn contains(&self, gva: Gva) -> bool {
        gva.raw().wrapping_sub(self.gva.raw()) < self.len
    }
}

/// The default limit on page tables one walk reads: 2^18 tables (1 GiB of tables,
/// enough to map 512 GiB with 4 KiB pages).
pub const DEFAULT_MAX_TABLES: usize = 1 << 18;

#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    table: u64,
    /// Linear (not sign-extended) address of entry 0.
    base: u64,
    next: usize,
    last: usize,
    and: u64,
    or: u64,
}

/// Iterator over the [`Mapping`]s of an address space, in ascending (canonical)
/// address order; made by [`AddressSpace::mappings`].
///
/// Yields `Err` for trouble in a subtree — reserved bits, an illegal large page, a
/// table outside RAM or unreadable, an entry pointing back at a table on its own
/// path ([`Error::TableLoop`]) — then skips that subtree and goes on. It is bounded
/// on any memory: depth is at most 5, each table is read once per visit, and a walk
/// reads at most [`max_tables`](Mappings::max_tables) tables, after which it yields
/// [`Error::Budget`] and ends. Tables are read whole (4 KiB, one read each).
pub struct Mappings<'m, M: ?Sized> {
    mem: &'m M,
    space: AddressSpace,
    levels: &'static [LevelDef],
    /// Linear bounds (inclusive) of the range walked.
    first: u64,
    last: u64,
    frames: [Frame; 5],
    depth: usize,
    tables: Box<[[u64; 512]; 5]>,
    run: Option<Mapping>,
    queued: Option<Error>,
    started: bool,
    tables_read: usize,
    max_tables: usize,
}

impl<M: ?Sized> std::fmt::Debug for Mappings<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mappings")
            .field("space", &self.space)
            .field("depth", &self.depth)
            .field("tables_read", &self.tables_read)
            .finish_non_exhaustive()
    }
}

impl AddressSpace {
    /// Every mapped range of this address space, merged into runs (see [`Mapping`]).
    pub fn mappings<'m, M: PhysMem + ?Sized>(&self, mem: &'m M) -> Mappings<'m, M> {
        let bits = self.mode().va_bits();
        Mappings {
            mem,
            space: *self,
            levels: self.mode().levels(),
            first: 0,
            last: (1u64 << bits) - 1,
            frames: [Frame::default(); 5],
            depth: 0,
            tables: Box::new([[0; 512]; 5]),
            run: None,
            queued: None,
            started: false,
            tables_read: 0,
            max_tables: DEFAULT_MAX_TABLES,
        }
    }
}

impl<M: PhysMem + ?Sized> Mappings<'_, M> {
    /// Restricts the walk to pages overlapping `first..=last` (canonical addresses;
    /// an end in the non-canonical hole is moved to the nearest half). Pages are
    /// reported whole. Call before iterating.
    pub fn range(mut self, first: Gva, last: Gva) -> Self {
        let mode = self.space.mode();
        let mask = (1u64 << mode.va_bits()) - 1;
        let lin = |g: Gva, up: bool| {
            if mode.is_canonical(g) {
                g.raw() & mask
            } else if up {
                1u64 << (mode.va_bits() - 1)
            } else {
                (1u64 << (mode.va_bits() - 1)) - 1
            }
        };
        self.first = lin(first, true);
        self.last = lin(last, false);
        if first > last || self.first > self.last {
            self.started = true; // nothing to walk
        }
        self
    }

    /// Only the upper (kernel) half.
    pub fn upper_half(self) -> Self {
        let start = self.space.mode().upper_half_start();
        self.range(start, Gva::new(u64::MAX))
    }

    /// Sets the limit on tables read (the root included); see [`DEFAULT_MAX_TABLES`].
    pub fn max_tables(mut self, n: usize) -> Self {
        self.max_tables = n;
        self
    }

    /// Tables read so far.
    pub fn tables_read(&self) -> usize {
        self.tables_read
    }

    /// Reads the table of level `d` at `table` and pushes its frame; `base` is the
    /// linear address of its entry 0.
    fn push(&mut self, d: usize, table: u64, base: u64, and: u64, or: u64) -> Result<()> {
        let gva = Gva::new(self.space.mode().canonicalize(base.max(self.first)));
        if self.tables_read >= self.max_tables {
            self.depth = 0;
            return Err(Error::Budget { gva, tables: self.tables_read });
        }
        self.tables_read += 1;
        let def = &self.levels[d];
        self.mem.read_u64s(Gpa::new(table), &mut self.tables[d]).map_err(|e| read_error(e, gva, def.level, table))?;
        let span_last = base + ((512u64 << def.shift) - 1);
        let next = if self.first > base { ((self.first - base) >> def.shift) as usize } else { 0 };
        let last = if self.last < span_last { ((self.last - base) >> def.shift) as usize } else { 511 };
        self.frames[d] = Frame { table, base, next, last, and, or };
        self.depth = d + 1;
        Ok(())
    }

    /// Queues `e` behind the run in progress; returns what to yield now.
    fn fail(&mut self, e: Error) -> Option<Result<crate::Mapping>> {
        match self.run.take() {
            Some(run) => {
                self.queued = Some(e);
                Some(Ok(run))
            }
            None => Some(Err(e)),
        }
    }
}

/// Entry bits that may differ between two leaves of one run: the frame, and the
/// accessed, dirty and global bits, which the merge rule ignores.
const MAY_DIFFER: u64 = pte::ADDR_MASK | pte::ACCESSED | pte::DIRTY | pte::GLOBAL;

/// How many entries after leaf `i` (up to `last`) continue it: each the next frame
/// (`size` bytes on) with otherwise equal bits (so the same present, page-size,
/// permission, caching and ignored bits) and no reserved bit. Such entries pass
/// [`pte::step`] exactly as entry `i` did, with the same effective permissions, so
/// they can join its run without decoding each: this is what makes a 1 GiB direct
/// map of 4 KiB pages a tight loop.
#[inline]
fn extend(table: &[u64; 512], i: usize, last: usize, size: u64, reserved: u64) -> usize {
    let mut prev = table[i];
    let mut j = i + 1;
    while j <= last {
        let e = table[j];
        if (e ^ prev) & !MAY_DIFFER != 0
            || e & pte::ADDR_MASK != (prev & pte::ADDR_MASK).wrapping_add(size)
            || e & reserved != 0
        {
            break;
        }
        prev = e;
        j += 1;
    }
    j - i - 1
}

impl<M: PhysMem + ?Sized> Iterator for Mappings<'_, M> {
    type Item = Result<Mapping>;

    fn next(&mut self) -> Option<Result<Mapping>> {
        if let Some(e) = self.queued.take() {
            return Some(Err(e));
        }
        if !self.started {
            self.started = true;
            let root = self.space.root().gpa().raw();
            if let Err(e) = self.push(0, root, 0, !0, 0) {
                return Some(Err(e));
            }
        }
        let reserved = self.space.reserved();
        let mode = self.space.mode();
        while self.depth > 0 {
            let d = self.depth - 1;
            let def = &self.levels[d];
            let f = self.frames[d];
            let table = &self.tables[d];
            let mut i = f.next;
            while i <= f.last && table[i] & pte::PRESENT == 0 {
                i += 1;
            }
            if i > f.last {
                self.depth -= 1;
                continue;
            }
            self.frames[d].next = i + 1;
            let e = table[i];
            let lin = f.base + ((i as u64) << def.shift);
            let va = mode.canonicalize(lin);
            let (and, or) = (f.and & e, f.or | e);
            match pte::step(def, e, reserved, va) {
                Err(err) => return self.fail(err),
                Ok(Step::Leaf(frame)) => {
                    let size = def.entry_span();
                    let page_size = PageSize::from_shift(def.shift);
                    let perms = Perms::from_walk(and, or);
                    // The entries right after this one that extend it (see `extend`)
                    // join whichever run this entry ends up in.
                    let more = extend(&self.tables[d], i, f.last, size, reserved);
                    self.frames[d].next = i + 1 + more;
                    let len = size * (1 + more as u64);
                    if let Some(run) = &mut self.run {
                        let end = run.gva.raw().checked_add(run.len);
                        let pend = run.gpa.raw().checked_add(run.len);
                        if end == Some(va) && pend == Some(frame) && run.page_size == page_size && run.perms == perms {
                            run.len += len;
                            continue;
                        }
                    }
                    let new = Mapping { gva: Gva::new(va), gpa: Gpa::new(frame), len, page_size, perms };
                    if let Some(done) = self.run.replace(new) {
                        return Some(Ok(done));
                    }
                }
                Ok(Step::Table(next)) => {
                    let on_path = self.frames[..self.depth].iter().any(|fr| fr.table == next);
                    if on_path {
                        let level = def.level;
                        return self.fail(Error::TableLoop { gva: Gva::new(va), level, table: Gpa::new(next) });
                    }
                    if let Err(err) = self.push(d + 1, next, lin, and, or) {
                        return self.fail(err);
                    }
                }
            }
        }
        self.run.take().map(Ok)
    }
}
