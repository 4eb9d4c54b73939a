//! `pids`: the PID table of the initial namespace (`init_pid_ns.idr`) as a view of
//! its own — each id, its `struct pid`, the task attached — with what does not
//! agree with the task list.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::json;
use vmscope_linux::Kernel;
use vmscope_mem::{Gva, PhysMem};

use super::Output;

/// One id of the table.
#[derive(Debug, Serialize)]
struct Row {
    nr: u64,
    pid: Gva,
    /// The attached task (`pid->tasks[PIDTYPE_PID]`), if any.
    task: Option<Gva>,
    /// Its thread-group id and comm, from the task list.
    tgid: Option<i32>,
    comm: Option<String>,
    /// What is odd about the entry.
    notes: Vec<String>,
}

/// Every id, with its task and what disagrees with the task list.
pub fn pids<M: PhysMem>(technique: &str, k: &Kernel<M>) -> anyhow::Result<Output> {
    let table = k.pid_table();
    if !table.available {
        anyhow::bail!("the kernel's types or symbols describe no PID table (init_pid_ns, struct pid, struct xa_node)");
    }
    let graph = k.task_graph();
    let index = graph.index();
    let rows: Vec<Row> = table
        .entries
        .iter()
        .map(|e| {
            let task = e.tasks.first().copied();
            let node = task.and_then(|t| index.get(&t)).map(|&i| &graph.tasks[i]);
            let mut notes = Vec::new();
            if e.number.is_some_and(|n| u64::try_from(n).ok() != Some(e.nr)) {
                notes.push(format!("pid->numbers[0].nr is {}", e.number.unwrap_or_default()));
            }
            match (task, node) {
                (None, _) => notes.push("no task: a process group or session id only".into()),
                (Some(_), None) => notes.push("task not on the task list".into()),
                (Some(_), Some(n)) if u64::try_from(n.pid).ok() != Some(e.nr) => {
                    notes.push(format!("task's pid is {}", n.pid));
                }
                _ => {}
            }
            if e.tasks.len() > 1 {
                notes.push(format!("{} tasks attached", e.tasks.len()));
            }
            Row { nr: e.nr, pid: e.pid, task, tgid: node.map(|n| n.tgid), comm: node.map(|n| n.comm.clone()), notes }
        })
        .collect();
    let mut text = format!("{:>7} {:18} {:18} {:>7} {:16} {}\n", "NR", "PID", "TASK", "TGID", "COMM", "NOTES");
    for r in &rows {
        let task = r.task.map_or("-".into(), |t| format!("{t:#x}"));
        let tgid = r.tgid.map_or("-".into(), |t| t.to_string());
        let comm = r.comm.as_deref().unwrap_or("-");
        let _ = writeln!(text, "{:>7} {:#18x} {:18} {:>7} {:16} {}", r.nr, r.pid, task, tgid, comm, r.notes.join("; "));
    }
    let mut anomalies = table.anomalies;
    anomalies.extend(graph.anomalies);
    let doc = json!({ "technique": technique, "idr_base": table.idr_base, "pids": rows, "anomalies": anomalies });
    Ok(Output { doc, table: text, anomalies, findings: 0 })
}
