//! Who a task is: its credentials and capabilities (`struct cred`), the
//! namespaces it lives in (`task->nsproxy`, its `struct pid`, its cred's user
//! namespace) and its cgroup (`task->cgroups->dfl_cgrp`, named by kernfs).

use serde::{Deserialize, Serialize};

use crate::types::TypeRef;
use crate::{Error, Profile, Result};

/// `struct cred`: every id and capability set `/proc/PID/status` prints, and the
/// supplementary groups. (Each id a `kuid_t`/`kgid_t`, read as its `val`; each
/// capability set 64 bits, whether `kernel_cap_struct.cap[2]` (to 6.2) or
/// `kernel_cap_t.val`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CredsOffsets {
    pub uid: u64,
    pub euid: u64,
    pub suid: u64,
    pub fsuid: u64,
    pub gid: u64,
    pub egid: u64,
    pub sgid: u64,
    pub fsgid: u64,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bset: u64,
    pub cap_ambient: u64,
    /// `cred.group_info`; `group_info.ngroups` (an `int`) and `.gid[0]`.
    pub group_info: u64,
    pub ngroups: u64,
    pub groups: u64,
    /// `cred.user_ns`.
    pub user_ns: u64,
}

impl CredsOffsets {
    /// Bytes of `struct cred` that hold every field read.
    pub fn span(&self) -> u64 {
        [self.fsgid, self.cap_ambient, self.group_info, self.user_ns].into_iter().max().unwrap_or(0) + 8
    }

    pub(crate) fn resolve(p: &Profile) -> Result<CredsOffsets> {
        let off = |f: &str| p.offset_of("cred", f);
        let cap = |f: &str| -> Result<u64> {
            let fi = p.field("cred", f)?;
            match crate::types::size_of(p.types(), &fi.ty) {
                Some(8) => Ok(fi.offset),
                other => Err(Error::layout(format!("cred.{f}"), format!("{other:?} bytes, not 8"))),
            }
        };
        Ok(CredsOffsets {
            uid: off("uid.val")?,
            euid: off("euid.val")?,
            suid: off("suid.val")?,
            fsuid: off("fsuid.val")?,
            gid: off("gid.val")?,
            egid: off("egid.val")?,
            sgid: off("sgid.val")?,
            fsgid: off("fsgid.val")?,
            cap_inheritable: cap("cap_inheritable")?,
            cap_permitted: cap("cap_permitted")?,
            cap_effective: cap("cap_effective")?,
            cap_bset: cap("cap_bset")?,
            cap_ambient: cap("cap_ambient")?,
            group_info: off("group_info")?,
            ngroups: p.offset_of("group_info", "ngroups")?,
            groups: p.offset_of("group_info", "gid")?,
            user_ns: off("user_ns")?,
        })
    }
}

/// The namespaces of a task, each found by a pointer and named by its
/// `ns_common.inum` (the inode number `/proc/PID/ns/*` links show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NsOffsets {
    /// `task_struct.nsproxy`.
    pub task_nsproxy: u64,
    /// `task_struct.thread_pid` (its `struct pid`: the pid namespace is that of
    /// `numbers[level]`).
    pub task_thread_pid: u64,
    /// `pid.level` (a `u32`), `pid.numbers[0].ns`, and the bytes of a `struct upid`.
    pub pid_level: u64,
    pub pid_numbers_ns: u64,
    pub upid_size: u64,
    /// Each `nsproxy` member a link comes from: `(link name, offset in nsproxy,
    /// offset of ns_common.inum in the namespace it points to)`.
    pub proxied: Vec<(String, u64, u64)>,
    /// `pid_namespace.ns.inum`, `user_namespace.ns.inum`.
    pub pid_inum: u64,
    pub user_inum: u64,
}

impl NsOffsets {
    /// The `/proc/PID/ns` links that come from `nsproxy`, and the namespace type
    /// each points to.
    const PROXIED: &'static [(&'static str, &'static str, &'static str)] = &[
        ("cgroup", "cgroup_ns", "cgroup_namespace"),
        ("ipc", "ipc_ns", "ipc_namespace"),
        ("mnt", "mnt_ns", "mnt_namespace"),
        ("net", "net_ns", "net"),
        ("pid_for_children", "pid_ns_for_children", "pid_namespace"),
        ("time", "time_ns", "time_namespace"),
        ("time_for_children", "time_ns_for_children", "time_namespace"),
        ("uts", "uts_ns", "uts_namespace"),
    ];

    pub(crate) fn resolve(p: &Profile) -> Result<NsOffsets> {
        let inum = |ty: &str| p.offset_of(ty, "ns.inum");
        let mut proxied = Vec::new();
        for (link, member, ty) in Self::PROXIED {
            // A kernel without the namespace (CONFIG_TIME_NS=n) has no member.
            if let (Ok(at), Ok(i)) = (p.offset_of("nsproxy", member), inum(ty)) {
                proxied.push(((*link).to_owned(), at, i));
            }
        }
        let numbers = p.field("pid", "numbers")?;
        let TypeRef::Array { elem, .. } = &numbers.ty else {
            return Err(Error::layout("pid.numbers", "not an array"));
        };
        let upid_size =
            crate::types::size_of(p.types(), elem).ok_or_else(|| Error::layout("pid.numbers[]", "no size"))?;
        Ok(NsOffsets {
            task_nsproxy: p.offset_of("task_struct", "nsproxy")?,
            task_thread_pid: p.offset_of("task_struct", "thread_pid")?,
            pid_level: p.offset_of("pid", "level")?,
            pid_numbers_ns: numbers.offset + p.offset_of("upid", "ns")?,
            upid_size,
            proxied,
            pid_inum: inum("pid_namespace")?,
            user_inum: inum("user_namespace")?,
        })
    }
}

/// A task's cgroup on the unified (v2) hierarchy, and the kernfs names of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CgroupOffsets {
    /// `task_struct.cgroups` (a `css_set`), `css_set.dfl_cgrp`, `cgroup.kn`.
    pub task_cgroups: u64,
    pub dfl_cgrp: u64,
    pub kn: u64,
    /// `kernfs_node.parent`, `.name`.
    pub kn_parent: u64,
    pub kn_name: u64,
}

impl CgroupOffsets {
    pub(crate) fn resolve(p: &Profile) -> Result<CgroupOffsets> {
        Ok(CgroupOffsets {
            task_cgroups: p.offset_of("task_struct", "cgroups")?,
            dfl_cgrp: p.offset_of("css_set", "dfl_cgrp")?,
            kn: p.offset_of("cgroup", "kn")?,
            kn_parent: p.offset_of("kernfs_node", "parent")?,
            kn_name: p.offset_of("kernfs_node", "name")?,
        })
    }
}
