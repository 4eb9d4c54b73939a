//! A mount namespace's mounts (`struct mnt_namespace`) and what `/proc/PID/mountinfo`
//! prints of each (`struct mount`, `vfsmount`, `super_block`, `file_system_type`).

use serde::{Deserialize, Serialize};

use crate::types::TypeRef;
use crate::{Profile, Result};

/// How a mount namespace holds its mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountSet {
    /// Up to 6.7: a list, `mnt_namespace.list` through `mount.mnt_list`, in
    /// mountinfo order.
    List {
        /// `mnt_namespace.list`.
        head: u64,
        /// `mount.mnt_list`.
        link: u64,
    },
    /// From 6.8: a red-black tree, `mnt_namespace.mounts` through
    /// `mount.mnt_node`, ordered as mountinfo prints it.
    Tree {
        /// `mnt_namespace.mounts` (a `struct rb_root`).
        root: u64,
        /// `mount.mnt_node`.
        node: u64,
        /// `rb_node.rb_left`.
        left: u64,
        /// `rb_node.rb_right`.
        right: u64,
    },
}

/// What a mountinfo line needs beyond [`VfsOffsets`](super::VfsOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MountOffsets {
    /// `nsproxy.mnt_ns`.
    pub nsproxy_mnt_ns: u64,
    /// `mnt_namespace.ns.inum`.
    pub ns_inum: u64,
    pub set: MountSet,
    /// `mount.mnt.mnt_sb`, `mount.mnt.mnt_flags` (an `int`).
    pub mnt_sb: u64,
    pub mnt_flags: u64,
    pub mnt_devname: u64,
    pub mnt_master: u64,
    pub mnt_group_id: u64,
    /// `mount.mnt_ns`, and `.mnt_share` (the ring of a peer group), for
    /// `propagate_from:`.
    pub mnt_ns: u64,
    pub mnt_share: u64,
    /// `super_block.s_type`, `.s_flags`, `.s_subtype`.
    pub s_type: u64,
    pub s_flags: u64,
    pub s_subtype: u64,
    /// `file_system_type.name`.
    pub fs_name: u64,
    /// What the options some file systems add themselves need.
    pub fs: Option<FsOptionOffsets>,
}

/// The super block fields and file system structs of the file systems whose own
/// mountinfo options are rebuilt: tmpfs (and devtmpfs, and a tmpfs rootfs), devpts,
/// cgroup2, ext4 (and ext2/ext3 mounted by it) and proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct FsOptionOffsets {
    /// `super_block.s_op`, `.s_fs_info`.
    pub s_op: u64,
    pub s_fs_info: u64,
    /// `super_operations.show_options`: whether a file system adds options at all.
    pub show_options: Option<u64>,
    pub shmem: Option<ShmemOffsets>,
    pub devpts: Option<DevptsOffsets>,
    pub cgroup2: Option<Cgroup2Offsets>,
    pub ext4: Option<Ext4Offsets>,
    pub proc: Option<ProcOffsets>,
    pub debugfs: Option<ModeFsOffsets>,
    pub tracefs: Option<ModeFsOffsets>,
    pub ramfs: Option<ModeFsOffsets>,
    pub hugetlbfs: Option<HugetlbfsOffsets>,
    pub bpf: Option<BpfOffsets>,
}

/// `struct hugetlbfs_sb_info`, with `hstate.order` and the subpool's
/// `max_hpages`/`min_hpages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct HugetlbfsOffsets {
    pub max_inodes: u64,
    pub hstate: u64,
    pub spool: u64,
    pub uid: u64,
    pub gid: u64,
    pub mode: u64,
    pub size: u64,
    pub order: u64,
    pub max_hpages: u64,
    pub min_hpages: u64,
}

/// What `bpf_show_options` reads besides the mount root's inode mode: the inode's
/// `i_uid`/`i_gid` (shown from 6.7, when `bpf_mount_opts` gained `uid`; `None`
/// before), and the four `delegate_*` masks of `bpf_mount_opts` (from 6.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct BpfOffsets {
    pub owner: Option<(u64, u64)>,
    pub delegates: Option<[u64; 4]>,
}
/// The `s_fs_info` of a file system whose own options are `uid=`, `gid=` and `mode=`
/// (debugfs, tracefs; ramfs has only `mode`): where each is, directly or in its
/// `mount_opts` (debugfs and tracefs moved them out of it after 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ModeFsOffsets {
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mode: u64,
    pub size: u64,
}

