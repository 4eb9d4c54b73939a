//! tmpfs (and devtmpfs, and a tmpfs rootfs): `shmem_show_options`, its memory
//! policy by `mpol_to_str`.

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::ShmemOffsets;
use crate::views::{Anomaly, Fields, plausible, scalar, with_struct};

/// `0777 | S_ISVTX`: tmpfs's default root mode.
const SHMEM_DEFAULT_MODE: u16 = 0o1777;
/// `PAGE_SHIFT - 10`: pages to KiB.
const PAGE_KIB_SHIFT: u32 = 2;

/// What `shmem_show_options` prints from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShmemSb {
    pub max_blocks: u64,
    pub max_inodes: u64,
    pub mode: u16,
    pub huge: u8,
    pub uid: u32,
    pub gid: u32,
    pub full_inums: bool,
    pub noswap: bool,
    /// `mpol=`'s value (`mpol_to_str`), when the mount has a policy other than the
    /// default.
    pub mpol: Option<String>,
}

/// tmpfs's options: those not at their default (the defaults are half of RAM in
/// pages, blocks and inodes alike, on a machine without high memory), then
/// `inode64`/`inode32` (Debian's kernels enable `CONFIG_TMPFS_INODE64`, so it is
/// always shown), `huge=`, `noswap`.
pub(crate) fn shmem_text(s: &ShmemSb, totalram_pages: u64) -> String {
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
    if let Some(m) = &s.mpol {
        let _ = write!(o, ",mpol={m}");
    }
    if s.noswap {
        o.push_str(",noswap");
    }
    o
}

/// `MPOL_F_STATIC_NODES`, `MPOL_F_RELATIVE_NODES`, `MPOL_F_NUMA_BALANCING`.
const MPOL_F_STATIC_NODES: u16 = 1 << 15;
const MPOL_F_RELATIVE_NODES: u16 = 1 << 14;
const MPOL_F_NUMA_BALANCING: u16 = 1 << 13;
const MPOL_MODE_FLAGS: u16 = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING;
/// More modes than any kernel has (7 in 6.12): a larger one is corrupt.
const MAX_POLICY_MODES: u16 = 16;
/// The most of a `nodemask_t` read (`MAX_NUMNODES` is 1,024 on Debian: 128 bytes).
const MAX_NODEMASK_BYTES: u64 = 1024;
/// `mpol_to_str` writes into 64 bytes, the NUL included.
const MPOL_STR_MAX: usize = 63;

/// `mpol_to_str`: the mode's name, `=static`/`=relative` and `balancing` for its
/// flags, `:` and the nodes as a range list (`%*pbl`: `0-3,5`); cut to 63 bytes as
/// the kernel's buffer cuts it.
pub(crate) fn mpol_to_str(mode: &str, flags: u16, nodes: &[u8]) -> String {
    let mut o = mode.to_owned();
    if flags & MPOL_MODE_FLAGS != 0 {
        o.push('=');
        if flags & MPOL_F_STATIC_NODES != 0 {
            o.push_str("static");
        } else if flags & MPOL_F_RELATIVE_NODES != 0 {
            o.push_str("relative");
        }
        if flags & MPOL_F_NUMA_BALANCING != 0 {
            if !(flags & MPOL_MODE_FLAGS).is_power_of_two() {
                o.push('|');
            }
            o.push_str("balancing");
        }
    }
    let set = |n: usize| nodes.get(n / 8).is_some_and(|b| b & (1 << (n % 8)) != 0);
    let mut ranges = Vec::new();
    let mut n = 0;
    while n < nodes.len() * 8 {
        if set(n) {
            let start = n;
            while set(n + 1) {
                n += 1;
            }
            ranges.push(if start == n { start.to_string() } else { format!("{start}-{n}") });
        }
        n += 1;
    }
    if !ranges.is_empty() {
        o.push(':');
        o.push_str(&ranges.join(","));
    }
    o.truncate(MPOL_STR_MAX);
    o
}

