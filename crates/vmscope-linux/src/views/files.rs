//! Open files: each process's file descriptors (`task->files->fdt`), every open
//! file with the path `/proc/PID/fd/N` links to (`socket:[INODE]`,
//! `pipe:[INODE]`, `anon_inode:[eventfd]` for pseudo files) and the flags and
//! position `/proc/PID/fdinfo/N` shows; and the process's working directory, root
//! and executable.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::path::{FileInfo, Paths, S_IFMT, global_root};
use super::process::Leader;
use super::{AddrMap, Anomaly, Bytes, Fields, plausible, with_struct};
use crate::kernel::{Ctx, DName};
use crate::kmem::member;
use crate::offsets::FilesOffsets;

/// `O_CLOEXEC` on x86-64 (`fcntl.h`): what fdinfo adds to `f_flags` for a
/// descriptor that is closed on exec.
pub const O_CLOEXEC: u32 = 0o2000000;

/// What kind of file a descriptor refers to (the file type bits of its inode's
/// mode, `stat(2)`; an anonymous inode has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A pipe or FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// A symbolic link (opened with `O_PATH`).
    Symlink,
    /// An anonymous inode (eventfd, epoll, timerfd, signalfd, ...).
    AnonInode,
    /// Anything else (or an unreadable inode).
    Unknown,
}

impl FileKind {
    fn of(mode: Option<u16>, pseudo: Option<DName>) -> FileKind {
        match mode.and_then(|m| FileKind::from_mode(u32::from(m))) {
            Some(k) => k,
            None if pseudo == Some(DName::AnonInode) => FileKind::AnonInode,
            None => FileKind::Unknown,
        }
    }

    /// The kind an inode's mode (`S_IFMT` bits) names, if it names one: an anonymous
    /// inode's mode names none (its kind comes from its name).
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & u32::from(S_IFMT) {
            0o100000 => FileKind::Regular,
            0o040000 => FileKind::Directory,
            0o020000 => FileKind::CharDevice,
            0o060000 => FileKind::BlockDevice,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            0o120000 => FileKind::Symlink,
            _ => return None,
        })
    }

    /// The TYPE column of `lsof`: REG, DIR, CHR, BLK, FIFO, sock, LINK, a_inode.
    pub fn lsof_type(self) -> &'static str {
        match self {
            FileKind::Regular => "REG",
            FileKind::Directory => "DIR",
            FileKind::CharDevice => "CHR",
            FileKind::BlockDevice => "BLK",
            FileKind::Fifo => "FIFO",
            FileKind::Socket => "sock",
            FileKind::Symlink => "LINK",
            FileKind::AnonInode => "a_inode",
            FileKind::Unknown => "unknown",
        }
    }
}

/// One open file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    /// The descriptor.
    pub fd: u32,
    /// What `/proc/PID/fd/N` links to; empty when it could not be rebuilt (see the
    /// anomalies).
    pub path: String,
    /// What kind of file it is.
    pub kind: FileKind,
    /// `f_flags`, plus `O_CLOEXEC` for a close-on-exec descriptor: the `flags` of
    /// `/proc/PID/fdinfo/N` (printed there in octal).
    pub flags: u32,
    /// The file position (`pos` of fdinfo).
    pub pos: i64,
    /// The inode number (`ino` of fdinfo).
    pub inode: u64,
    /// The mount id (`mnt_id` of fdinfo).
    pub mnt_id: Option<i32>,
    /// Address of the `struct file`.
    pub file: Gva,
}

/// The open files of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFiles {
    /// The process.
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// Its working directory (`/proc/PID/cwd`).
    pub cwd: Option<String>,
    /// Its root directory (`/proc/PID/root`).
    pub root: Option<String>,
    /// Its executable (`/proc/PID/exe`).
    pub exe: Option<String>,
    /// Its descriptors, in order.
    pub files: Vec<OpenFile>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

/// The open files of every process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllOpenFiles {
    /// By process, in task-list order.
    pub processes: Vec<OpenFiles>,
    /// Anomalies of the task-list walk.
    pub anomalies: Vec<Anomaly>,
}

/// What one pass over open files reads once: paths, descriptor tables and
/// filesystem contexts (shared by threads, and by every kernel thread).
struct Pass<'c, 'a, M> {
    paths: Paths<'c, 'a, M>,
    /// Each table read, and the process (an index into `done`) whose files it gave.
    tables: AddrMap<Gva, usize>,
    dirs: AddrMap<Gva, (Option<String>, Option<String>)>,
    done: Vec<OpenFiles>,
}

