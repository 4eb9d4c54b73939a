//! A task's cgroup on the unified (v2) hierarchy: `task->cgroups->dfl_cgrp`, its
//! path rebuilt from the names of its kernfs nodes, as `/proc/PID/cgroup` prints
//! it on its `0::` line — which it leaves out until cgroup2 has been mounted once
//! (`cgrp_dfl_visible`), and so does this.

use vmscope_mem::{Gva, PhysMem};

use super::{Anomaly, follow, scalar};
use crate::kernel::Ctx;

/// The deepest cgroup path walked (the kernel's default `cgroup.max.depth` is
/// unlimited; a path of more components than this is not one a host has).
const MAX_DEPTH: usize = 4096;

/// The longest cgroup name read (`NAME_MAX`).
const NAME_MAX: usize = 255;

impl<M: PhysMem> Ctx<'_, M> {
    /// Whether `/proc/PID/cgroup` shows the unified hierarchy (`cgrp_dfl_visible`:
    /// cgroup2 has been mounted once); true where the kernel has no such flag or it
    /// cannot be read (recorded).
    pub(crate) fn cgroup2_visible(&self, an: &mut Vec<Anomaly>) -> bool {
        let Some(at) = self.addrs.known.cgrp_dfl_visible else { return true };
        scalar(self.k, at, 1, "cgrp_dfl_visible", an).is_none_or(|v| v != 0)
    }

    /// The cgroup path of task `task`, from the root cgroup (`/` for the root).
    pub(crate) fn cgroup_path(&self, task: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        let co = self.o.cgroup?;
        let cset = follow(self.k, task, co.task_cgroups, "task.cgroups", an)?;
        let cgrp = follow(self.k, cset, co.dfl_cgrp, "css_set.dfl_cgrp", an)?;
        let mut kn = follow(self.k, cgrp, co.kn, "cgroup.kn", an)?;
        let mut names: Vec<Vec<u8>> = Vec::new();
        // The root's node has no parent; its name is not part of the path.
        while let Some(parent) = follow(self.k, kn, co.kn_parent, "kernfs_node.parent", an) {
            if names.len() >= MAX_DEPTH {
                an.push(Anomaly::StepLimit { list: "cgroup path".into(), limit: MAX_DEPTH });
                return None;
            }
            if parent == kn {
                an.push(Anomaly::ListCycle { list: "cgroup path".into(), node: kn });
                return None;
            }
            let name = follow(self.k, kn, co.kn_name, "kernfs_node.name", an)?;
            match self.k.read_cstr(name, NAME_MAX + 1) {
                Ok(n) => names.push(n),
                Err(e) => {
                    an.push(Anomaly::Unreadable { what: "kernfs_node name".into(), addr: name, error: e.to_string() });
                    return None;
                }
            }
            kn = parent;
        }
        let mut path = String::new();
        for n in names.iter().rev() {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(n));
        }
        Some(if path.is_empty() { "/".into() } else { path })
    }
}