impl ModeFsOffsets {
    fn resolve(p: &Profile, ty: &str) -> Option<ModeFsOffsets> {
        let at = |f: &str| p.offset_of(ty, &format!("mount_opts.{f}")).or_else(|_| p.offset_of(ty, f)).ok();
        let (uid, gid, mode) = (at("uid"), at("gid"), at("mode")?);
        Some(ModeFsOffsets { uid, gid, mode, size: [uid, gid, Some(mode + 2)].into_iter().flatten().max()? + 4 })
    }
}

/// `struct ext4_sb_info` (what `_ext4_show_options` prints from) and the three
/// fields it reads of the on-disk `struct ext4_super_block` (`s_es`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Ext4Offsets {
    pub groups_count: u64,
    pub es: u64,
    pub mount_opt: u64,
    pub mount_opt2: u64,
    pub def_mount_opt: u64,
    pub def_mount_opt2: u64,
    pub sb_block: u64,
    pub resuid: u64,
    pub resgid: u64,
    pub inode_readahead_blks: u64,
    pub commit_interval: u64,
    pub max_batch_time: u64,
    pub min_batch_time: u64,
    /// `s_qf_names[USRQUOTA]` (`[GRPQUOTA]` follows it).
    pub qf_names: u64,
    pub jquota_fmt: u64,
    pub stripe: u64,
    pub max_dir_size_kb: u64,
    pub li_wait_mult: u64,
    /// `s_dummy_enc_policy.policy` (absent without `CONFIG_FS_ENCRYPTION`).
    pub dummy_policy: Option<u64>,
    /// Bytes of `ext4_sb_info` that hold every field above.
    pub size: u64,
    /// `ext4_super_block.s_errors`, `.s_def_resuid`, `.s_def_resgid`.
    pub es_errors: u64,
    pub es_def_resuid: u64,
    pub es_def_resgid: u64,
}

/// `struct proc_fs_info`, and the values of `enum proc_hidepid` in
/// [`HIDEPID_OPTIONS`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ProcOffsets {
    pub pid_gid: u64,
    pub hide_pid: u64,
    pub pidonly: u64,
    pub size: u64,
    pub hidepid: [Option<u32>; 3],
}

/// The `HIDEPID_*` values `proc_show_options` names, with the name it prints.
pub const HIDEPID_OPTIONS: [(&str, &str); 3] =
    [("HIDEPID_NO_ACCESS", "noaccess"), ("HIDEPID_INVISIBLE", "invisible"), ("HIDEPID_NOT_PTRACEABLE", "ptraceable")];

/// `cgroup_root.flags` of `cgrp_dfl_root`, and the value of each `CGRP_ROOT_*` flag
/// cgroup2's mountinfo options show, in [`CGROUP2_OPTIONS`] order (`None` where the
/// kernel has no such flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Cgroup2Offsets {
    pub flags: u64,
    pub bits: [Option<u32>; 6],
}

/// The `CGRP_ROOT_*` flags `cgroup_show_options` prints for cgroup2, in its order,
/// with the option each prints.
pub const CGROUP2_OPTIONS: [(&str, &str); 6] = [
    ("CGRP_ROOT_NS_DELEGATE", "nsdelegate"),
    ("CGRP_ROOT_FAVOR_DYNMODS", "favordynmods"),
    ("CGRP_ROOT_MEMORY_LOCAL_EVENTS", "memory_localevents"),
    ("CGRP_ROOT_MEMORY_RECURSIVE_PROT", "memory_recursiveprot"),
    ("CGRP_ROOT_MEMORY_HUGETLB_ACCOUNTING", "memory_hugetlb_accounting"),
    ("CGRP_ROOT_PIDS_LOCAL_EVENTS", "pids_localevents"),
];

/// `struct shmem_sb_info` (`noswap` from 6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ShmemOffsets {
    pub max_blocks: u64,
    pub max_inodes: u64,
    pub mode: u64,
    pub huge: u64,
    pub uid: u64,
    pub gid: u64,
    pub full_inums: u64,
    pub mpol: u64,
    pub noswap: Option<u64>,
    pub size: u64,
    /// The memory policy `mpol` points to (absent without `CONFIG_NUMA`).
    pub mempolicy: Option<MempolicyOffsets>,
}

/// `struct mempolicy`: `mode`, `flags` (both `unsigned short`) and the `nodes`
/// bitmap, `nodes_len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MempolicyOffsets {
    pub mode: u64,
    pub flags: u64,
    pub nodes: u64,
    pub nodes_len: u64,
}

