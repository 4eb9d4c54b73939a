//! The options a file system adds itself to a mountinfo line (its super block's
//! `show_options`), for the ones rebuilt here: tmpfs — devtmpfs and a tmpfs rootfs
//! too — (`shmem_show_options`), devpts (`devpts_show_options`), cgroup2
//! (`cgroup_show_options`), ext4 — ext2 and ext3 when ext4 mounts them —
//! (`_ext4_show_options`), proc (`proc_show_options`), debugfs, tracefs and ramfs
//! (owner and mode), hugetlbfs (`hugetlbfs_show_options`) and the BPF file system
//! (`bpf_show_options`). Others get the generic options only.

mod bpf;
mod cgroup2;
mod devpts;
mod ext4;
mod hugetlbfs;
mod modefs;
mod proc;
mod shmem;

use vmscope_mem::{Gva, PhysMem};

use super::{Anomaly, plausible};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::FsOptionOffsets;

/// A super block whose file system's own options are wanted.
#[derive(Debug, Clone, Copy)]
pub(in crate::views) struct OwnSb<'a> {
    pub at: Gva,
    pub op: Gva,
    pub info: Gva,
    pub flags: u64,
    pub fs_type: &'a str,
    /// The mount's root dentry (what `show_options` is given).
    pub root: Gva,
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The options super block `sb`'s file system adds (its `s_op` and
    /// `s_fs_info` given), if it is one rebuilt here (`Some("")` when it adds none;
    /// `None` for one not rebuilt).
    pub(in crate::views) fn fs_options(
        &self,
        fo: &FsOptionOffsets,
        sb: OwnSb<'_>,
        an: &mut Vec<Anomaly>,
    ) -> Option<String> {
        let known = &self.addrs.known;
        let (op, info) = (sb.op, sb.info);
        if sb.fs_type == "cgroup2" {
            return self.cgroup2_options(fo.cgroup2.as_ref()?, an);
        }
        let modefs = [
            (known.debugfs_sops, fo.debugfs, modefs::DEBUGFS_DEFAULT_MODE, "debugfs_fs_info"),
            (known.tracefs_sops, fo.tracefs, modefs::TRACEFS_DEFAULT_MODE, "tracefs_fs_info"),
            (known.ramfs_ops, fo.ramfs, modefs::RAMFS_DEFAULT_MODE, "ramfs_fs_info"),
        ];
        if Some(op) == known.bpf_super_ops {
            return self.bpf_options(fo.bpf.as_ref()?, sb, an);
        }
        let ours = [known.shmem_ops, known.devpts_sops, known.ext4_sops, known.proc_sops, known.hugetlbfs_ops]
            .contains(&Some(op))
            || modefs.iter().any(|(ops, ..)| *ops == Some(op));
        if ours && !plausible(self.k, info, 8) {
            an.push(Anomaly::BadPointer { what: "super_block.s_fs_info".into(), at: sb.at, value: info });
            return None;
        }
        if Some(op) == known.ext4_sops {
            return self.ext4_options(fo.ext4.as_ref()?, sb, an);
        }
        if Some(op) == known.proc_sops {
            return self.proc_options(fo.proc.as_ref()?, info, an);
        }
        if Some(op) == known.shmem_ops {
            return self.shmem_options(fo.shmem.as_ref()?, info, an);
        }
        if Some(op) == known.hugetlbfs_ops {
            return self.hugetlbfs_options(fo.hugetlbfs.as_ref()?, info, an);
        }
        if Some(op) == known.devpts_sops {
            return self.devpts_options(fo.devpts.as_ref()?, info, an);
        }
        if let Some((_, offsets, default, what)) = modefs.iter().find(|(ops, ..)| *ops == Some(op)) {
            return self.mode_options((offsets.as_ref()?, *default), info, what, an);
        }
        None
    }

    /// Whether a file system whose options are not rebuilt adds none: its
    /// `super_operations` has no `show_options`, or it is sysfs (kernfs's
    /// `show_options` asks the hierarchy, and sysfs's has nothing to say).
    pub(in crate::views) fn shows_no_options(&self, fo: &FsOptionOffsets, op: Gva, fs_type: &str) -> bool {
        if fs_type == "sysfs" && op.raw() != 0 && Some(op) == self.addrs.known.kernfs_sops {
            return true;
        }
        let Some(at) = fo.show_options else { return false };
        if op.raw() == 0 {
            // No operations at all: nothing shows options.
            return true;
        }
        if !plausible(self.k, op, 8) {
            return false;
        }
        member(op, at).and_then(|a| self.k.read_u64(a)).is_ok_and(|f| f == 0)
    }
}
