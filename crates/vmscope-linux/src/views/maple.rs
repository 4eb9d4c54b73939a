//! The maple tree (Linux 6.1+; `mm_struct.mm_mt` holds a process's memory areas),
//! walked in index order.
//!
//! Every child slot of an internal node holds an encoded node pointer: the node
//! address (nodes are 256-byte aligned) with the node type in bits 3–6 and bit 2
//! set; the root (`ma_root`) holds one with `0b10` in the low bits too (an
//! xarray-style internal entry above 4096), or a single entry. A node holds up to N slots and N − 1 pivots: slot `i` covers
//! `pivot[i-1] + 1 ..= pivot[i]`, the last one up to the node's own maximum. Where
//! the data ends is told by the last pivot, or by the node's metadata (`meta.end`),
//! as `ma_data_end` does. A node whose parent pointer points at itself is dead
//! (freed under RCU while the tree changed): a reader that meets one read the tree
//! mid-update.

use vmscope_mem::{Gva, PhysMem};

use super::{AddrSet, Anomaly, Fields, with_struct};
use crate::kernel::Ctx;
use crate::offsets::{MapleNodeLayout, MapleOffsets};

/// `MAPLE_NODE_MASK`: the low bits of a node pointer that are not its address.
const NODE_MASK: u64 = 0xff;
/// `MAPLE_NODE_TYPE_SHIFT`, `MAPLE_NODE_TYPE_MASK`: where the type sits in them.
const TYPE_SHIFT: u64 = 3;
const TYPE_MASK: u64 = 0xf;
/// `MAPLE_HEIGHT_MAX`.
const MAX_HEIGHT: usize = 31;
/// The most slots a node kind may claim (`maple_dense` has 31, the 64-bit range
/// kinds 16 and 10).
const MAX_SLOTS: usize = 32;

/// An entry of the tree and the range of indices it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub min: u64,
    pub max: u64,
    pub value: Gva,
}

/// `xa_is_node`: an internal entry (low bits `10`) above 4096.
fn is_node(v: u64) -> bool {
    v & 3 == 2 && v > 4096
}

struct Walk<'c, 'a, M> {
    ctx: &'c Ctx<'a, M>,
    mo: &'c MapleOffsets,
    name: &'c str,
    limit: usize,
    seen: AddrSet<Gva>,
    out: Vec<Entry>,
    an: &'c mut Vec<Anomaly>,
}

impl<M: PhysMem> Walk<'_, '_, M> {
    fn bad(&mut self, node: Gva, field: &str, value: String) {
        self.an.push(Anomaly::InvalidField {
            what: format!("{} maple_node", self.name),
            addr: node,
            field: field.into(),
            value,
        });
    }

    /// Walks the node `enode` (encoded) covering `min..=max`. Returns false once the
    /// walk must stop (the entry limit).
    fn node(&mut self, enode: u64, at: Gva, min: u64, max: u64, depth: usize) -> bool {
        if self.ctx.meter.walk_exhausted(self.ctx.k) {
            return false;
        }
        self.ctx.meter.visit(1);
        let node = Gva::new(enode & !NODE_MASK);
        let ty = (enode >> TYPE_SHIFT) & TYPE_MASK;
        let mo = *self.mo;
        let (layout, leaf): (MapleNodeLayout, bool) = match ty {
            t if t == mo.leaf64_type => (mo.range64, true),
            t if t == mo.range64_type => (mo.range64, false),
            t if t == mo.arange64_type => (mo.arange64, false),
            _ => {
                self.an.push(Anomaly::BadPointer {
                    what: format!("{} node (type {ty})", self.name),
                    at,
                    value: Gva::new(enode),
                });
                return true;
            }
        };
        if depth > MAX_HEIGHT || !super::plausible(self.ctx.k, node, 256) {
            self.an.push(Anomaly::BadPointer { what: format!("{} node", self.name), at, value: Gva::new(enode) });
            return true;
        }
        if !self.seen.insert(node) {
            self.an.push(Anomaly::ListCycle { list: self.name.into(), node });
            return true;
        }
        let k = self.ctx.k;
        let mut an = Vec::new();
        if layout.slot_count as usize > MAX_SLOTS || layout.pivot_count >= layout.slot_count {
            self.bad(node, "slot", format!("{} slots, {} pivots", layout.slot_count, layout.pivot_count));
            return true;
        }
        let (mut pivots, mut slots) = ([0u64; MAX_SLOTS], [0u64; MAX_SLOTS]);
        let (np, ns) = (layout.pivot_count as usize, layout.slot_count as usize);
        let read = with_struct(k, node, mo.node_size, "maple_node", &mut an, |b| {
            for (i, p) in pivots[..np].iter_mut().enumerate() {
                *p = b.u64(layout.pivots + 8 * i as u64)?;
            }
            for (i, s) in slots[..ns].iter_mut().enumerate() {
                *s = b.u64(layout.slots + 8 * i as u64)?;
            }
            Some((b.u64(mo.parent)?, b.uint(layout.meta_end, 1)?))
        })
        .flatten();
        self.an.extend(an);
        let Some((parent, meta_end)) = read else { return true };
        let (pivots, slots) = (&pivots[..np], &slots[..ns]);
        if parent & !NODE_MASK == node.raw() {
            self.bad(node, "parent", "itself (a dead node: the tree changed while it was read)".into());
            return true;
        }
        // ma_data_end.
        let last = pivots.last().copied().unwrap_or(0);
        let end = if ty == mo.arange64_type || last == 0 {
            meta_end
        } else if last == max {
            layout.pivot_count - 1
        } else {
            layout.pivot_count
        };
        if end >= layout.slot_count {
            self.bad(node, "meta.end", end.to_string());
            return true;
        }
        let mut lo = min;
        for (i, &v) in slots.iter().enumerate().take(end as usize + 1) {
            let mut hi = pivots.get(i).copied().unwrap_or(max);
            if hi == 0 && i > 0 {
                hi = max;
            }
            if hi < lo || hi > max {
                self.bad(node, &format!("pivot[{i}]"), format!("{hi:#x} outside {lo:#x}..={max:#x}"));
                return true;
            }
            let slot_at = super::field(node, layout.slots + 8 * i as u64, "maple slot", self.an).unwrap_or(node);
            if leaf {
                if v != 0 {
                    if self.out.len() >= self.limit {
                        self.an.push(Anomaly::StepLimit { list: self.name.into(), limit: self.limit });
                        return false;
                    }
                    self.out.push(Entry { min: lo, max: hi, value: Gva::new(v) });
                }
            } else if v != 0 && !self.node(v, slot_at, lo, hi, depth + 1) {
                return false;
            }
            if hi == max {
                break;
            }
            lo = hi + 1;
        }
        true
    }
}

/// Every entry of the maple tree whose `ma_root` holds `root` (read at `at`), in
/// index order; at most `limit`.
pub(crate) fn entries<M: PhysMem>(
    ctx: &Ctx<'_, M>,
    mo: &MapleOffsets,
    name: &str,
    root: u64,
    at: Gva,
    limit: usize,
    an: &mut Vec<Anomaly>,
) -> Vec<Entry> {
    if root == 0 {
        return Vec::new();
    }
    if !is_node(root) {
        // A tree of one entry, at index 0.
        return vec![Entry { min: 0, max: 0, value: Gva::new(root) }];
    }
    let mut w = Walk { ctx, mo, name, limit, seen: AddrSet::default(), out: Vec::with_capacity(32), an };
    w.node(root, at, 0, u64::MAX, 0);
    w.out
}
