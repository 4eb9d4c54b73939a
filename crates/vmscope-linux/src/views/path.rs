//! Paths as the kernel prints them (`d_path`), rebuilt from dentries and mounts:
//! each dentry's name is prepended walking `d_parent` up to its mount's root, then
//! the walk crosses to the parent mount at `mnt_mountpoint`, until the root of the
//! initial task (`init_task.fs->root`) or a mount with no parent. Pseudo files name
//! themselves (`d_op->d_dname`): `pipe:[INODE]`, `socket:[INODE]`,
//! `anon_inode:[eventfd]`, `/memfd:NAME (deleted)`. A file whose dentry is unhashed
//! and not a root has been deleted: ` (deleted)` follows its path.
//!
//! Everything read is cached for the life of one [`Paths`] (one pass): processes
//! share files, files share directories.

use std::rc::Rc;

use vmscope_mem::{Gva, PhysMem};

use super::{AddrMap, AddrSet, Anomaly, Bytes, Fields, plausible, with_struct};
use crate::kernel::{Ctx, DName};
use crate::kmem::{container, member};
use crate::offsets::VfsOffsets;

/// The longest name of one dentry read (`PATH_MAX`).
const MAX_NAME: u64 = 4096;

/// `S_IFMT` and the file types of `i_mode` (stable user ABI, `stat(2)`).
pub(crate) const S_IFMT: u16 = 0o170000;

/// An inode, as a path or a memory map line shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inode {
    pub ino: u64,
    pub mode: u16,
    /// `i_sb->s_dev`, the kernel's encoding (major << 20 | minor).
    pub dev: Option<u32>,
}

/// A `struct file`, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileInfo {
    /// Its path as `d_path` prints it; `None` when it could not be rebuilt (see the
    /// anomalies).
    pub path: Option<String>,
    pub inode: Option<Inode>,
    pub flags: u32,
    pub mode: u32,
    pub pos: i64,
    /// `real_mount(f_path.mnt)->mnt_id`.
    pub mnt_id: Option<i32>,
    /// The kind of pseudo file its name says it is.
    pub pseudo: Option<DName>,
}

#[derive(Debug, Clone, Copy)]
struct Mount {
    parent: Gva,
    mountpoint: Gva,
    root: Gva,
    id: i32,
}

struct Dentry {
    parent: Gva,
    name: Vec<u8>,
    inode: Gva,
    op: Gva,
    hashed: bool,
}

/// A `d_path` result: the path (when it could be rebuilt) and the kind of pseudo
/// file that named itself.
type DPath = (Option<Rc<str>>, Option<DName>);

/// Path rebuilding for one pass, with its caches.
pub(crate) struct Paths<'c, 'a, M> {
    ctx: &'c Ctx<'a, M>,
    vo: &'c VfsOffsets,
    /// The root paths are relative to: `(vfsmount, dentry)`.
    root: Option<(Gva, Gva)>,
    /// `prefix` results: the path, and whether it reached `root`.
    prefixes: AddrMap<(Gva, Gva), (Rc<str>, bool)>,
    /// Whole `d_path` results.
    paths: AddrMap<(Gva, Gva), DPath>,
    mounts: AddrMap<Gva, Option<Mount>>,
    devs: AddrMap<Gva, Option<u32>>,
    dnames: AddrMap<Gva, Option<Gva>>,
    files: AddrMap<Gva, Option<FileInfo>>,
}

impl<'c, 'a, M: PhysMem> Paths<'c, 'a, M> {
    /// Paths relative to `root` (`(vfsmount, dentry)`), or to the top of each
    /// mount tree when `None`.
    pub fn new(ctx: &'c Ctx<'a, M>, vo: &'c VfsOffsets, root: Option<(Gva, Gva)>) -> Self {
        Paths {
            ctx,
            vo,
            root,
            prefixes: AddrMap::default(),
            paths: AddrMap::default(),
            mounts: AddrMap::default(),
            devs: AddrMap::default(),
            dnames: AddrMap::default(),
            files: AddrMap::default(),
        }
    }

