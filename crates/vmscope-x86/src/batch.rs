//! Batched translation: many addresses, one `read_batch` per level.

use vmscope_mem::{Gpa, Gva, PhysMem, ReadOp};

use crate::pte::{self, Step};
use crate::space::{leaf, read_error};
use crate::{AddressSpace, Error, Result, Translation};

/// A walk in progress.
#[derive(Clone, Copy)]
struct Pending {
    /// Index into the caller's addresses.
    idx: usize,
    table: u64,
    and: u64,
    or: u64,
}

impl AddressSpace {
    /// Translates every address of `gvas`, writing one result per address, in order,
    /// to `out` (cleared first).
    ///
    /// The walks advance in lock step: the entries of one level, for every address
    /// still walking, are fetched with one [`PhysMem::read_batch`], so a technique
    /// that pays per system call pays at most once per level (4 or 5 in all), and
    /// consecutive addresses that share an entry share its read (so sorted input
    /// reads each upper-level entry once). If a
    /// batch fails, [`PhysMem::read_each`] finds out which entries could not be read;
    /// the other walks go on. Results equal [`translate`](Self::translate)'s.
    pub fn translate_batch<M: PhysMem + ?Sized>(&self, mem: &M, gvas: &[Gva], out: &mut Vec<Result<Translation>>) {
        out.clear();
        let mut pending = Vec::with_capacity(gvas.len());
        for (idx, &gva) in gvas.iter().enumerate() {
            if self.mode().is_canonical(gva) {
                out.push(Err(Error::NotPresent { gva, level: self.mode().levels()[0].level }));
                pending.push(Pending { idx, table: self.root().gpa().raw(), and: !0, or: 0 });
            } else {
                out.push(Err(Error::NonCanonical { gva, mode: self.mode() }));
            }
        }
        let mut entries: Vec<[u8; 8]> = Vec::with_capacity(pending.len());
        // For each walk, the index of the read (in `entries`) that fetches its entry:
        // walks that need the same entry as the walk before them share its read.
        let mut read_of: Vec<usize> = Vec::with_capacity(pending.len());
        let mut addrs: Vec<u64> = Vec::with_capacity(pending.len());
        let mut results = Vec::new();
        for def in self.mode().levels() {
            if pending.is_empty() {
                break;
            }
            read_of.clear();
            addrs.clear();
            for p in &pending {
                let at = p.table + def.index(gvas[p.idx].raw()) * 8;
                if addrs.last() != Some(&at) {
                    addrs.push(at);
                }
                read_of.push(addrs.len() - 1);
            }
            entries.clear();
            entries.resize(addrs.len(), [0; 8]);
            let mut ops: Vec<ReadOp<'_>> =
                addrs.iter().zip(entries.iter_mut()).map(|(&at, buf)| ReadOp::new(Gpa::new(at), buf)).collect();
            let all_ok = mem.read_each(&mut ops, &mut results);
            drop(ops);
            let mut kept = 0;
            for i in 0..pending.len() {
                let mut p = pending[i];
                let gva = gvas[p.idx];
                let r = read_of[i];
                if !all_ok && let Some(Err(e)) = results.get(r) {
                    out[p.idx] = Err(read_error(e.clone(), gva, def.level, p.table));
                    continue;
                }
                let entry = u64::from_le_bytes(entries[r]);
                if entry & pte::PRESENT == 0 {
                    out[p.idx] = Err(Error::NotPresent { gva, level: def.level });
                    continue;
                }
                p.and &= entry;
                p.or |= entry;
                match pte::step(def, entry, self.reserved(), gva.raw()) {
                    Err(e) => out[p.idx] = Err(e),
                    Ok(Step::Leaf(frame)) => out[p.idx] = Ok(leaf(gva, frame, def.shift, entry, p.and, p.or)),
                    Ok(Step::Table(next)) => {
                        p.table = next;
                        pending[kept] = p;
                        kept += 1;
                    }
                }
            }
            pending.truncate(kept);
        }
    }
}
