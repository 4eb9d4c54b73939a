//! The PID table: `init_pid_ns.idr` walked as the kernel's radix tree (a
//! `struct xarray` since 4.20), each entry a `struct pid *` with the tasks attached
//! to it as `PIDTYPE_PID`.
//!
//! An xarray's head, and every slot of a `struct xa_node`, is either `NULL`, an
//! entry (here a `struct pid *`, 4-byte aligned or more), or an *internal* entry
//! with low bits `10`: a pointer to a child node (`node | 2`, above 4096), or a
//! small tag (sibling, retry, zero) that holds no entry. A head that is an entry
//! stands for index 0 alone. A node at `shift` covers `XA_CHUNK_SIZE << shift`
//! indices; its children sit at `shift - XA_CHUNK_SHIFT`.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::{AddrSet, Anomaly, Bytes, Fields, plausible};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::PidOffsets;

/// One id of the PID table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidEntry {
    /// The id: its index in the tree plus `idr_base`.
    pub nr: u64,
    /// The `struct pid`.
    pub pid: Gva,
    /// `pid->numbers[0].nr` (the id in the initial namespace), if readable.
    pub number: Option<i32>,
    /// Tasks on `pid->tasks[PIDTYPE_PID]` (at most one in a consistent kernel).
    pub tasks: Vec<Gva>,
    /// Page-frame numbers of the slot that holds it and of its `struct pid`, sorted.
    pub pages: Vec<u64>,
}

/// The PID table of the initial PID namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidTable {
    /// Whether the kernel's types and symbols describe a PID table at all
    /// (`init_pid_ns`, `struct pid`, `struct xa_node`); when not, it is empty.
    pub available: bool,
    /// `idr_base`.
    pub idr_base: u32,
    /// Every entry, by id.
    pub entries: Vec<PidEntry>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

impl PidTable {
    /// The entry for id `nr`.
    pub fn get(&self, nr: u64) -> Option<&PidEntry> {
        self.entries.binary_search_by_key(&nr, |e| e.nr).ok().map(|i| &self.entries[i])
    }
}

/// `xa_is_internal`: low bits `10`.
fn internal(v: u64) -> bool {
    v & 3 == 2
}

/// The most tree levels (64-bit indices, at least 2 bits per level).
const MAX_DEPTH: usize = 32;

struct Walk<'c, 'a, M> {
    ctx: &'c Ctx<'a, M>,
    po: PidOffsets,
    chunk_shift: u32,
    base: u32,
    visited: AddrSet,
    out: Vec<PidEntry>,
    an: Vec<Anomaly>,
}

impl<M: PhysMem> Walk<'_, '_, M> {
    fn full(&mut self) -> bool {
        if self.out.len() >= self.ctx.limits.max_list {
            self.an.push(Anomaly::StepLimit { list: "init_pid_ns.idr".into(), limit: self.ctx.limits.max_list });
            return true;
        }
        false
    }

    /// An entry (not internal, not NULL) at `index`, read from the slot at `slot`.
    fn entry(&mut self, index: u64, value: u64, slot: Gva) {
        let k = self.ctx.k;
        let pid = Gva::new(value);
        if value & 1 == 1 || !plausible(k, pid, 8) {
            // A value entry or junk: the IDR of PIDs holds pointers only.
            self.an.push(Anomaly::BadPointer { what: "idr entry (struct pid *)".into(), at: slot, value: pid });
            return;
        }
        let Some(nr) = index.checked_add(u64::from(self.base)) else {
            self.an.push(Anomaly::InvalidField {
                what: "idr".into(),
                addr: slot,
                field: "index".into(),
                value: index.to_string(),
            });
            return;
        };
        let po = self.po;
        let mut pages = Vec::new();
        super::graph::push_pages(self.ctx, slot, 8, &mut pages);
        super::graph::push_pages(self.ctx, pid, po.pid_nr.max(po.pid_tasks) + 8, &mut pages);
        let number = member(pid, po.pid_nr).and_then(|at| k.read_u32(at)).ok().map(|v| v as i32);
        let mut tasks = Vec::new();
        match member(pid, po.pid_tasks).and_then(|at| k.read_ptr(at)) {
            Ok(mut node) => {
                let mut seen = AddrSet::default();
                while node.raw() != 0 && !self.ctx.meter.walk_exhausted(k) {
                    self.ctx.meter.visit(1);
                    if !plausible(k, node, 8) {
                        self.an.push(Anomaly::BadPointer { what: "pid.tasks hlist".into(), at: pid, value: node });
                        break;
                    }
                    if !seen.insert(node) {
                        self.an.push(Anomaly::ListCycle { list: "pid.tasks".into(), node });
                        break;
                    }
                    if tasks.len() >= self.ctx.limits.max_list {
                        self.an.push(Anomaly::StepLimit { list: "pid.tasks".into(), limit: self.ctx.limits.max_list });
                        break;
                    }
                    match node.checked_sub(po.task_pid_link) {
                        Some(t) => tasks.push(t),
                        None => break,
                    }
                    match member(node, po.hlist_next).and_then(|at| k.read_ptr(at)) {
                        Ok(n) => node = n,
                        Err(e) => {
                            self.an.push(Anomaly::Unreadable {
                                what: "pid.tasks hlist node".into(),
                                addr: node,
                                error: e.to_string(),
                            });
                            break;
                        }
                    }
                }
            }
            Err(e) => self.an.push(Anomaly::Unreadable { what: "struct pid".into(), addr: pid, error: e.to_string() }),
        }
        pages.sort_unstable();
        pages.dedup();
        self.out.push(PidEntry { nr, pid, number, tasks, pages });
    }