    fn mount(&mut self, m: Gva, an: &mut Vec<Anomaly>) -> Option<Mount> {
        if let Some(c) = self.mounts.get(&m) {
            return *c;
        }
        let vo = self.vo;
        let got = with_struct(self.ctx.k, m, vo.mount_span(), "struct mount", an, |b| {
            Some(Mount {
                parent: b.ptr(vo.mnt_parent)?,
                mountpoint: b.ptr(vo.mnt_mountpoint)?,
                root: b.ptr(vo.mnt + vo.mnt_root)?,
                id: b.i32(vo.mnt_id)?,
            })
        })
        .flatten();
        self.mounts.insert(m, got);
        got
    }

    fn dentry(&self, d: Gva, an: &mut Vec<Anomaly>) -> Option<Dentry> {
        let (vo, k) = (self.vo, self.ctx.k);
        let span = vo.dentry_span();
        let (parent, len, name_at, inode, op, hashed, inline) = with_struct(k, d, span, "dentry", an, |b| {
            let name_at = b.ptr(vo.d_name_name)?;
            // A short name lives inside the dentry (`d_iname`): no second read.
            let inline = name_at
                .offset_from(d)
                .filter(|&o| o < span)
                .and_then(|o| b.0.get(o as usize..))
                .and_then(|s| s.iter().position(|&c| c == 0).map(|n| s[..n].to_vec()));
            Some((
                b.ptr(vo.d_parent)?,
                u64::from(b.u32(vo.d_name_len)?),
                name_at,
                b.ptr(vo.d_inode)?,
                b.ptr(vo.d_op)?,
                b.u64(vo.d_hash_pprev)? != 0,
                inline,
            ))
        })??;
        let name = match inline {
            Some(n) if n.len() as u64 == len => n,
            _ => {
                if len > MAX_NAME || !plausible(k, name_at, 1) {
                    an.push(Anomaly::InvalidField {
                        what: "dentry".into(),
                        addr: d,
                        field: "d_name".into(),
                        value: format!("{len} bytes at {name_at:#x}"),
                    });
                    return None;
                }
                let mut n = vec![0u8; len as usize];
                if let Err(e) = k.read(name_at, &mut n) {
                    an.push(Anomaly::Unreadable { what: "dentry name".into(), addr: name_at, error: e.to_string() });
                    return None;
                }
                n
            }
        };
        Some(Dentry { parent, name, inode, op, hashed })
    }

    /// Whether `vfsmount`/`d` lies under the root the paths are from, as `__d_path`
    /// decides: a mount outside a chrooted process's root is left out of its
    /// mountinfo. Without a root, everything does.
    pub fn reaches_root(&mut self, vfsmount: Gva, d: Gva, an: &mut Vec<Anomaly>) -> bool {
        if self.root.is_none() {
            return true;
        }
        let Ok(m) = container(vfsmount, self.vo.mnt) else { return false };
        self.prefix(m, d, an).is_some_and(|(_, reached)| reached)
    }

