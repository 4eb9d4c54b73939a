//! Raw graphs for consistency checks: the task list walked forward *and* backward
//! with every link as read, each task's parents, children and thread group, the
//! kernel's own task count, and the module list walked both ways. Nothing here is
//! repaired or reconciled — that is what the invariants in `vmscope-consistency`
//! judge — and every task carries the guest-physical pages it was read from, so a
//! violation can be told torn (extrinsic) or the kernel's own (intrinsic).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PAGE_SIZE, PhysMem};

use super::{AddrMap, AddrSet, Anomaly, BATCH, Bytes, Fields, Layout, Parts, field, owner, plausible, read_links};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::{ListOffsets, TaskOffsets};

/// `PF_EXITING` in `task_struct.flags`: the task is in `do_exit` (a `#define`,
/// unchanged since Linux 2.6). Such a task may already have dropped its mm.
pub const PF_EXITING: u32 = 0x0000_0004;

/// One `struct list_head` as read: where it is and what its pointers hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Address of the `list_head`.
    pub node: Gva,
    /// Its `next`.
    pub next: Gva,
    /// Its `prev`.
    pub prev: Gva,
    /// Guest page-frame numbers (GPA >> 12) the two pointers were read from.
    pub pages: Vec<u64>,
}

/// A circular list walked from its head along `next` and, separately, along
/// `prev`, as the pointers say — no repair, no reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawList {
    /// The head, if it could be read.
    pub head: Option<Link>,
    /// Nodes met following `next` from the head (the head excluded), in order.
    pub forward: Vec<Link>,
    /// Whether the forward walk came back to the head (else it stopped at a bad
    /// pointer, an unreadable node, a cycle or the step limit: see the anomalies).
    pub forward_closed: bool,
    /// Nodes met following `prev` from the head, in the order met (last node first).
    pub backward: Vec<Link>,
    /// Whether the backward walk came back to the head.
    pub backward_closed: bool,
}

impl RawList {
    /// Every link read: the head, then forward, then backward.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.head.iter().chain(&self.forward).chain(&self.backward)
    }
}

/// One task (a thread-group leader from the task list, a thread from a thread
/// list, or `init_task`) as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNode {
    /// Address of its `task_struct`.
    pub addr: Gva,
    /// `pid` (the thread id).
    pub pid: i32,
    /// `tgid`.
    pub tgid: i32,
    /// `comm`, lossily (for messages).
    pub comm: String,
    /// `flags` (`PF_*`).
    pub flags: u32,
    /// `exit_state` (`EXIT_ZOMBIE` 0x20, `EXIT_DEAD` 0x10).
    pub exit_state: u32,
    /// `real_parent`.
    pub real_parent: Gva,
    /// `parent`.
    pub parent: Gva,
    /// `group_leader`.
    pub group_leader: Gva,
    /// `signal`.
    pub signal: Gva,
    /// `mm` (0 for kernel threads and tasks past `exit_mm`).
    pub mm: Gva,
    /// Its `children` list, as the task addresses of the `sibling` links on it.
    pub children: Vec<Gva>,
    /// Whether the children list was walked to its end without an anomaly.
    pub children_complete: bool,
    /// `signal->nr_threads`, if the signal struct could be read.
    pub nr_threads: Option<i32>,
    /// The tasks on `signal->thread_head` (via `thread_node`), in list order: one
    /// list, shared by every task of the group (a copy each would grow as the square
    /// of the group's size).
    pub threads: Arc<[Gva]>,
    /// Whether the thread list was walked to its end without an anomaly.
    pub threads_complete: bool,
    /// Whether it is on the task list (`init_task.tasks`; `init_task`, the head,
    /// is not).
    pub on_task_list: bool,
    /// Guest page-frame numbers of its `task_struct` fields and of its signal
    /// struct's head, sorted.
    pub pages: Vec<u64>,
}

