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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::views::fixture::Fx;

    /// `rb_node`: parent and colour, right, left (as the kernel lays it out).
    const TREE: Tree<'static> = Tree { name: "test tree", left: 16, right: 8, limit: 64 };

    /// A node whose children are `left` and `right` (0 for none).
    fn node(fx: &mut Fx, left: u64, right: u64) -> u64 {
        let n = fx.alloc(24);
        fx.w64(n + 16, left);
        fx.w64(n + 8, right);
        n
    }

    #[test]
    fn nodes_in_order_and_a_cycle_is_cut() {
        let mut fx = Fx::new();
        let (a, c, e) = (node(&mut fx, 0, 0), node(&mut fx, 0, 0), node(&mut fx, 0, 0));
        let b = node(&mut fx, a, c);
        let d = node(&mut fx, b, e);
        let (k, _) = fx.finish();
        let mut an = Vec::new();
        let got = TREE.in_order(&k, Some(Gva::new(d)), &mut an);
        assert_eq!(got, [a, b, c, d, e].map(Gva::new));
        assert!(an.is_empty(), "{an:?}");

        fx.w64(e + 16, b); // e's left child leads back up
        let (k, _) = fx.finish();
        let got = TREE.in_order(&k, Some(Gva::new(d)), &mut an);
        assert_eq!(got, [a, b, c, d, e].map(Gva::new));
        assert!(matches!(an.as_slice(), [Anomaly::ListCycle { node, .. }] if *node == Gva::new(b)), "{an:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the nodes hold, the walk ends within its limit and does not panic.
        #[test]
        fn arbitrary_nodes_never_panic(junk in prop::collection::vec((0u64..0x400, any::<u64>()), 1..64), pick in 0u64..0x400) {
            let mut fx = Fx::new();
            let base = fx.alloc(0x400);
            for (off, v) in junk {
                // Half the words point back into the area, half are anything.
                let v = if v & 1 == 0 { base + ((v % 0x400) & !7) } else { v };
                fx.w64(base + (off & !7), v);
            }
            let (k, _) = fx.finish();
            let mut an = Vec::new();
            let got = TREE.in_order(&k, Some(Gva::new(base + (pick & !7))), &mut an);
            prop_assert!(got.len() <= TREE.limit);
        }
    }
}
