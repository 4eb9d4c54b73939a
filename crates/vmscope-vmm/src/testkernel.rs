//! The vmscope test kernel (guest-images/testkernel) as a reader outside the guest
//! sees it: its manifest at a fixed guest-physical address, its lists and its journal,
//! read through any [`PhysMem`]. Layouts are those of guest-images/testkernel/tk.h.
//!
//! Virtual addresses are resolved with the manifest's own mapping table, so this
//! module is independent of a page-table walker (tests compare the two). Guest data
//! is never trusted: a bad pointer or an unmapped address is an error or a
//! `broken` list, never a panic, and every walk is bounded.

use vmscope_mem::{Gpa, PhysMem};

use crate::{Error, Result};

/// Guest-physical address of the manifest (TK_MANIFEST_PA).
pub const MANIFEST_PA: u64 = 0x10_0000;
/// The manifest's magic: the bytes "VMSCTK01".
pub const MAGIC: u64 = u64::from_le_bytes(*b"VMSCTK01");
/// "No node": a journal `prev` of an insert at the head.
pub const NO_NODE: u8 = 0xff;
const MANIFEST_LEN: usize = 192;
const MAX_MAPPINGS: usize = 256;
const MAX_SYMBOLS: usize = 32;

/// One entry of the manifest's mapping table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TkMapping {
    /// First virtual address.
    pub va: u64,
    /// First physical address.
    pub pa: u64,
    /// Bytes mapped.
    pub size: u64,
    /// 4096, 2 MiB or 1 GiB.
    pub page_size: u64,
    /// The leaf entries' x86 PTE bits (P, RW, PCD, G, NX).
    pub flags: u64,
    /// A name (`direct-1g`, `kernel`, `vmalloc-nodes`, ...).
    pub name: String,
}

/// The test kernel's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// Physical address of the PML4.
    pub cr3: u64,
    /// End of the RAM the direct map covers.
    pub ram_end: u64,
    /// CPUs the MP table lists.
    pub nr_cpus: u32,
    /// Number of lists.
    pub nr_lists: u32,
    /// Every mapping the kernel made.
    pub mappings: Vec<TkMapping>,
    /// Symbols: name, address, size.
    pub symbols: Vec<(String, u64, u64)>,
    /// `struct tk_list[nr_lists]`.
    pub lists_va: u64,
    /// `struct tk_node[nr_lists][nodes_per_list]`, in the vmalloc area.
    pub nodes_va: u64,
    /// `struct tk_journal_entry[journal_entries]`.
    pub journal_va: u64,
    /// Journal slots (a power of two).
    pub journal_entries: u64,
    /// The global op counter: the next op number.
    pub ops_va: u64,
    /// `struct tk_percpu[16]`.
    pub percpu_va: u64,
    /// How many CPUs run the mutator.
    pub cpus_online_va: u64,
    /// `sizeof(struct tk_node)`.
    pub node_size: u64,
    /// Nodes per list.
    pub nodes_per_list: u64,
    /// The longest a list gets.
    pub max_len: u64,
    /// The guest's TSC frequency, calibrated against the PIT at boot; 0 when that
    /// failed or the kernel predates the field.
    pub tsc_hz: u64,
    /// `tk.rate`: list ops per second across all CPUs; 0 = unlimited.
    pub rate: u64,
    /// `struct tk_dirty`, the `tk.dirty` page writer's state ([`Manifest::dirty`]); 0
    /// when the kernel predates it.
    pub dirty_va: u64,
}

/// What the test kernel's `tk.dirty` page writer was asked and has done (`struct
/// tk_dirty`). Page write `n` (from 0) stores `n + 1` in the first 8 bytes of page
/// `start_pa + (n % (span / 4096)) * 4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirtyWriter {
    /// Page writes a second across all CPUs (`tk.dirty` MB/s × 256); 0 = off.
    pub pages_per_s: u64,
    /// The first page it writes.
    pub start_pa: u64,
    /// Bytes it cycles through from `start_pa`.
    pub span: u64,
    /// Page writes claimed so far; each write follows its claim at once, so in a
    /// paused guest at most one per CPU is claimed and not yet made.
    pub written: u64,
    /// Page writes skipped because the guest fell more than a second behind.
    pub dropped: u64,
}

