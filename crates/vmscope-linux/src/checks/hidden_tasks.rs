//! Hidden processes: tasks the kernel still knows — on the PID table
//! (`init_pid_ns.idr`), or running or queued on a CPU's run queue (`runqueues`:
//! `curr` and the CFS tree, into group queues) — that are not on the task list or
//! any listed process's thread list. Unlinking a task from `init_task.tasks` is how a
//! DKOM rootkit hides it from `ps`; the kernel keeps scheduling it and finding it by
//! pid.

use std::collections::HashMap;

use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome};
use crate::kmem::{container, member};
use crate::offsets::SchedOffsets;
use crate::views::{AddrSet, Anomaly, plausible};

/// The deepest red-black tree (2 log2(n+1) for 2^20 nodes) and group nesting
/// walked.
const MAX_DEPTH: usize = 64;

/// The nodes of one CPU's CFS trees visited so far.
#[derive(Default)]
struct Visited {
    seen: AddrSet,
    nodes: usize,
}

/// A task met on another structure than the task list, and where.
struct Met {
    task: Gva,
    how: String,
}

pub(super) fn check<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let graph = c.ctx.task_graph();
    let mut o = Outcome { anomalies: graph.anomalies, ..Outcome::default() };
    let mut listed = AddrSet::default();
    for t in &graph.tasks {
        listed.insert(t.addr);
    }
    let mut met = Vec::new();
    let table = c.ctx.pid_table();
    o.anomalies.extend(table.anomalies);
    for e in &table.entries {
        met.extend(e.tasks.iter().map(|&task| Met { task, how: format!("on the PID table as pid {}", e.nr) }));
    }
    match c.co.sched {
        Some(so) => run_queues(c, &so, &mut met, &mut o.anomalies),
        None => o.anomalies.push(Anomaly::InvalidField {
            what: "run queues".into(),
            addr: Gva::new(0),
            field: "struct rq".into(),
            value: "not in the kernel's types: checked against the PID table only".into(),
        }),
    }
    if !table.available && c.co.sched.is_none() {
        return Outcome::skipped("the kernel's types describe neither the PID table nor the run queues");
    }
    o.examined = met.len();
    // Where each unlisted task was met, in the order met.
    let mut unlisted: Vec<(Gva, Vec<String>)> = Vec::new();
    let mut index: HashMap<Gva, usize> = HashMap::new();
    for m in met.into_iter().filter(|m| !listed.contains(&m.task)) {
        let i = *index.entry(m.task).or_insert_with(|| {
            unlisted.push((m.task, Vec::new()));
            unlisted.len() - 1
        });
        unlisted[i].1.push(m.how);
    }
    for (task, how) in unlisted {
        let (pid, comm) = identity(c, task);
        // The idle tasks (pid 0) of CPUs other than 0 are on no task list.
        if pid == Some(0) {
            continue;
        }
        let who = match (pid, &comm) {
            (Some(p), Some(n)) => format!("task {p} ({n})"),
            _ => "task".into(),
        };
        o.findings.push(Finding {
            check: CheckKind::HiddenProcess,
            subject: who,
            at: Some(task),
            value: None,
            found: format!("{}, not on the task list", how.join(" and ")),
            expected: "every task on the PID table and the run queues also on the task list".into(),
        });
    }
    o
}

/// A task's pid and comm, for the finding.
fn identity<M: PhysMem>(c: &CheckCtx<'_, '_, M>, task: Gva) -> (Option<i32>, Option<String>) {
    let k = c.ctx.k;
    let to = &c.ctx.o.task;
    let pid = member(task, to.pid).and_then(|a| k.read_u32(a)).ok().map(|v| v as i32);
    let comm = member(task, to.comm)
        .and_then(|a| k.read_cstr_prefix(a, to.comm_len as usize))
        .ok()
        .map(|s| String::from_utf8_lossy(&s.bytes).into_owned());
    (pid, comm)
}

