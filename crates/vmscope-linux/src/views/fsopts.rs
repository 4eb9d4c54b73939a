//! The options a file system adds itself to a mountinfo line (its super block's
//! `show_options`), for the ones rebuilt here: tmpfs — devtmpfs and a tmpfs rootfs
//! too — (`shmem_show_options`), devpts (`devpts_show_options`) and cgroup2
//! (`cgroup_show_options`). Others get the generic options only.

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use super::{Anomaly, Fields, member, plausible, with_struct};
use crate::kernel::Ctx;
use crate::offsets::{CGROUP2_OPTIONS, Cgroup2Offsets, DevptsOffsets, FsOptionOffsets, ShmemOffsets};

/// `0777 | S_ISVTX`: tmpfs's default root mode.
const SHMEM_DEFAULT_MODE: u16 = 0o1777;
/// `NR_UNIX98_PTY_MAX`: devpts's default `max`.
const NR_UNIX98_PTY_MAX: i32 = 1 << 20;
/// `PAGE_SHIFT - 10`: pages to KiB.
const PAGE_KIB_SHIFT: u32 = 2;

/// What `shmem_show_options` prints from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ShmemSb {
    pub max_blocks: u64,
    pub max_inodes: u64,
    pub mode: u16,
    pub huge: u8,
    pub uid: u32,
    pub gid: u32,
    pub full_inums: bool,
    pub noswap: bool,
}