impl DirtyWriter {
    /// The guest-physical page number that page write `n` goes to (`None` while off).
    pub fn pfn_of(&self, n: u64) -> Option<u64> {
        let pages = self.span / 4096;
        (pages > 0).then(|| (self.start_pa + (n % pages) * 4096) >> 12)
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn guest(msg: String) -> Error {
    Error::Guest(msg)
}

impl Manifest {
    /// Reads the manifest; `Ok(None)` while its magic is not there yet.
    pub fn read<M: PhysMem + ?Sized>(mem: &M) -> Result<Option<Manifest>> {
        let mut h = [0u8; MANIFEST_LEN];
        mem.read(Gpa::new(MANIFEST_PA), &mut h)?;
        if u64_at(&h, 0) != MAGIC {
            return Ok(None);
        }
        let nr_mappings = u32_at(&h, 36) as usize;
        let nr_symbols = u32_at(&h, 40) as usize;
        if nr_mappings > MAX_MAPPINGS || nr_symbols > MAX_SYMBOLS {
            return Err(guest(format!("manifest claims {nr_mappings} mappings, {nr_symbols} symbols")));
        }
        let mut mb = vec![0u8; nr_mappings * 64];
        mem.read(Gpa::new(u64_at(&h, 48)), &mut mb)?;
        let mappings = mb
            .chunks(64)
            .map(|c| TkMapping {
                va: u64_at(c, 0),
                pa: u64_at(c, 8),
                size: u64_at(c, 16),
                page_size: u64_at(c, 24),
                flags: u64_at(c, 32),
                name: cstr(&c[40..64]),
            })
            .collect();
        let mut sb = vec![0u8; nr_symbols * 40];
        mem.read(Gpa::new(u64_at(&h, 56)), &mut sb)?;
        let symbols = sb.chunks(40).map(|c| (cstr(&c[..24]), u64_at(c, 24), u64_at(c, 32))).collect();
        Ok(Some(Manifest {
            version: u32_at(&h, 8),
            cr3: u64_at(&h, 16),
            ram_end: u64_at(&h, 24),
            nr_cpus: u32_at(&h, 32),
            nr_lists: u32_at(&h, 44).min(16),
            mappings,
            symbols,
            lists_va: u64_at(&h, 64),
            nodes_va: u64_at(&h, 72),
            journal_va: u64_at(&h, 80),
            journal_entries: u64_at(&h, 88).min(1 << 20),
            ops_va: u64_at(&h, 96),
            percpu_va: u64_at(&h, 104),
            cpus_online_va: u64_at(&h, 112),
            node_size: u64_at(&h, 120),
            nodes_per_list: u64_at(&h, 128),
            max_len: u64_at(&h, 136).min(64),
            tsc_hz: u64_at(&h, 168),
            rate: u64_at(&h, 176),
            dirty_va: u64_at(&h, 184),
        }))
    }

    /// The physical address of `va` by the manifest's mapping table.
    pub fn pa(&self, va: u64) -> Option<Gpa> {
        self.mappings.iter().find(|m| va >= m.va && va - m.va < m.size).map(|m| Gpa::new(m.pa + (va - m.va)))
    }

    fn pa_or_err(&self, va: u64) -> Result<Gpa> {
        self.pa(va).ok_or_else(|| guest(format!("{va:#x} is in no manifest mapping")))
    }

    /// A symbol's address.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|s| s.0 == name).map(|s| s.1)
    }

    /// Reads a u64 at virtual `va`.
    pub fn read_u64<M: PhysMem + ?Sized>(&self, mem: &M, va: u64) -> Result<u64> {
        Ok(mem.read_u64(self.pa_or_err(va)?)?)
    }

    /// The global op counter: the next op number (ops begun = value - 1).
    pub fn ops<M: PhysMem + ?Sized>(&self, mem: &M) -> Result<u64> {
        self.read_u64(mem, self.ops_va)
    }

    /// The mutator loop count of `cpu`.
    pub fn iterations<M: PhysMem + ?Sized>(&self, mem: &M, cpu: u64) -> Result<u64> {
        self.read_u64(mem, self.percpu_va + cpu * 64)
    }

    /// How many CPUs run the mutator.
    pub fn cpus_online<M: PhysMem + ?Sized>(&self, mem: &M) -> Result<u64> {
        self.read_u64(mem, self.cpus_online_va)
    }

    /// The `tk.dirty` page writer's state; `None` for a kernel that predates it.
    pub fn dirty<M: PhysMem + ?Sized>(&self, mem: &M) -> Result<Option<DirtyWriter>> {
        if self.dirty_va == 0 {
            return Ok(None);
        }
        let mut b = [0u8; 40];
        mem.read(self.pa_or_err(self.dirty_va)?, &mut b)?;
        Ok(Some(DirtyWriter {
            pages_per_s: u64_at(&b, 0),
            start_pa: u64_at(&b, 8),
            span: u64_at(&b, 16),
            written: u64_at(&b, 24),
            dropped: u64_at(&b, 32),
        }))
    }

    /// Every list as memory holds it now.
    pub fn lists<M: PhysMem + ?Sized>(&self, mem: &M) -> Result<Vec<ListView>> {
        (0..u64::from(self.nr_lists)).map(|l| self.list(mem, l)).collect()
    }

    /// List `l`, walked from its head along `next`, at most `max_len + 1` steps.
    pub fn list<M: PhysMem + ?Sized>(&self, mem: &M, l: u64) -> Result<ListView> {
        let head_va = self.lists_va + l * 64;
        let mut b = [0u8; 64];
        mem.read(self.pa_or_err(head_va)?, &mut b)?;
        let head = head_va + 32;
        let mut ids = Vec::new();
        let mut p = u64_at(&b, 32);
        let mut broken = false;
        while p != head {
            let Some(pa) = self.pa(p).filter(|_| ids.len() as u64 <= self.max_len) else {
                broken = true; // a torn read, a poisoned pointer, or a cycle
                break;
            };
            let mut n = [0u8; 24];
            mem.read(pa, &mut n)?;
            ids.push(u64_at(&n, 16) as u8);
            p = u64_at(&n, 0);
        }
        Ok(ListView { seq: u64_at(&b, 0), last_op: u64_at(&b, 16), len: u64_at(&b, 24), ids, broken })
    }

    /// The journal's filled slots.
    pub fn journal<M: PhysMem + ?Sized>(&self, mem: &M) -> Result<Vec<JournalEntry>> {
        let mut raw = vec![0u8; (self.journal_entries * 32) as usize];
        mem.read(self.pa_or_err(self.journal_va)?, &mut raw)?;
        Ok(raw
            .chunks(32)
            .map(|c| JournalEntry {
                op_no: u64_at(c, 0),
                op: c[8],
                list: c[9],
                node: c[10],
                prev: c[11],
                len: c[12],
                cpu: c[13],
                order: c[16..16 + usize::from(c[12]).min(16)].to_vec(),
            })
            .filter(|e| e.op_no != 0)
            .collect())
    }

    /// Compares every list with the journal (see [`ListCheck`]).
    pub fn check_lists<M: PhysMem + ?Sized>(&self, mem: &M) -> Result<ListCheck> {
        let journal = self.journal(mem)?;
        let mut check = ListCheck::default();
        for (l, view) in self.lists(mem)?.into_iter().enumerate() {
            if view.seq % 2 == 1 {
                check.mid_update.push(l as u64);
                continue;
            }
            let (op, order) = journal_state(&journal, l as u64);
            if view.broken || view.last_op != op || view.ids != order || view.len as usize != view.ids.len() {
                check.mismatches.push(format!(
                    "list {l} (seq {}, last_op {}, len {}, broken {}): memory {:?}, journal op {op} {:?}",
                    view.seq, view.last_op, view.len, view.broken, view.ids, order
                ));
            } else {
                check.matching += 1;
            }
        }
        Ok(check)
    }
}

/// A list as read from memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListView {
    /// The sequence counter: odd while a writer is inside.
    pub seq: u64,
    /// The op number of the last completed op on this list.
    pub last_op: u64,
    /// The length field.
    pub len: u64,
    /// Node ids from head to tail.
    pub ids: Vec<u8>,
    /// The walk left the mapped area or ran too long.
    pub broken: bool,
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The op number (1, 2, ...).
    pub op_no: u64,
    /// 1 insert, 2 delete.
    pub op: u8,
    /// The list.
    pub list: u8,
    /// The node inserted or deleted.
    pub node: u8,
    /// Insert: the node it went after ([`NO_NODE`]: the head).
    pub prev: u8,
    /// The list's length after the op.
    pub len: u8,
    /// The CPU that did it.
    pub cpu: u8,
    /// The list's content after the op.
    pub order: Vec<u8>,
}

