//! Whether a live guest is still there to be read: its hypervisor process runs, and
//! the files that back its RAM still hold all of it.
//!
//! Neither is a given between passes, and neither shows in the reads themselves: a
//! mapping of QEMU's memfd, or an fd of it, outlives QEMU (the reads go on returning
//! the memory of a guest that is gone), and a memfd created with `seal=off` can be
//! truncated under a mapping (a read past its new end raises SIGBUS; `vmscope-map`
//! guards that too).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{Backing, RamLocation};
use crate::{Error, Result};

/// A file that backs a RAM block, and how long it must be.
#[derive(Debug)]
struct BackingFile {
    block: String,
    file: File,
    needed: u64,
}

/// Checks, in a few system calls, that a live guest is still whole: its hypervisor
/// process runs, and its RAM files still hold all of its RAM. Neither shows in the
/// reads themselves: a mapping of QEMU's memfd, or an fd of it, outlives QEMU, and a
/// memfd created with `seal=off` can be truncated under a mapping.
#[derive(Debug)]
pub struct Vitals {
    pid: u32,
    /// A pidfd of the hypervisor process: readable once it has exited, and never
    /// fooled by its PID being reused.
    process: Option<OwnedFd>,
    files: Vec<BackingFile>,
}

impl Vitals {
    /// The vitals of `loc`'s hypervisor process and backing files. On a kernel
    /// without pidfds (before 5.3) the process is not watched.
    pub fn new(loc: &RamLocation) -> Result<Self> {
        let mut files = Vec::new();
        for b in &loc.blocks {
            if let Backing::File { offset, .. } = &b.backing {
                let needed = offset.saturating_add(b.size);
                files.push(BackingFile { block: b.name.clone(), file: b.open_file(loc.pid)?, needed });
            }
        }
        Ok(Self { pid: loc.pid, process: pidfd_open(loc.pid), files })
    }

    /// Fails with [`Error::BackingTruncated`] if a backing file is shorter than its
    /// block needs, and with [`Error::ProcessGone`] if the hypervisor process has
    /// exited (a zombie counts as exited).
    pub fn check(&self) -> Result<()> {
        self.check_within(std::time::Duration::ZERO)
    }

    /// As [`check`](Self::check), waiting up to `wait` for the process to exit: after
    /// a failure that its exit may explain (its sockets close as it exits, a moment
    /// before it has exited).
    pub fn check_within(&self, wait: std::time::Duration) -> Result<()> {
        for f in &self.files {
            let len = f.file.metadata().map_err(|e| Error::io(format!("fstat of RAM block {}", f.block), e))?.len();
            if len < f.needed {
                return Err(Error::BackingTruncated { pid: self.pid, block: f.block.clone(), len, needed: f.needed });
            }
        }
        if let Some(fd) = &self.process {
            let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd and a timeout; poll writes only `revents`.
            let n = unsafe { libc::poll(&mut p, 1, ms) };
            if n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                return Err(Error::ProcessGone { pid: self.pid });
            }
        }
        Ok(())
    }
}

/// A pidfd of `pid`, if the kernel has them and the process exists.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmscope_mem::{Gpa, Hva, MemoryMap, Region};

    fn location(pid: u32, file: &std::path::Path, size: u64) -> RamLocation {
        let map = MemoryMap::new(vec![Region::new(Gpa::new(0), size, 0, "ram")]).unwrap();
        RamLocation::single(pid, map, Hva::new(0), Some(file.into()))
    }

    #[test]
    fn a_truncated_backing_and_an_exited_process_are_told() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(0x10000).unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let v = Vitals::new(&location(child.id(), f.path(), 0x10000)).unwrap();
        v.check().unwrap();

        f.as_file().set_len(0x8000).unwrap();
        let e = v.check().unwrap_err();
        assert!(matches!(e, Error::BackingTruncated { len: 0x8000, needed: 0x10000, .. }), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
        f.as_file().set_len(0x10000).unwrap();

        child.kill().unwrap();
        // Not reaped yet: a zombie is gone too.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let e = v.check().unwrap_err();
        assert!(matches!(e, Error::ProcessGone { .. }), "{e}");
        child.wait().unwrap();
        assert!(v.check().is_err());
    }
}
