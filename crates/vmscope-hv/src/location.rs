//! Where guest RAM lives on the host: the hypervisor process, the address of the RAM
//! in it, and a file that backs it. This is what the technique crates start from.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::RwLock;

use vmscope_mem::{Hva, MemoryMap};

use crate::{Error, Result};

/// Guest RAM as the host sees it.
#[derive(Debug, Clone)]
pub struct RamLocation {
    /// The hypervisor process (QEMU, `vmscope-vmm`).
    pub pid: u32,
    /// Host-virtual address, in `pid`, of backing offset 0.
    pub hva: Hva,
    /// Length of the backing.
    pub size: u64,
    /// A path that opens the backing file from another process
    /// (`/proc/PID/fd/N` of a memfd, a `mem-path` file); `None` for private RAM.
    pub file: Option<PathBuf>,
    /// Guest-physical ranges and their offsets in the backing.
    pub map: MemoryMap,
}

impl RamLocation {
    /// RAM of the QEMU process `pid`, laid out as `map` says (from QMP).
    pub fn qemu(pid: u32, map: MemoryMap) -> Result<Self> {
        let m = crate::qemu::ram_mapping(pid)?;
        let hva =
            m.hva.checked_sub(m.file_offset).ok_or_else(|| Error::Protocol("RAM mapping below its offset".into()))?;
        let file = if m.shared { Some(find_fd(pid, &m.path).unwrap_or(m.map_file)) } else { None };
        if map.backing_size() > m.file_offset + m.size {
            return Err(Error::Protocol(format!(
                "QMP maps {} bytes of RAM but QEMU {pid} maps only {} of its backend",
                map.backing_size(),
                m.size
            )));
        }
        Ok(Self { pid, hva, size: m.file_offset + m.size, file, map })
    }

    /// Opens the backing file read-only.
    pub fn open_file(&self) -> Result<File> {
        let p = self.file.as_ref().ok_or_else(|| {
            Error::Unsupported(
                "guest RAM is private to the hypervisor process: start QEMU with \
                 memory-backend-memfd,share=on (or a mem-path file with share=on)"
                    .into(),
            )
        })?;
        File::open(p).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (run as the user that owns the hypervisor, or as root)"
            } else {
                ""
            };
            Error::io(format!("opening the RAM backing {}{hint}", p.display()), e)
        })
    }
}

/// The `/proc/PID/fd/N` whose link target is `target`.
fn find_fd(pid: u32, target: &str) -> Option<PathBuf> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| std::fs::read_link(p).is_ok_and(|l| l.to_string_lossy() == target))
}

const PAGE: u64 = 4096;

/// The populated extents of a backing file: where it has pages. Reading a hole through
/// the hypervisor's address space (process_vm_readv, /proc/PID/mem, a mapping) would
/// make the kernel allocate a page the guest never touched; a technique asks here first
/// and reads zeros instead.
#[derive(Debug, Clone, Default)]
pub struct Extents {
    /// Sorted, disjoint `(start, end)` byte ranges with data.
    ranges: Vec<(u64, u64)>,
    /// One bit per wholly populated 4 KiB page, for a constant-time answer to the
    /// question every read asks (empty: use `ranges`).
    pages: Vec<u64>,
}

impl Extents {
    /// Scans `file` with SEEK_DATA/SEEK_HOLE up to `size`.
    pub fn scan(file: &File, size: u64) -> Result<Self> {
        let mut x = Self::scan_range(file, 0, size)?;
        let mut pages = vec![0u64; size.div_ceil(PAGE * 64) as usize];
        for &(s, e) in &x.ranges {
            for p in s.div_ceil(PAGE)..e / PAGE {
                pages[(p / 64) as usize] |= 1 << (p % 64);
            }
        }
        x.pages = pages;
        Ok(x)
    }

    /// Scans only `offset..offset+len`. A file system without `SEEK_DATA` reports
    /// the whole range as data.
    pub fn scan_range(file: &File, offset: u64, len: u64) -> Result<Self> {
        let fd = file.as_raw_fd();
        let mut ranges = Vec::new();
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let end = i64::try_from(offset.saturating_add(len)).unwrap_or(i64::MAX);
        let mut pos = start;
        while pos < end {
            // SAFETY: lseek on an fd we own; no memory is passed. It moves only this
            // open file's position, which no pread depends on.
            let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
            if data < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENXIO) => break, // no data after pos
                    Some(libc::EINVAL) if pos == start => {
                        ranges.push((start as u64, end as u64));
                        break;
                    }
                    _ => return Err(Error::io("SEEK_DATA on the RAM backing", e)),
                }
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            if hole < 0 {
                return Err(Error::io("SEEK_HOLE on the RAM backing", std::io::Error::last_os_error()));
            }
            if data >= end {
                break;
            }
            ranges.push((data as u64, (hole.min(end)) as u64));
            pos = hole.max(data + 1);
        }
        Ok(Self { ranges, pages: Vec::new() })
    }

    /// Every byte of `offset..offset+len` is populated.
    #[inline]
    pub fn all_data(&self, offset: u64, len: u64) -> bool {
        let (first, last) = (offset / PAGE, (offset + len.max(1) - 1) / PAGE);
        if last - first < 16 && ((last / 64) as usize) < self.pages.len() {
            return (first..=last).all(|p| self.pages[(p / 64) as usize] & (1 << (p % 64)) != 0);
        }
        let i = self.ranges.partition_point(|&(_, e)| e <= offset);
        self.ranges.get(i).is_some_and(|&(s, e)| s <= offset && offset + len <= e)
    }

    /// Splits `offset..offset+len` into `(start, len, populated)` pieces.
    pub fn split(&self, offset: u64, len: u64) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        let end = offset + len;
        let mut cur = offset;
        let mut i = self.ranges.partition_point(|&(_, e)| e <= cur);
        while cur < end {
            match self.ranges.get(i) {
                Some(&(s, e)) if s <= cur => {
                    let stop = e.min(end);
                    out.push((cur, stop - cur, true));
                    cur = stop;
                    i += 1;
                }
                Some(&(s, _)) => {
                    let stop = s.min(end);
                    out.push((cur, stop - cur, false));
                    cur = stop;
                }
                None => {
                    out.push((cur, end - cur, false));
                    cur = end;
                }
            }
        }
        out
    }

    /// The populated ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
}

