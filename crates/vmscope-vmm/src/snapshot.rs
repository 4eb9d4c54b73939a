//! Snapshots of guest RAM, taken with the vCPUs paused:
//!
//! - memfd RAM: a sparse copy (SEEK_DATA/SEEK_HOLE, so untouched guest pages stay
//!   holes) into a new memfd the VMM keeps open — readers open /proc/PID/fd/N — or
//!   into a file the request names;
//! - private RAM: fork(). The child's copy-on-write address space holds the RAM as it
//!   was; the parent resumes the guest at once. The child either stays (readers use
//!   process_vm_readv or /proc/CHILD/mem at the same host addresses) or, if a path is
//!   given, writes the RAM to that file while the guest runs, and exits.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;
use std::time::Instant;

use vmscope_hv::builtin::SnapshotInfo;

use crate::machine::Machine;
use crate::memory::Backing;
use crate::{Error, Result};

/// A snapshot the VMM holds for readers.
#[derive(Debug)]
enum Held {
    Memfd(File),
    Child(libc::pid_t),
}

/// The snapshots taken so far and not yet released.
#[derive(Debug, Default)]
pub struct Snapshots {
    next_id: Mutex<u64>,
    held: Mutex<HashMap<u64, Held>>,
}

impl Snapshots {
    /// Takes a snapshot of `m`'s RAM.
    pub fn take(&self, m: &Machine, path: Option<&str>) -> Result<SnapshotInfo> {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let was_paused = m.is_paused();
        let pid = std::process::id();
        let regions = m.ram.map.regions().to_vec();
        let mut info =
            SnapshotInfo { id, kind: String::new(), pid, fd: None, path: None, hva: None, regions, pause_us: 0 };
        match m.ram.backing {
            Backing::Memfd => {
                let src = m.ram.memfd.as_ref().expect("memfd backing has a memfd");
                let (dst, kind, fd, p) = match path {
                    Some(p) => {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .mode(0o600)
                            .open(p)
                            .map_err(|e| Error::io(format!("creating {p}"), e))?;
                        (f, "file", None, p.to_owned())
                    }
                    None => {
                        let f = new_memfd(&format!("vmscope-snapshot-{id}"))?;
                        let fd = f.as_raw_fd();
                        (f, "memfd-copy", Some(fd), format!("/proc/{pid}/fd/{fd}"))
                    }
                };
                dst.set_len(m.ram.size).map_err(|e| Error::io("sizing the snapshot", e))?;
                let t = Instant::now();
                m.pause()?;
                let copied = sparse_copy(src, &dst, m.ram.size);
                if !was_paused {
                    m.resume();
                }
                info.pause_us = t.elapsed().as_micros() as u64;
                copied?;
                info.kind = kind.into();
                info.fd = fd;
                info.path = Some(p);
                if kind == "memfd-copy" {
                    self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Held::Memfd(dst));
                }
            }
            Backing::Private => {
                let target = match path {
                    Some(p) => Some(CString::new(p).map_err(|_| Error::Control("snapshot path has a NUL".into()))?),
                    None => None,
                };
                let t = Instant::now();
                m.pause()?;
                // SAFETY: fork() in a threaded process: the child runs only
                // async-signal-safe calls (prctl, open, write, close, pause, _exit) on
                // memory prepared before the fork, never allocating or locking.
                let child = unsafe { libc::fork() };
                if child == 0 {
                    // SAFETY: see above; `target` and the RAM mapping were set up before
                    // fork and are valid in the child's copy of the address space.
                    unsafe { child_main(target.as_ref(), m.ram.hva, m.ram.size) };
                }
                if !was_paused {
                    m.resume();
                }
                info.pause_us = t.elapsed().as_micros() as u64;
                if child < 0 {
                    return Err(Error::os("fork for a snapshot"));
                }
                info.pid = child as u32;
                if let Some(p) = path {
                    let mut status = 0;
                    // SAFETY: waiting for our own child; status is a valid out pointer.
                    unsafe { libc::waitpid(child, &mut status, 0) };
                    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                        return Err(Error::Control(format!("snapshot child failed writing {p}")));
                    }
                    info.kind = "file".into();
                    info.path = Some(p.to_owned());
                } else {
                    info.kind = "fork".into();
                    info.hva = Some(m.ram.hva);
                    self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Held::Child(child));
                }
            }
        }
        Ok(info)
    }

    /// Releases snapshot `id`.
    pub fn release(&self, id: u64) -> Result<()> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        match held {
            None => Err(Error::Control(format!("no snapshot {id}"))),
            Some(Held::Memfd(f)) => {
                drop(f);
                Ok(())
            }
            Some(Held::Child(pid)) => {
                reap(pid);
                Ok(())
            }
        }
    }

    /// Releases every snapshot (on exit).
    pub fn release_all(&self) {
        let all: Vec<Held> = self.held.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, h)| h).collect();
        for h in all {
            if let Held::Child(pid) = h {
                reap(pid);
            }
        }
    }
}