/// The outcome of [`Manifest::check_lists`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCheck {
    /// Lists that equal the journal's state.
    pub matching: usize,
    /// Lists with an odd seq: a writer caught mid-update (intrinsic inconsistency).
    pub mid_update: Vec<u64>,
    /// Lists with an even seq that differ from the journal (should never happen in a
    /// consistent view: extrinsic inconsistency).
    pub mismatches: Vec<String>,
}

/// The content of list `l` after the latest op the journal holds for it (empty if
/// none), and that op's number.
pub fn journal_state(journal: &[JournalEntry], l: u64) -> (u64, Vec<u8>) {
    journal
        .iter()
        .filter(|e| u64::from(e.list) == l)
        .max_by_key(|e| e.op_no)
        .map(|e| (e.op_no, e.order.clone()))
        .unwrap_or((0, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmscope_mem::{MemoryMap, SliceMem};

    #[test]
    fn no_magic_is_none_and_garbage_never_panics() {
        let ram = vec![0u8; 0x20_0000];
        let mem = SliceMem::new(&ram, MemoryMap::flat(ram.len() as u64));
        assert_eq!(Manifest::read(&mem).unwrap(), None);

        let mut ram = vec![0xffu8; 0x20_0000];
        ram[MANIFEST_PA as usize..MANIFEST_PA as usize + 8].copy_from_slice(&MAGIC.to_le_bytes());
        let mem = SliceMem::new(&ram, MemoryMap::flat(ram.len() as u64));
        assert!(Manifest::read(&mem).is_err(), "absurd counts are rejected");
    }
}