    /// The path of `dentry` in the mount `m` (a `struct mount`) from the root, as
    /// `prepend_path` builds it: `""` for the root itself; and whether the walk
    /// reached the root (rather than the top of a mount tree, or a dentry that
    /// escaped its mount).
    fn prefix(&mut self, m: Gva, d: Gva, an: &mut Vec<Anomaly>) -> Option<(Rc<str>, bool)> {
        let limit = self.ctx.limits.max_path_steps;
        let (mut m, mut d) = (m, d);
        let mut names: Vec<Vec<u8>> = Vec::new();
        // Every (mount, dentry) met, with the number of names known below it.
        let mut visited: Vec<((Gva, Gva), usize)> = Vec::new();
        let mut seen = AddrSet::default();
        let (base, reached): (Rc<str>, bool) = loop {
            if let Some(p) = self.prefixes.get(&(m, d)) {
                break p.clone();
            }
            let vfsmount = member(m, self.vo.mnt).ok()?;
            if self.root == Some((vfsmount, d)) {
                break (Rc::from(""), true);
            }
            if visited.len() >= limit {
                an.push(Anomaly::StepLimit { list: "path".into(), limit });
                return None;
            }
            if !seen.insert((m, d)) {
                an.push(Anomaly::ListCycle { list: "path".into(), node: d });
                return None;
            }
            visited.push(((m, d), names.len()));
            let mount = self.mount(m, an)?;
            if d == mount.root {
                if mount.parent == m {
                    // The top of a mount tree (the global root, or an internal or
                    // detached mount): the path is what was prepended.
                    break (Rc::from(""), false);
                }
                if !plausible(self.ctx.k, mount.parent, 8) || !plausible(self.ctx.k, mount.mountpoint, 8) {
                    an.push(Anomaly::BadPointer { what: "mount.mnt_parent".into(), at: m, value: mount.parent });
                    return None;
                }
                (m, d) = (mount.parent, mount.mountpoint);
                continue;
            }
            let den = self.dentry(d, an)?;
            if den.parent == d {
                // Escaped its mount (a dentry not under the mount's root): the kernel
                // prints "/" alone.
                return Some((Rc::from(""), false));
            }
            if !plausible(self.ctx.k, den.parent, 8) {
                an.push(Anomaly::BadPointer { what: "dentry.d_parent".into(), at: d, value: den.parent });
                return None;
            }
            names.push(den.name);
            d = den.parent;
        };
        // Build each visited point's path from the top down, and keep them all.
        let mut full: Rc<str> = base.clone();
        let mut built = names.len();
        for (key, below) in visited.into_iter().rev() {
            if below < built {
                let mut s = String::with_capacity(full.len() + 32);
                s.push_str(&full);
                for n in names[below..built].iter().rev() {
                    s.push('/');
                    s.push_str(&String::from_utf8_lossy(n));
                }
                full = Rc::from(s);
                built = below;
            }
            self.prefixes.insert(key, (full.clone(), reached));
        }
        Some((full, reached))
    }

    /// The name a pseudo file's `d_dname` gives it, if its dentry has one.
    fn dname(&mut self, op: Gva, an: &mut Vec<Anomaly>) -> Option<Gva> {
        if op.raw() == 0 {
            return None;
        }
        if let Some(f) = self.dnames.get(&op) {
            return *f;
        }
        let f = if plausible(self.ctx.k, op, 8) {
            match member(op, self.vo.d_dname).and_then(|at| self.ctx.k.read_ptr(at)) {
                Ok(f) => Some(f).filter(|f| f.raw() != 0),
                Err(e) => {
                    an.push(Anomaly::Unreadable { what: "dentry_operations".into(), addr: op, error: e.to_string() });
                    None
                }
            }
        } else {
            an.push(Anomaly::BadPointer { what: "dentry.d_op".into(), at: op, value: op });
            None
        };
        self.dnames.insert(op, f);
        f
    }

    /// `d_path` of `(vfsmount, dentry)`, and the pseudo-file kind when a `d_dname`
    /// named it.
    pub fn d_path(&mut self, vfsmount: Gva, d: Gva, an: &mut Vec<Anomaly>) -> (Option<String>, Option<DName>) {
        if let Some((p, kind)) = self.paths.get(&(vfsmount, d)) {
            return (p.as_deref().map(str::to_owned), *kind);
        }
        let (p, kind) = self.d_path_uncached(vfsmount, d, an);
        self.paths.insert((vfsmount, d), (p.as_deref().map(Rc::from), kind));
        (p, kind)
    }

