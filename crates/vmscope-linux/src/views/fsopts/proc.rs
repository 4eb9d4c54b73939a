//! proc: `proc_show_options`.

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use crate::kernel::Ctx;
use crate::offsets::{HIDEPID_OPTIONS, ProcOffsets};
use crate::views::{Anomaly, Fields, with_struct};

/// What `proc_show_options` prints from (`struct proc_fs_info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcSb {
    pub pid_gid: u32,
    pub hide_pid: u32,
    pub pidonly: bool,
}

/// proc's options: `gid=` when not root's, `hidepid=` when not off (named by the
/// `HIDEPID_*` values of `hidepid`), `subset=pid`.
pub(crate) fn proc_text(p: &ProcSb, hidepid: &[Option<u32>; 3]) -> String {
    let mut o = String::new();
    if p.pid_gid != 0 {
        let _ = write!(o, ",gid={}", p.pid_gid);
    }
    if p.hide_pid != 0 {
        let name = hidepid.iter().zip(HIDEPID_OPTIONS).find(|(v, _)| **v == Some(p.hide_pid));
        let _ = write!(o, ",hidepid={}", name.map_or("unknown", |(_, (_, n))| n));
    }
    if p.pidonly {
        o.push_str(",subset=pid");
    }
    o
}

impl<M: PhysMem> Ctx<'_, M> {
    /// proc's options for the super block whose `s_fs_info` is `info`.
    pub(super) fn proc_options(&self, po: &ProcOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        Some(proc_text(&self.proc_sb(po, info, an)?, &po.hidepid))
    }

    fn proc_sb(&self, po: &ProcOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<ProcSb> {
        with_struct(self.k, info, po.size, "proc_fs_info", an, |b| {
            Some(ProcSb {
                pid_gid: b.u32(po.pid_gid)?,
                hide_pid: b.u32(po.hide_pid)?,
                pidonly: b.u32(po.pidonly)? != 0,
            })
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_options_as_mountinfo_shows_them() {
        let bits = [Some(1), Some(2), Some(4)];
        assert_eq!(proc_text(&ProcSb::default(), &bits), "");
        let p = ProcSb { pid_gid: 5, hide_pid: 2, pidonly: true };
        assert_eq!(proc_text(&p, &bits), ",gid=5,hidepid=invisible,subset=pid");
        assert_eq!(proc_text(&ProcSb { hide_pid: 9, ..p }, &bits), ",gid=5,hidepid=unknown,subset=pid");
    }
}
