//! What only the integrity checks read: a task's effective `cred`, the scheduler's
//! run queues, the module kset, notifier chains and the line-discipline operations.
//! Resolved from the profile when a check runs (not cached with the views'
//! offsets); each group is optional, and a check whose group is missing is skipped
//! with the reason.

use serde::{Deserialize, Serialize};

use crate::types::TypeRef;
use crate::{Profile, Result};

/// The per-CPU run queues: `struct rq`, its CFS queue's red-black tree, and a task's
/// `sched_entity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SchedOffsets {
    /// `rq.curr`: the task running on the CPU.
    pub rq_curr: u64,
    /// `rq.cfs`: its CFS run queue (`struct cfs_rq`).
    pub rq_cfs: u64,
    /// `cfs_rq.tasks_timeline.rb_root.rb_node`: the tree's root node.
    pub cfs_root: u64,
    pub rb_left: u64,
    pub rb_right: u64,
    /// `task_struct.se`, `sched_entity.run_node`.
    pub task_se: u64,
    pub se_run_node: u64,
    /// `sched_entity.my_q`: a group entity's own queue (`CONFIG_FAIR_GROUP_SCHED`).
    pub se_my_q: Option<u64>,
}

/// `module_kset`'s list of kobjects, and a module's `mkobj`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct KsetOffsets {
    /// `kset.list` (nodes are `kobject.entry`).
    pub kset_list: u64,
    pub kobj_entry: u64,
    /// `kobject.name` (a `char *`).
    pub kobj_name: u64,
    /// `module_kobject.kobj`, `module_kobject.mod`.
    pub mkobj_kobj: u64,
    pub mkobj_mod: u64,
    /// `module.mkobj`.
    pub module_mkobj: u64,
}

/// `struct atomic_notifier_head` and `struct notifier_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NotifierOffsets {
    pub head: u64,
    pub call: u64,
    pub next: u64,
}

/// `struct tty_ldisc_ops`: its size and every function-pointer member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LdiscOffsets {
    /// Bytes of the struct.
    pub size: u64,
    /// Each operation: name and offset.
    pub ops: Vec<(String, u64)>,
}

/// Every offset the checks read beyond the views'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CheckOffsets {
    /// `task_struct.cred`: the effective credentials (`real_cred` is the views').
    pub task_cred: Option<u64>,
    pub sched: Option<SchedOffsets>,
    pub kset: Option<KsetOffsets>,
    pub notifier: Option<NotifierOffsets>,
    pub ldisc: Option<LdiscOffsets>,
}

impl CheckOffsets {
    /// Looks every offset up in `p`; what a kernel lacks stays `None`.
    pub fn resolve(p: &Profile) -> CheckOffsets {
        CheckOffsets {
            task_cred: p.offset_of("task_struct", "cred").ok(),
            sched: Self::sched(p).ok(),
            kset: Self::kset(p).ok(),
            notifier: Self::notifier(p).ok(),
            ldisc: Self::ldisc(p),
        }
    }

    fn sched(p: &Profile) -> Result<SchedOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        Ok(SchedOffsets {
            rq_curr: off("rq", "curr")?,
            rq_cfs: off("rq", "cfs")?,
            cfs_root: off("cfs_rq", "tasks_timeline.rb_root.rb_node")?,
            rb_left: off("rb_node", "rb_left")?,
            rb_right: off("rb_node", "rb_right")?,
            task_se: off("task_struct", "se")?,
            se_run_node: off("sched_entity", "run_node")?,
            se_my_q: off("sched_entity", "my_q").ok(),
        })
    }

    fn kset(p: &Profile) -> Result<KsetOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        Ok(KsetOffsets {
            kset_list: off("kset", "list")?,
            kobj_entry: off("kobject", "entry")?,
            kobj_name: off("kobject", "name")?,
            mkobj_kobj: off("module_kobject", "kobj")?,
            mkobj_mod: off("module_kobject", "mod")?,
            module_mkobj: off("module", "mkobj")?,
        })
    }

    fn notifier(p: &Profile) -> Result<NotifierOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        Ok(NotifierOffsets {
            head: off("atomic_notifier_head", "head")?,
            call: off("notifier_block", "notifier_call")?,
            next: off("notifier_block", "next")?,
        })
    }

    fn ldisc(p: &Profile) -> Option<LdiscOffsets> {
        let def = p.struct_def("tty_ldisc_ops")?;
        let ops: Vec<(String, u64)> = def
            .members
            .iter()
            .filter(|m| matches!(&m.ty, TypeRef::Pointer { to } if **to == TypeRef::Function))
            .map(|m| (m.name.clone(), m.bit_offset / 8))
            .collect();
        (!ops.is_empty()).then_some(LdiscOffsets { size: def.size, ops })
    }
}
