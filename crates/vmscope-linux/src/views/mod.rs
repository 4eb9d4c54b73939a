//! Views: plain, serde-serializable data rebuilt from kernel structures, each with
//! the [`Anomaly`]s met on the way. Every walk is bounded ([`Limits`]), detects
//! cycles, checks a pointer before following it, and goes on where it safely can.

mod addrs;
pub mod budget;
pub mod cgroup;
pub mod creds;
pub mod environ;
mod fields;
pub mod files;
mod fsopts;
pub mod graph;
pub mod kmsg;
mod maple;
pub mod maps;
pub mod modules;
pub mod mounts;
pub mod namespaces;
mod path;
pub mod pids;
pub mod process;
mod rbtree;
pub mod sockets;
pub mod tree;

use std::fmt;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use crate::kernel::Ctx;
use crate::kmem::{KernelMem, container, member};
use crate::offsets::ListOffsets;

pub(crate) use addrs::{AddrMap, AddrSet, Seen};
pub use budget::{Budget, Resource};
pub(crate) use budget::{Meter, Outcome};
pub(crate) use fields::{BATCH, Bytes, Fields, Layout, Parts, Read};

/// Bounds of every walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most nodes one list walk visits.
    pub max_list: usize,
    /// Most bytes of a command line read.
    pub max_cmdline: usize,
    /// Most symbols read from one module.
    pub max_module_symbols: usize,
    /// Most memory areas read of one process.
    pub max_vmas: usize,
    /// Most file descriptors read of one process (`fdtable.max_fds` beyond it is
    /// an anomaly).
    pub max_fds: usize,
    /// Most steps (path components and mount crossings) of one path.
    pub max_path_steps: usize,
    /// Most bytes of an environment read.
    pub max_environ: usize,
    /// What one pass may spend in all.
    #[serde(default)]
    pub budget: Budget,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_list: 1 << 20,
            max_cmdline: 128 << 10,
            max_module_symbols: 1 << 20,
            // vm.max_map_count defaults to 65530; fs.nr_open to 1 << 20.
            max_vmas: 1 << 20,
            max_fds: 1 << 20,
            max_path_steps: 4096,
            max_environ: 4 << 20,
            budget: Budget::default(),
        }
    }
}