/// `pts_fs_info.mount_opts` (a `struct pts_mount_opts`), each field from the start
/// of `pts_fs_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DevptsOffsets {
    pub setuid: u64,
    pub setgid: u64,
    pub uid: u64,
    pub gid: u64,
    pub mode: u64,
    pub ptmxmode: u64,
    pub max: u64,
    pub size: u64,
}

impl FsOptionOffsets {
    fn resolve(p: &Profile) -> Option<FsOptionOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f).ok();
        let shmem = (|| {
            let o = |f: &str| off("shmem_sb_info", f);
            let s = ShmemOffsets {
                max_blocks: o("max_blocks")?,
                max_inodes: o("max_inodes")?,
                mode: o("mode")?,
                huge: o("huge")?,
                uid: o("uid")?,
                gid: o("gid")?,
                full_inums: o("full_inums")?,
                mpol: o("mpol")?,
                noswap: o("noswap"),
                size: 0,
                mempolicy: (|| {
                    let bits = p.field("mempolicy", "nodes.bits").ok()?;
                    let TypeRef::Array { count, .. } = bits.ty else { return None };
                    Some(MempolicyOffsets {
                        mode: off("mempolicy", "mode")?,
                        flags: off("mempolicy", "flags")?,
                        nodes: bits.offset,
                        nodes_len: u64::from(count) * 8,
                    })
                })(),
            };
            let size = [s.max_blocks, s.max_inodes, s.mpol].into_iter().max()? + 8;
            Some(ShmemOffsets { size, ..s })
        })();
        let devpts = (|| {
            let base = off("pts_fs_info", "mount_opts")?;
            let o = |f: &str| Some(base + off("pts_mount_opts", f)?);
            let max = o("max")?;
            Some(DevptsOffsets {
                setuid: o("setuid")?,
                setgid: o("setgid")?,
                uid: o("uid")?,
                gid: o("gid")?,
                mode: o("mode")?,
                ptmxmode: o("ptmxmode")?,
                max,
                size: max + 4,
            })
        })();
        let cgroup2 = off("cgroup_root", "flags").map(|flags| Cgroup2Offsets {
            flags,
            bits: CGROUP2_OPTIONS.map(|(name, _)| p.enum_value(name).ok().and_then(|v| u32::try_from(v).ok())),
        });
        let ext4 = (|| {
            let o = |f: &str| off("ext4_sb_info", f);
            let e = Ext4Offsets {
                groups_count: o("s_groups_count")?,
                es: o("s_es")?,
                mount_opt: o("s_mount_opt")?,
                mount_opt2: o("s_mount_opt2")?,
                def_mount_opt: o("s_def_mount_opt")?,
                def_mount_opt2: o("s_def_mount_opt2")?,
                sb_block: o("s_sb_block")?,
                resuid: o("s_resuid")?,
                resgid: o("s_resgid")?,
                inode_readahead_blks: o("s_inode_readahead_blks")?,
                commit_interval: o("s_commit_interval")?,
                max_batch_time: o("s_max_batch_time")?,
                min_batch_time: o("s_min_batch_time")?,
                qf_names: o("s_qf_names")?,
                jquota_fmt: o("s_jquota_fmt")?,
                stripe: o("s_stripe")?,
                max_dir_size_kb: o("s_max_dir_size_kb")?,
                li_wait_mult: o("s_li_wait_mult")?,
                dummy_policy: o("s_dummy_enc_policy.policy"),
                size: 0,
                es_errors: off("ext4_super_block", "s_errors")?,
                es_def_resuid: off("ext4_super_block", "s_def_resuid")?,
                es_def_resgid: off("ext4_super_block", "s_def_resgid")?,
            };
            let fields = [
                e.groups_count,
                e.es,
                e.mount_opt,
                e.mount_opt2,
                e.def_mount_opt,
                e.def_mount_opt2,
                e.sb_block,
                e.resuid,
                e.resgid,
                e.inode_readahead_blks,
                e.commit_interval,
                e.max_batch_time,
                e.min_batch_time,
                e.qf_names + 8,
                e.jquota_fmt,
                e.stripe,
                e.max_dir_size_kb,
                e.li_wait_mult,
                e.dummy_policy.unwrap_or(0),
            ];
            Some(Ext4Offsets { size: fields.into_iter().max()? + 8, ..e })
        })();
        let proc = (|| {
            let o = |f: &str| off("proc_fs_info", f);
            let (pid_gid, hide_pid, pidonly) = (o("pid_gid")?, o("hide_pid")?, o("pidonly")?);
            Some(ProcOffsets {
                pid_gid,
                hide_pid,
                pidonly,
                size: pid_gid.max(hide_pid).max(pidonly) + 4,
                hidepid: HIDEPID_OPTIONS.map(|(name, _)| p.enum_value(name).ok().and_then(|v| u32::try_from(v).ok())),
            })
        })();
        Some(FsOptionOffsets {
            s_op: off("super_block", "s_op")?,
            s_fs_info: off("super_block", "s_fs_info")?,
            show_options: off("super_operations", "show_options"),
            shmem,
            devpts,
            cgroup2,
            ext4,
            proc,
            debugfs: ModeFsOffsets::resolve(p, "debugfs_fs_info"),
            tracefs: ModeFsOffsets::resolve(p, "tracefs_fs_info"),
            ramfs: ModeFsOffsets::resolve(p, "ramfs_fs_info"),
            hugetlbfs: (|| {
                let o = |f: &str| off("hugetlbfs_sb_info", f);
                let h = HugetlbfsOffsets {
                    max_inodes: o("max_inodes")?,
                    hstate: o("hstate")?,
                    spool: o("spool")?,
                    uid: o("uid")?,
                    gid: o("gid")?,
                    mode: o("mode")?,
                    size: 0,
                    order: off("hstate", "order")?,
                    max_hpages: off("hugepage_subpool", "max_hpages")?,
                    min_hpages: off("hugepage_subpool", "min_hpages")?,
                };
                Some(HugetlbfsOffsets {
                    size: [h.max_inodes, h.hstate, h.spool, h.uid, h.gid, h.mode].into_iter().max()? + 8,
                    ..h
                })
            })(),
            bpf: Some(BpfOffsets {
                owner: off("bpf_mount_opts", "uid").and(Some((off("inode", "i_uid")?, off("inode", "i_gid")?))),
                delegates: (|| {
                    let d = |f: &str| off("bpf_mount_opts", f);
                    Some([d("delegate_cmds")?, d("delegate_maps")?, d("delegate_progs")?, d("delegate_attachs")?])
                })(),
            }),
        })
    }
}