/// The task graph: the task list both ways and every task found from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGraph {
    /// `init_task` (the idle task of CPU 0, head of the task list).
    pub init_task: Gva,
    /// The task list (`init_task.tasks`), raw; nodes are `task_struct.tasks`.
    pub task_list: RawList,
    /// Every task found: `init_task` first, then the task list's (forward, then
    /// those only the backward walk met), then threads met on thread lists.
    pub tasks: Vec<TaskNode>,
    /// The kernel's `nr_threads` (every task but the idle tasks), if readable.
    pub nr_threads: Option<i32>,
    /// Page-frame numbers `nr_threads` was read from.
    pub nr_threads_pages: Vec<u64>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

impl TaskGraph {
    /// The task at `addr`, if found.
    pub fn task(&self, addr: Gva) -> Option<&TaskNode> {
        self.tasks.iter().find(|t| t.addr == addr)
    }

    /// Task addresses to their index in [`tasks`](Self::tasks).
    pub fn index(&self) -> HashMap<Gva, usize> {
        self.tasks.iter().enumerate().map(|(i, t)| (t.addr, i)).collect()
    }
}

/// One module as read, for consistency checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleNode {
    /// Address of its `struct module`.
    pub addr: Gva,
    /// Address of its `list` (the node on the `modules` list).
    pub list: Gva,
    /// Its name, when NUL-terminated.
    pub name: Option<String>,
    /// `state` (`enum module_state`), if readable.
    pub state: Option<i64>,
    /// Page-frame numbers of its `list` and `state`, sorted.
    pub pages: Vec<u64>,
}

/// The module list, raw: walked both ways, each module's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleGraph {
    /// The `modules` list; nodes are `module.list`.
    pub list: RawList,
    /// Every module met either way (forward order, then backward-only ones).
    pub modules: Vec<ModuleNode>,
    /// The values of `enum module_state` (from the kernel's types).
    pub valid_states: Vec<i64>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

/// Page-frame numbers of `len` bytes at `va` (those that translate), appended.
pub(crate) fn push_pages<M: PhysMem>(ctx: &Ctx<'_, M>, va: Gva, len: u64, out: &mut Vec<u64>) {
    let Some(last) = va.raw().checked_add(len.max(1) - 1) else { return };
    let mut page = va.raw() & !(PAGE_SIZE - 1);
    // A task's fields span a page or two; the bound only guards a corrupt length.
    for _ in 0..16 {
        if let Ok((pa, _)) = ctx.k.translate(Gva::new(page)) {
            out.push(pa.raw() >> 12);
        }
        match page.checked_add(PAGE_SIZE) {
            Some(p) if p <= last => page = p,
            _ => break,
        }
    }
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    v
}

/// What one signal struct holds for the checks.
#[derive(Clone)]
struct Group {
    nr_threads: Option<i32>,
    threads: Arc<[Gva]>,
    complete: bool,
    pages: Vec<u64>,
}

/// What [`TaskNode`] reads of a `task_struct`: its fields, and the `next` of its
/// children list (an empty list is not walked).
struct NodeRead {
    layout: Layout,
    /// Bytes from the task's start whose pages a [`TaskNode`] lists: up to the last of
    /// its fields and of the links that the walks through it read (`list_head` bytes
    /// each).
    span: u64,
}

impl NodeRead {
    fn new(o: &TaskOffsets, lo: &ListOffsets) -> Self {
        let fields = [
            (o.pid, 4),
            (o.tgid, 4),
            (o.comm, o.comm_len),
            (o.flags, 4),
            (o.exit_state, 4),
            (o.real_parent, 8),
            (o.parent, 8),
            (o.group_leader, 8),
            (o.signal, 8),
            (o.mm, 8),
            (o.children.saturating_add(lo.next), 8),
        ];
        let list_head = lo.next.max(lo.prev) + 8;
        let links = [o.tasks, o.children, o.sibling, o.thread_node].map(|off| (off, list_head));
        let span = fields.iter().chain(&links).map(|&(off, len)| off.saturating_add(len)).max().unwrap_or(0);
        NodeRead { layout: Layout::new(o.size, fields), span: span.min(o.size) }
    }
}