    fn d_path_uncached(&mut self, vfsmount: Gva, d: Gva, an: &mut Vec<Anomaly>) -> (Option<String>, Option<DName>) {
        let Some(m) = container(vfsmount, self.vo.mnt).ok().filter(|_| plausible(self.ctx.k, vfsmount, 8)) else {
            an.push(Anomaly::BadPointer { what: "path.mnt".into(), at: vfsmount, value: vfsmount });
            return (None, None);
        };
        if !plausible(self.ctx.k, d, 8) {
            an.push(Anomaly::BadPointer { what: "path.dentry".into(), at: d, value: d });
            return (None, None);
        }
        let Some(den) = self.dentry(d, an) else { return (None, None) };
        if let Some(f) = self.dname(den.op, an) {
            let is_root = den.parent == d && self.mount(m, an).is_some_and(|mt| mt.root == d);
            if !is_root {
                return self.pseudo_name(f, &den, an);
            }
        }
        let deleted = !den.hashed && den.parent != d;
        let Some((p, _)) = self.prefix(m, d, an) else { return (None, None) };
        let mut s = if p.is_empty() { "/".to_owned() } else { p.to_string() };
        if deleted {
            s.push_str(" (deleted)");
        }
        (Some(s), None)
    }

    fn pseudo_name(&mut self, f: Gva, den: &Dentry, an: &mut Vec<Anomaly>) -> (Option<String>, Option<DName>) {
        let kind = self.ctx.addrs.known.dnames.iter().find(|(at, _)| *at == f).map(|(_, k)| *k);
        let name = String::from_utf8_lossy(&den.name);
        let s = match kind {
            Some(DName::Pipe) => format!("pipe:[{}]", self.inode_number(den.inode, an).unwrap_or(0)),
            Some(DName::Socket) => format!("socket:[{}]", self.inode_number(den.inode, an).unwrap_or(0)),
            Some(DName::AnonInode) => format!("anon_inode:{name}"),
            Some(DName::Simple) => format!("/{name} (deleted)"),
            None => {
                an.push(Anomaly::InvalidField {
                    what: "dentry_operations".into(),
                    addr: f,
                    field: "d_dname".into(),
                    value: format!("{f:#x} (not a name generator vmscope knows)"),
                });
                return (Some(name.into_owned()), None);
            }
        };
        (Some(s), kind)
    }

    fn inode_number(&self, inode: Gva, an: &mut Vec<Anomaly>) -> Option<u64> {
        if !plausible(self.ctx.k, inode, 8) {
            an.push(Anomaly::BadPointer { what: "dentry.d_inode".into(), at: inode, value: inode });
            return None;
        }
        member(inode, self.vo.i_ino)
            .and_then(|at| self.ctx.k.read_u64(at))
            .map_err(|e| an.push(Anomaly::Unreadable { what: "inode".into(), addr: inode, error: e.to_string() }))
            .ok()
    }

    /// An inode's number, mode and device.
    pub fn inode(&mut self, inode: Gva, an: &mut Vec<Anomaly>) -> Option<Inode> {
        let (vo, k) = (self.vo, self.ctx.k);
        let (ino, mode, sb) = with_struct(k, inode, vo.inode_span(), "inode", an, |b| {
            Some((b.u64(vo.i_ino)?, b.uint(vo.i_mode, 2)? as u16, b.ptr(vo.i_sb)?))
        })??;
        let dev = match self.devs.get(&sb) {
            Some(d) => *d,
            None => {
                let d = if plausible(k, sb, 8) {
                    member(sb, vo.s_dev)
                        .and_then(|at| k.read_u32(at))
                        .map_err(|e| {
                            an.push(Anomaly::Unreadable { what: "super_block".into(), addr: sb, error: e.to_string() })
                        })
                        .ok()
                } else {
                    an.push(Anomaly::BadPointer { what: "inode.i_sb".into(), at: inode, value: sb });
                    None
                };
                self.devs.insert(sb, d);
                d
            }
        };
        Some(Inode { ino, mode, dev })
    }

