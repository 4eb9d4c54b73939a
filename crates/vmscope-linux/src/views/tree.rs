//! The process tree, built from a process list by parent PID.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Anomaly;
use super::process::{Process, ProcessList};

/// A process and its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    /// The process.
    pub process: Process,
    /// Its children, by PID.
    pub children: Vec<TreeNode>,
}

/// Every process under its parent; processes whose parent is not in the list
/// (children of the idle task, PID 0: `init` and `kthreadd`) are roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessTree {
    /// Top-level processes, by PID.
    pub roots: Vec<TreeNode>,
    /// Anomalies of the walk the list came from.
    pub anomalies: Vec<Anomaly>,
}

impl ProcessTree {
    /// Builds the tree. A parent chain that loops (a corrupted list) cannot make
    /// it recurse forever: every process is placed at most once.
    pub fn from_list(list: ProcessList) -> ProcessTree {
        let pids: HashSet<i32> = list.processes.iter().map(|p| p.pid).collect();
        let mut children: BTreeMap<i32, Vec<Process>> = BTreeMap::new();
        let mut roots = Vec::new();
        for p in list.processes {
            if p.ppid != p.pid && pids.contains(&p.ppid) {
                children.entry(p.ppid).or_default().push(p);
            } else {
                roots.push(p);
            }
        }
        fn build(p: Process, children: &mut BTreeMap<i32, Vec<Process>>, depth: usize) -> TreeNode {
            let mut kids = if depth < 4096 { children.remove(&p.pid).unwrap_or_default() } else { Vec::new() };
            kids.sort_by_key(|c| c.pid);
            let children_nodes = kids.into_iter().map(|c| build(c, children, depth + 1)).collect();
            TreeNode { process: p, children: children_nodes }
        }
        roots.sort_by_key(|p| p.pid);
        let mut nodes: Vec<TreeNode> = roots.into_iter().map(|p| build(p, &mut children, 0)).collect();
        // Whatever is left sits in a parent cycle: list it at the top.
        for (_, orphans) in std::mem::take(&mut children) {
            nodes.extend(orphans.into_iter().map(|p| TreeNode { process: p, children: Vec::new() }));
        }
        ProcessTree { roots: nodes, anomalies: list.anomalies }
    }

    /// Every process, depth first, with its depth.
    pub fn walk(&self) -> Vec<(usize, &Process)> {
        fn go<'a>(n: &'a TreeNode, d: usize, out: &mut Vec<(usize, &'a Process)>) {
            out.push((d, &n.process));
            for c in &n.children {
                go(c, d + 1, out);
            }
        }
        let mut out = Vec::new();
        for r in &self.roots {
            go(r, 0, &mut out);
        }
        out
    }
}
