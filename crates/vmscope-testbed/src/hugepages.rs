//! Huge pages for a test: reserved and a hugetlbfs mounted, both given back on drop
//! (root only; PLATFORM.md: none are reserved by default).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// `pages` more 2 MiB huge pages reserved and a hugetlbfs mounted on a fresh
/// directory, for a guest's `mem-path`. Dropping it unmounts the directory, removes
/// it, and gives the pages back. Tests running at once each add and take back their
/// own pages (under a lock), so none takes another's.
#[derive(Debug)]
pub struct HugePages {
    pages: u64,
    mount: PathBuf,
}

impl HugePages {
    /// Reserves `pages` more huge pages and mounts a hugetlbfs.
    pub fn reserve(pages: u64) -> Result<Self> {
        let mount =
            std::env::temp_dir().join(format!("vmscope-huge-{}-{}", std::process::id(), crate::qemu::next_id()));
        adjust(|n| n + pages).map_err(|e| Error::Launch(format!("reserving {pages} huge pages needs root: {e}")))?;
        let h = Self { pages, mount };
        std::fs::create_dir_all(&h.mount).map_err(|e| Error::io(format!("creating {}", h.mount.display()), e))?;
        let st = Command::new("mount").args(["-t", "hugetlbfs", "none"]).arg(&h.mount).status();
        if !st.is_ok_and(|s| s.success()) {
            return Err(Error::Launch(format!("mounting a hugetlbfs on {} needs root", h.mount.display())));
        }
        if Self::free()? < pages {
            return Err(Error::Launch(format!("the kernel found fewer than {pages} free huge pages")));
        }
        Ok(h)
    }

    /// Where the hugetlbfs is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// `HugePages_Free` of /proc/meminfo: huge pages no one holds.
    pub fn free() -> Result<u64> {
        let m = std::fs::read_to_string("/proc/meminfo").map_err(|e| Error::io("/proc/meminfo", e))?;
        m.lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Launch("no HugePages_Free in /proc/meminfo".into()))
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
        let pages = self.pages;
        let _ = adjust(|n| n.saturating_sub(pages));
    }
}

/// Sets `nr_hugepages` to `f` of its value, under an exclusive lock that every
/// [`HugePages`] of this host takes.
fn adjust(f: impl FnOnce(u64) -> u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let lock = std::fs::File::create(std::env::temp_dir().join("vmscope-hugepages.lock"))?;
    // SAFETY: flock on a descriptor we hold; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let now: u64 = std::fs::read_to_string(NR_HUGEPAGES)?.trim().parse().map_err(std::io::Error::other)?;
    std::fs::write(NR_HUGEPAGES, f(now).to_string())
}