/// Something a walk found wrong, and where. The walk records it and goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// A list led back to a node it had already visited (not its head).
    ListCycle {
        /// Which list.
        list: String,
        /// The node seen twice.
        node: Gva,
    },
    /// A list walk hit its step limit.
    StepLimit {
        /// Which list.
        list: String,
        /// The limit.
        limit: usize,
    },
    /// `node->next->prev` is not `node`.
    BrokenLink {
        /// Which list.
        list: String,
        /// The node.
        node: Gva,
        /// Its `next`.
        next: Gva,
        /// What `next->prev` holds.
        back: Gva,
    },
    /// A pointer that cannot be a kernel address (not canonical, user half, or
    /// misaligned).
    BadPointer {
        /// What it is.
        what: String,
        /// Where it was read.
        at: Gva,
        /// Its value.
        value: Gva,
    },
    /// A read failed: not mapped, or outside RAM.
    Unreadable {
        /// What was being read.
        what: String,
        /// The address.
        addr: Gva,
        /// Why.
        error: String,
    },
    /// A field holds a value that cannot be right.
    InvalidField {
        /// The object.
        what: String,
        /// Its address.
        addr: Gva,
        /// The field.
        field: String,
        /// The value, printed.
        value: String,
    },
    /// A string the kernel always NUL-terminates in a fixed array (a task's `comm`,
    /// a module's `name`) has no NUL in it: corruption, a torn read or wrong
    /// offsets. The task keeps every byte of the array as its comm; a module with
    /// such a name is left out, as one with any other impossible name.
    Unterminated {
        /// The object.
        what: String,
        /// Its address.
        addr: Gva,
        /// The field.
        field: String,
        /// Bytes in the array.
        len: u64,
    },
    /// A list was walked backwards from its head after a break going forwards.
    RecoveredBackwards {
        /// Which list.
        list: String,
        /// Nodes found going backwards.
        nodes: usize,
    },
    /// An object reached one way is missing from the table the kernel keeps it in
    /// (a socket a process holds that its namespace's hash tables do not have).
    Unlisted {
        /// The object.
        what: String,
        /// Its address.
        addr: Gva,
        /// The table.
        table: String,
    },
    /// The pass spent its [`Budget`] and stopped: what it returns is what it had
    /// found by then.
    Budget {
        /// What ran out.
        resource: Resource,
        /// The budget of it.
        limit: u64,
        /// What had been spent when the pass noticed.
        spent: u64,
    },
    /// A process's user memory (its command line) is not present: swapped out,
    /// not yet faulted in, or unmapped.
    UserMemoryUnavailable {
        /// The process.
        pid: i32,
        /// The user address.
        addr: Gva,
        /// Why.
        error: String,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::ListCycle { list, node } => write!(f, "{list}: cycle back to {node:#x}"),
            Anomaly::StepLimit { list, limit } => write!(f, "{list}: stopped after {limit} nodes"),
            Anomaly::BrokenLink { list, node, next, back } => {
                write!(f, "{list}: {node:#x}->next = {next:#x} but its prev = {back:#x}")
            }
            Anomaly::BadPointer { what, at, value } => {
                write!(f, "{what} at {at:#x}: bad pointer {value:#x}")
            }
            Anomaly::Unreadable { what, addr, error } => write!(f, "{what} at {addr:#x}: {error}"),
            Anomaly::InvalidField { what, addr, field, value } => write!(f, "{what} at {addr:#x}: {field} = {value}"),
            Anomaly::Unterminated { what, addr, field, len } => {
                write!(f, "{what} at {addr:#x}: no NUL in the {len} bytes of {field}")
            }
            Anomaly::RecoveredBackwards { list, nodes } => {
                write!(f, "{list}: {nodes} nodes recovered walking backwards")
            }
            Anomaly::Unlisted { what, addr, table } => write!(f, "{what} at {addr:#x} is not in {table}"),
            Anomaly::Budget { resource, limit, spent } => {
                write!(f, "pass stopped: spent {spent} {} of a budget of {limit}", resource.name())
            }
            Anomaly::UserMemoryUnavailable { pid, addr, error } => {
                write!(f, "pid {pid}: user memory at {addr:#x}: {error}")
            }
        }
    }
}

/// Whether `p` can be a pointer to a kernel object of alignment `align`.
pub(crate) fn plausible<M: PhysMem>(k: &KernelMem<M>, p: Gva, align: u64) -> bool {
    p.raw() != 0 && p.is_aligned(align) && k.is_kernel_address(p)
}

/// The address `offset` bytes into the object at `base`. Past the top of the
/// address space (a corrupt pointer or offset) it is recorded as unreadable `what`.
pub(crate) fn field(base: Gva, offset: u64, what: &str, an: &mut Vec<Anomaly>) -> Option<Gva> {
    member(base, offset)
        .map_err(|e| an.push(Anomaly::Unreadable { what: what.into(), addr: base, error: e.to_string() }))
        .ok()
}

/// The pointer `what` at `offset` in the object at `base`, when it can be followed:
/// NULL gives `None` quietly; an unreadable or implausible one is recorded.
pub(crate) fn follow<M: PhysMem>(
    k: &KernelMem<M>,
    base: Gva,
    offset: u64,
    what: &str,
    an: &mut Vec<Anomaly>,
) -> Option<Gva> {
    let at = field(base, offset, what, an)?;
    match k.read_ptr(at) {
        Ok(p) if p.raw() == 0 => None,
        Ok(p) if plausible(k, p, 8) => Some(p),
        Ok(p) => {
            an.push(Anomaly::BadPointer { what: what.into(), at, value: p });
            None
        }
        Err(e) => {
            an.push(Anomaly::Unreadable { what: what.into(), addr: at, error: e.to_string() });
            None
        }
    }
}

