//! File systems whose own options are an owner and a mode away from their defaults:
//! debugfs (`debugfs_show_options`) and tracefs (`tracefs_show_options`) print
//! `uid=`, `gid=` and `mode=`, ramfs (`ramfs_show_options`) only `mode=`. The mode is
//! printed in octal without padding (`%o`).

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use crate::kernel::Ctx;
use crate::offsets::ModeFsOffsets;
use crate::views::{Anomaly, Fields, with_struct};

/// `DEBUGFS_DEFAULT_MODE` and `TRACEFS_DEFAULT_MODE` (both `0700`),
/// `RAMFS_DEFAULT_MODE` (`0755`): the same in 6.1 and 6.12.
pub(super) const DEBUGFS_DEFAULT_MODE: u16 = 0o700;
pub(super) const TRACEFS_DEFAULT_MODE: u16 = 0o700;
pub(super) const RAMFS_DEFAULT_MODE: u16 = 0o755;

/// An owner and a mode, as such a file system keeps them (`uid`/`gid` absent for
/// ramfs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ModeOpts {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: u16,
}

/// `uid=` and `gid=` when not root's, `mode=` when not `default`.
pub(crate) fn mode_text(o: &ModeOpts, default: u16) -> String {
    let mut s = String::new();
    if let Some(uid) = o.uid.filter(|&u| u != 0) {
        let _ = write!(s, ",uid={uid}");
    }
    if let Some(gid) = o.gid.filter(|&g| g != 0) {
        let _ = write!(s, ",gid={gid}");
    }
    if o.mode != default {
        let _ = write!(s, ",mode={:o}", o.mode);
    }
    s
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The options of the super block whose `s_fs_info` is `info`, a file system
    /// laid out as `mo` with default mode `default`.
    pub(super) fn mode_options(
        &self,
        (mo, default): (&ModeFsOffsets, u16),
        info: Gva,
        what: &str,
        an: &mut Vec<Anomaly>,
    ) -> Option<String> {
        let o = with_struct(self.k, info, mo.size, what, an, |b| {
            Some(ModeOpts {
                uid: match mo.uid {
                    Some(at) => Some(b.u32(at)?),
                    None => None,
                },
                gid: match mo.gid {
                    Some(at) => Some(b.u32(at)?),
                    None => None,
                },
                mode: b.uint(mo.mode, 2)? as u16,
            })
        })??;
        Some(mode_text(&o, default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_mode_as_mountinfo_shows_them() {
        let o = ModeOpts { uid: Some(0), gid: Some(0), mode: 0o700 };
        assert_eq!(mode_text(&o, DEBUGFS_DEFAULT_MODE), "");
        let o = ModeOpts { uid: Some(5), gid: Some(6), mode: 0o755 };
        assert_eq!(mode_text(&o, DEBUGFS_DEFAULT_MODE), ",uid=5,gid=6,mode=755");
        let ram = ModeOpts { uid: None, gid: None, mode: 0o11 };
        assert_eq!(mode_text(&ram, RAMFS_DEFAULT_MODE), ",mode=11");
    }
}