/// Every task running (`curr`) or queued on a CFS tree of each CPU.
fn run_queues<M: PhysMem>(c: &CheckCtx<'_, '_, M>, so: &SchedOffsets, met: &mut Vec<Met>, an: &mut Vec<Anomaly>) {
    let Some(rqs) = c.symbols.addr("runqueues") else { return };
    let k = c.ctx.k;
    for (cpu, off) in c.ctx.addrs.per_cpu_offsets.iter().enumerate() {
        let rq = Gva::new(rqs.raw().wrapping_add(*off));
        match member(rq, so.rq_curr).and_then(|a| k.read_ptr(a)) {
            Ok(t) if plausible(k, t, 8) => met.push(Met { task: t, how: format!("running on CPU {cpu}") }),
            Ok(t) => an.push(Anomaly::BadPointer { what: "rq.curr".into(), at: rq, value: t }),
            Err(e) => an.push(Anomaly::Unreadable { what: "struct rq".into(), addr: rq, error: e.to_string() }),
        }
        let mut seen = Visited::default();
        if let Ok(cfs) = member(rq, so.rq_cfs) {
            cfs_tree(c, so, cfs, cpu, 0, &mut seen, met, an);
        }
    }
}

/// The tasks of the CFS queue at `cfs` and of the group queues below it.
#[allow(clippy::too_many_arguments)]
fn cfs_tree<M: PhysMem>(
    c: &CheckCtx<'_, '_, M>,
    so: &SchedOffsets,
    cfs: Gva,
    cpu: usize,
    depth: usize,
    seen: &mut Visited,
    met: &mut Vec<Met>,
    an: &mut Vec<Anomaly>,
) {
    let k = c.ctx.k;
    let limit = c.ctx.limits.max_list;
    let root = match member(cfs, so.cfs_root).and_then(|a| k.read_ptr(a)) {
        Ok(r) => r,
        Err(e) => {
            an.push(Anomaly::Unreadable { what: "cfs_rq".into(), addr: cfs, error: e.to_string() });
            return;
        }
    };
    // (node, depth in the tree)
    let mut stack = vec![(root, 0usize)];
    while let Some((node, d)) = stack.pop() {
        if node.raw() == 0 {
            continue;
        }
        if !plausible(k, node, 8) || d > MAX_DEPTH {
            an.push(Anomaly::BadPointer { what: "cfs rb_node".into(), at: cfs, value: node });
            continue;
        }
        if seen.nodes >= limit {
            an.push(Anomaly::StepLimit { list: format!("CPU {cpu} run queue"), limit });
            return;
        }
        seen.nodes += 1;
        if !seen.seen.insert(node) {
            an.push(Anomaly::ListCycle { list: format!("CPU {cpu} run queue"), node });
            continue;
        }
        for off in [so.rb_left, so.rb_right] {
            match member(node, off).and_then(|a| k.read_ptr(a)) {
                Ok(child) => stack.push((child, d + 1)),
                Err(e) => an.push(Anomaly::Unreadable { what: "cfs rb_node".into(), addr: node, error: e.to_string() }),
            }
        }
        let Ok(se) = container(node, so.se_run_node) else { continue };
        let my_q = so.se_my_q.map(|off| member(se, off).and_then(|a| k.read_ptr(a)));
        match my_q {
            Some(Ok(q)) if q.raw() != 0 => {
                if depth < MAX_DEPTH && plausible(k, q, 8) {
                    cfs_tree(c, so, q, cpu, depth + 1, seen, met, an);
                } else {
                    an.push(Anomaly::BadPointer { what: "sched_entity.my_q".into(), at: se, value: q });
                }
            }
            Some(Err(e)) => {
                an.push(Anomaly::Unreadable { what: "sched_entity".into(), addr: se, error: e.to_string() })
            }
            _ => {
                if let Ok(task) = container(se, so.task_se) {
                    met.push(Met { task, how: format!("queued on CPU {cpu}") });
                }
            }
        }
    }
}