/// The `len`-byte (at most 8) little-endian integer `what` at `at`, if it is
/// readable; else the reason is recorded.
pub(crate) fn scalar<M: PhysMem>(
    k: &KernelMem<M>,
    at: Gva,
    len: usize,
    what: &str,
    an: &mut Vec<Anomaly>,
) -> Option<u64> {
    let mut b = [0u8; 8];
    match k.read(at, &mut b[..len.min(8)]) {
        Ok(()) => Some(u64::from_le_bytes(b)),
        Err(e) => {
            an.push(Anomaly::Unreadable { what: what.into(), addr: at, error: e.to_string() });
            None
        }
    }
}

/// The `u32` count `name` at `offset` in the object `what` at `base`, if it is
/// readable and at most `max`; else the reason is recorded.
pub(crate) fn count<M: PhysMem>(
    k: &KernelMem<M>,
    (base, offset): (Gva, u64),
    (what, name): (&str, &str),
    max: u32,
    an: &mut Vec<Anomaly>,
) -> Option<u32> {
    let n = match member(base, offset).and_then(|at| k.read_u32(at)) {
        Ok(n) => n,
        Err(e) => {
            an.push(Anomaly::Unreadable { what: format!("{what}.{name}"), addr: base, error: e.to_string() });
            return None;
        }
    };
    if n > max {
        an.push(Anomaly::InvalidField { what: what.into(), addr: base, field: name.into(), value: n.to_string() });
        return None;
    }
    Some(n)
}

/// The object whose member at `offset` is at `node` (`container_of`). Below
/// address 0 (a corrupt offset) it is recorded as unreadable `what`.
pub(crate) fn owner(node: Gva, offset: u64, what: &str, an: &mut Vec<Anomaly>) -> Option<Gva> {
    container(node, offset)
        .map_err(|e| an.push(Anomaly::Unreadable { what: what.into(), addr: node, error: e.to_string() }))
        .ok()
}

/// The `next` and `prev` of the `list_head` at `node`, read together.
pub(crate) fn read_links<M: PhysMem>(k: &KernelMem<M>, lo: &ListOffsets, node: Gva) -> crate::Result<(Gva, Gva)> {
    if lo.prev == lo.next + 8 {
        let mut b = [0u8; 16];
        k.read(member(node, lo.next)?, &mut b)?;
        return Ok(next_prev(&b));
    }
    Ok((k.read_ptr(member(node, lo.next)?)?, k.read_ptr(member(node, lo.prev)?)?))
}

/// `next` and `prev` from the 16 bytes of a `list_head` read from `next` on.
fn next_prev(b: &[u8; 16]) -> (Gva, Gva) {
    let (next, prev) = b.split_at(8);
    let word = |w: &[u8]| Gva::new(u64::from_le_bytes(w.try_into().expect("8 bytes: split at 8 of 16")));
    (word(next), word(prev))
}

/// [`read_links`] of every node of `nodes` as one batch (see
/// [`KernelMem::read_each`]); `each(i, links)` gets node `i`'s, in order.
fn read_links_each<M: PhysMem>(
    k: &KernelMem<M>,
    lo: &ListOffsets,
    nodes: &[Gva],
    mut each: impl FnMut(usize, crate::Result<(Gva, Gva)>),
) {
    if nodes.len() == 1 || lo.prev != lo.next + 8 {
        for (i, &node) in nodes.iter().enumerate() {
            each(i, read_links(k, lo, node));
        }
        return;
    }
    let mut links = vec![[0u8; 16]; nodes.len()];
    let mut failed: Vec<Option<crate::Error>> = nodes.iter().map(|_| None).collect();
    let mut pieces = Vec::with_capacity(nodes.len());
    // The node each piece belongs to.
    let mut of = Vec::with_capacity(nodes.len());
    for (i, (&node, buf)) in nodes.iter().zip(&mut links).enumerate() {
        match member(node, lo.next) {
            Ok(at) => {
                pieces.push((at, &mut buf[..]));
                of.push(i);
            }
            Err(e) => failed[i] = Some(e),
        }
    }
    for (r, i) in k.read_each(&mut pieces).into_iter().zip(of) {
        if let Err(e) = r {
            failed[i] = Some(e);
        }
    }
    for (i, (b, f)) in links.iter().zip(failed).enumerate() {
        each(i, f.map_or_else(|| Ok(next_prev(b)), Err));
    }
}

