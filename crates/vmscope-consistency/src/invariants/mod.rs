//! Rules of the kernel's own data, checked on vmscope-linux's raw views.
//!
//! The Linux kernel keeps several records of one fact — the task list and the PID
//! table, a parent's children list and each child's `real_parent`, a thread
//! group's list and its count — and updates them together under its locks
//! (`tasklist_lock` for every task rule here, `module_mutex` for modules). A
//! [`Violation`] is two records that disagree. Each names the guest-physical pages
//! (page-frame numbers, GPA >> 12) its evidence was read from, so that
//! [`Violation::origin`] can tell a view torn by reading a running guest
//! (*extrinsic*: a page of the evidence changed during the pass) from the kernel
//! caught mid-update or corrupted (*intrinsic*) — the distinction of Suneja et al.,
//! VEE 2015. In a halted or validated view every violation is intrinsic.
//!
//! ```
//! # use vmscope_consistency::invariants::{Rule, Origin};
//! assert_eq!(Rule::ALL.len(), 11);
//! assert_eq!(Rule::PidTable.name(), "pid-table");
//! ```
//!
//! Rules for views not rebuilt yet have their place here too: once vmscope-linux
//! rebuilds memory maps, `mm->map_count` equal to the number of VMAs in the mm's
//! maple tree (or `mmap` list before 6.1) is checked by a `Rule::MapCount`, on each
//! distinct `mm` of the task graph, in [`check_tasks`].

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use vmscope_linux::{Anomaly, Kernel, Link, ModuleGraph, PidTable, RawList, TaskGraph, TaskNode};
use vmscope_mem::{Gva, PhysMem};

/// `PF_EXITING`: the task is in `do_exit`, past which it may have dropped its mm.
const PF_EXITING: u32 = vmscope_linux::views::graph::PF_EXITING;

/// One rule of the kernel's data that a view breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// What disagrees, with addresses and ids.
    pub detail: String,
    /// Guest page-frame numbers (GPA >> 12) the evidence was read from, sorted.
    pub pages: Vec<u64>,
}

/// Whether a violation is the kernel's own or the reader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// No page of its evidence changed during the pass: the kernel's data itself
    /// disagreed (caught mid-update, or corrupt).
    Intrinsic,
    /// A page of its evidence changed during the pass: the view is torn.
    Extrinsic,
}

impl Violation {
    fn new(rule: Rule, detail: String, pages: impl IntoIterator<Item = u64>) -> Self {
        let pages: BTreeSet<u64> = pages.into_iter().collect();
        Violation { rule, detail, pages: pages.into_iter().collect() }
    }

    /// [`Origin::Extrinsic`] when one of its pages is among `torn_pages` (sorted
    /// page-frame numbers the guest wrote during the pass), else intrinsic.
    pub fn origin(&self, torn_pages: &[u64]) -> Origin {
        // Both sorted: walk them together.
        let (mut i, mut j) = (0, 0);
        while i < self.pages.len() && j < torn_pages.len() {
            match self.pages[i].cmp(&torn_pages[j]) {
                std::cmp::Ordering::Equal => return Origin::Extrinsic,
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
            }
        }
        Origin::Intrinsic
    }
}

