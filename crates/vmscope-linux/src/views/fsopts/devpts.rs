//! devpts: `devpts_show_options`.

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use crate::kernel::Ctx;
use crate::offsets::DevptsOffsets;
use crate::views::{Anomaly, Fields, with_struct};

/// `NR_UNIX98_PTY_MAX`: devpts's default `max`.
const NR_UNIX98_PTY_MAX: i32 = 1 << 20;
/// What `devpts_show_options` prints from (`struct pts_mount_opts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PtsOpts {
    pub setuid: bool,
    pub setgid: bool,
    pub uid: u32,
    pub gid: u32,
    pub mode: u16,
    pub ptmxmode: u16,
    pub max: i32,
}

/// devpts's options: `uid=`/`gid=` when set, `mode=` and `ptmxmode=` always, `max=`
/// below the default.
pub(crate) fn devpts_text(p: &PtsOpts) -> String {
    let mut o = String::new();
    if p.setuid {
        let _ = write!(o, ",uid={}", p.uid);
    }
    if p.setgid {
        let _ = write!(o, ",gid={}", p.gid);
    }
    let _ = write!(o, ",mode={:03o},ptmxmode={:03o}", p.mode, p.ptmxmode);
    if p.max < NR_UNIX98_PTY_MAX {
        let _ = write!(o, ",max={}", p.max);
    }
    o
}

impl<M: PhysMem> Ctx<'_, M> {
    /// devpts's options for the super block whose `s_fs_info` is `info`.
    pub(super) fn devpts_options(&self, po: &DevptsOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        Some(devpts_text(&self.pts_opts(po, info, an)?))
    }

    fn pts_opts(&self, po: &DevptsOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<PtsOpts> {
        with_struct(self.k, info, po.size, "pts_fs_info", an, |b| {
            Some(PtsOpts {
                setuid: b.u32(po.setuid)? != 0,
                setgid: b.u32(po.setgid)? != 0,
                uid: b.u32(po.uid)?,
                gid: b.u32(po.gid)?,
                mode: b.uint(po.mode, 2)? as u16,
                ptmxmode: b.uint(po.ptmxmode, 2)? as u16,
                max: b.i32(po.max)?,
            })
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devpts_options_as_mountinfo_shows_them() {
        let p = PtsOpts { mode: 0o600, ptmxmode: 0, max: NR_UNIX98_PTY_MAX, ..PtsOpts::default() };
        assert_eq!(devpts_text(&p), ",mode=600,ptmxmode=000");
        let q = PtsOpts { setgid: true, gid: 5, mode: 0o620, max: 4096, ..p };
        assert_eq!(devpts_text(&q), ",gid=5,mode=620,ptmxmode=000,max=4096");
    }
}
