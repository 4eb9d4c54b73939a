//! The options a file system adds itself to a mountinfo line (its super block's
//! `show_options`), for the ones rebuilt here: tmpfs — devtmpfs and a tmpfs rootfs
//! too — (`shmem_show_options`), devpts (`devpts_show_options`), cgroup2
//! (`cgroup_show_options`), ext4 — ext2 and ext3 when ext4 mounts them —
//! (`_ext4_show_options`) and proc (`proc_show_options`). Others get the generic
//! options only.

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use super::{Anomaly, Fields, member, plausible, with_struct};
use crate::kernel::Ctx;
use crate::offsets::{
    CGROUP2_OPTIONS, Cgroup2Offsets, DevptsOffsets, Ext4Offsets, FsOptionOffsets, HIDEPID_OPTIONS, ProcOffsets,
    ShmemOffsets,
};

/// `0777 | S_ISVTX`: tmpfs's default root mode.
const SHMEM_DEFAULT_MODE: u16 = 0o1777;
/// `NR_UNIX98_PTY_MAX`: devpts's default `max`.
const NR_UNIX98_PTY_MAX: i32 = 1 << 20;
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
    if let Some(m) = &s.mpol {
        let _ = write!(o, ",mpol={m}");
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

/// `ext4_mount_opts[]` (identical in 6.1 and 6.12): each option `_ext4_show_options`
/// may print from the mount option words, in its order — the name `token2str`
/// gives it, its `EXT4_MOUNT_*` (or `EXT4_MOUNT2_*`) bits, whether it shows the
/// bits set (`MOPT_SET`) or clear (`MOPT_CLEAR`), and whether they are in
/// `s_mount_opt2`. The kernel keeps these as `#define`s, which BTF does not carry.
const EXT4_MOUNT_OPTS: [(&str, u32, bool, bool); 35] = [
    ("minixdf", 0x80, true, false),
    ("bsddf", 0x80, false, false),
    ("grpid", 0x4, true, false),
    ("nogrpid", 0x4, false, false),
    ("block_validity", 0x2000_0000, true, false),
    ("noblock_validity", 0x2000_0000, false, false),
    ("dioread_nolock", 0x40_0000, true, false),
    ("nodioread_nolock", 0x40_0000, false, false),
    ("discard", 0x4000_0000, true, false),
    ("nodiscard", 0x4000_0000, false, false),
    ("delalloc", 0x800_0000, true, false),
    ("nodelalloc", 0x800_0000, false, false),
    ("warn_on_error", 0x200_0000, true, false),
    ("nowarn_on_error", 0x200_0000, false, false),
    ("nojournal_checksum", 0x80_0000, false, false),
    ("journal_checksum", 0x80_0000, true, false),
    ("journal_async_commit", 0x180_0000, true, false),
    ("norecovery", 0x100, true, false),
    ("barrier", 0x2_0000, true, false),
    ("nobarrier", 0x2_0000, false, false),
    ("noauto_da_alloc", 0x1_0000, true, false),
    ("auto_da_alloc", 0x1_0000, false, false),
    ("noinit_itable", EXT4_MOUNT_INIT_INODE_TABLE, false, false),
    ("user_xattr", 0x4000, true, false),
    ("acl", 0x8000, true, false),
    ("nouid32", 0x2000, true, false),
    ("debug", 0x8, true, false),
    ("quota", 0xC_0000, true, false),
    ("usrquota", 0xC_0000, true, false),
    ("grpquota", 0x14_0000, true, false),
    ("prjquota", 0x24_0000, true, false),
    ("noquota", 0x3C_0000, false, false),
    ("nombcache", 0x1, true, false),
    ("no_prefetch_block_bitmaps", 0x400_0000, true, false),
    ("abort", 0x100, true, true),
];
/// `EXT4_MOUNT_ERRORS_{CONT,RO,PANIC}` with `s_errors`' `EXT4_ERRORS_*` and the
/// option each prints.
const EXT4_ERRORS: [(u32, u16, &str); 3] =
    [(0x20, 2, "errors=remount-ro"), (0x10, 1, "errors=continue"), (0x40, 3, "errors=panic")];
/// `EXT4_MOUNT_DATA_FLAGS` and its three values.
const EXT4_DATA_FLAGS: u32 = 0xC00;
const EXT4_DATA: [(u32, &str); 3] = [(0x400, "data=journal"), (0x800, "data=ordered"), (0xC00, "data=writeback")];
const EXT4_MOUNT_INIT_INODE_TABLE: u32 = 0x8000_0000;
const EXT4_MOUNT_DATA_ERR_ABORT: u32 = 0x1000_0000;
const EXT4_MOUNT_DAX_ALWAYS: u32 = 0x200;
/// `EXT4_MOUNT2_DAX_NEVER`, `_DAX_INODE`, `_MB_OPTIMIZE_SCAN`.
const EXT4_MOUNT2_DAX_NEVER: u32 = 0x20;
const EXT4_MOUNT2_DAX_INODE: u32 = 0x40;
const EXT4_MOUNT2_MB_OPTIMIZE_SCAN: u32 = 0x80;
/// `MB_DEFAULT_LINEAR_SCAN_THRESHOLD`: from this many groups `mb_optimize_scan` is on
/// by default.
const MB_DEFAULT_LINEAR_SCAN_THRESHOLD: u32 = 16;
/// `JBD2_DEFAULT_MAX_COMMIT_AGE` (seconds), `EXT4_DEF_MAX_BATCH_TIME` (µs),
/// `EXT4_DEF_INODE_READAHEAD_BLKS`, `EXT4_DEF_LI_WAIT_MULT`.
const JBD2_DEFAULT_MAX_COMMIT_AGE: u64 = 5;
const EXT4_DEF_MAX_BATCH_TIME: u32 = 15_000;
const EXT4_DEF_INODE_READAHEAD_BLKS: u32 = 32;
const EXT4_DEF_LI_WAIT_MULT: u32 = 10;
const NSEC_PER_SEC: u64 = 1_000_000_000;
/// `SB_INLINECRYPT` of `super_block.s_flags`.
const SB_INLINECRYPT: u64 = 1 << 17;
/// `QFMT_VFS_OLD`, `_V0`, `_V1` and the names `jqfmt=` prints.
const QUOTA_FORMATS: [(i32, &str); 3] = [(1, "vfsold"), (2, "vfsv0"), (4, "vfsv1")];

/// What `_ext4_show_options` prints from: `ext4_sb_info`, the on-disk super block's
/// defaults, the super block's flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ext4Sb {
    pub sb_block: u64,
    pub mount_opt: u32,
    pub mount_opt2: u32,
    pub def_mount_opt: u32,
    pub def_mount_opt2: u32,
    pub resuid: u32,
    pub resgid: u32,
    /// `s_es->s_def_resuid`, `->s_def_resgid`, `->s_errors`.
    pub def_resuid: u16,
    pub def_resgid: u16,
    pub errors: u16,
    /// In ticks.
    pub commit_interval: u64,
    pub min_batch_time: u32,
    pub max_batch_time: u32,
    pub stripe: u64,
    pub inode_readahead_blks: u32,
    pub li_wait_mult: u32,
    pub max_dir_size_kb: u32,
    /// `test_dummy_encryption`'s policy version, if one is set.
    pub dummy_version: Option<u8>,
    pub inlinecrypt: bool,
    /// Mounted as ext2 (ext4's `dax` is then shown as `dax`).
    pub ext2: bool,
    pub groups_count: u32,
    pub jquota_fmt: i32,
    /// `s_qf_names[USRQUOTA]`, `[GRPQUOTA]`.
    pub qf_names: [Option<String>; 2],
}

