//! ext4 (and ext2/ext3 mounted by it): `_ext4_show_options`.

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use super::OwnSb;
use crate::kernel::Ctx;
use crate::offsets::Ext4Offsets;
use crate::views::{Anomaly, Fields, plausible, scalar, with_struct};

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
pub(crate) fn ext4_text(e: &Ext4Sb, hz: u64) -> String {
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

impl<M: PhysMem> Ctx<'_, M> {
    /// ext4's options for super block `sb` (its `s_fs_info` an `ext4_sb_info`).
    pub(super) fn ext4_options(&self, eo: &Ext4Offsets, sb: OwnSb<'_>, an: &mut Vec<Anomaly>) -> Option<String> {
        let mut e = self.ext4_sb(eo, sb.info, an)?;
        e.inlinecrypt = sb.flags & SB_INLINECRYPT != 0;
        e.ext2 = sb.fs_type == "ext2";
        Some(ext4_text(&e, self.hz(an)?))
    }

    /// `HZ`, from `tick_nsec` (`NSEC_PER_SEC / HZ`, give or take NTP's adjustment).
    fn hz(&self, an: &mut Vec<Anomaly>) -> Option<u64> {
        let at = self.addrs.known.tick_nsec?;
        let tick = scalar(self.k, at, 8, "tick_nsec", an)?;
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
        // The three fields of the on-disk super block, in one read.
        let len = eo.es_errors.max(eo.es_def_resuid).max(eo.es_def_resgid) + 2;
        (e.errors, e.def_resuid, e.def_resgid) = with_struct(self.k, es, len, "ext4_super_block", an, |b| {
            Some((
                b.uint(eo.es_errors, 2)? as u16,
                b.uint(eo.es_def_resuid, 2)? as u16,
                b.uint(eo.es_def_resgid, 2)? as u16,
            ))
        })??;
        for (name, at) in e.qf_names.iter_mut().zip(qf) {
            if at.raw() != 0 {
                *name = Some(self.string_at(at, "ext4_sb_info.s_qf_names", an)?);
            }
        }
        if dummy.raw() != 0 {
            e.dummy_version = Some(scalar(self.k, dummy, 1, "fscrypt_policy.version", an)? as u8);
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(ext4_text(&ext4_defaults(), 250), "");
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
            ext4_text(&e, 250),
            ",grpid,nodioread_nolock,nodelalloc,resuid=1,errors=remount-ro,commit=17,stripe=4,data=journal,\
             jqfmt=vfsv1,usrjquota=a\\040q\\054\\075"
        );
        // The disk's own errors= is not repeated; a set bit the defaults lack shows.
        let f = Ext4Sb { mount_opt: d.mount_opt | 0x4000_0000, errors: 1, sb_block: 8193, groups_count: 16, ..d };
        assert_eq!(ext4_text(&f, 250), ",sb=8193,discard,mb_optimize_scan=0");
    }
}