impl<'c, 'a, M> Pass<'c, 'a, M> {
    fn new(paths: Paths<'c, 'a, M>) -> Self {
        Pass { paths, tables: AddrMap::default(), dirs: AddrMap::default(), done: Vec::new() }
    }
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The descriptor table: `(fd, struct file *, close-on-exec)` for each open one.
    fn descriptors(&self, fo: &FilesOffsets, files: Gva, an: &mut Vec<Anomaly>) -> Vec<(u32, Gva, bool)> {
        let k = self.k;
        let fdt = match member(files, fo.fdt).and_then(|at| k.read_ptr(at)) {
            Ok(p) if plausible(k, p, 8) => p,
            Ok(p) => {
                an.push(Anomaly::BadPointer { what: "files_struct.fdt".into(), at: files, value: p });
                return Vec::new();
            }
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "files_struct".into(), addr: files, error: e.to_string() });
                return Vec::new();
            }
        };
        let span = fo.max_fds.max(fo.fd).max(fo.close_on_exec) + 8;
        let Some((max, fd, cloexec)) = with_struct(k, fdt, span, "fdtable", an, |b| {
            Some((b.u32(fo.max_fds)?, b.ptr(fo.fd)?, b.ptr(fo.close_on_exec)?))
        })
        .flatten() else {
            return Vec::new();
        };
        let mut n = max as usize;
        if n > self.limits.max_fds {
            an.push(Anomaly::InvalidField {
                what: "fdtable".into(),
                addr: fdt,
                field: "max_fds".into(),
                value: format!("{max} (more than the limit of {})", self.limits.max_fds),
            });
            n = self.limits.max_fds;
        }
        if n == 0 {
            return Vec::new();
        }
        if !plausible(k, fd, 8) {
            an.push(Anomaly::BadPointer { what: "fdtable.fd".into(), at: fdt, value: fd });
            return Vec::new();
        }
        let table = match k.read_vec(fd, n * 8) {
            Ok(t) => t,
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "fdtable.fd".into(), addr: fd, error: e.to_string() });
                return Vec::new();
            }
        };
        // The close-on-exec bitmap: one bit per descriptor, in longs.
        let bits = if plausible(k, cloexec, 8) { k.read_vec(cloexec, n.div_ceil(64) * 8).ok() } else { None };
        if bits.is_none() {
            an.push(Anomaly::BadPointer { what: "fdtable.close_on_exec".into(), at: fdt, value: cloexec });
        }
        let table = Bytes(&table);
        (0..n)
            .filter_map(|i| {
                let f = table.ptr(i as u64 * 8)?;
                if f.raw() == 0 {
                    return None;
                }
                let at = member(fd, i as u64 * 8).unwrap_or(fd);
                if !plausible(k, f, 8) {
                    an.push(Anomaly::BadPointer { what: format!("fd {i}"), at, value: f });
                    return None;
                }
                let close = bits.as_ref().and_then(|b| b.get(i / 8)).is_some_and(|byte| byte & (1 << (i % 8)) != 0);
                Some((i as u32, f, close))
            })
            .collect()
    }

    fn open_files_of(&self, fo: &FilesOffsets, pass: &mut Pass<'_, '_, M>, leader: &Leader) -> OpenFiles {
        let mut an = Vec::new();
        let mut out = OpenFiles { pid: leader.pid, comm: leader.comm.clone(), ..OpenFiles::default() };
        let paths = &mut pass.paths;
        if let Some(fs) = leader.fs {
            (out.cwd, out.root) = match pass.dirs.get(&fs) {
                Some(d) => d.clone(),
                None => {
                    let cwd = member(fs, fo.fs_pwd).ok().and_then(|at| paths.path_at(at, &mut an));
                    let root = member(fs, fo.fs_root).ok().and_then(|at| paths.path_at(at, &mut an));
                    pass.dirs.insert(fs, (cwd.clone(), root.clone()));
                    (cwd, root)
                }
            };
        }
        if let Some(mm) = leader.mm {
            let exe = member(mm, self.o.mm.exe_file).and_then(|at| self.k.read_ptr(at));
            match exe {
                Ok(f) if f.raw() == 0 => {}
                Ok(f) if plausible(self.k, f, 8) => out.exe = paths.file(f, &mut an).and_then(|i| i.path),
                Ok(f) => an.push(Anomaly::BadPointer { what: "mm.exe_file".into(), at: mm, value: f }),
                Err(e) => an.push(Anomaly::Unreadable { what: "mm_struct".into(), addr: mm, error: e.to_string() }),
            }
        }
        if let Some(files) = leader.files {
            // Threads of a group, and every kernel thread, share one table: it is
            // read once per pass (its anomalies told with the first process).
            if let Some(&i) = pass.tables.get(&files) {
                out.files = pass.done[i].files.clone();
                out.anomalies = an;
                return out;
            }
            for (fd, file, cloexec) in self.descriptors(fo, files, &mut an) {
                if self.meter.exhausted(self.k) {
                    break;
                }
                let Some(FileInfo { path, inode, flags, pos, mnt_id, pseudo, .. }) = paths.file(file, &mut an) else {
                    continue;
                };
                out.files.push(OpenFile {
                    fd,
                    path: path.unwrap_or_default(),
                    kind: FileKind::of(inode.map(|i| i.mode), pseudo),
                    flags: if cloexec { flags | O_CLOEXEC } else { flags },
                    pos,
                    inode: inode.map_or(0, |i| i.ino),
                    mnt_id,
                    file,
                });
            }
            pass.tables.insert(files, pass.done.len());
        }
        out.anomalies = an;
        out
    }

    /// The open files of process `pid`; `None` if there is no such process. (The
    /// caller checked that the offsets are there.)
    pub(crate) fn open_files(&self, pid: i32) -> Option<OpenFiles> {
        let (fo, vo) = (self.o.files.as_ref()?, self.o.vfs.as_ref()?);
        let mut an = Vec::new();
        let leader = self.find_leader(pid, &mut an)?;
        let mut pass = Pass::new(Paths::new(self, vo, global_root(self, &mut an)));
        let mut f = self.open_files_of(fo, &mut pass, &leader);
        an.append(&mut f.anomalies);
        f.anomalies = an;
        Some(f)
    }

    /// Every process's open files, paths shared between them.
    pub(crate) fn all_open_files(&self) -> AllOpenFiles {
        let (Some(fo), Some(vo)) = (self.o.files.as_ref(), self.o.vfs.as_ref()) else {
            return AllOpenFiles::default();
        };
        let mut anomalies = Vec::new();
        let leaders = self.leaders(&mut anomalies);
        let mut pass = Pass::new(Paths::new(self, vo, global_root(self, &mut anomalies)));
        pass.done.reserve_exact(leaders.len());
        for l in leaders.iter().take_while(|_| !self.meter.exhausted(self.k)) {
            let f = self.open_files_of(fo, &mut pass, l);
            pass.done.push(f);
        }
        AllOpenFiles { processes: pass.done, anomalies }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::Limits;
    use crate::views::fixture::Fx;
    use crate::views::fixture::deep::{Pseudo, layout as dl};

    /// `O_RDONLY`, `O_WRONLY | O_APPEND`, `O_RDWR | O_NONBLOCK` as x86-64 spells them.
    const O_RDONLY: u32 = 0;
    const O_WRONLY_APPEND: u32 = 0o2001;
    const O_RDWR_NONBLOCK: u32 = 0o4002;

    #[test]
    fn descriptors_as_proc_fd_and_fdinfo_show_them() {
        let mut fx = Fx::new();
        let t = fx.process(7, fx.init_task, 0, "holder", Some("holder"));
        fx.mount_at("/usr");
        let exe = fx.file("/usr/bin/holder", O_RDONLY, 0);
        fx.mm_layout(t, Some(exe), (0, 0), 0);
        fx.set_fs(t, "/tmp/work");
        let (pipe, pipe_ino) = fx.pseudo_file(Pseudo::Pipe, "", O_RDWR_NONBLOCK & !2);
        let (sock, sock_ino) = fx.pseudo_file(Pseudo::Socket, "", 2);
        let (efd, _) = fx.pseudo_file(Pseudo::AnonInode, "[eventfd]", 2);
        let (memfd, _) = fx.pseudo_file(Pseudo::Memfd, "memfd:vmscope", 2);
        let data = fx.file("/tmp/work/data", O_RDONLY, 1234);
        let log = fx.file("/tmp/work/log", O_WRONLY_APPEND, 6);
        let gone = fx.file("/tmp/work/gone", 2, 0);
        fx.unlink("/tmp/work/gone");
        let long = fx.file("/tmp/work/a-file-name-longer-than-the-32-bytes-a-dentry-holds", O_RDONLY, 0);
        for (fd, f, cloexec) in
            [(0, pipe, false), (1, sock, false), (2, efd, true), (3, data, false), (4, log, true), (5, gone, false)]
        {
            fx.open(t, fd, f, cloexec);
        }
        fx.open(t, 9, memfd, false);
        fx.open(t, 100, long, true); // past the first table: it grows
        let data_ino = fx.ino_of("/tmp/work/data");
        let (k, addrs) = fx.finish();
        let ctx = fx.ctx(&k, &addrs, Limits::default());
        let f = ctx.open_files(7).expect("pid 7");
        assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
        assert_eq!(
            (f.cwd.as_deref(), f.root.as_deref(), f.exe.as_deref()),
            (Some("/tmp/work"), Some("/"), Some("/usr/bin/holder"))
        );
        let got: Vec<(u32, &str, FileKind, u32, i64)> =
            f.files.iter().map(|o| (o.fd, o.path.as_str(), o.kind, o.flags, o.pos)).collect();
        let (pipe_name, sock_name) = (format!("pipe:[{pipe_ino}]"), format!("socket:[{sock_ino}]"));
        assert_eq!(
            got,
            [
                (0, pipe_name.as_str(), FileKind::Fifo, 0o4000, 0),
                (1, sock_name.as_str(), FileKind::Socket, 2, 0),
                (2, "anon_inode:[eventfd]", FileKind::AnonInode, 2 | O_CLOEXEC, 0),
                (3, "/tmp/work/data", FileKind::Regular, O_RDONLY, 1234),
                (4, "/tmp/work/log", FileKind::Regular, O_WRONLY_APPEND | O_CLOEXEC, 6),
                (5, "/tmp/work/gone (deleted)", FileKind::Regular, 2, 0),
                (9, "/memfd:vmscope (deleted)", FileKind::Regular, 2, 0),
                (100, "/tmp/work/a-file-name-longer-than-the-32-bytes-a-dentry-holds", FileKind::Regular, O_CLOEXEC, 0),
            ]
        );
        assert_eq!(f.files[3].inode, data_ino);
        // /usr is a mount of its own; /tmp is on the root mount.
        assert_eq!(
            (f.files[3].mnt_id, f.files.iter().find(|o| o.fd == 100).and_then(|o| o.mnt_id)),
            (Some(1), Some(1))
        );
        let all = ctx.all_open_files();
        assert_eq!(all.processes.len(), 1);
        assert_eq!(all.processes[0].files, f.files);
    }

    #[test]
    fn a_bad_table_is_an_anomaly() {
        let mut fx = Fx::new();
        let t = fx.process(7, fx.init_task, 0, "holder", Some("holder"));
        let data = fx.file("/tmp/data", 0, 0);
        fx.open(t, 3, data, false);
        let files = fx.r64(t + dl::TASK_FILES);
        let fdt = fx.r64(files + dl::FDT);
        fx.w32(fdt + dl::MAX_FDS, u32::MAX);
        let (k, addrs) = fx.finish();
        // The table is read up to the limit, past the 64 descriptors it has: what
        // follows it in memory is junk, reported, never followed blindly.
        let f = fx.ctx(&k, &addrs, Limits { max_fds: 128, ..Limits::default() }).open_files(7).expect("pid 7");
        assert!(
            matches!(f.anomalies.first(), Some(Anomaly::InvalidField { field, .. }) if field == "max_fds"),
            "{:?}",
            f.anomalies
        );
        assert_eq!(f.files.iter().map(|o| (o.fd, o.path.as_str())).next(), Some((3, "/tmp/data")));
    }

    #[test]
    fn a_path_that_loops_is_an_anomaly_not_a_hang() {
        let mut fx = Fx::new();
        let t = fx.process(7, fx.init_task, 0, "holder", Some("holder"));
        let data = fx.file("/a/b/c", 0, 0);
        fx.open(t, 3, data, false);
        let (_, b) = fx.deep.dirs["/a/b"];
        let (_, a) = fx.deep.dirs["/a"];
        fx.w64(a + dl::D_PARENT, b); // a under b under a
        let (k, addrs) = fx.finish();
        let f = fx.ctx(&k, &addrs, Limits::default()).open_files(7).expect("pid 7");
        assert!(matches!(f.anomalies.as_slice(), [Anomaly::ListCycle { .. }]), "{:?}", f.anomalies);
        assert_eq!(f.files[0].path, "");
    }
}
