//! Mounts: each mount namespace's mounts, with the fields `/proc/PID/mountinfo`
//! prints (mount id, parent id, device, root, mount point, options, propagation,
//! file system type, source). Up to 6.7 a namespace lists its mounts
//! (`mnt_namespace.list`); from 6.8 it keeps them in a red-black tree by id
//! (`mnt_namespace.mounts`). Mount points are paths from the root of the process
//! whose view it is, as the kernel prints them for that process.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::fsopts::OwnSb;
use super::path::{Paths, read_path};
use super::process::Leader;
use super::rbtree::Tree;
use super::{AddrMap, AddrSet, Anomaly, Fields, follow, owner, plausible, with_struct};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::{MountOffsets, MountSet, VfsOffsets};

/// `mnt_flags` bits (`include/linux/mount.h`) and how mountinfo prints them.
const MNT_READONLY: u32 = 0x40;
const MNT_SHARED: u32 = 0x1000;
const MNT_UNBINDABLE: u32 = 0x2000;
const MNT_OPTIONS: [(u32, &str); 7] = [
    (0x01, ",nosuid"),
    (0x02, ",nodev"),
    (0x04, ",noexec"),
    (0x08, ",noatime"),
    (0x10, ",nodiratime"),
    (0x20, ",relatime"),
    (0x80, ",nosymfollow"),
];
/// `s_flags` bits (`SB_RDONLY`, ...) and how mountinfo prints them.
const SB_RDONLY: u64 = 1;
const SB_OPTIONS: [(u64, &str); 3] = [(16, ",sync"), (128, ",dirsync"), (64, ",mand")];

/// The longest device name or file system type read.
const NAME_MAX: usize = 4096;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    /// Mount id.
    pub id: i32,
    /// The parent mount's id (its own for the top of a namespace).
    pub parent: i32,
    /// Device: major and minor numbers of the file system.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// The directory of the file system this mount shows (`/` unless a bind mount).
    pub root: String,
    /// Where it is mounted, from the process's root.
    pub mount_point: String,
    /// Per-mount options: `rw` or `ro`, then `nosuid`, `nodev`, `noexec`, `noatime`,
    /// `nodiratime`, `relatime`, `nosymfollow`.
    pub options: String,
    /// Propagation: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    /// File system type (`type.subtype` with a subtype).
    pub fs_type: String,
    /// Source: the device name given to mount, or `none`.
    pub source: String,
    /// The super block options: the generic ones (`rw` or `ro`, `sync`, `dirsync`,
    /// `mand`), then those the file system adds itself where they are rebuilt
    /// (tmpfs's `size=`, ext4's `errors=`, ...).
    pub super_options: String,
    /// Whether `super_options` holds everything the file system adds: true where
    /// its options are rebuilt or it adds none (no `show_options`); false where
    /// only the generic ones could be given.
    pub super_options_complete: bool,
    /// Address of the `struct mount`.
    pub mount: Gva,
}

impl MountInfo {
    /// The line as `/proc/PID/mountinfo` prints it (short of the file system's own
    /// options where [`super_options_complete`](Self::super_options_complete) is
    /// false).
    pub fn line(&self) -> String {
        let mut opt = String::new();
        for o in &self.optional {
            opt.push(' ');
            opt.push_str(o);
        }
        format!(
            "{} {} {}:{} {} {} {}{opt} - {} {} {}",
            self.id,
            self.parent,
            self.major,
            self.minor,
            mangle(&self.root),
            mangle(&self.mount_point),
            self.options,
            mangle(&self.fs_type),
            mangle(&self.source),
            self.super_options
        )
    }
}

