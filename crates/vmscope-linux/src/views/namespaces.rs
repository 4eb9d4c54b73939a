//! Namespaces: the inode number of each namespace a process lives in, as the
//! `/proc/PID/ns/*` links show them (`net:[4026531840]`), and its cgroup.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::process::{Leader, PerProcess};
use super::{Anomaly, count, field, follow};
use crate::kernel::Ctx;
use crate::offsets::NsOffsets;

/// The deepest pid namespace nesting (`MAX_PID_NS_LEVEL`).
const MAX_PID_NS_LEVEL: u32 = 32;

/// The namespaces of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    /// The process.
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// Each `/proc/PID/ns` link the kernel has and its inode number, by name
    /// (`cgroup`, `ipc`, `mnt`, `net`, `pid`, `pid_for_children`, `time`,
    /// `time_for_children`, `user`, `uts`), sorted as `ls` lists them. A
    /// namespace that could not be read is left out (see the anomalies); an
    /// exited process has none but `pid` and `user`.
    pub ns: Vec<(String, u32)>,
    /// Its cgroup on the unified hierarchy, as the `0::` line of
    /// `/proc/PID/cgroup` shows it (from the root cgroup).
    pub cgroup: Option<String>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

impl Namespaces {
    /// The inode number of namespace `name`.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ns.iter().find(|(n, _)| n == name).map(|&(_, i)| i)
    }
}

impl<M: PhysMem> Ctx<'_, M> {
    fn inum(&self, ns: Gva, off: u64, what: &str, an: &mut Vec<Anomaly>) -> Option<u32> {
        let at = field(ns, off, what, an)?;
        self.k
            .read_u32(at)
            .map_err(|e| an.push(Anomaly::Unreadable { what: what.into(), addr: at, error: e.to_string() }))
            .ok()
    }

    /// The pid namespace of task `task` (`task_active_pid_ns`): that of the last
    /// of its `struct pid`'s numbers.
    fn active_pid_ns(&self, no: &NsOffsets, task: Gva, an: &mut Vec<Anomaly>) -> Option<Gva> {
        let pid = follow(self.k, task, no.task_thread_pid, "task.thread_pid", an)?;
        let level = count(self.k, (pid, no.pid_level), ("pid", "level"), MAX_PID_NS_LEVEL, an)?;
        follow(self.k, pid, no.pid_numbers_ns + u64::from(level) * no.upid_size, "upid.ns", an)
    }

    fn namespaces_of(&self, no: &NsOffsets, leader: &Leader, cgroup2_visible: bool) -> Namespaces {
        let mut an = Vec::new();
        let mut ns = Vec::new();
        if let Some(proxy) = follow(self.k, leader.task, no.task_nsproxy, "task.nsproxy", &mut an) {
            for (name, at, inum) in &no.proxied {
                if let Some(n) = follow(self.k, proxy, *at, name, &mut an)
                    && let Some(i) = self.inum(n, *inum, name, &mut an)
                {
                    ns.push((name.clone(), i));
                }
            }
        }
        if let Some(p) = self.active_pid_ns(no, leader.task, &mut an)
            && let Some(i) = self.inum(p, no.pid_inum, "pid_namespace", &mut an)
        {
            ns.push(("pid".into(), i));
        }
        let user = self
            .o
            .creds
            .and_then(|co| Some((follow(self.k, leader.task, self.o.task.real_cred, "task.real_cred", &mut an)?, co)))
            .and_then(|(cred, co)| follow(self.k, cred, co.user_ns, "cred.user_ns", &mut an));
        if let Some(u) = user
            && let Some(i) = self.inum(u, no.user_inum, "user_namespace", &mut an)
        {
            ns.push(("user".into(), i));
        }
        ns.sort();
        let cgroup = if cgroup2_visible { self.cgroup_path(leader.task, &mut an) } else { None };
        Namespaces { pid: leader.pid, comm: leader.comm.clone(), ns, cgroup, anomalies: an }
    }

    /// The namespaces of process `pid`, or of every process (`None`: no such
    /// process). The caller checked that the offsets are there.
    pub(crate) fn namespaces(&self, pid: Option<i32>) -> Option<PerProcess<Namespaces>> {
        let no = self.o.ns.as_ref()?;
        // One flag for every process: read once.
        let mut an = Vec::new();
        let visible = self.cgroup2_visible(&mut an);
        let mut each = self.per_process(pid, |l| self.namespaces_of(no, l, visible))?;
        each.anomalies.extend(an);
        Some(each)
    }
}