    /// A `struct file`: its path, inode, flags, mode, position and mount id.
    pub fn file(&mut self, file: Gva, an: &mut Vec<Anomaly>) -> Option<FileInfo> {
        if let Some(f) = self.files.get(&file) {
            return f.clone();
        }
        let (vo, k) = (self.vo, self.ctx.k);
        let read = with_struct(k, file, vo.file_span(), "struct file", an, |b| {
            Some((
                b.ptr(vo.f_path + vo.path_mnt)?,
                b.ptr(vo.f_path + vo.path_dentry)?,
                b.ptr(vo.f_inode)?,
                b.u32(vo.f_flags)?,
                b.u32(vo.f_mode)?,
                b.u64(vo.f_pos)? as i64,
            ))
        })
        .flatten();
        let info = read.map(|(mnt, dentry, inode_at, flags, mode, pos)| {
            let (path, pseudo) = self.d_path(mnt, dentry, an);
            let inode = if plausible(k, inode_at, 8) {
                self.inode(inode_at, an)
            } else {
                an.push(Anomaly::BadPointer { what: "file.f_inode".into(), at: file, value: inode_at });
                None
            };
            let mnt_id = container(mnt, vo.mnt).ok().and_then(|m| self.mount(m, an)).map(|m| m.id);
            FileInfo { path, inode, flags, mode, pos, mnt_id, pseudo }
        });
        self.files.insert(file, info.clone());
        info
    }

    /// `d_path` of a `struct path` at `at` (e.g. `fs_struct.pwd`).
    pub fn path_at(&mut self, at: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        let (mnt, dentry) = read_path(self.ctx, self.vo, at, "struct path", an)?;
        self.d_path(mnt, dentry, an).0
    }

    /// The path of dentry `d` from the root of its file system (`dentry_path_raw`:
    /// `/` for the root itself), mount points not crossed.
    pub fn dentry_path(&mut self, d: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        let limit = self.ctx.limits.max_path_steps;
        let mut names = Vec::new();
        let mut d = d;
        loop {
            if names.len() >= limit {
                an.push(Anomaly::StepLimit { list: "dentry path".into(), limit });
                return None;
            }
            let den = self.dentry(d, an)?;
            if den.parent == d {
                break;
            }
            if !plausible(self.ctx.k, den.parent, 8) {
                an.push(Anomaly::BadPointer { what: "dentry.d_parent".into(), at: d, value: den.parent });
                return None;
            }
            names.push(den.name);
            d = den.parent;
        }
        let mut s = String::new();
        for n in names.iter().rev() {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(n));
        }
        Some(if s.is_empty() { "/".into() } else { s })
    }
}

/// The `(vfsmount, dentry)` of the `struct path` at `at`.
pub(crate) fn read_path<M: PhysMem>(
    ctx: &Ctx<'_, M>,
    vo: &VfsOffsets,
    at: Gva,
    what: &str,
    an: &mut Vec<Anomaly>,
) -> Option<(Gva, Gva)> {
    with_struct(ctx.k, at, vo.path_mnt.max(vo.path_dentry) + 8, what, an, |b: Bytes<'_>| {
        Some((b.ptr(vo.path_mnt)?, b.ptr(vo.path_dentry)?))
    })?
}

/// The root paths are printed from: `init_task.fs->root`, as `(vfsmount, dentry)`.
pub(crate) fn global_root<M: PhysMem>(ctx: &Ctx<'_, M>, an: &mut Vec<Anomaly>) -> Option<(Gva, Gva)> {
    let (fo, vo) = (ctx.o.files?, ctx.o.vfs.as_ref()?);
    let fs = member(ctx.addrs.init_task, fo.task_fs).and_then(|at| ctx.k.read_ptr(at)).ok()?;
    if !plausible(ctx.k, fs, 8) {
        an.push(Anomaly::BadPointer { what: "init_task.fs".into(), at: ctx.addrs.init_task, value: fs });
        return None;
    }
    let at = member(fs, fo.fs_root).ok()?;
    read_path(ctx, vo, at, "init_task.fs->root", an)
}
