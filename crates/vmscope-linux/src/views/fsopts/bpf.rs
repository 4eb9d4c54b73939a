//! The BPF file system: `bpf_show_options` — the owner (from 6.7) and mode of the
//! mount's root inode, and the token delegation masks (from 6.9, not rebuilt: a
//! mount with any reports an anomaly rather than a line without them).

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use super::OwnSb;
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::BpfOffsets;
use crate::views::{Anomaly, plausible, scalar};

/// `S_IALLUGO & ~S_ISVTX` and `S_IRWXUGO`: the mode bits shown, and the default.
const MODE_BITS: u16 = 0o6777;
const DEFAULT_MODE: u16 = 0o777;

/// The options: `uid=`/`gid=` when not root's (`None` on kernels that do not show
/// them), `mode=` when not `0777`.
pub(crate) fn bpf_text(owner: Option<(u32, u32)>, mode: u16) -> String {
    let mut o = String::new();
    if let Some((uid, gid)) = owner {
        if uid != 0 {
            let _ = write!(o, ",uid={uid}");
        }
        if gid != 0 {
            let _ = write!(o, ",gid={gid}");
        }
    }
    let mode = mode & MODE_BITS;
    if mode != DEFAULT_MODE {
        let _ = write!(o, ",mode={mode:o}");
    }
    o
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The BPF file system's options for the mount of `sb` (its root's inode).
    pub(super) fn bpf_options(&self, bo: &BpfOffsets, sb: OwnSb<'_>, an: &mut Vec<Anomaly>) -> Option<String> {
        let vo = self.o.vfs.as_ref()?;
        if let Some(delegates) = bo.delegates
            && plausible(self.k, sb.info, 8)
        {
            for off in delegates {
                let at = member(sb.info, off).ok()?;
                if scalar(self.k, at, 8, "bpf_mount_opts", an)? != 0 {
                    an.push(Anomaly::InvalidField {
                        what: "bpf_mount_opts".into(),
                        addr: sb.info,
                        field: "delegate_*".into(),
                        value: "token delegation options, not shown".into(),
                    });
                    return None;
                }
            }
        }
        if !plausible(self.k, sb.root, 8) {
            an.push(Anomaly::BadPointer { what: "vfsmount.mnt_root".into(), at: sb.at, value: sb.root });
            return None;
        }
        let inode = Gva::new(scalar(self.k, member(sb.root, vo.d_inode).ok()?, 8, "dentry.d_inode", an)?);
        if !plausible(self.k, inode, 8) {
            an.push(Anomaly::BadPointer { what: "dentry.d_inode".into(), at: sb.root, value: inode });
            return None;
        }
        let mode = scalar(self.k, member(inode, vo.i_mode).ok()?, 2, "inode.i_mode", an)? as u16;
        let owner = match bo.owner {
            Some((uid, gid)) => Some((
                scalar(self.k, member(inode, uid).ok()?, 4, "inode.i_uid", an)? as u32,
                scalar(self.k, member(inode, gid).ok()?, 4, "inode.i_gid", an)? as u32,
            )),
            None => None,
        };
        Some(bpf_text(owner, mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_options_as_mountinfo_shows_them() {
        // The root inode's mode has S_IFDIR and the sticky bit.
        assert_eq!(bpf_text(None, 0o041777), "");
        assert_eq!(bpf_text(None, 0o040700), ",mode=700");
        assert_eq!(bpf_text(Some((0, 0)), 0o041777), "");
        assert_eq!(bpf_text(Some((5, 6)), 0o040750), ",uid=5,gid=6,mode=750");
    }
}