macro_rules! rules {
    ($( $(#[doc = $doc:literal])* $v:ident = $name:literal, $describe:literal; )*) => {
        /// The rules checked, each a rule the Linux kernel keeps for its own data.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Rule {
            $( $(#[doc = $doc])* $v, )*
        }

        impl Rule {
            /// Every rule, in the order they are checked.
            pub const ALL: [Rule; [$(Rule::$v),*].len()] = [$(Rule::$v),*];

            /// Its name, kebab-case (as serialized).
            pub fn name(self) -> &'static str {
                match self { $( Rule::$v => $name, )* }
            }

            /// One sentence: what it checks.
            pub fn describe(self) -> &'static str {
                match self { $( Rule::$v => $describe, )* }
            }
        }
    };
}

rules! {
    /// The task list (`init_task.tasks`, thread-group leaders) walked along `next`
    /// meets the same tasks as walked along `prev`, and both walks return to
    /// `init_task`. (A torn read typically shows a task one way only. Tasks met in
    /// another order both ways are a matter of links: [`Rule::TaskListLinks`].)
    TaskListForwardBackward = "task-list-forward-backward",
        "the task list walked forward meets the same tasks as walked backward, and both return to init_task";
    /// On the task list, `node->next->prev == node` and `node->prev->next == node`
    /// for every node read (so the two walks also meet the tasks in one order).
    TaskListLinks = "task-list-links",
        "on the task list, next->prev and prev->next lead back to each node";
    /// Every task's `real_parent`, `parent` and `group_leader` is a task found
    /// (task list, thread lists, or `init_task`, parent of PIDs 1 and 2).
    ParentsListed = "parents-listed",
        "every real_parent, parent and group_leader is a listed task or thread";
    /// A task's `children` list holds its natural children: each child there is a
    /// listed thread-group leader whose `real_parent` is the task, and every
    /// thread-group leader but `init_task` is on its `real_parent`'s children
    /// list. (`copy_process` links `sibling` into `real_parent->children`;
    /// `ptrace` moves only `parent` and links `ptrace_entry` into the tracer's
    /// `ptraced` list, so under ptrace `parent` differs and the children list
    /// still follows `real_parent`. Threads other than leaders are on no children
    /// list; their children are on their own.)
    ChildrenAgree = "children-agree",
        "children lists hold exactly the leaders whose real_parent is the list's owner";
    /// `signal->nr_threads` equals the number of tasks on `signal->thread_head`
    /// (both change together in `copy_process` and `__exit_signal`).
    ThreadCount = "thread-count",
        "signal->nr_threads equals the length of the thread list";
    /// The tasks of one thread list share `tgid`, `signal`, `group_leader` and,
    /// unless exiting (`PF_EXITING`, or an exit state: `exit_mm` drops the mm
    /// before the task leaves the list), `mm`; every task on the task list leads
    /// its group (`group_leader` is itself, `pid == tgid`).
    ThreadGroupShared = "thread-group-shared",
        "threads of a group share tgid, signal, group_leader and mm; task-list tasks lead their groups";
    /// The task list agrees with the PID table (`init_pid_ns.idr`): every task's
    /// pid (leaders and threads; not `init_task`, whose pid 0 is in no table) is
    /// an entry whose `tasks[PIDTYPE_PID]` holds that task, and every entry's
    /// tasks are listed tasks of that pid, one at most, with
    /// `pid->numbers[0].nr` equal to the id.
    PidTable = "pid-table",
        "every task's pid is in the PID table pointing back to it, and every table entry's task is listed";
    /// The kernel's `nr_threads` equals the number of tasks found, threads
    /// included. `copy_process` counts every task it gives a pid (`nr_threads++`
    /// beside `attach_pid`) and `__unhash_process` uncounts it at release, so
    /// zombies count; the idle tasks (`init_task` and the other CPUs'), which have
    /// pid 0, never do.
    NrThreads = "nr-threads",
        "the global nr_threads equals the number of tasks found, idle tasks excluded";
    /// The module list (`modules`) walked along `next` meets the same modules as
    /// walked along `prev`, and both walks return to the head.
    ModuleListForwardBackward = "module-list-forward-backward",
        "the module list walked forward meets the same modules as walked backward";
    /// On the module list, `next->prev` and `prev->next` lead back to each node.
    ModuleListLinks = "module-list-links",
        "on the module list, next->prev and prev->next lead back to each node";
    /// Every module's `state` is a value of `enum module_state` (LIVE 0, COMING 1,
    /// GOING 2, UNFORMED 3).
    ModuleState = "module-state",
        "every module's state is a valid enum module_state";
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Rules broken.
    pub violations: Vec<Violation>,
    /// What the walks met on the way (bad pointers, cycles, limits).
    pub anomalies: Vec<Anomaly>,
    /// Tasks found (`init_task` included).
    pub tasks: usize,
    /// Modules found.
    pub modules: usize,
}

/// Reads the task graph, the PID table and the module list from `k` and checks
/// every rule. For a consistent answer, `k` should read a halted guest or record
/// its pass (see [`crate::ReadSet`]).
pub fn check<M: PhysMem>(k: &Kernel<M>) -> Checked {
    let graph = k.task_graph();
    let pids = k.pid_table();
    let modules = k.module_graph();
    let mut violations = check_tasks(&graph, &pids);
    violations.extend(check_modules(&modules));
    let mut anomalies = graph.anomalies;
    anomalies.extend(pids.anomalies);
    anomalies.extend(modules.anomalies);
    Checked { violations, anomalies, tasks: graph.tasks.len(), modules: modules.modules.len() }
}

fn who(t: &TaskNode) -> String {
    format!("task {} ({}) at {:#x}", t.pid, t.comm, t.addr.raw())
}

/// A raw list's checks: links, and forward against backward.
fn check_list(
    list: &RawList,
    name: &str,
    links_rule: Rule,
    fb_rule: Rule,
    label: &dyn Fn(Gva) -> String,
    out: &mut Vec<Violation>,
) {
    let Some(head) = &list.head else { return };
    let by_node: HashMap<Gva, &Link> = list.links().map(|l| (l.node, l)).collect();
    let mut reported = HashSet::new();
    for l in list.links() {
        for (to, forward) in [(l.next, true), (l.prev, false)] {
            let Some(n) = by_node.get(&to) else { continue };
            let back = if forward { n.prev } else { n.next };
            let key = if forward { (l.node, n.node) } else { (n.node, l.node) };
            if back != l.node && reported.insert(key) {
                let (dir, rev) = if forward { ("next", "prev") } else { ("prev", "next") };
                out.push(Violation::new(
                    links_rule,
                    format!("{name}: {}->{dir} is {} but its {rev} is {}", label(l.node), label(n.node), label(back)),
                    l.pages.iter().chain(&n.pages).copied(),
                ));
            }
        }
    }
    let fwd: Vec<Gva> = list.forward.iter().map(|l| l.node).collect();
    let bwd: Vec<Gva> = list.backward.iter().rev().map(|l| l.node).collect();
    let (fs, bs): (HashSet<Gva>, HashSet<Gva>) = (fwd.iter().copied().collect(), bwd.iter().copied().collect());
    if fs == bs && list.forward_closed && list.backward_closed {
        return;
    }
    // The evidence: the nodes one walk met and the other did not, their neighbours
    // in the walk that met them, and the head (and where a walk stopped).
    let mut evidence = vec![head.node];
    for (walk, other) in [(&fwd, &bs), (&bwd, &fs)] {
        for (i, n) in walk.iter().enumerate() {
            if !other.contains(n) {
                evidence.extend(i.checked_sub(1).map(|j| walk[j]));
                evidence.push(*n);
                evidence.extend(walk.get(i + 1));
            }
        }
    }
    if !list.forward_closed {
        evidence.extend(fwd.last());
    }
    if !list.backward_closed {
        evidence.extend(bwd.first());
    }
    let missing_b: Vec<String> = fwd.iter().filter(|n| !bs.contains(n)).map(|n| label(*n)).collect();
    let missing_f: Vec<String> = bwd.iter().filter(|n| !fs.contains(n)).map(|n| label(*n)).collect();
    let mut detail = format!("{name}: {} nodes forward, {} backward", fwd.len(), bwd.len());
    if !missing_b.is_empty() {
        detail += &format!("; only forward: {}", missing_b.join(", "));
    }
    if !missing_f.is_empty() {
        detail += &format!("; only backward: {}", missing_f.join(", "));
    }
    if !list.forward_closed {
        detail += "; the forward walk did not return to the head";
    }
    if !list.backward_closed {
        detail += "; the backward walk did not return to the head";
    }
    let pages = evidence.iter().filter_map(|n| by_node.get(n)).flat_map(|l| l.pages.iter().copied());
    out.push(Violation::new(fb_rule, detail, pages));
}

/// Whether a walk stopped at its limit: then counts are vmscope's, not the
/// kernel's, and the counting rules are not judged.
fn limited(an: &[Anomaly]) -> bool {
    an.iter().any(|a| matches!(a, Anomaly::StepLimit { .. }))
}

/// Checks every task rule on a task graph and a PID table.
pub fn check_tasks(graph: &TaskGraph, pids: &PidTable) -> Vec<Violation> {
    let mut out = Vec::new();
    let index = graph.index();
    let task = |a: Gva| index.get(&a).map(|&i| &graph.tasks[i]);
    // Task-list nodes are `task_struct.tasks`, the head `init_task.tasks`: name
    // them by their task.
    let tasks_off = graph.task_list.head.as_ref().and_then(|h| h.node.offset_from(graph.init_task));
    let label = |node: Gva| match tasks_off.and_then(|o| node.checked_sub(o)).and_then(task) {
        Some(t) => who(t),
        None => format!("{:#x}", node.raw()),
    };
    check_list(
        &graph.task_list,
        "init_task.tasks",
        Rule::TaskListLinks,
        Rule::TaskListForwardBackward,
        &label,
        &mut out,
    );

    for t in &graph.tasks {
        for (what, p) in [("real_parent", t.real_parent), ("parent", t.parent), ("group_leader", t.group_leader)] {
            if task(p).is_none() {
                out.push(Violation::new(
                    Rule::ParentsListed,
                    format!("{}: {what} {:#x} is not a listed task", who(t), p.raw()),
                    t.pages.iter().copied(),
                ));
            }
        }
    }

    for t in &graph.tasks {
        for &c in &t.children {
            let Some(child) = task(c) else {
                out.push(Violation::new(
                    Rule::ChildrenAgree,
                    format!("{}: child {:#x} on its children list is not a listed task", who(t), c.raw()),
                    t.pages.iter().copied(),
                ));
                continue;
            };
            if child.real_parent != t.addr || child.group_leader != child.addr {
                let why = if child.real_parent != t.addr {
                    format!("whose real_parent is {:#x}", child.real_parent.raw())
                } else {
                    "which does not lead its thread group".to_owned()
                };
                out.push(Violation::new(
                    Rule::ChildrenAgree,
                    format!("{}: child {} on its children list, {why}", who(t), who(child)),
                    t.pages.iter().chain(&child.pages).copied(),
                ));
            }
        }
    }
    for t in graph.tasks.iter().filter(|t| t.addr != graph.init_task && t.group_leader == t.addr) {
        let Some(p) = task(t.real_parent) else { continue }; // parents-listed says so
        if !p.children.contains(&t.addr) {
            let siblings = p.children.iter().filter_map(|c| task(*c)).flat_map(|c| c.pages.iter());
            out.push(Violation::new(
                Rule::ChildrenAgree,
                format!("{}: not on the children list of its real_parent {}", who(t), who(p)),
                t.pages.iter().chain(&p.pages).chain(siblings).copied(),
            ));
        }
    }

    // Thread groups, once each (by signal struct), judged from their leader: the
    // task-list task (or init_task) whose signal it is, else the first met.
    let mut groups: Vec<&TaskNode> = Vec::new();
    let mut seen = HashSet::new();
    for t in graph.tasks.iter().filter(|t| t.on_task_list || t.addr == graph.init_task) {
        if seen.insert(t.signal) {
            groups.push(t);
        }
    }
    for t in &graph.tasks {
        if seen.insert(t.signal) {
            groups.push(t);
        }
    }
    let graph_limited = limited(&graph.anomalies);
    for l in &groups {
        let members: Vec<&TaskNode> = l.threads.iter().filter_map(|a| task(*a)).collect();
        let group_pages = || members.iter().flat_map(|m| m.pages.iter()).chain(&l.pages).copied();
        if let Some(n) = l.nr_threads
            && !graph_limited
            && usize::try_from(n).ok() != Some(l.threads.len())
        {
            out.push(Violation::new(
                Rule::ThreadCount,
                format!("{}: signal->nr_threads is {n}, its thread list holds {}", who(l), l.threads.len()),
                group_pages(),
            ));
        }
        let exiting = |t: &TaskNode| t.flags & PF_EXITING != 0 || t.exit_state != 0;
        for m in &members {
            let mut bad = Vec::new();
            if m.tgid != l.tgid {
                bad.push(format!("tgid {} (leader's {})", m.tgid, l.tgid));
            }
            if m.signal != l.signal {
                bad.push(format!("signal {:#x} (leader's {:#x})", m.signal.raw(), l.signal.raw()));
            }
            if m.group_leader != l.group_leader {
                bad.push(format!("group_leader {:#x} (leader's {:#x})", m.group_leader.raw(), l.group_leader.raw()));
            }
            if m.mm != l.mm && !exiting(m) && !exiting(l) {
                bad.push(format!("mm {:#x} (leader's {:#x})", m.mm.raw(), l.mm.raw()));
            }
            if !bad.is_empty() {
                out.push(Violation::new(
                    Rule::ThreadGroupShared,
                    format!("{} in the thread group of {}: {}", who(m), who(l), bad.join(", ")),
                    m.pages.iter().chain(&l.pages).copied(),
                ));
            }
        }
    }
    for t in graph.tasks.iter().filter(|t| t.on_task_list) {
        if t.group_leader != t.addr || t.pid != t.tgid {
            out.push(Violation::new(
                Rule::ThreadGroupShared,
                format!(
                    "{}: on the task list, but its group_leader is {:#x} and its tgid {}",
                    who(t),
                    t.group_leader.raw(),
                    t.tgid
                ),
                t.pages.iter().copied(),
            ));
        }
    }

    if pids.available && !limited(&pids.anomalies) && !graph_limited {
        for t in graph.tasks.iter().filter(|t| t.addr != graph.init_task) {
            let entry = u64::try_from(t.pid).ok().and_then(|nr| pids.get(nr));
            match entry {
                None => out.push(Violation::new(
                    Rule::PidTable,
                    format!("{}: pid {} is not in the PID table", who(t), t.pid),
                    t.pages.iter().copied(),
                )),
                Some(e) if !e.tasks.contains(&t.addr) => out.push(Violation::new(
                    Rule::PidTable,
                    format!(
                        "{}: PID table entry {} (struct pid {:#x}) holds {:x?}, not this task",
                        who(t),
                        e.nr,
                        e.pid.raw(),
                        e.tasks.iter().map(|a| a.raw()).collect::<Vec<_>>()
                    ),
                    t.pages.iter().chain(&e.pages).copied(),
                )),
                Some(_) => {}
            }
        }
        for e in &pids.entries {
            let mut pages: Vec<u64> = e.pages.clone();
            let mut bad = Vec::new();
            if e.number.is_some_and(|n| u64::try_from(n).ok() != Some(e.nr)) {
                bad.push(format!("its numbers[0].nr is {}", e.number.unwrap_or(0)));
            }
            if e.tasks.len() > 1 {
                bad.push(format!("{} tasks attached", e.tasks.len()));
            }
            for &a in &e.tasks {
                match task(a) {
                    None => bad.push(format!("task {:#x} is not a listed task", a.raw())),
                    Some(t) => {
                        pages.extend(&t.pages);
                        if u64::try_from(t.pid).ok() != Some(e.nr) {
                            bad.push(format!("{} has another pid", who(t)));
                        }
                    }
                }
            }
            if !bad.is_empty() {
                out.push(Violation::new(
                    Rule::PidTable,
                    format!("PID table entry {} (struct pid {:#x}): {}", e.nr, e.pid.raw(), bad.join(", ")),
                    pages,
                ));
            }
        }
    }

    if let Some(n) = graph.nr_threads
        && !graph_limited
    {
        let found = graph.tasks.iter().filter(|t| t.addr != graph.init_task).count();
        if usize::try_from(n).ok() != Some(found) {
            out.push(Violation::new(
                Rule::NrThreads,
                format!("nr_threads is {n}, {found} tasks found (init_task not counted)"),
                graph.nr_threads_pages.iter().chain(graph.tasks.iter().flat_map(|t| &t.pages)).copied(),
            ));
        }
    }
    // Memory maps (`mm->map_count` against the VMAs) go here, per distinct mm.
    out
}

/// Checks the module rules on a module graph.
pub fn check_modules(modules: &ModuleGraph) -> Vec<Violation> {
    let mut out = Vec::new();
    let by_node: HashMap<Gva, &vmscope_linux::ModuleNode> = modules.modules.iter().map(|m| (m.list, m)).collect();
    let label = |n: Gva| match by_node.get(&n) {
        Some(m) => format!("module {} at {:#x}", m.name.as_deref().unwrap_or("?"), m.addr.raw()),
        None => format!("{:#x}", n.raw()),
    };
    check_list(&modules.list, "modules", Rule::ModuleListLinks, Rule::ModuleListForwardBackward, &label, &mut out);
    for m in &modules.modules {
        if let Some(s) = m.state
            && !modules.valid_states.contains(&s)
        {
            out.push(Violation::new(
                Rule::ModuleState,
                format!(
                    "module {} at {:#x}: state {s} is no enum module_state",
                    m.name.as_deref().unwrap_or("?"),
                    m.addr.raw()
                ),
                m.pages.iter().copied(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