/// Reads `len` bytes of the object `what` at `addr` and hands them to `f`; an
/// unreadable object is recorded and gives `None`. Small objects are read onto the
/// stack (a buffer of 256 or 1024 bytes, zeroed first): the deeper views read
/// thousands of them per pass.
pub(crate) fn with_struct<M: PhysMem, R>(
    k: &KernelMem<M>,
    addr: Gva,
    len: u64,
    what: &str,
    an: &mut Vec<Anomaly>,
    f: impl FnOnce(Bytes<'_>) -> R,
) -> Option<R> {
    let len = usize::try_from(len).ok()?;
    let read = |buf: &mut [u8], an: &mut Vec<Anomaly>| match k.read(addr, buf) {
        Ok(()) => true,
        Err(e) => {
            an.push(Anomaly::Unreadable { what: what.into(), addr, error: e.to_string() });
            false
        }
    };
    if len <= 256 {
        let mut buf = [0u8; 256];
        read(&mut buf[..len], an).then(|| f(Bytes(&buf[..len])))
    } else if len <= 1024 {
        let mut buf = [0u8; 1024];
        read(&mut buf[..len], an).then(|| f(Bytes(&buf[..len])))
    } else {
        let mut buf = vec![0u8; len];
        read(&mut buf, an).then(|| f(Bytes(&buf)))
    }
}

impl<M: PhysMem> Ctx<'_, M> {
    /// Walks the circular list whose head is at `head` and returns the address of
    /// every node's `list_head` in list order. Bounded by `limits.max_list` and the
    /// pass's budget; a cycle that does not pass through the head, an unreadable or
    /// implausible link, or a link whose back pointer disagrees is recorded, and
    /// when the forward walk breaks the list is walked backwards from the head to
    /// recover the rest.
    pub(crate) fn walk_list(&self, head: Gva, name: &str, anomalies: &mut Vec<Anomaly>) -> Vec<Gva> {
        let Walked { nodes, anomalies: met } =
            self.walk_lists(&[head], name).pop().expect("one walk per head, one head");
        anomalies.extend(met);
        nodes
    }

    /// Walks every list of `heads` as [`walk_list`](Self::walk_list) walks one, a
    /// step of each list per round, the round's reads in one batch: the lists' cache
    /// misses overlap instead of coming one after another. Returns each list's nodes
    /// and anomalies, in `heads` order. A pass out of budget stops every walk where
    /// it is (the pass records that once).
    pub(crate) fn walk_lists(&self, heads: &[Gva], name: &str) -> Vec<Walked> {
        let (k, lo, limit) = (self.k, &self.o.list, self.limits.max_list);
        let mut walks: Vec<Walk> = heads.iter().map(|&head| Walk::new(head)).collect();
        // Each node's `list_head` is read once: its `prev` checks the step that led to
        // it, its `next` leads on.
        read_links_each(k, lo, heads, |i, links| match links {
            Ok((next, _)) => walks[i].ahead = Some(next),
            Err(e) => walks[i].broke(Anomaly::Unreadable {
                what: format!("{name} link"),
                addr: heads[i],
                error: e.to_string(),
            }),
        });
        let (mut due, mut nodes) = (Vec::new(), Vec::new());
        while !self.meter.walk_exhausted(k) {
            due.clear();
            nodes.clear();
            for (i, w) in walks.iter_mut().enumerate() {
                if let Some(next) = w.ahead.take()
                    && w.goes_to(k, lo, next, name, limit)
                {
                    due.push(i);
                    nodes.push(next);
                }
            }
            if due.is_empty() {
                break;
            }
            self.meter.visit(nodes.len());
            read_links_each(k, lo, &nodes, |j, links| walks[due[j]].arrive(nodes[j], links, name));
        }
        walks.into_iter().map(|w| w.finish(self, name)).collect()
    }
}

