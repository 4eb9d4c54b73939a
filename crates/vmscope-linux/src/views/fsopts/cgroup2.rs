//! cgroup2: the flags `cgroup_show_options` prints, global to the hierarchy.

use vmscope_mem::PhysMem;

use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::{CGROUP2_OPTIONS, Cgroup2Offsets};
use crate::views::{Anomaly, scalar};

/// cgroup2's options: each flag of [`CGROUP2_OPTIONS`] the hierarchy's root has set
/// (they are global: every cgroup2 mount shows the same).
pub(crate) fn cgroup2_text(bits: &[Option<u32>; 6], flags: u32) -> String {
    let mut o = String::new();
    for (bit, (_, name)) in bits.iter().zip(CGROUP2_OPTIONS) {
        if bit.is_some_and(|b| flags & b != 0) {
            o.push(',');
            o.push_str(name);
        }
    }
    o
}

impl<M: PhysMem> Ctx<'_, M> {
    /// cgroup2's options (every cgroup2 mount has the same).
    pub(super) fn cgroup2_options(&self, co: &Cgroup2Offsets, an: &mut Vec<Anomaly>) -> Option<String> {
        let at = member(self.addrs.known.cgrp_dfl_root?, co.flags).ok()?;
        let flags = scalar(self.k, at, 4, "cgrp_dfl_root.flags", an)?;
        Some(cgroup2_text(&co.bits, flags as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_options_in_the_kernels_order() {
        let bits = [Some(1 << 3), Some(1 << 4), Some(1 << 19), Some(1 << 20), None, None];
        assert_eq!(cgroup2_text(&bits, (1 << 3) | (1 << 20) | (1 << 21)), ",nsdelegate,memory_recursiveprot");
        assert_eq!(cgroup2_text(&bits, 0), "");
    }
}