impl<M: PhysMem> Ctx<'_, M> {
    /// One `list_head`'s pointers.
    fn read_link(&self, node: Gva) -> crate::Result<Link> {
        let lo = &self.o.list;
        let (next, prev) = read_links(self.k, lo, node)?;
        let mut pages = Vec::with_capacity(2);
        push_pages(self, node, lo.next.max(lo.prev) + 8, &mut pages);
        Ok(Link { node, next, prev, pages })
    }

    /// Walks the list at `head` along `next` and along `prev`, each bounded.
    pub(crate) fn walk_raw(&self, head: Gva, name: &str, an: &mut Vec<Anomaly>) -> RawList {
        let mut list = RawList::default();
        let h = match self.read_link(head) {
            Ok(h) => h,
            Err(e) => {
                an.push(Anomaly::Unreadable { what: format!("{name} head"), addr: head, error: e.to_string() });
                return list;
            }
        };
        for forward in [true, false] {
            let dir = if forward { "next" } else { "prev" };
            let mut seen = AddrSet::from_iter([head]);
            let mut out = Vec::new();
            let mut cur = &h;
            let closed = loop {
                if self.meter.walk_exhausted(self.k) {
                    break false;
                }
                self.meter.visit(1);
                let to = if forward { cur.next } else { cur.prev };
                if to == head {
                    break true;
                }
                if !plausible(self.k, to, 8) {
                    an.push(Anomaly::BadPointer { what: format!("{name} {dir}"), at: cur.node, value: to });
                    break false;
                }
                if !seen.insert(to) {
                    an.push(Anomaly::ListCycle { list: format!("{name} ({dir})"), node: to });
                    break false;
                }
                if out.len() >= self.limits.max_list {
                    an.push(Anomaly::StepLimit { list: format!("{name} ({dir})"), limit: self.limits.max_list });
                    break false;
                }
                match self.read_link(to) {
                    Ok(l) => {
                        out.push(l);
                        cur = out.last().expect("pushed just now");
                    }
                    Err(e) => {
                        an.push(Anomaly::Unreadable { what: format!("{name} node"), addr: to, error: e.to_string() });
                        break false;
                    }
                }
            };
            if forward {
                (list.forward, list.forward_closed) = (out, closed);
            } else {
                (list.backward, list.backward_closed) = (out, closed);
            }
        }
        list.head = Some(h);
        list
    }

    /// The thread groups whose signal structs are at `signals`, read together: each
    /// one's `nr_threads`, and its thread list, all walked at once ([`walk_lists`]).
    fn groups(&self, signals: &[Gva], an: &mut Vec<Anomaly>) -> Vec<Group> {
        let so = &self.o.signal;
        let mut groups: Vec<Group> = signals
            .iter()
            .map(|&signal| {
                let mut pages = Vec::with_capacity(2);
                push_pages(self, signal, so.thread_head.max(so.nr_threads) + 16, &mut pages);
                Group { nr_threads: None, threads: Arc::from([]), complete: false, pages }
            })
            .collect();
        let mut counts: Vec<[u8; 4]> = vec![[0; 4]; signals.len()];
        let mut pieces = Vec::with_capacity(signals.len());
        // The group each piece and each list head belongs to.
        let (mut of, mut heads, mut listed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (&signal, buf)) in signals.iter().zip(&mut counts).enumerate() {
            match member(signal, so.nr_threads) {
                Ok(at) => {
                    pieces.push((at, &mut buf[..]));
                    of.push(i);
                }
                Err(e) => {
                    an.push(Anomaly::Unreadable { what: "signal_struct".into(), addr: signal, error: e.to_string() })
                }
            }
        }
        for (r, i) in self.k.read_each(&mut pieces).into_iter().zip(of) {
            let signal = signals[i];
            if let Err(e) = r {
                an.push(Anomaly::Unreadable { what: "signal_struct".into(), addr: signal, error: e.to_string() });
                continue;
            }
            groups[i].nr_threads = Some(i32::from_le_bytes(counts[i]));
            if let Some(head) = field(signal, so.thread_head, "signal.thread_head", an) {
                heads.push(head);
                listed.push(i);
            }
        }
        let walked = self.walk_lists(&heads, "signal.thread_head");
        for (w, i) in walked.into_iter().zip(listed) {
            let walked_clean = w.anomalies.is_empty();
            an.extend(w.anomalies);
            let before = an.len();
            let g = &mut groups[i];
            g.threads =
                w.nodes.into_iter().filter_map(|n| owner(n, self.o.task.thread_node, "task_struct", an)).collect();
            g.complete = walked_clean && an.len() == before;
        }
        groups
    }

    /// The task at `addr` from `read`, its lines as `node` reads them; `None`
    /// (recorded) when they could not be read.
    fn task_node(
        &self,
        (addr, on_task_list): (Gva, bool),
        read: Result<Parts<'_>, &crate::Error>,
        node: &NodeRead,
        groups: &mut AddrMap<Gva, Group>,
        an: &mut Vec<Anomaly>,
    ) -> Option<TaskNode> {
        let o = &self.o.task;
        let b = match read {
            Ok(b) => b,
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "task_struct".into(), addr, error: e.to_string() });
                return None;
            }
        };
        // The task's pages (a few), and its signal struct's.
        let mut pages = Vec::with_capacity(6);
        push_pages(self, addr, node.span, &mut pages);
        let comm = b.cstr(o.comm, o.comm_len)?.unwrap_or_else(|all| all);
        let ptr = |off: u64| b.ptr(off).unwrap_or(Gva::new(0));
        let mut t = TaskNode {
            addr,
            pid: b.i32(o.pid)?,
            tgid: b.i32(o.tgid)?,
            comm,
            flags: b.u32(o.flags)?,
            exit_state: b.u32(o.exit_state)?,
            real_parent: ptr(o.real_parent),
            parent: ptr(o.parent),
            group_leader: ptr(o.group_leader),
            signal: ptr(o.signal),
            mm: ptr(o.mm),
            children: Vec::new(),
            children_complete: false,
            nr_threads: None,
            threads: Arc::from([]),
            threads_complete: false,
            on_task_list,
            pages: Vec::new(),
        };
        if let Some(head) = field(addr, o.children, "task.children", an) {
            // Most tasks have no children: their list head, read with the task,
            // points at itself, and there is nothing to walk.
            if o.children.checked_add(self.o.list.next).and_then(|off| b.ptr(off)) == Some(head) {
                t.children_complete = true;
            } else {
                let before = an.len();
                let nodes = self.walk_list(head, "task.children", an);
                t.children = nodes.into_iter().filter_map(|n| owner(n, o.sibling, "task_struct", an)).collect();
                t.children_complete = an.len() == before;
            }
        }
        if plausible(self.k, t.signal, 8) {
            let g = groups.entry(t.signal).or_insert_with(|| {
                self.groups(&[t.signal], an).pop().expect("one group per signal struct, one asked for")
            });
            t.nr_threads = g.nr_threads;
            t.threads = g.threads.clone();
            t.threads_complete = g.complete;
            pages.extend_from_slice(&g.pages);
        } else {
            an.push(Anomaly::BadPointer { what: "task.signal".into(), at: addr, value: t.signal });
        }
        t.pages = sorted(pages);
        Some(t)
    }

    pub(crate) fn task_graph(&self) -> TaskGraph {
        let mut an = Vec::new();
        let init = self.addrs.init_task;
        let mut g = TaskGraph { init_task: init, ..TaskGraph::default() };
        if let Some(nr) = self.addrs.nr_threads {
            match self.k.read_u32(nr) {
                Ok(v) => g.nr_threads = Some(v as i32),
                Err(e) => an.push(Anomaly::Unreadable { what: "nr_threads".into(), addr: nr, error: e.to_string() }),
            }
            push_pages(self, nr, 4, &mut g.nr_threads_pages);
        }
        if let Some(head) = field(init, self.o.task.tasks, "init_task.tasks", &mut an) {
            g.task_list = self.walk_raw(head, "init_task.tasks", &mut an);
        }
        // Room for the tasks the kernel counts, up to a bound: its count is only a hint.
        let expected = g.nr_threads.map_or(0, |n| usize::try_from(n).unwrap_or(0)).min(1 << 16) + 1;
        g.tasks.reserve(expected);
        // Leaders: init_task, then forward, then what only the backward walk met.
        let mut leaders = vec![(init, false)];
        let mut seen = AddrSet::with_capacity_and_hasher(expected, Default::default());
        seen.insert(init);
        for l in g.task_list.forward.iter().chain(&g.task_list.backward) {
            if let Some(t) = owner(l.node, self.o.task.tasks, "task_struct", &mut an)
                && seen.insert(t)
            {
                leaders.push((t, true));
            }
        }
        let cap = self.limits.max_list;
        let node = NodeRead::new(&self.o.task, &self.o.list);
        let layout = &node.layout;
        let mut groups = AddrMap::default();
        let mut queue: std::collections::VecDeque<(Gva, bool)> = leaders.into();
        'read: while !queue.is_empty() && !self.meter.exhausted(self.k) {
            let batch: Vec<(Gva, bool)> = queue.drain(..queue.len().min(BATCH)).collect();
            let addrs: Vec<Gva> = batch.iter().map(|b| b.0).collect();
            let reads = layout.read_each(self.k, &addrs);
            // The thread groups of the batch not met before, walked together.
            let mut new = AddrSet::default();
            let signals: Vec<Gva> = (0..batch.len())
                .filter_map(|i| reads.get(i).ok()?.ptr(self.o.task.signal))
                .filter(|&s| plausible(self.k, s, 8) && !groups.contains_key(&s) && new.insert(s))
                .collect();
            groups.extend(signals.iter().copied().zip(self.groups(&signals, &mut an)));
            for (i, task) in batch.into_iter().enumerate() {
                let read = reads.get(i);
                if g.tasks.len() >= cap {
                    an.push(Anomaly::StepLimit { list: "task graph".into(), limit: cap });
                    break 'read;
                }
                let Some(t) = self.task_node(task, read, &node, &mut groups, &mut an) else { continue };
                // Threads after the leaders: queued at the back, each once.
                for &th in t.threads.iter() {
                    if seen.insert(th) {
                        queue.push_back((th, false));
                    }
                }
                g.tasks.push(t);
            }
        }
        g.anomalies = an;
        g
    }

    pub(crate) fn module_graph(&self) -> ModuleGraph {
        let mut an = Vec::new();
        let mo = &self.o.module;
        let list = self.walk_raw(self.addrs.modules, "modules", &mut an);
        let mut seen = AddrSet::default();
        let mut modules = Vec::new();
        for l in list.forward.iter().chain(&list.backward) {
            let Some(addr) = owner(l.node, mo.list, "struct module", &mut an) else { continue };
            if !seen.insert(addr) {
                continue;
            }
            let mut pages = l.pages.clone();
            let state = match member(addr, mo.state).and_then(|at| self.k.read_u32(at)) {
                Ok(v) => {
                    if let Ok(at) = member(addr, mo.state) {
                        push_pages(self, at, 4, &mut pages);
                    }
                    Some(i64::from(v as i32))
                }
                Err(e) => {
                    an.push(Anomaly::Unreadable { what: "module.state".into(), addr, error: e.to_string() });
                    None
                }
            };
            let name = member(addr, mo.name)
                .and_then(|at| self.k.read_vec(at, mo.name_len as usize))
                .ok()
                .and_then(|b| Bytes(&b).cstr(0, mo.name_len).and_then(Result::ok));
            modules.push(ModuleNode { addr, list: l.node, name, state, pages: sorted(pages) });
        }
        let mut valid_states: Vec<i64> = mo.states.iter().map(|(v, _)| *v).collect();
        if valid_states.is_empty() {
            // MODULE_STATE_LIVE, COMING, GOING, UNFORMED: unchanged since 3.8.
            valid_states = vec![0, 1, 2, 3];
        }
        ModuleGraph { list, modules, valid_states, anomalies: an }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::views::Limits;
    use crate::views::fixture::{Fx, layout::*};

    /// init, kthreadd, a shell with a child of three threads, and a kworker.
    fn family() -> (Fx, [u64; 7]) {
        let mut fx = Fx::new();
        let init = fx.process(1, fx.init_task, 0, "init", Some("/sbin/init"));
        let kthreadd = fx.kthread(2, fx.init_task, "kthreadd");
        let sh = fx.process(100, init, 0, "sh", Some("sh"));
        let app = fx.process(101, sh, 0, "app", Some("app"));
        let t1 = fx.thread(app, 102, "app-1");
        let t2 = fx.thread(app, 5000, "app-2");
        let kw = fx.kthread(3, kthreadd, "kworker/0:0");
        (fx, [init, kthreadd, sh, app, t1, t2, kw])
    }

    #[test]
    fn the_graph_as_built() {
        let (fx, [init, kthreadd, sh, app, t1, t2, kw]) = family();
        let g = fx.kernel(Limits::default()).task_graph();
        assert!(g.anomalies.is_empty(), "{:?}", g.anomalies);
        let addrs: Vec<u64> = g.tasks.iter().map(|t| t.addr.raw()).collect();
        assert_eq!(addrs, [fx.init_task, init, kthreadd, sh, app, kw, t1, t2]);
        let fwd: Vec<u64> = g.task_list.forward.iter().map(|l| l.node.raw() - TASKS).collect();
        let mut bwd: Vec<u64> = g.task_list.backward.iter().map(|l| l.node.raw() - TASKS).collect();
        bwd.reverse();
        assert_eq!(fwd, [init, kthreadd, sh, app, kw]);
        assert_eq!(fwd, bwd);
        assert!(g.task_list.forward_closed && g.task_list.backward_closed);
        assert_eq!(g.nr_threads, Some(7));
        assert!(!g.nr_threads_pages.is_empty());

        let t = |a: u64| g.task(Gva::new(a)).expect("found");
        let it = t(fx.init_task);
        assert_eq!((it.pid, it.real_parent.raw(), it.on_task_list), (0, fx.init_task, false));
        assert_eq!(it.children.iter().map(|c| c.raw()).collect::<Vec<_>>(), [init, kthreadd]);
        assert_eq!(t(kthreadd).children.iter().map(|c| c.raw()).collect::<Vec<_>>(), [kw]);
        let a = t(app);
        assert_eq!((a.pid, a.tgid, a.nr_threads, a.real_parent.raw(), a.parent.raw()), (101, 101, Some(3), sh, sh));
        assert_eq!(a.threads.iter().map(|c| c.raw()).collect::<Vec<_>>(), [app, t1, t2]);
        let th = t(t2);
        assert_eq!((th.pid, th.tgid, th.group_leader.raw(), th.signal, th.mm), (5000, 101, app, a.signal, a.mm));
        assert!(!th.on_task_list && th.children.is_empty() && th.children_complete);
        // Pages: the task's own, and its signal struct's.
        assert!(a.pages.windows(2).all(|w| w[0] < w[1]) && !a.pages.is_empty());
        assert!(a.pages.contains(&((app - crate::views::fixture::DIRECT) >> 12)));
    }

    #[test]
    fn the_pid_table_as_built() {
        let (fx, [init, kthreadd, sh, app, t1, t2, kw]) = family();
        let p = fx.kernel(Limits::default()).pid_table();
        assert!(p.available && p.anomalies.is_empty(), "{:?}", p.anomalies);
        let got: Vec<(u64, Option<i32>, Vec<u64>)> =
            p.entries.iter().map(|e| (e.nr, e.number, e.tasks.iter().map(|t| t.raw()).collect())).collect();
        let want: Vec<(u64, Option<i32>, Vec<u64>)> =
            [(1, init), (2, kthreadd), (3, kw), (100, sh), (101, app), (102, t1), (5000, t2)]
                .into_iter()
                .map(|(nr, t)| (nr, Some(nr as i32), vec![t]))
                .collect();
        assert_eq!(got, want);
        assert_eq!(p.get(5000).map(|e| e.pid.raw()), fx.pids.get(&5000).copied());
        assert!(p.entries.iter().all(|e| !e.pages.is_empty()));
    }

    #[test]
    fn a_pid_table_whose_head_is_an_entry_holds_index_0() {
        let mut fx = Fx::new();
        let pid = fx.alloc(64);
        fx.w64(fx.pid_ns + XA_HEAD, pid);
        let p = fx.kernel(Limits::default()).pid_table();
        assert_eq!(p.entries.iter().map(|e| (e.nr, e.pid.raw())).collect::<Vec<_>>(), [(0, pid)]);
        assert!(p.entries[0].tasks.is_empty());
    }

    #[test]
    fn pid_table_corruption_is_an_anomaly() {
        let (mut fx, _) = family();
        let root = fx.r64(fx.pid_ns + XA_HEAD) - 2;
        // The root (shift 12) points at a child whose shift is not 6; a slot holds a
        // value entry; another a pointer to itself (a cycle through a bad shift).
        let child = fx.r64(root + SLOTS) - 2;
        fx.write_bytes(child, &[12]);
        fx.w64(root + SLOTS + 8 * 5, 0x1235);
        fx.w64(root + SLOTS + 8 * 6, root | 2);
        let p = fx.kernel(Limits::default()).pid_table();
        assert!(p.anomalies.iter().any(|a| matches!(a, Anomaly::InvalidField { field, .. } if field == "shift")));
        assert!(p.anomalies.iter().any(|a| matches!(a, Anomaly::BadPointer { value, .. } if value.raw() == 0x1235)));
        assert!(p.anomalies.iter().any(|a| matches!(a, Anomaly::ListCycle { .. })), "{:?}", p.anomalies);
        // Only pid 5000's subtree (under slot 1) is left.
        assert_eq!(p.entries.iter().map(|e| e.nr).collect::<Vec<_>>(), [5000]);
    }

    #[test]
    fn a_broken_task_list_is_walked_both_ways_as_it_is() {
        let (mut fx, [init, kthreadd, sh, app, _, _, kw]) = family();
        // sh->next skips app: forward misses app, backward still has it.
        fx.w64(sh + TASKS, kw + TASKS);
        let g = fx.kernel(Limits::default()).task_graph();
        let fwd: Vec<u64> = g.task_list.forward.iter().map(|l| l.node.raw()).collect();
        let bwd: Vec<u64> = g.task_list.backward.iter().map(|l| l.node.raw()).collect();
        assert_eq!(fwd, [init, kthreadd, sh, kw]);
        assert_eq!(bwd, [kw, app, sh, kthreadd, init]);
        let app_node = g.task(Gva::new(app)).expect("app found by the backward walk");
        assert!(app_node.on_task_list);
        // kw->prev is app, not sh: the link is recorded as read.
        assert_eq!(g.task_list.forward[3].prev.raw(), app);
    }

    #[test]
    fn modules_both_ways() {
        let mut fx = Fx::new();
        let a = fx.module("a", 100, 0, &[], &[]);
        let b = fx.module("b", 100, 0, &[], &[]);
        fx.w32(b + MODULE_STATE, 9);
        let g = fx.kernel(Limits::default()).module_graph();
        assert!(g.anomalies.is_empty(), "{:?}", g.anomalies);
        let got: Vec<(u64, Option<&str>, Option<i64>)> =
            g.modules.iter().map(|m| (m.addr.raw(), m.name.as_deref(), m.state)).collect();
        assert_eq!(got, [(a, Some("a"), Some(0)), (b, Some("b"), Some(9))]);
        assert_eq!(g.valid_states, [0, 1, 2, 3]);
        assert_eq!(g.list.backward.len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Whatever the bytes of tasks, signal structs, PIDs and IDR nodes, the raw
        /// walks end, stay within their bounds, and do not panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            junk in prop::collection::vec((0u64..0x8000, crate::views::fixture::hostile_u64()), 1..96),
            small in prop::collection::vec((0u64..0x8000, 0u64..16), 0..16),
        ) {
            let (mut fx, _) = family();
            fx.module("m", 100, 0, &["x"], &["y"]);
            let base = fx.init_task;
            for (off, v) in junk {
                fx.w64(base + (off & !7), v);
            }
            // Small values where tags and shifts live.
            for (off, v) in small {
                fx.write_bytes(base + off, &[v as u8]);
            }
            let k = fx.kernel(Limits { max_list: 64, max_cmdline: 4096, max_module_symbols: 64, ..Limits::default() });
            let g = k.task_graph();
            prop_assert!(g.tasks.len() <= 64);
            prop_assert!(g.task_list.forward.len() <= 64 && g.task_list.backward.len() <= 64);
            let p = k.pid_table();
            prop_assert!(p.entries.len() <= 64);
            let _ = k.module_graph();
        }
    }
}