/// One list as [`Ctx::walk_lists`] walked it.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Its nodes' `list_head`s, in list order.
    pub nodes: Vec<Gva>,
    /// What was wrong with it.
    pub anomalies: Vec<Anomaly>,
}

/// One list's walk in progress.
struct Walk {
    head: Gva,
    /// The last node reached (the head at first).
    cur: Gva,
    /// The node `cur` leads to, while the walk goes on.
    ahead: Option<Gva>,
    /// Nodes met, the head left out (meeting it ends a walk before the set is
    /// asked).
    seen: Seen,
    /// Whether the forward walk broke (then the list is walked backwards too).
    broken: bool,
    out: Walked,
}

impl Walk {
    fn new(head: Gva) -> Self {
        Walk { head, cur: head, ahead: None, seen: Seen::default(), broken: false, out: Walked::default() }
    }

    fn broke(&mut self, why: Anomaly) {
        self.out.anomalies.push(why);
        self.broken = true;
    }

    /// Whether the walk goes on from `cur` to `next` (whose links are then read); if
    /// not, it has ended, at the head or at what is recorded.
    fn goes_to<M: PhysMem>(&mut self, k: &KernelMem<M>, lo: &ListOffsets, next: Gva, name: &str, limit: usize) -> bool {
        if next == self.head {
            return false;
        }
        if !plausible(k, next, 8) {
            let at = member(self.cur, lo.next).unwrap_or(self.cur);
            self.broke(Anomaly::BadPointer { what: format!("{name} next"), at, value: next });
            return false;
        }
        if !self.seen.insert(next) {
            self.broke(Anomaly::ListCycle { list: name.into(), node: next });
            return false;
        }
        if self.out.nodes.len() >= limit {
            self.out.anomalies.push(Anomaly::StepLimit { list: name.into(), limit });
            return false;
        }
        true
    }

    /// Reaches `next`, whose links are `links`.
    fn arrive(&mut self, next: Gva, links: crate::Result<(Gva, Gva)>, name: &str) {
        match links {
            Ok((after, back)) => {
                if back != self.cur {
                    let cur = self.cur;
                    self.out.anomalies.push(Anomaly::BrokenLink { list: name.into(), node: cur, next, back });
                }
                self.out.nodes.push(next);
                self.cur = next;
                self.ahead = Some(after);
            }
            Err(e) => {
                self.broke(Anomaly::Unreadable { what: format!("{name} node"), addr: next, error: e.to_string() });
            }
        }
    }

    /// The nodes, and if the walk broke, those met walking back from the head
    /// through `prev` until meeting the forward walk.
    fn finish<M: PhysMem>(mut self, ctx: &Ctx<'_, M>, name: &str) -> Walked {
        if !self.broken {
            return self.out;
        }
        let (k, lo, limit) = (ctx.k, &ctx.o.list, ctx.limits.max_list);
        let (head, nodes) = (self.head, &mut self.out.nodes);
        let mut back = Vec::new();
        let mut cur = head;
        while back.len() + nodes.len() < limit && !ctx.meter.walk_exhausted(k) {
            ctx.meter.visit(1);
            let Ok(prev) = member(cur, lo.prev).and_then(|at| k.read_ptr(at)) else {
                break;
            };
            if prev == head
                || !plausible(k, prev, 8)
                || self.seen.contains(&prev)
                || member(prev, lo.next).and_then(|at| k.read_ptr(at)).is_err()
            {
                break;
            }
            self.seen.insert(prev);
            back.push(prev);
            cur = prev;
        }
        if !back.is_empty() {
            self.out.anomalies.push(Anomaly::RecoveredBackwards { list: name.into(), nodes: back.len() });
            nodes.extend(back.into_iter().rev());
        }
        self.out
    }
}

