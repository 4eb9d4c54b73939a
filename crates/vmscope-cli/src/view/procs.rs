//! `ps --threads`, `ps --tree` and `pstree`: processes with their threads, and
//! under their parents.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::json;
use vmscope_linux::{Anomaly, Kernel, Process, ProcessTree, ThreadList, TreeNode};
use vmscope_mem::PhysMem;

use super::Output;
use crate::output::{PsRow, ps_table};

/// One line per thread: PID TID PPID UID STATE COMM (the thread's own name).
pub fn threads<M: PhysMem>(technique: &str, k: &Kernel<M>) -> Output {
    let list = k.processes();
    let (threads, mut anomalies) = k.all_threads();
    anomalies.extend(list.anomalies);
    threads_output(technique, &list.processes, threads, anomalies)
}

/// The `ps --threads` table and document of `threads`, each under its process.
pub(crate) fn threads_output(
    technique: &str,
    processes: &[Process],
    threads: Vec<ThreadList>,
    mut anomalies: Vec<Anomaly>,
) -> Output {
    let by_pid: HashMap<i32, &Process> = processes.iter().map(|p| (p.pid, p)).collect();
    let mut table =
        format!("{:>7} {:>7} {:>7} {:>6} {:5} {:16} {}\n", "PID", "TID", "PPID", "UID", "STATE", "COMM", "CMD");
    for t in &threads {
        let Some(p) = by_pid.get(&t.pid) else { continue };
        let cmd = PsRow::from(*p).cmd;
        for th in &t.threads {
            let _ = writeln!(
                table,
                "{:>7} {:>7} {:>7} {:>6} {:5} {:16} {}",
                p.pid, th.tid, p.ppid, p.uid, th.state, th.comm, cmd
            );
        }
    }
    anomalies.extend(threads.iter().flat_map(|t| t.anomalies.iter().cloned()));
    let doc = json!({ "technique": technique, "threads": threads, "anomalies": anomalies });
    Output { doc, table, anomalies, findings: 0 }
}

/// `ps -ef --forest`: the table of `ps`, children under their parents.
pub fn tree<M: PhysMem>(technique: &str, k: &Kernel<M>) -> Output {
    tree_output(technique, k.process_tree())
}

/// The `ps --tree` table and document of `tree`.
pub(crate) fn tree_output(technique: &str, tree: ProcessTree) -> Output {
    let rows: Vec<PsRow> = tree
        .walk()
        .into_iter()
        .map(|(depth, p)| {
            let mut row = PsRow::from(p);
            if depth > 0 {
                row.cmd = format!("{}\\_ {}", " ".repeat(4 * (depth - 1) + 1), row.cmd);
            }
            row
        })
        .collect();
    let anomalies = tree.anomalies.clone();
    let doc = json!({ "technique": technique, "tree": tree.roots, "anomalies": anomalies });
    Output { doc, table: ps_table(&rows), anomalies, findings: 0 }
}

/// A subtree as `pstree -pA` draws it: `name(pid)`, a single child on the same
/// line after `---`, several after `-+-`, ` |-` and `` `- ``.
fn draw(n: &TreeNode, depth: usize) -> Vec<String> {
    let p = &n.process;
    let label = format!("{}({})", p.full_name.as_deref().unwrap_or(&p.comm), p.pid);
    let pad = " ".repeat(label.len());
    // A tree deeper than a terminal is wide is cut, not drawn.
    if n.children.is_empty() || depth > 512 {
        return vec![label];
    }
    let last = n.children.len() - 1;
    let mut lines = Vec::new();
    for (i, c) in n.children.iter().enumerate() {
        let sub = draw(c, depth + 1);
        let (first, rest) = match (n.children.len(), i) {
            (1, _) => ("---", "   "),
            (_, 0) => ("-+-", " | "),
            (_, i) if i == last => (" `-", "   "),
            _ => (" |-", " | "),
        };
        for (j, s) in sub.into_iter().enumerate() {
            let head = if i == 0 && j == 0 { label.as_str() } else { pad.as_str() };
            lines.push(format!("{head}{}{s}", if j == 0 { first } else { rest }));
        }
    }
    lines
}

/// Every process under its parent, each root (init, kthreadd) a tree.
pub fn pstree<M: PhysMem>(technique: &str, k: &Kernel<M>) -> Output {
    pstree_output(technique, k.process_tree())
}

/// `pstree`'s drawing and document of `tree`.
pub(crate) fn pstree_output(technique: &str, tree: ProcessTree) -> Output {
    let mut table = String::new();
    for r in &tree.roots {
        for l in draw(r, 0) {
            table.push_str(&l);
            table.push('\n');
        }
    }
    let anomalies = tree.anomalies.clone();
    let doc = json!({ "technique": technique, "tree": tree.roots, "anomalies": anomalies });
    Output { doc, table, anomalies, findings: 0 }
}

#[cfg(test)]
mod tests {
    use vmscope_linux::{Process, TreeNode};
    use vmscope_mem::Gva;

    fn node(pid: i32, comm: &str, children: Vec<TreeNode>) -> TreeNode {
        let process = Process {
            pid,
            tid: pid,
            ppid: 0,
            comm: comm.into(),
            full_name: None,
            full_name_truncated: false,
            state: 'S',
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            start_time_ns: 0,
            start_boottime_ns: None,
            utime_ns: 0,
            stime_ns: 0,
            rss_pages: None,
            threads: 1,
            kernel_thread: false,
            cmdline: None,
            task: Gva::new(0),
        };
        TreeNode { process, children }
    }

    #[test]
    fn pstree_draws_like_pstree_pa() {
        let t = node(
            1,
            "init",
            vec![
                node(80, "sh", vec![node(81, "sleep", vec![])]),
                node(90, "agent", vec![node(91, "a", vec![]), node(92, "b", vec![])]),
                node(95, "x", vec![]),
            ],
        );
        let got = super::draw(&t, 0).join("\n");
        let want =
            "init(1)-+-sh(80)---sleep(81)\n        |-agent(90)-+-a(91)\n        |           `-b(92)\n        `-x(95)";
        assert_eq!(got, want);
    }
}