/// ext4's options as `_ext4_show_options(seq, sb, 0)` prints them: each mount option
/// that differs from the super block's defaults, then the tunables away from their
/// defaults. `hz` is the kernel's tick rate.
pub(crate) fn ext4_options(e: &Ext4Sb, hz: u64) -> String {
    let mut o = String::new();
    if e.sb_block != 1 {
        let _ = write!(o, ",sb={}", e.sb_block);
    }
    for (name, bits, want_set, opt2) in EXT4_MOUNT_OPTS {
        let (now, def) = if opt2 { (e.mount_opt2, e.def_mount_opt2) } else { (e.mount_opt, e.def_mount_opt) };
        if bits & (now ^ def) == 0 {
            continue;
        }
        let shown = if want_set { now & bits == bits } else { now & bits == 0 };
        if shown {
            o.push(',');
            o.push_str(name);
        }
    }
    if e.resuid != 0 || e.def_resuid != 0 {
        let _ = write!(o, ",resuid={}", e.resuid);
    }
    if e.resgid != 0 || e.def_resgid != 0 {
        let _ = write!(o, ",resgid={}", e.resgid);
    }
    for (bit, disk, name) in EXT4_ERRORS {
        if e.mount_opt & bit != 0 && e.errors != disk {
            o.push(',');
            o.push_str(name);
        }
    }
    if e.commit_interval != JBD2_DEFAULT_MAX_COMMIT_AGE * hz {
        let _ = write!(o, ",commit={}", e.commit_interval / hz.max(1));
    }
    if e.min_batch_time != 0 {
        let _ = write!(o, ",min_batch_time={}", e.min_batch_time);
    }
    if e.max_batch_time != EXT4_DEF_MAX_BATCH_TIME {
        let _ = write!(o, ",max_batch_time={}", e.max_batch_time);
    }
    if e.stripe != 0 {
        let _ = write!(o, ",stripe={}", e.stripe);
    }
    if EXT4_DATA_FLAGS & (e.mount_opt ^ e.def_mount_opt) != 0
        && let Some((_, name)) = EXT4_DATA.iter().find(|(v, _)| e.mount_opt & EXT4_DATA_FLAGS == *v)
    {
        o.push(',');
        o.push_str(name);
    }
    if e.inode_readahead_blks != EXT4_DEF_INODE_READAHEAD_BLKS {
        let _ = write!(o, ",inode_readahead_blks={}", e.inode_readahead_blks);
    }
    if e.mount_opt & EXT4_MOUNT_INIT_INODE_TABLE != 0 && e.li_wait_mult != EXT4_DEF_LI_WAIT_MULT {
        let _ = write!(o, ",init_itable={}", e.li_wait_mult);
    }
    if e.max_dir_size_kb != 0 {
        let _ = write!(o, ",max_dir_size_kb={}", e.max_dir_size_kb);
    }
    if e.mount_opt & EXT4_MOUNT_DATA_ERR_ABORT != 0 {
        o.push_str(",data_err=abort");
    }
    if let Some(v) = e.dummy_version {
        // FSCRYPT_POLICY_V1 is 0 but shown as v1.
        let _ = write!(o, ",test_dummy_encryption=v{}", if v == 0 { 1 } else { v });
    }
    if e.inlinecrypt {
        o.push_str(",inlinecrypt");
    }
    if e.mount_opt & EXT4_MOUNT_DAX_ALWAYS != 0 {
        o.push_str(if e.ext2 { ",dax" } else { ",dax=always" });
    } else if e.mount_opt2 & EXT4_MOUNT2_DAX_NEVER != 0 {
        o.push_str(",dax=never");
    } else if e.mount_opt2 & EXT4_MOUNT2_DAX_INODE != 0 {
        o.push_str(",dax=inode");
    }
    let scan = e.mount_opt2 & EXT4_MOUNT2_MB_OPTIMIZE_SCAN != 0;
    if e.groups_count >= MB_DEFAULT_LINEAR_SCAN_THRESHOLD && !scan {
        o.push_str(",mb_optimize_scan=0");
    } else if e.groups_count < MB_DEFAULT_LINEAR_SCAN_THRESHOLD && scan {
        o.push_str(",mb_optimize_scan=1");
    }
    if e.jquota_fmt != 0 {
        let name = QUOTA_FORMATS.iter().find(|(v, _)| *v == e.jquota_fmt).map_or("", |(_, n)| n);
        let _ = write!(o, ",jqfmt={name}");
    }
    for (option, name) in ["usrjquota", "grpjquota"].into_iter().zip(&e.qf_names) {
        if let Some(name) = name {
            let _ = write!(o, ",{option}={}", seq_escape(name));
        }
    }
    o
}

