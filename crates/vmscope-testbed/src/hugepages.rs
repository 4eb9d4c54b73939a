//! Huge pages for a test: reserved and a hugetlbfs mounted, both given back on drop
//! (root only; PLATFORM.md: none are reserved by default).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// `pages` more 2 MiB huge pages reserved and a hugetlbfs mounted on a fresh
/// directory, for a guest's `mem-path`. Dropping it unmounts the directory, removes
/// it, and gives the pages back.
#[derive(Debug)]
pub struct HugePages {
    before: u64,
    mount: PathBuf,
}

impl HugePages {
    /// Reserves `pages` more huge pages and mounts a hugetlbfs.
    pub fn reserve(pages: u64) -> Result<Self> {
        let read = std::fs::read_to_string(NR_HUGEPAGES).map_err(|e| Error::io(NR_HUGEPAGES, e))?;
        let before: u64 = read.trim().parse().map_err(|_| Error::Launch(format!("{NR_HUGEPAGES} says {read:?}")))?;
        let mount =
            std::env::temp_dir().join(format!("vmscope-huge-{}-{}", std::process::id(), crate::qemu::next_id()));
        std::fs::write(NR_HUGEPAGES, (before + pages).to_string())
            .map_err(|e| Error::Launch(format!("reserving {pages} huge pages needs root: {e}")))?;
        let h = Self { before, mount };
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
        let _ = std::fs::write(NR_HUGEPAGES, self.before.to_string());
    }
}