    /// The node `value` (an internal entry) covering indices from `index`, which its
    /// parent expects at `shift` (`None` for the root).
    fn node(&mut self, value: u64, index: u64, shift: Option<u32>, at: Gva, depth: usize) {
        if self.ctx.meter.walk_exhausted(self.ctx.k) {
            return;
        }
        self.ctx.meter.visit(1);
        let k = self.ctx.k;
        let node = Gva::new(value - 2);
        if depth > MAX_DEPTH || !plausible(k, node, 8) {
            self.an.push(Anomaly::BadPointer { what: "xa_node".into(), at, value: Gva::new(value) });
            return;
        }
        if !self.visited.insert(node) {
            self.an.push(Anomaly::ListCycle { list: "init_pid_ns.idr".into(), node });
            return;
        }
        let po = self.po;
        let Some(len) = po.chunk.checked_mul(8).and_then(|n| n.checked_add(po.node_slots)) else { return };
        let bytes = match k.read_vec(node, len as usize) {
            Ok(b) => b,
            Err(e) => {
                self.an.push(Anomaly::Unreadable { what: "xa_node".into(), addr: node, error: e.to_string() });
                return;
            }
        };
        let b = Bytes(&bytes);
        let Some(s) = b.uint(po.node_shift, 1).map(|v| v as u32) else { return };
        let bad_shift = s >= 64 || s % self.chunk_shift != 0 || shift.is_some_and(|want| want != s);
        if bad_shift {
            self.an.push(Anomaly::InvalidField {
                what: "xa_node".into(),
                addr: node,
                field: "shift".into(),
                value: s.to_string(),
            });
            return;
        }
        for i in 0..po.chunk {
            let Some(v) = b.u64(po.node_slots + 8 * i) else { break };
            if v == 0 {
                continue;
            }
            let slot = member(node, po.node_slots + 8 * i).unwrap_or(node);
            // i < 64 and s < 64; an index past 2^64 means a corrupt node.
            let Some(at) = i.checked_shl(s).filter(|x| x >> s == i).and_then(|x| index.checked_add(x)) else {
                self.an.push(Anomaly::InvalidField {
                    what: "xa_node".into(),
                    addr: node,
                    field: "slots".into(),
                    value: format!("index overflow at slot {i}"),
                });
                continue;
            };
            if internal(v) {
                if v > 4096 && s > 0 {
                    self.node(v, at, Some(s - self.chunk_shift), slot, depth + 1);
                } else if v > 4096 {
                    self.an.push(Anomaly::BadPointer {
                        what: "xa_node below shift 0".into(),
                        at: slot,
                        value: Gva::new(v),
                    });
                }
                // Else a sibling, retry or zero entry: no id here.
            } else {
                self.entry(at, v, slot);
            }
            if self.full() {
                return;
            }
        }
    }
}

impl<M: PhysMem> Ctx<'_, M> {
    pub(crate) fn pid_table(&self) -> PidTable {
        let (Some(po), Some(ns)) = (self.o.pid, self.addrs.init_pid_ns) else {
            return PidTable::default();
        };
        let mut t = PidTable { available: true, ..PidTable::default() };
        let k = self.k;
        if !po.chunk.is_power_of_two() || po.chunk < 4 || po.chunk > 1 << 12 {
            t.anomalies.push(Anomaly::InvalidField {
                what: "xa_node".into(),
                addr: ns,
                field: "slots (XA_CHUNK_SIZE)".into(),
                value: po.chunk.to_string(),
            });
            return t;
        }
        let head_at = match member(ns, po.ns_xa_head) {
            Ok(a) => a,
            Err(e) => {
                t.anomalies.push(Anomaly::Unreadable { what: "init_pid_ns".into(), addr: ns, error: e.to_string() });
                return t;
            }
        };
        let (head, base) = match (k.read_u64(head_at), member(ns, po.ns_idr_base).and_then(|at| k.read_u32(at))) {
            (Ok(h), Ok(b)) => (h, b),
            (Err(e), _) | (_, Err(e)) => {
                t.anomalies.push(Anomaly::Unreadable {
                    what: "init_pid_ns.idr".into(),
                    addr: ns,
                    error: e.to_string(),
                });
                return t;
            }
        };
        t.idr_base = base;
        let mut w = Walk {
            ctx: self,
            po,
            chunk_shift: po.chunk.trailing_zeros(),
            base,
            visited: AddrSet::default(),
            out: Vec::new(),
            an: Vec::new(),
        };
        if head != 0 {
            if internal(head) && head > 4096 {
                w.node(head, 0, None, head_at, 0);
            } else if !internal(head) {
                w.entry(0, head, head_at);
            }
        }
        w.out.sort_by_key(|e| e.nr);
        t.entries = w.out;
        t.anomalies = w.an;
        t
    }
}