/// `seq_show_option`'s escaping of a value: `,`, `=`, space, tab, newline and `\`
/// as three octal digits.
fn seq_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\t' | '\n' | '\\') {
            let _ = write!(o, "\\{:03o}", c as u32);
        } else {
            o.push(c);
        }
    }
    o
}

/// What `proc_show_options` prints from (`struct proc_fs_info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcSb {
    pub pid_gid: u32,
    pub hide_pid: u32,
    pub pidonly: bool,
}

/// proc's options: `gid=` when not root's, `hidepid=` when not off (named by the
/// `HIDEPID_*` values of `hidepid`), `subset=pid`.
pub(crate) fn proc_options(p: &ProcSb, hidepid: &[Option<u32>; 3]) -> String {
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

/// A super block whose file system's own options are wanted.
#[derive(Debug, Clone, Copy)]
pub(super) struct OwnSb<'a> {
    pub at: Gva,
    pub op: Gva,
    pub info: Gva,
    pub flags: u64,
    pub fs_type: &'a str,
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The options super block `sb`'s file system adds (its `s_op` and
    /// `s_fs_info` given), if it is one rebuilt here (`Some("")` when it adds none;
    /// `None` for one not rebuilt).
    pub(super) fn fs_options(&self, fo: &FsOptionOffsets, sb: OwnSb<'_>, an: &mut Vec<Anomaly>) -> Option<String> {
        let known = &self.addrs.known;
        let (op, info) = (sb.op, sb.info);
        if sb.fs_type == "cgroup2" {
            return self.cgroup2(fo.cgroup2.as_ref()?, an);
        }
        let ours = [known.shmem_ops, known.devpts_sops, known.ext4_sops, known.proc_sops].contains(&Some(op));
        if ours && !plausible(self.k, info, 8) {
            an.push(Anomaly::BadPointer { what: "super_block.s_fs_info".into(), at: sb.at, value: info });
            return None;
        }
        if Some(op) == known.ext4_sops {
            let mut e = self.ext4_sb(fo.ext4.as_ref()?, info, an)?;
            e.inlinecrypt = sb.flags & SB_INLINECRYPT != 0;
            e.ext2 = sb.fs_type == "ext2";
            return Some(ext4_options(&e, self.hz(an)?));
        }
        if Some(op) == known.proc_sops {
            let po = fo.proc.as_ref()?;
            return Some(proc_options(&self.proc_sb(po, info, an)?, &po.hidepid));
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
        let name = match self.k.read_ptr(at) {
            Ok(p) => p,
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "policy_modes".into(), addr: at, error: e.to_string() });
                return None;
            }
        };
        self.string_at(name, "policy_modes[]", an)
    }

    /// `HZ`, from `tick_nsec` (`NSEC_PER_SEC / HZ`, give or take NTP's adjustment).
    fn hz(&self, an: &mut Vec<Anomaly>) -> Option<u64> {
        let at = self.addrs.known.tick_nsec?;
        let tick = match self.k.read_u64(at) {
            Ok(t) => t,
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "tick_nsec".into(), addr: at, error: e.to_string() });
                return None;
            }
        };
        // Within 1% of a tick of one of the rates Linux offers (NTP adjusts by far less).
        let hz = [100u64, 250, 300, 1000]
            .into_iter()
            .find(|hz| (NSEC_PER_SEC / hz).abs_diff(tick) <= NSEC_PER_SEC / hz / 100);
        if hz.is_none() {
            an.push(Anomaly::InvalidField {
                what: "tick_nsec".into(),
                addr: at,
                field: "tick_nsec".into(),
                value: format!("{tick}: no HZ of 100, 250, 300 or 1000"),
            });
        }
        hz
    }

    fn ext4_sb(&self, eo: &Ext4Offsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<Ext4Sb> {
        let (mut e, es, qf, dummy) = with_struct(self.k, info, eo.size, "ext4_sb_info", an, |b| {
            let e = Ext4Sb {
                sb_block: b.u64(eo.sb_block)?,
                mount_opt: b.u32(eo.mount_opt)?,
                mount_opt2: b.u32(eo.mount_opt2)?,
                def_mount_opt: b.u32(eo.def_mount_opt)?,
                def_mount_opt2: b.u32(eo.def_mount_opt2)?,
                resuid: b.u32(eo.resuid)?,
                resgid: b.u32(eo.resgid)?,
                commit_interval: b.u64(eo.commit_interval)?,
                min_batch_time: b.u32(eo.min_batch_time)?,
                max_batch_time: b.u32(eo.max_batch_time)?,
                stripe: b.u64(eo.stripe)?,
                inode_readahead_blks: b.u32(eo.inode_readahead_blks)?,
                li_wait_mult: b.u32(eo.li_wait_mult)?,
                max_dir_size_kb: b.u32(eo.max_dir_size_kb)?,
                groups_count: b.u32(eo.groups_count)?,
                jquota_fmt: b.i32(eo.jquota_fmt)?,
                ..Ext4Sb::default()
            };
            let qf = [b.ptr(eo.qf_names)?, b.ptr(eo.qf_names + 8)?];
            Some((e, b.ptr(eo.es)?, qf, eo.dummy_policy.map_or(Some(Gva::new(0)), |at| b.ptr(at))?))
        })??;
        if !plausible(self.k, es, 8) {
            an.push(Anomaly::BadPointer { what: "ext4_sb_info.s_es".into(), at: info, value: es });
            return None;
        }
        let field = |off: u64, an: &mut Vec<Anomaly>| {
            let at = member(es, off).ok()?;
            let mut b = [0u8; 2];
            match self.k.read(at, &mut b) {
                Ok(()) => Some(u16::from_le_bytes(b)),
                Err(err) => {
                    an.push(Anomaly::Unreadable { what: "ext4_super_block".into(), addr: at, error: err.to_string() });
                    None
                }
            }
        };
        e.errors = field(eo.es_errors, an)?;
        e.def_resuid = field(eo.es_def_resuid, an)?;
        e.def_resgid = field(eo.es_def_resgid, an)?;
        for (name, at) in e.qf_names.iter_mut().zip(qf) {
            if at.raw() != 0 {
                *name = Some(self.string_at(at, "ext4_sb_info.s_qf_names", an)?);
            }
        }
        if dummy.raw() != 0 {
            let mut v = [0u8; 1];
            if let Err(err) = self.k.read(dummy, &mut v) {
                an.push(Anomaly::Unreadable { what: "fscrypt_policy".into(), addr: dummy, error: err.to_string() });
                return None;
            }
            e.dummy_version = Some(v[0]);
        }
        Some(e)
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
        let odd = ShmemSb { uid: 1001, gid: 100, huge: 3, noswap: true, mpol: Some("bind:0".into()), ..tmp };
        assert_eq!(shmem_options(&odd, totalram), ",uid=1001,gid=100,inode64,huge=advise,mpol=bind:0,noswap");
    }

    #[test]
    fn cgroup2_options_in_the_kernels_order() {
        let bits = [Some(1 << 3), Some(1 << 4), Some(1 << 19), Some(1 << 20), None, None];
        assert_eq!(cgroup2_options(&bits, (1 << 3) | (1 << 20) | (1 << 21)), ",nsdelegate,memory_recursiveprot");
        assert_eq!(cgroup2_options(&bits, 0), "");
    }

    /// An ext4 super block as 6.12 mounts a fresh 64 MiB file system with no
    /// options: `block_validity`, `delalloc`, `barrier`, `user_xattr`, `acl`,
    /// `dioread_nolock`, `init_itable`, ordered data, `errors=continue`.
    fn ext4_defaults() -> Ext4Sb {
        let def = 0x2000_0000 | 0x800_0000 | 0x2_0000 | 0x4000 | 0x8000 | 0x40_0000 | 0x8000_0000 | 0x800;
        Ext4Sb {
            sb_block: 1,
            mount_opt: def | 0x10,
            def_mount_opt: def,
            errors: 1,
            commit_interval: 5 * 250,
            max_batch_time: EXT4_DEF_MAX_BATCH_TIME,
            inode_readahead_blks: EXT4_DEF_INODE_READAHEAD_BLKS,
            li_wait_mult: EXT4_DEF_LI_WAIT_MULT,
            groups_count: 8,
            ..Ext4Sb::default()
        }
    }

    #[test]
    fn ext4_defaults_show_nothing() {
        assert_eq!(ext4_options(&ext4_defaults(), 250), "");
    }

    #[test]
    fn ext4_options_in_the_kernels_order() {
        let d = ext4_defaults();
        // errors=remount-ro over a disk that says continue; data=journal clears
        // dioread_nolock; commit in seconds of 250 ticks; quota files escaped.
        let e = Ext4Sb {
            mount_opt: (d.mount_opt & !0x10 & !0x40_0000 & !0x800_0000 & !0xC00) | 0x20 | 0x400 | 0x4,
            commit_interval: 17 * 250,
            resuid: 1,
            stripe: 4,
            jquota_fmt: 4,
            qf_names: [Some("a q,=".into()), None],
            ..d.clone()
        };
        assert_eq!(
            ext4_options(&e, 250),
            ",grpid,nodioread_nolock,nodelalloc,resuid=1,errors=remount-ro,commit=17,stripe=4,data=journal,\
             jqfmt=vfsv1,usrjquota=a\\040q\\054\\075"
        );
        // The disk's own errors= is not repeated; a set bit the defaults lack shows.
        let f = Ext4Sb { mount_opt: d.mount_opt | 0x4000_0000, errors: 1, sb_block: 8193, groups_count: 16, ..d };
        assert_eq!(ext4_options(&f, 250), ",sb=8193,discard,mb_optimize_scan=0");
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

    #[test]
    fn proc_options_as_mountinfo_shows_them() {
        let bits = [Some(1), Some(2), Some(4)];
        assert_eq!(proc_options(&ProcSb::default(), &bits), "");
        let p = ProcSb { pid_gid: 5, hide_pid: 2, pidonly: true };
        assert_eq!(proc_options(&p, &bits), ",gid=5,hidepid=invisible,subset=pid");
        assert_eq!(proc_options(&ProcSb { hide_pid: 9, ..p }, &bits), ",gid=5,hidepid=unknown,subset=pid");
    }

    #[test]
    fn devpts_options_as_mountinfo_shows_them() {
        let p = PtsOpts { mode: 0o600, ptmxmode: 0, max: NR_UNIX98_PTY_MAX, ..PtsOpts::default() };
        assert_eq!(devpts_options(&p), ",mode=600,ptmxmode=000");
        let q = PtsOpts { setgid: true, gid: 5, mode: 0o620, max: 4096, ..p };
        assert_eq!(devpts_options(&q), ",gid=5,mode=620,ptmxmode=000,max=4096");
    }
}