/// The populated extents of the RAM backing, refreshed on demand. A read that lands
/// in a hole re-checks that piece (the guest may have touched it since the last
/// refresh) before it is answered with zeros.
#[derive(Debug)]
pub struct HoleGuard {
    file: Option<File>,
    size: u64,
    extents: RwLock<Extents>,
    refreshed: std::sync::Mutex<std::time::Instant>,
}

impl HoleGuard {
    /// For `loc`'s backing file; a location without one (private RAM) needs no guard:
    /// untouched private pages read as the shared zero page without being allocated.
    pub fn new(loc: &RamLocation) -> crate::Result<Self> {
        let file = match &loc.file {
            Some(_) => Some(loc.open_file()?),
            None => None,
        };
        let g = Self {
            file,
            size: loc.size,
            extents: RwLock::new(Extents::default()),
            refreshed: std::sync::Mutex::new(std::time::Instant::now()),
        };
        g.refresh()?;
        Ok(g)
    }

    /// Re-reads the extents (one SEEK_DATA/SEEK_HOLE pair per extent).
    pub fn refresh(&self) -> crate::Result<()> {
        if let Some(f) = &self.file {
            let x = Extents::scan(f, self.size)?;
            *self.extents.write().unwrap_or_else(|p| p.into_inner()) = x;
            *self.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        }
        Ok(())
    }

    /// Refreshes if the extents are older than `max_age`. Staleness costs only a
    /// re-check when a read lands in what looks like a hole (the guest touched a new
    /// page); a page the hypervisor gave back since is read as data (and so
    /// re-allocated) until the next refresh, which bounds that harm in time.
    pub fn refresh_if_older(&self, max_age: std::time::Duration) -> crate::Result<()> {
        let age = self.refreshed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if age >= max_age { self.refresh() } else { Ok(()) }
    }

    /// The extents as last refreshed, read-locked for one batch of reads (a lock per
    /// read would be two atomic read-modify-writes per read).
    pub fn lock(&self) -> Holes<'_> {
        Holes { file: self.file.as_ref(), extents: self.extents.read().unwrap_or_else(|p| p.into_inner()) }
    }
}

/// The populated extents of a RAM backing, held for one batch of reads
/// ([`HoleGuard::lock`]; do not refresh the guard while holding it).
#[derive(Debug)]
pub struct Holes<'a> {
    file: Option<&'a File>,
    extents: std::sync::RwLockReadGuard<'a, Extents>,
}

impl Holes<'_> {
    /// Whether every byte of `offset..offset+len` is known to be populated (the fast
    /// path of every read); when not, [`split`](Self::split) says which parts are.
    #[inline]
    pub fn is_populated(&self, offset: u64, len: u64) -> bool {
        self.file.is_none() || self.extents.all_data(offset, len)
    }

    /// Splits a backing range into `(offset, len, populated)` pieces. Pieces that look
    /// empty are checked again now, so a page the guest just touched is read.
    pub fn split(&self, offset: u64, len: u64) -> Vec<(u64, u64, bool)> {
        let Some(f) = self.file else { return vec![(offset, len, true)] };
        if self.extents.all_data(offset, len) {
            return vec![(offset, len, true)];
        }
        let pieces = self.extents.split(offset, len);
        if pieces.iter().any(|p| !p.2) {
            // Stale? Look again at just this range.
            if let Ok(fresh) = Extents::scan_range(f, offset, len) {
                return fresh.split(offset, len);
            }
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn extents_of_a_sparse_file() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 0x10000).unwrap();
        f.write_all_at(&[1u8; 4096], 0x40000).unwrap();
        let x = Extents::scan(&f, 1 << 20).unwrap();
        // tmpfs and ext4 report data at page or block granularity.
        assert!(x.all_data(0x10000, 4096));
        assert!(x.all_data(0x40000, 4096));
        assert!(!x.all_data(0x80000, 4096));
        let parts = x.split(0xf000, 0x3000);
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), 0x3000);
        assert!(parts.iter().any(|p| p.2) && parts.iter().any(|p| !p.2));
    }
}