impl MountOffsets {
    /// Bytes of `struct mount` that hold every field read here.
    pub fn mount_span(&self) -> u64 {
        [self.mnt_sb, self.mnt_flags, self.mnt_devname, self.mnt_master, self.mnt_group_id]
            .into_iter()
            .max()
            .unwrap_or(0)
            + 8
    }

    /// Bytes of `struct super_block` that hold every field read here.
    pub fn sb_span(&self) -> u64 {
        let own = self.fs.map_or(0, |fo| fo.s_op.max(fo.s_fs_info));
        self.s_type.max(self.s_flags).max(self.s_subtype).max(own) + 8
    }

    pub(crate) fn resolve(p: &Profile) -> Result<MountOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        let set = match (off("mnt_namespace", "mounts"), off("mount", "mnt_node")) {
            (Ok(root), Ok(node))
                if p.field("mnt_namespace", "mounts").is_ok_and(|f| f.ty.to_string().contains("rb_root")) =>
            {
                MountSet::Tree { root, node, left: off("rb_node", "rb_left")?, right: off("rb_node", "rb_right")? }
            }
            _ => MountSet::List { head: off("mnt_namespace", "list")?, link: off("mount", "mnt_list")? },
        };
        let mnt = off("mount", "mnt")?;
        Ok(MountOffsets {
            nsproxy_mnt_ns: off("nsproxy", "mnt_ns")?,
            ns_inum: off("mnt_namespace", "ns.inum")?,
            set,
            mnt_sb: mnt + off("vfsmount", "mnt_sb")?,
            mnt_flags: mnt + off("vfsmount", "mnt_flags")?,
            mnt_devname: off("mount", "mnt_devname")?,
            mnt_master: off("mount", "mnt_master")?,
            mnt_group_id: off("mount", "mnt_group_id")?,
            mnt_ns: off("mount", "mnt_ns")?,
            mnt_share: off("mount", "mnt_share")?,
            s_type: off("super_block", "s_type")?,
            s_flags: off("super_block", "s_flags")?,
            s_subtype: off("super_block", "s_subtype")?,
            fs_name: off("file_system_type", "name")?,
            fs: FsOptionOffsets::resolve(p),
        })
    }
}