/// `s` as mountinfo escapes it: space, tab, newline and backslash as `\ooo`.
pub fn mangle(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The mounts of one mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountNamespace {
    /// Its inode number (as `/proc/PID/ns/mnt` shows it).
    pub inum: u32,
    /// The process whose view this is (mount points are from its root).
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// Every mount, in mountinfo order.
    pub mounts: Vec<MountInfo>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

/// The mounts of one or every mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTable {
    /// Each namespace, in the order its first process comes in the task list.
    pub namespaces: Vec<MountNamespace>,
    /// Anomalies of the task-list walk.
    pub anomalies: Vec<Anomaly>,
}

/// What mountinfo reads of a `struct mount`.
struct Raw {
    parent: Gva,
    mnt_root: Gva,
    id: i32,
    sb: Gva,
    flags: u32,
    devname: Gva,
    master: Gva,
    group: i32,
}

impl<M: PhysMem> Ctx<'_, M> {
    fn mount_addrs(&self, mo: &MountOffsets, ns: Gva, an: &mut Vec<Anomaly>) -> Vec<Gva> {
        let limit = self.limits.max_list;
        match mo.set {
            MountSet::List { head, link } => {
                let Ok(h) = member(ns, head) else { return Vec::new() };
                self.walk_list(h, "mnt_namespace.list", an)
                    .into_iter()
                    .filter_map(|n| owner(n, link, "struct mount", an))
                    .collect()
            }
            MountSet::Tree { root, node, left, right } => {
                let top = follow(self.k, ns, root, "mnt_namespace.mounts", an);
                let tree = Tree { name: "mnt_namespace.mounts", left, right, limit };
                tree.in_order(self.k, top, an).into_iter().filter_map(|n| owner(n, node, "struct mount", an)).collect()
            }
        }
    }

    /// `get_dominating_id`: the peer group of the closest master — `master`, its
    /// master, and so on — that has a peer in namespace `ns` the process reaches from
    /// its root; 0 for none. One walk over masters and their peer rings
    /// (`mnt_share`): at most `limits.max_list` mounts, none visited twice (peer
    /// groups are disjoint rings and a master chain never loops back), within the
    /// pass's budget.
    fn dominating_group(
        &self,
        vo: &VfsOffsets,
        mo: &MountOffsets,
        (master, ns): (Gva, Gva),
        paths: &mut Paths<'_, '_, M>,
        an: &mut Vec<Anomaly>,
    ) -> i32 {
        const WHAT: &str = "mount propagation (mnt_master, mnt_share)";
        let span = [mo.mnt_ns, mo.mnt_share, mo.mnt_group_id, mo.mnt_master, vo.mnt + vo.mnt_root].into_iter().max();
        let span = span.unwrap_or(0) + 8;
        let mut seen = AddrSet::default();
        // The master whose ring is walked, and the mount of it being looked at.
        let (mut m, mut p) = (master, master);
        let mut next_master = Gva::new(0);
        loop {
            if !seen.insert(p) {
                an.push(Anomaly::ListCycle { list: WHAT.into(), node: p });
                return 0;
            }
            if seen.len() > self.limits.max_list {
                an.push(Anomaly::StepLimit { list: WHAT.into(), limit: self.limits.max_list });
                return 0;
            }
            if self.meter.exhausted(self.k) {
                return 0;
            }
            if !plausible(self.k, p, 8) {
                an.push(Anomaly::BadPointer { what: "mount.mnt_share".into(), at: m, value: p });
                return 0;
            }
            let Some(Some((p_ns, root, group, share, up))) = with_struct(self.k, p, span, "struct mount", an, |b| {
                Some((
                    b.ptr(mo.mnt_ns)?,
                    b.ptr(vo.mnt + vo.mnt_root)?,
                    b.i32(mo.mnt_group_id)?,
                    b.ptr(mo.mnt_share)?,
                    b.ptr(mo.mnt_master)?,
                ))
            }) else {
                return 0;
            };
            if p == m {
                next_master = up;
            }
            if p_ns == ns && member(p, vo.mnt).is_ok_and(|v| paths.reaches_root(v, root, an)) {
                return group;
            }
            match owner(share, mo.mnt_share, "struct mount", an) {
                // On round the ring; a ring of one (an empty list) points at itself.
                Some(n) if n != m && n != p => p = n,
                // Back at the ring's start: on to the next master.
                _ if next_master.raw() != 0 => {
                    (m, p) = (next_master, next_master);
                    next_master = Gva::new(0);
                }
                _ => return 0,
            }
        }
    }

    fn raw_mount(&self, vo: &VfsOffsets, mo: &MountOffsets, m: Gva, an: &mut Vec<Anomaly>) -> Option<Raw> {
        let span = vo.mount_span().max(mo.mount_span());
        with_struct(self.k, m, span, "struct mount", an, |b| {
            Some(Raw {
                parent: b.ptr(vo.mnt_parent)?,
                mnt_root: b.ptr(vo.mnt + vo.mnt_root)?,
                id: b.i32(vo.mnt_id)?,
                sb: b.ptr(mo.mnt_sb)?,
                flags: b.u32(mo.mnt_flags)?,
                devname: b.ptr(mo.mnt_devname)?,
                master: b.ptr(mo.mnt_master)?,
                group: b.i32(mo.mnt_group_id)?,
            })
        })
        .flatten()
    }

    /// The NUL-terminated string at `at`, at most `NAME_MAX` (4,096) bytes.
    pub(super) fn string_at(&self, at: Gva, what: &str, an: &mut Vec<Anomaly>) -> Option<String> {
        if !plausible(self.k, at, 1) {
            an.push(Anomaly::BadPointer { what: what.into(), at, value: at });
            return None;
        }
        match self.k.read_cstr(at, NAME_MAX) {
            Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Err(e) => {
                an.push(Anomaly::Unreadable { what: what.into(), addr: at, error: e.to_string() });
                None
            }
        }
    }

    /// The file system type, and the super block options (generic, then the file
    /// system's own) of super block `sb` mounted with root dentry `root`.
    fn super_block(
        &self,
        mo: &MountOffsets,
        (sb, root): (Gva, Gva),
        an: &mut Vec<Anomaly>,
    ) -> Option<(String, String, bool)> {
        if !plausible(self.k, sb, 8) {
            an.push(Anomaly::BadPointer { what: "vfsmount.mnt_sb".into(), at: sb, value: sb });
            return None;
        }
        let (ty, flags, subtype, own) = with_struct(self.k, sb, mo.sb_span(), "super_block", an, |b| {
            // `s_op` and `s_fs_info`, for the options a file system adds itself.
            let own = mo.fs.and_then(|fo| Some((fo, b.ptr(fo.s_op)?, b.ptr(fo.s_fs_info)?)));
            Some((b.ptr(mo.s_type)?, b.u64(mo.s_flags)?, b.ptr(mo.s_subtype)?, own))
        })??;
        if !plausible(self.k, ty, 8) {
            an.push(Anomaly::BadPointer { what: "super_block.s_type".into(), at: sb, value: ty });
            return None;
        }
        let name = member(ty, mo.fs_name).and_then(|at| self.k.read_ptr(at)).ok()?;
        let mut fs = self.string_at(name, "file_system_type.name", an)?;
        if subtype.raw() != 0
            && let Some(sub) = self.string_at(subtype, "super_block.s_subtype", an).filter(|s| !s.is_empty())
        {
            fs.push('.');
            fs.push_str(&sub);
        }
        let mut opts = if flags & SB_RDONLY != 0 { "ro".to_owned() } else { "rw".to_owned() };
        for (bit, name) in SB_OPTIONS {
            if flags & bit != 0 {
                opts.push_str(name);
            }
        }
        let complete = match own {
            Some((fo, op, info)) => {
                match self.fs_options(&fo, OwnSb { at: sb, op, info, flags, fs_type: &fs, root }, an) {
                    Some(own) => {
                        opts.push_str(&own);
                        true
                    }
                    None => self.shows_no_options(&fo, op, &fs),
                }
            }
            None => false,
        };
        Some((fs, opts, complete))
    }

    fn mount_namespace(&self, vo: &VfsOffsets, mo: &MountOffsets, ns: Gva, leader: &Leader) -> MountNamespace {
        let mut an = Vec::new();
        let inum = member(ns, mo.ns_inum).and_then(|at| self.k.read_u32(at)).unwrap_or(0);
        let root = leader.fs.and_then(|fs| {
            let at = member(fs, self.o.files?.fs_root).ok()?;
            read_path(self, vo, at, "fs_struct.root", &mut an)
        });
        let mut paths = Paths::new(self, vo, root);
        let addrs = self.mount_addrs(mo, ns, &mut an);
        let raws: Vec<(Gva, Raw)> =
            addrs.iter().filter_map(|&m| Some((m, self.raw_mount(vo, mo, m, &mut an)?))).collect();
        let mut ids: AddrMap<Gva, i32> = raws.iter().map(|(m, r)| (*m, r.id)).collect();
        let group = |m: Gva, an: &mut Vec<Anomaly>| -> Option<i32> {
            member(m, mo.mnt_group_id)
                .and_then(|at| self.k.read_u32(at))
                .map(|v| v as i32)
                .map_err(|e| {
                    an.push(Anomaly::Unreadable { what: "mount.mnt_group_id".into(), addr: m, error: e.to_string() })
                })
                .ok()
        };
        let mut mounts = Vec::with_capacity(raws.len());
        // `propagate_from:` per master: the same for every slave of it in this listing.
        let mut dominating: AddrMap<Gva, i32> = AddrMap::default();
        for (m, r) in raws {
            let parent = match ids.get(&r.parent) {
                Some(&id) => id,
                None if plausible(self.k, r.parent, 8) => {
                    let id = member(r.parent, vo.mnt_id).and_then(|at| self.k.read_u32(at)).map_or(-1, |v| v as i32);
                    ids.insert(r.parent, id);
                    id
                }
                None => {
                    an.push(Anomaly::BadPointer { what: "mount.mnt_parent".into(), at: m, value: r.parent });
                    -1
                }
            };
            let Some(vfsmount) = member(m, vo.mnt).ok() else { continue };
            // mountinfo leaves out what the process cannot reach from its root.
            if !paths.reaches_root(vfsmount, r.mnt_root, &mut an) {
                continue;
            }
            let mount_point = paths.d_path(vfsmount, r.mnt_root, &mut an).0.unwrap_or_default();
            let root = paths.dentry_path(r.mnt_root, &mut an).unwrap_or_default();
            let (fs_type, super_options, super_options_complete) =
                self.super_block(mo, (r.sb, r.mnt_root), &mut an).unwrap_or_default();
            let dev = member(r.sb, vo.s_dev).and_then(|at| self.k.read_u32(at)).unwrap_or(0);
            let source = if r.devname.raw() == 0 {
                "none".to_owned()
            } else {
                self.string_at(r.devname, "mount.mnt_devname", &mut an).unwrap_or_default()
            };
            let mut options = if r.flags & MNT_READONLY != 0 { "ro".to_owned() } else { "rw".to_owned() };
            for (bit, name) in MNT_OPTIONS {
                if r.flags & bit != 0 {
                    options.push_str(name);
                }
            }
            let mut optional = Vec::new();
            if r.flags & MNT_SHARED != 0 {
                optional.push(format!("shared:{}", r.group));
            }
            if r.master.raw() != 0 {
                if plausible(self.k, r.master, 8) {
                    if let Some(g) = group(r.master, &mut an) {
                        optional.push(format!("master:{g}"));
                        let dom = *dominating
                            .entry(r.master)
                            .or_insert_with(|| self.dominating_group(vo, mo, (r.master, ns), &mut paths, &mut an));
                        if dom != 0 && dom != g {
                            optional.push(format!("propagate_from:{dom}"));
                        }
                    }
                } else {
                    an.push(Anomaly::BadPointer { what: "mount.mnt_master".into(), at: m, value: r.master });
                }
            }
            if r.flags & MNT_UNBINDABLE != 0 {
                optional.push("unbindable".into());
            }
            mounts.push(MountInfo {
                id: r.id,
                parent,
                major: dev >> 20,
                minor: dev & 0xf_ffff,
                root,
                mount_point,
                options,
                optional,
                fs_type,
                source,
                super_options,
                super_options_complete,
                mount: m,
            });
        }
        MountNamespace { inum, pid: leader.pid, comm: leader.comm.clone(), mounts, anomalies: an }
    }

    /// The mount namespace of process `pid` (`None`: no such process), or every
    /// mount namespace, each seen by the first process in it. The caller checked
    /// that the offsets are there.
    pub(crate) fn mount_table(&self, pid: Option<i32>) -> Option<MountTable> {
        let (vo, mo, no) = (self.o.vfs.as_ref()?, self.o.mounts.as_ref()?, self.o.ns.as_ref()?);
        let each = self.per_process(pid, |l| {
            let mut an = Vec::new();
            let proxy = follow(self.k, l.task, no.task_nsproxy, "task.nsproxy", &mut an);
            let ns = proxy.and_then(|p| follow(self.k, p, mo.nsproxy_mnt_ns, "nsproxy.mnt_ns", &mut an));
            (l.clone(), ns, an)
        })?;
        let mut table = MountTable { namespaces: Vec::new(), anomalies: each.anomalies };
        let mut seen = AddrMap::default();
        for (leader, ns, mut an) in each.processes {
            table.anomalies.append(&mut an);
            // An exited process, or a kernel thread of no namespace, has none.
            let Some(ns) = ns else { continue };
            if seen.insert(ns, ()).is_none() {
                table.namespaces.push(self.mount_namespace(vo, mo, ns, &leader));
            }
        }
        Some(table)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn mangled_as_mountinfo_escapes() {
        assert_eq!(mangle("/mnt/a b\tc\\d\ne"), "/mnt/a\\040b\\011c\\134d\\012e");
        assert_eq!(mangle("/plain"), "/plain");
    }

    proptest! {
        /// Only the four characters grow (to four bytes each); nothing else changes.
        #[test]
        fn mangle_never_panics(s in ".*") {
            let m = mangle(&s);
            let special = s.chars().filter(|c| matches!(c, ' ' | '\t' | '\n' | '\\')).count();
            prop_assert_eq!(m.len(), s.len() + 3 * special);
        }
    }
}