#[cfg(any(test, feature = "fixture"))]
#[doc(hidden)]
pub mod fixture;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::fixture::{DIRECT, Fx};
    use super::*;

    fn three() -> (Fx, [u64; 4]) {
        let mut fx = Fx::new();
        let init = fx.process(1, fx.init_task, 0, "init", Some("/sbin/init splash"));
        let kthreadd = fx.kthread(2, fx.init_task, "kthreadd");
        let sleeper = fx.process(100, init, 1001, "sleep", Some("sleep 999"));
        let alice = fx.process(101, init, 1002, "myname", None);
        (fx, [init, kthreadd, sleeper, alice])
    }

    #[test]
    fn processes_as_proc_shows_them() {
        let (fx, _) = three();
        let (k, addrs) = fx.finish();
        let list = fx.ctx(&k, &addrs, Limits::default()).processes();
        let got: Vec<(i32, i32, u32, &str, char)> =
            list.processes.iter().map(|p| (p.pid, p.ppid, p.uid, p.comm.as_str(), p.state)).collect();
        assert_eq!(
            got,
            [
                (1, 0, 0, "init", 'S'),
                (2, 0, 0, "kthreadd", 'I'),
                (100, 1, 1001, "sleep", 'S'),
                (101, 1, 1002, "myname", 'S')
            ]
        );
        let p = &list.processes;
        assert_eq!(p[0].cmdline.as_deref(), Some(&["/sbin/init".to_owned(), "splash".to_owned()][..]));
        assert!(p[1].kernel_thread && p[1].cmdline.as_deref() == Some(&[][..]) && p[1].rss_pages.is_none());
        assert_eq!(p[2].cmdline.as_deref(), Some(&["sleep".to_owned(), "999".to_owned()][..]));
        assert_eq!((p[2].rss_pages, p[2].threads, p[2].utime_ns, p[2].stime_ns), (Some(7), 1, 1000, 2000));
        // Absent user memory is reported, not fatal.
        assert_eq!(p[3].cmdline, None);
        assert!(
            matches!(list.anomalies.as_slice(), [Anomaly::UserMemoryUnavailable { pid: 101, .. }]),
            "{:?}",
            list.anomalies
        );

        let tree = tree::ProcessTree::from_list(list.clone());
        let shape: Vec<(usize, i32)> = tree.walk().into_iter().map(|(d, p)| (d, p.pid)).collect();
        assert_eq!(shape, [(0, 1), (1, 100), (1, 101), (0, 2)]);
    }

    #[test]
    fn a_cycle_is_reported_and_the_walk_ends() {
        let (mut fx, [_, _, sleeper, alice]) = three();
        fx.w64(alice, sleeper); // alice->next points back into the list
        let (k, addrs) = fx.finish();
        let list = fx.ctx(&k, &addrs, Limits::default()).processes();
        assert_eq!(list.processes.len(), 4);
        assert!(
            list.anomalies.iter().any(|a| matches!(a, Anomaly::ListCycle { node, .. } if *node == Gva::new(sleeper))),
            "{:?}",
            list.anomalies
        );
    }

    #[test]
    fn a_broken_link_is_walked_around_backwards() {
        let (mut fx, [init, ..]) = three();
        // kthreadd->next leads outside RAM: the forward walk stops at kthreadd, the
        // backward walk from the head recovers alice and the sleeper.
        let kthreadd = fx.r64(init);
        fx.w64(kthreadd, DIRECT + (1 << 40));
        let (k, addrs) = fx.finish();
        let list = fx.ctx(&k, &addrs, Limits::default()).processes();
        let pids: Vec<i32> = list.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [1, 2, 100, 101]);
        assert!(list.anomalies.iter().any(|a| matches!(a, Anomaly::Unreadable { .. })), "{:?}", list.anomalies);
        assert!(
            list.anomalies.iter().any(|a| matches!(a, Anomaly::RecoveredBackwards { nodes: 2, .. })),
            "{:?}",
            list.anomalies
        );
    }

    #[test]
    fn bad_pointers_and_limits() {
        let (mut fx, [init, _, sleeper, _]) = three();
        fx.w64(sleeper + 80, 0x1234); // real_cred: not a kernel pointer
        fx.w64(init + 56, 0xdead_0000_0000_0000); // real_parent: not canonical
        let (k, addrs) = fx.finish();
        let list = fx.ctx(&k, &addrs, Limits { max_list: 2, ..Limits::default() }).processes();
        assert_eq!(list.processes.len(), 2);
        assert!(list.anomalies.iter().any(|a| matches!(a, Anomaly::StepLimit { limit: 2, .. })));
        assert!(
            list.anomalies
                .iter()
                .any(|a| matches!(a, Anomaly::BadPointer { value, .. } if *value == Gva::new(0xdead_0000_0000_0000)))
        );
        let list = fx.ctx(&k, &addrs, Limits::default()).processes();
        assert_eq!(list.processes[2].uid, u32::MAX, "an unreadable cred leaves the ids unknown");
    }

    #[test]
    fn a_comm_without_nul_is_an_anomaly_not_a_shorter_name() {
        let (mut fx, [_, _, sleeper, _]) = three();
        fx.write_bytes(sleeper + 24, b"sixteen-bytes-xy"); // all of comm[16], no NUL
        let (k, addrs) = fx.finish();
        let ctx = fx.ctx(&k, &addrs, Limits::default());
        let unterminated = |a: &Anomaly| matches!(a, Anomaly::Unterminated { addr, field, len: 16, .. } if *addr == Gva::new(sleeper) && field == "comm");

        let list = ctx.processes();
        let p = list.processes.iter().find(|p| p.pid == 100).expect("the process is still listed");
        assert_eq!(p.comm, "sixteen-bytes-xy", "every byte of the array, not a prefix");
        assert_eq!(list.anomalies.iter().filter(|a| unterminated(a)).count(), 1, "{:?}", list.anomalies);
        let others: Vec<&str> = list.processes.iter().filter(|p| p.pid != 100).map(|p| p.comm.as_str()).collect();
        assert_eq!(others, ["init", "kthreadd", "myname"]);

        let threads = ctx.threads(100).expect("pid 100");
        assert_eq!(threads.threads[0].comm, "sixteen-bytes-xy");
        assert!(threads.anomalies.iter().any(unterminated), "{:?}", threads.anomalies);
    }

    #[test]
    fn a_long_kthread_name_is_cut_and_says_so() {
        let mut fx = Fx::new();
        let short = fx.kthread(2, fx.init_task, "kthreadd");
        fx.full_name(short, "kthreadd");
        let long = fx.kthread(3, fx.init_task, "irq/24-virtio0-");
        let name = "irq/24-virtio0-config-with-a-name-longer-than-the-64-bytes-proc-shows";
        fx.full_name(long, name);
        let (k, addrs) = fx.finish();
        let list = fx.ctx(&k, &addrs, Limits::default()).processes();
        assert!(list.anomalies.is_empty(), "{:?}", list.anomalies);
        let got: Vec<(Option<&str>, bool)> =
            list.processes.iter().map(|p| (p.full_name.as_deref(), p.full_name_truncated)).collect();
        assert_eq!(got, [(Some("kthreadd"), false), (Some(&name[..process::FULL_NAME_MAX]), true)]);
    }

    #[test]
    fn a_module_name_without_nul_is_an_anomaly_and_no_module() {
        let mut fx = Fx::new();
        let bad = fx.module("dummy", 16384, 0, &["dummy_export"], &["dummy_local"]);
        fx.module("qemu_fw_cfg", 20480, 0, &[], &["fw_cfg_probe"]);
        fx.write_bytes(bad + 16, &[b'm'; 56]); // all of name[56], no NUL
        let (k, addrs) = fx.finish();
        let ctx = fx.ctx(&k, &addrs, Limits::default());
        let unterminated = |a: &Anomaly| matches!(a, Anomaly::Unterminated { addr, field, len: 56, .. } if *addr == Gva::new(bad) && field == "name");

        let list = ctx.modules();
        let names: Vec<&str> = list.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["qemu_fw_cfg"]);
        assert!(matches!(list.anomalies.as_slice(), [a] if unterminated(a)), "{:?}", list.anomalies);

        let (syms, an) = ctx.module_symbols();
        let names: Vec<(&str, &str)> = syms.iter().map(|s| (s.module.as_str(), s.name.as_str())).collect();
        assert_eq!(names, [("qemu_fw_cfg", "fw_cfg_probe")]);
        assert!(matches!(an.as_slice(), [a] if unterminated(a)), "{an:?}");
    }

    #[test]
    fn modules_and_their_symbols() {
        let mut fx = Fx::new();
        let dummy = fx.module("dummy", 16384, 0, &["dummy_export"], &["dummy_local", "cleanup_module"]);
        let fw = fx.module("qemu_fw_cfg", 20480, 1 << 12, &[], &["fw_cfg_probe"]);
        let (k, addrs) = fx.finish();
        let ctx = fx.ctx(&k, &addrs, Limits::default());
        let list = ctx.modules();
        let got: Vec<(&str, u64, i64, &str)> =
            list.modules.iter().map(|m| (m.name.as_str(), m.size, m.refcount, m.state.as_str())).collect();
        assert_eq!(got, [("dummy", 16384, 0, "Live"), ("qemu_fw_cfg", 20480, 0, "Live")]);
        assert_eq!(list.modules[1].taints, 1 << 12);
        let (syms, an) = ctx.module_symbols();
        assert!(an.is_empty(), "{an:?}");
        let text = modules::format_module_symbols(&syms);
        let want = format!(
            "{:016x} T dummy_export\t[dummy]\n{:016x} t dummy_local\t[dummy]\n{:016x} t cleanup_module\t[dummy]\n{:016x} t fw_cfg_probe\t[qemu_fw_cfg]\n",
            dummy,
            dummy + 0x10,
            dummy + 0x20,
            fw
        );
        assert_eq!(text, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the bytes of the tasks, modules and their links, the views end
        /// and do not panic.
        #[test]
        fn arbitrary_kernel_bytes_never_panic(
            junk in prop::collection::vec((0u64..0x3000, super::fixture::hostile_u64()), 1..64),
            nodes in 1u64..256,
        ) {
            let mut fx = Fx::new();
            let i = fx.process(1, fx.init_task, 0, "init", Some("/sbin/init"));
            fx.process(2, i, 5, "a", Some("a b c"));
            fx.module("m", 100, 0, &["x"], &["y"]);
            let base = fx.init_task;
            for (off, v) in junk {
                fx.w64(base + (off & !7), v);
            }
            let (k, addrs) = fx.finish();
            let budget = Budget { max_nodes: nodes, ..Budget::default() };
            let ctx = fx.ctx(&k, &addrs, Limits { max_list: 64, max_cmdline: 4096, max_module_symbols: 64, budget, ..Limits::default() });
            let list = ctx.processes();
            prop_assert!(list.processes.len() <= 64);
            let _ = tree::ProcessTree::from_list(list);
            let _ = ctx.modules();
            let _ = ctx.module_symbols();
            let _ = ctx.threads(1);
        }
    }
}