fn reap(pid: libc::pid_t) {
    // SAFETY: pid is a child we forked and have not yet waited for.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// The forked child: dies with the VMM; writes the RAM to `target` and exits, or
/// waits to be read and killed.
///
/// # Safety
/// Must run only in a freshly forked child; `[hva, hva + size)` must be mapped.
unsafe fn child_main(target: Option<&CString>, hva: u64, size: u64) -> ! {
    // SAFETY: plain syscalls with valid arguments, allowed after fork.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            libc::_exit(1);
        }
        match target {
            Some(path) => {
                let fd =
                    libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, 0o600);
                if fd < 0 {
                    libc::_exit(2);
                }
                // Only pages the guest ever touched: the rest read as zero and stay
                // holes. /proc/self/pagemap says which (present or swapped).
                let pagemap = libc::open(c"/proc/self/pagemap".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                let mut entries = [0u64; 256];
                let mut off = 0u64;
                while off < size {
                    let n = (size - off).min(256 * 4096);
                    let pages = (n / 4096) as usize;
                    let want = pages * 8;
                    let got = if pagemap >= 0 {
                        libc::pread(
                            pagemap,
                            entries.as_mut_ptr().cast(),
                            want,
                            (((hva + off) / 4096) * 8) as libc::off_t,
                        )
                    } else {
                        -1
                    };
                    for (i, e) in entries.iter().enumerate().take(pages) {
                        let used = got != want as isize || e & (3 << 62) != 0;
                        let po = off + i as u64 * 4096;
                        let p = (hva + po) as *const u8;
                        if used && !all_zero(p, 4096) && libc::pwrite(fd, p.cast(), 4096, po as libc::off_t) != 4096 {
                            libc::_exit(3);
                        }
                    }
                    off += n;
                }
                if libc::ftruncate(fd, size as libc::off_t) != 0 {
                    libc::_exit(4);
                }
                libc::close(fd);
                libc::_exit(0);
            }
            None => loop {
                libc::pause();
            },
        }
    }
}

/// Whether `n` bytes at `p` are zero (so the file can keep a hole there).
///
/// # Safety
/// `[p, p + n)` must be readable.
unsafe fn all_zero(p: *const u8, n: usize) -> bool {
    // SAFETY: the caller guarantees the range is readable.
    let s = unsafe { std::slice::from_raw_parts(p, n) };
    s.iter().all(|b| *b == 0)
}

fn new_memfd(name: &str) -> Result<File> {
    let c = CString::new(name).map_err(|_| Error::Control("memfd name has a NUL".into()))?;
    // SAFETY: c is NUL-terminated; the return value is checked.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), 0) };
    if fd < 0 {
        return Err(Error::os("memfd_create for a snapshot"));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Copies the data extents of `src` into `dst` at the same offsets.
fn sparse_copy(src: &File, dst: &File, size: u64) -> Result<()> {
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut off: i64 = 0;
    while (off as u64) < size {
        // SAFETY: lseek on a descriptor we own; errors (ENXIO: no more data) checked.
        let data = unsafe { libc::lseek(sfd, off, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(sfd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size as i64 } else { hole };
        let mut pos = data;
        while pos < end {
            let (mut i, mut o) = (pos, pos);
            // SAFETY: both descriptors are open files we own; i and o are valid
            // offset pointers; the length is bounded by the extent.
            let n = unsafe { libc::copy_file_range(sfd, &mut i, dfd, &mut o, (end - pos) as usize, 0) };
            if n <= 0 {
                // Not every pair of file systems supports it: copy through a buffer.
                copy_range(src, dst, pos as u64, (end - pos) as u64)?;
                break;
            }
            pos += n as i64;
        }
        off = end;
    }
    Ok(())
}

fn copy_range(src: &File, dst: &File, start: u64, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = start;
    while off < start + len {
        let n = ((start + len - off) as usize).min(buf.len());
        src.read_exact_at(&mut buf[..n], off).map_err(|e| Error::io("reading RAM for a snapshot", e))?;
        dst.write_all_at(&buf[..n], off).map_err(|e| Error::io("writing the snapshot", e))?;
        off += n as u64;
    }
    Ok(())
}