/// tmpfs's options: those not at their default (the defaults are half of RAM in
/// pages, blocks and inodes alike, on a machine without high memory), then
/// `inode64`/`inode32` (Debian's kernels enable `CONFIG_TMPFS_INODE64`, so it is
/// always shown), `huge=`, `noswap`.
pub(crate) fn shmem_options(s: &ShmemSb, totalram_pages: u64) -> String {
    let mut o = String::new();
    let default = totalram_pages / 2;
    if s.max_blocks != default {
        let _ = write!(o, ",size={}k", s.max_blocks << PAGE_KIB_SHIFT);
    }
    if s.max_inodes != default {
        let _ = write!(o, ",nr_inodes={}", s.max_inodes);
    }
    if s.mode != SHMEM_DEFAULT_MODE {
        let _ = write!(o, ",mode={:03o}", s.mode);
    }
    if s.uid != 0 {
        let _ = write!(o, ",uid={}", s.uid);
    }
    if s.gid != 0 {
        let _ = write!(o, ",gid={}", s.gid);
    }
    let _ = write!(o, ",inode{}", if s.full_inums { 64 } else { 32 });
    let huge = match s.huge as i8 {
        0 => None,
        1 => Some("always"),
        2 => Some("within_size"),
        3 => Some("advise"),
        -1 => Some("deny"),
        -2 => Some("force"),
        _ => Some("bad"),
    };
    if let Some(h) = huge {
        let _ = write!(o, ",huge={h}");
    }
    if s.noswap {
        o.push_str(",noswap");
    }
    o
}

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
pub(crate) fn devpts_options(p: &PtsOpts) -> String {
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

/// cgroup2's options: each flag of [`CGROUP2_OPTIONS`] the hierarchy's root has set
/// (they are global: every cgroup2 mount shows the same).
pub(crate) fn cgroup2_options(bits: &[Option<u32>; 6], flags: u32) -> String {
    let mut o = String::new();
    for (bit, (_, name)) in bits.iter().zip(CGROUP2_OPTIONS) {
        if bit.is_some_and(|b| flags & b != 0) {
            o.push(',');
            o.push_str(name);
        }
    }
    o
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The options super block `sb`'s file system adds (its `s_op` and
    /// `s_fs_info` given), if it is one rebuilt here (`Some("")` when it adds none;
    /// `None` for one not rebuilt).
    pub(super) fn fs_options(
        &self,
        fo: &FsOptionOffsets,
        sb: Gva,
        (op, info): (Gva, Gva),
        fs_type: &str,
        an: &mut Vec<Anomaly>,
    ) -> Option<String> {
        let known = &self.addrs.known;
        if fs_type == "cgroup2" {
            return self.cgroup2(fo.cgroup2.as_ref()?, an);
        }
        let ours = [known.shmem_ops, known.devpts_sops].contains(&Some(op));
        if ours && !plausible(self.k, info, 8) {
            an.push(Anomaly::BadPointer { what: "super_block.s_fs_info".into(), at: sb, value: info });
            return None;
        }
        if Some(op) == known.shmem_ops {
            let so = fo.shmem.as_ref()?;
            let totalram = self.k.read_u64(known.totalram_pages?).ok()?;
            let s = self.shmem_sb(so, info, an)?;
            return Some(shmem_options(&s, totalram));
        }
        if Some(op) == known.devpts_sops {
            return Some(devpts_options(&self.pts_opts(fo.devpts.as_ref()?, info, an)?));
        }
        None
    }

    fn cgroup2(&self, co: &Cgroup2Offsets, an: &mut Vec<Anomaly>) -> Option<String> {
        let at = member(self.addrs.known.cgrp_dfl_root?, co.flags).ok()?;
        match self.k.read_u32(at) {
            Ok(flags) => Some(cgroup2_options(&co.bits, flags)),
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "cgrp_dfl_root.flags".into(), addr: at, error: e.to_string() });
                None
            }
        }
    }

    fn shmem_sb(&self, so: &ShmemOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<ShmemSb> {
        let (s, mpol) = with_struct(self.k, info, so.size, "shmem_sb_info", an, |b| {
            Some((
                ShmemSb {
                    max_blocks: b.u64(so.max_blocks)?,
                    max_inodes: b.u64(so.max_inodes)?,
                    mode: b.uint(so.mode, 2)? as u16,
                    huge: b.uint(so.huge, 1)? as u8,
                    uid: b.u32(so.uid)?,
                    gid: b.u32(so.gid)?,
                    full_inums: b.uint(so.full_inums, 1)? != 0,
                    noswap: so.noswap.map_or(Some(0), |at| b.uint(at, 1))? != 0,
                },
                b.u64(so.mpol)?,
            ))
        })??;
        if mpol != 0 {
            // `mpol=` is not rebuilt: say so rather than print a line that omits it.
            an.push(Anomaly::InvalidField {
                what: "shmem_sb_info".into(),
                addr: info,
                field: "mpol".into(),
                value: "a memory policy (mpol=), not shown".into(),
            });
        }
        Some(s)
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
    fn tmpfs_options_as_mountinfo_shows_them() {
        // The guest's rootfs and devtmpfs (1 GiB, 6.1), then a plain tmpfs.
        let totalram = 2 * 123_400;
        let rootfs =
            ShmemSb { max_blocks: 122_982, max_inodes: 122_982, mode: 0o755, full_inums: true, ..ShmemSb::default() };
        assert_eq!(shmem_options(&rootfs, totalram), ",size=491928k,nr_inodes=122982,mode=755,inode64");
        let tmp =
            ShmemSb { max_blocks: 123_400, max_inodes: 123_400, mode: 0o1777, full_inums: true, ..ShmemSb::default() };
        assert_eq!(shmem_options(&tmp, totalram), ",inode64");
        let odd = ShmemSb { uid: 1001, gid: 100, huge: 3, noswap: true, ..tmp };
        assert_eq!(shmem_options(&odd, totalram), ",uid=1001,gid=100,inode64,huge=advise,noswap");
    }

    #[test]
    fn cgroup2_options_in_the_kernels_order() {
        let bits = [Some(1 << 3), Some(1 << 4), Some(1 << 19), Some(1 << 20), None, None];
        assert_eq!(cgroup2_options(&bits, (1 << 3) | (1 << 20) | (1 << 21)), ",nsdelegate,memory_recursiveprot");
        assert_eq!(cgroup2_options(&bits, 0), "");
    }

    #[test]
    fn devpts_options_as_mountinfo_shows_them() {
        let p = PtsOpts { mode: 0o600, ptmxmode: 0, max: NR_UNIX98_PTY_MAX, ..PtsOpts::default() };
        assert_eq!(devpts_options(&p), ",mode=600,ptmxmode=000");
        let q = PtsOpts { setgid: true, gid: 5, mode: 0o620, max: 4096, ..p };
        assert_eq!(devpts_options(&q), ",gid=5,mode=620,ptmxmode=000,max=4096");
    }
}
