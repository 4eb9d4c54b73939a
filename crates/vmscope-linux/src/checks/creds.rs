//! Shared credentials: a `struct cred` the tasks of different thread groups use
//! while their owners differ — a task whose effective `cred` was pointed at another
//! process's (root's), say, while its `real_cred` still names its own uid. The
//! kernel gives every thread group its own `cred` (`copy_creds` shares one only
//! between threads), so one cred used by several owners is a rootkit's shortcut to
//! root.

use std::collections::BTreeMap;

use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome};
use crate::kmem::member;
use crate::views::Anomaly;

/// One task's use of a cred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub pid: i32,
    pub tgid: i32,
    pub comm: String,
    /// `real_cred->uid`: the task's owner.
    pub real_uid: Option<u32>,
}

/// Which creds (by address, with their `uid`) are shared by different thread
/// groups of different owners: the owners differ among themselves, or from the
/// cred's own uid.
pub(crate) fn suspicious(uses: &BTreeMap<Gva, (Option<u32>, Vec<User>)>) -> Vec<Gva> {
    uses.iter()
        .filter(|(_, (uid, users))| {
            let groups = users.iter().map(|u| u.tgid).collect::<std::collections::BTreeSet<_>>();
            let owners = users.iter().filter_map(|u| u.real_uid).collect::<std::collections::BTreeSet<_>>();
            groups.len() > 1 && (owners.len() > 1 || uid.is_some_and(|uid| owners.iter().any(|&o| o != uid)))
        })
        .map(|(a, _)| *a)
        .collect()
}

pub(super) fn check<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let Some(cred_off) = c.co.task_cred else {
        return Outcome::skipped("the kernel's types have no task_struct.cred");
    };
    let k = c.ctx.k;
    let to = &c.ctx.o.task;
    let uid_of = |cred: Gva| member(cred, c.ctx.o.cred.uid).and_then(|a| k.read_u32(a)).ok();
    let graph = c.ctx.task_graph();
    let mut o = Outcome { anomalies: graph.anomalies, ..Outcome::default() };
    let mut uses: BTreeMap<Gva, (Option<u32>, Vec<User>)> = BTreeMap::new();
    for t in &graph.tasks {
        let read = |off: u64| member(t.addr, off).and_then(|a| k.read_ptr(a));
        let (cred, real) = match (read(cred_off), read(to.real_cred)) {
            (Ok(c), Ok(r)) => (c, r),
            (Err(e), _) | (_, Err(e)) => {
                o.anomalies.push(Anomaly::Unreadable {
                    what: "task_struct creds".into(),
                    addr: t.addr,
                    error: e.to_string(),
                });
                continue;
            }
        };
        o.examined += 1;
        let user = User { pid: t.pid, tgid: t.tgid, comm: t.comm.clone(), real_uid: uid_of(real) };
        uses.entry(cred).or_insert_with(|| (uid_of(cred), Vec::new())).1.push(user);
    }
    for cred in suspicious(&uses) {
        let (uid, users) = &uses[&cred];
        let who: Vec<String> = users
            .iter()
            .map(|u| format!("{} ({}, uid {})", u.pid, u.comm, u.real_uid.map_or("?".into(), |v| v.to_string())))
            .collect();
        o.findings.push(Finding {
            check: CheckKind::SharedCred,
            subject: format!("cred of uid {}", uid.map_or("?".into(), |v| v.to_string())),
            at: Some(cred),
            value: None,
            found: format!("used by tasks {}", who.join(", ")),
            expected: "one cred per thread group, or only tasks of its own uid".into(),
        });
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(pid: i32, tgid: i32, uid: u32) -> User {
        User { pid, tgid, comm: "x".into(), real_uid: Some(uid) }
    }

    #[test]
    fn threads_share_and_owners_do_not() {
        let mut uses = BTreeMap::new();
        // Threads of one group: fine.
        uses.insert(Gva::new(0x1000), (Some(1000), vec![user(10, 10, 1000), user(11, 10, 1000)]));
        // Root's cred used by a process of uid 1000: found.
        uses.insert(Gva::new(0x2000), (Some(0), vec![user(1, 1, 0), user(20, 20, 1000)]));
        // Two root processes on one cred of uid 0: not "a different owner".
        uses.insert(Gva::new(0x3000), (Some(0), vec![user(30, 30, 0), user(31, 31, 0)]));
        // The cred's uid is not its users' (both say 1000, it says 0).
        uses.insert(Gva::new(0x4000), (Some(0), vec![user(40, 40, 1000), user(41, 41, 1000)]));
        assert_eq!(suspicious(&uses), [Gva::new(0x2000), Gva::new(0x4000)]);
    }
}
