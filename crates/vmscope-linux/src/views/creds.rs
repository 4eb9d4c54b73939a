//! Credentials and capabilities: a process's `real_cred`, as the `Uid`, `Gid`,
//! `Groups` and `Cap*` lines of `/proc/PID/status` show it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::process::{Leader, PerProcess};
use super::{Anomaly, Fields, count, follow, plausible, with_struct};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::CredsOffsets;

/// `NGROUPS_MAX`: the most supplementary groups a cred holds.
const NGROUPS_MAX: u32 = 65536;

/// The credentials of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The process.
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// Real, effective, saved and filesystem user ids (the `Uid:` line).
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem group ids (the `Gid:` line).
    pub gid: [u32; 4],
    /// Supplementary groups (the `Groups:` line).
    pub groups: Vec<u32>,
    /// `CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`.
    pub cap_inheritable: u64,
    /// Permitted.
    pub cap_permitted: u64,
    /// Effective.
    pub cap_effective: u64,
    /// Bounding set.
    pub cap_bounding: u64,
    /// Ambient.
    pub cap_ambient: u64,
    /// Address of the `struct cred`.
    pub cred: Gva,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

impl Credentials {
    /// The capability sets in the order `/proc/PID/status` prints them: `CapInh`,
    /// `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`.
    pub fn caps(&self) -> [(&'static str, u64); 5] {
        [
            ("CapInh", self.cap_inheritable),
            ("CapPrm", self.cap_permitted),
            ("CapEff", self.cap_effective),
            ("CapBnd", self.cap_bounding),
            ("CapAmb", self.cap_ambient),
        ]
    }

    /// The lines of `/proc/PID/status` these are: `Uid:`, `Gid:`, `Groups:` and the
    /// five `Cap*:` lines, as the kernel prints them (`Groups:` with the trailing
    /// space it has always had).
    pub fn status_lines(&self) -> String {
        let ids = |v: &[u32; 4]| v.map(|i| i.to_string()).join("\t");
        let groups = self.groups.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        let mut s = format!("Uid:\t{}\nGid:\t{}\nGroups:\t{groups} \n", ids(&self.uid), ids(&self.gid));
        for (name, set) in self.caps() {
            let _ = writeln!(s, "{name}:\t{set:016x}");
        }
        s
    }
}

impl<M: PhysMem> Ctx<'_, M> {
    fn supplementary_groups(&self, co: &CredsOffsets, gi: Gva, an: &mut Vec<Anomaly>) -> Vec<u32> {
        let Some(n) = count(self.k, (gi, co.ngroups), ("group_info", "ngroups"), NGROUPS_MAX, an) else {
            return Vec::new();
        };
        let read = member(gi, co.groups).and_then(|at| self.k.read_vec(at, n as usize * 4));
        match read {
            Ok(b) => b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "group_info.gid".into(), addr: gi, error: e.to_string() });
                Vec::new()
            }
        }
    }

    fn credentials_of(&self, co: &CredsOffsets, leader: &Leader) -> Credentials {
        let mut an = Vec::new();
        let mut c = Credentials { pid: leader.pid, comm: leader.comm.clone(), ..Credentials::default() };
        if let Some(cred) = follow(self.k, leader.task, self.o.task.real_cred, "task.real_cred", &mut an) {
            c.cred = cred;
            let got = with_struct(self.k, cred, co.span(), "cred", &mut an, |b| {
                let ids = |o: [u64; 4]| -> Option<[u32; 4]> {
                    Some([b.u32(o[0])?, b.u32(o[1])?, b.u32(o[2])?, b.u32(o[3])?])
                };
                Some((
                    ids([co.uid, co.euid, co.suid, co.fsuid])?,
                    ids([co.gid, co.egid, co.sgid, co.fsgid])?,
                    [
                        b.u64(co.cap_inheritable)?,
                        b.u64(co.cap_permitted)?,
                        b.u64(co.cap_effective)?,
                        b.u64(co.cap_bset)?,
                        b.u64(co.cap_ambient)?,
                    ],
                    b.ptr(co.group_info)?,
                ))
            })
            .flatten();
            if let Some((uid, gid, caps, gi)) = got {
                (c.uid, c.gid) = (uid, gid);
                [c.cap_inheritable, c.cap_permitted, c.cap_effective, c.cap_bounding, c.cap_ambient] = caps;
                if plausible(self.k, gi, 8) {
                    c.groups = self.supplementary_groups(co, gi, &mut an);
                } else if gi.raw() != 0 {
                    an.push(Anomaly::BadPointer { what: "cred.group_info".into(), at: cred, value: gi });
                }
            }
        }
        c.anomalies = an;
        c
    }

    /// The credentials of process `pid`, or of every process (`None`: no such
    /// process).
    pub(crate) fn credentials(&self, pid: Option<i32>) -> Option<PerProcess<Credentials>> {
        let co = self.o.creds.as_ref()?;
        self.per_process(pid, |l| self.credentials_of(co, l))
    }
}