impl<M: PhysMem> Ctx<'_, M> {
    /// tmpfs's options for the super block whose `s_fs_info` is `info`.
    pub(super) fn shmem_options(&self, so: &ShmemOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        let totalram = self.k.read_u64(self.addrs.known.totalram_pages?).ok()?;
        Some(shmem_text(&self.shmem_sb(so, info, an)?, totalram))
    }

    fn shmem_sb(&self, so: &ShmemOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<ShmemSb> {
        let (mut s, mpol) = with_struct(self.k, info, so.size, "shmem_sb_info", an, |b| {
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
                    mpol: None,
                },
                b.u64(so.mpol)?,
            ))
        })??;
        if mpol != 0 {
            s.mpol = self.mempolicy(so, Gva::new(mpol), an)?;
        }
        Some(s)
    }

    /// `mpol_to_str` of the memory policy at `pol`: `None` inside for the default
    /// policy (shown as nothing).
    fn mempolicy(&self, so: &ShmemOffsets, pol: Gva, an: &mut Vec<Anomaly>) -> Option<Option<String>> {
        let Some(mo) = so.mempolicy else {
            an.push(Anomaly::InvalidField {
                what: "shmem_sb_info".into(),
                addr: pol,
                field: "mpol".into(),
                value: "a memory policy, and the kernel's types have no struct mempolicy".into(),
            });
            return None;
        };
        if !plausible(self.k, pol, 8) {
            an.push(Anomaly::BadPointer { what: "shmem_sb_info.mpol".into(), at: pol, value: pol });
            return None;
        }
        let len = mo.nodes + mo.nodes_len.min(MAX_NODEMASK_BYTES);
        let (mode, flags, nodes) =
            with_struct(self.k, pol, len.max(mo.mode + 2).max(mo.flags + 2), "mempolicy", an, |b| {
                let nodes = b.get(mo.nodes, mo.nodes_len.min(MAX_NODEMASK_BYTES))?.to_vec();
                Some((b.uint(mo.mode, 2)? as u16, b.uint(mo.flags, 2)? as u16, nodes))
            })??;
        if mode == 0 {
            return Some(None);
        }
        let name = self.policy_mode_name(mode, an)?;
        Some(Some(mpol_to_str(&name, flags, &nodes)))
    }

    /// `policy_modes[mode]`, read from the guest (the names differ between
    /// kernels: 6.9 added `weighted interleave`).
    fn policy_mode_name(&self, mode: u16, an: &mut Vec<Anomaly>) -> Option<String> {
        let table = self.addrs.known.policy_modes?;
        if mode >= MAX_POLICY_MODES {
            an.push(Anomaly::InvalidField {
                what: "mempolicy".into(),
                addr: table,
                field: "mode".into(),
                value: mode.to_string(),
            });
            return None;
        }
        let at = member(table, 8 * u64::from(mode)).ok()?;
        let name = scalar(self.k, at, 8, "policy_modes", an)?;
        self.string_at(Gva::new(name), "policy_modes[]", an)
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
        assert_eq!(shmem_text(&rootfs, totalram), ",size=491928k,nr_inodes=122982,mode=755,inode64");
        let tmp =
            ShmemSb { max_blocks: 123_400, max_inodes: 123_400, mode: 0o1777, full_inums: true, ..ShmemSb::default() };
        assert_eq!(shmem_text(&tmp, totalram), ",inode64");
        let odd = ShmemSb { uid: 1001, gid: 100, huge: 3, noswap: true, mpol: Some("bind:0".into()), ..tmp };
        assert_eq!(shmem_text(&odd, totalram), ",uid=1001,gid=100,inode64,huge=advise,mpol=bind:0,noswap");
    }
    #[test]
    fn mpol_as_mpol_to_str_prints_it() {
        let mut nodes = [0u8; 128];
        assert_eq!(mpol_to_str("local", 0, &nodes), "local");
        nodes[0] = 0b0010_1111;
        nodes[1] = 0b1000_0000;
        assert_eq!(mpol_to_str("bind", 0, &nodes), "bind:0-3,5,15");
        assert_eq!(mpol_to_str("interleave", MPOL_F_STATIC_NODES, &nodes), "interleave=static:0-3,5,15");
        let both = MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING;
        assert_eq!(mpol_to_str("prefer", both, &nodes[..1]), "prefer=relative|balancing:0-3,5");
        assert_eq!(mpol_to_str("bind", MPOL_F_NUMA_BALANCING, &[1]), "bind=balancing:0");
        // The kernel's 64-byte buffer cuts a long list.
        let every_other = [0b0101_0101u8; 128];
        assert_eq!(mpol_to_str("interleave", 0, &every_other).len(), 63);
    }
}
