//! A red-black tree (`struct rb_root`) walked in order, bounded: every node
//! pointer checked, each node visited at most once, at most `limit` nodes.

use vmscope_mem::{Gva, PhysMem};

use super::{AddrSet, Anomaly, plausible};
use crate::kmem::{KernelMem, member};

/// Where a tree's links are, and what to call it in anomalies.
pub(crate) struct Tree<'n> {
    pub name: &'n str,
    /// `rb_node.rb_left`, `rb_node.rb_right`.
    pub left: u64,
    pub right: u64,
    pub limit: usize,
}

impl Tree<'_> {
    fn child<M: PhysMem>(&self, k: &KernelMem<M>, node: Gva, off: u64, an: &mut Vec<Anomaly>) -> Option<Gva> {
        let at = member(node, off).ok()?;
        match k.read_ptr(at) {
            Ok(p) if p.raw() == 0 => None,
            Ok(p) if plausible(k, p, 8) => Some(p),
            Ok(p) => {
                an.push(Anomaly::BadPointer { what: format!("{} child", self.name), at, value: p });
                None
            }
            Err(e) => {
                an.push(Anomaly::Unreadable { what: format!("{} node", self.name), addr: node, error: e.to_string() });
                None
            }
        }
    }

    /// The nodes (their `rb_node`s) of the tree whose top node is `top`, smallest
    /// first. A bad branch is recorded and left out; the rest is still walked.
    pub fn in_order<M: PhysMem>(&self, k: &KernelMem<M>, top: Option<Gva>, an: &mut Vec<Anomaly>) -> Vec<Gva> {
        let mut out = Vec::new();
        let mut seen = AddrSet::default();
        let mut stack: Vec<Gva> = Vec::new();
        let mut cur = top;
        loop {
            while let Some(n) = cur {
                if !seen.insert(n) {
                    an.push(Anomaly::ListCycle { list: self.name.into(), node: n });
                    break;
                }
                if seen.len() > self.limit {
                    an.push(Anomaly::StepLimit { list: self.name.into(), limit: self.limit });
                    return out;
                }
                stack.push(n);
                cur = self.child(k, n, self.left, an);
            }
            let Some(n) = stack.pop() else { return out };
            out.push(n);
            cur = self.child(k, n, self.right, an);
        }
    }
}
