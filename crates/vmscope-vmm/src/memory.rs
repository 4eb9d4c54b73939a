//! Guest RAM: one contiguous host mapping, either a memfd mapped shared (so other
//! processes can map or pread it through /proc/PID/fd) or anonymous private memory
//! (so a fork gives a copy-on-write snapshot), split into KVM slots around the
//! 32-bit MMIO hole.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmscope_mem::{Gpa, MemoryMap, Region};

use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};
use crate::{Error, Result};

/// How guest RAM is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backing {
    /// A memfd mapped MAP_SHARED: readable and mappable by other processes.
    Memfd,
    /// Anonymous MAP_PRIVATE memory: fork snapshots are copy-on-write.
    Private,
}

/// The guest's RAM.
#[derive(Debug)]
pub struct GuestRam {
    /// The memory as vm-memory sees it (for loaders).
    pub mem: GuestMemoryMmap,
    /// The GPA layout and backing offsets.
    pub map: MemoryMap,
    /// The memfd, for [`Backing::Memfd`].
    pub memfd: Option<File>,
    /// Host address of backing offset 0.
    pub hva: u64,
    /// Total bytes.
    pub size: u64,
    /// How it is backed.
    pub backing: Backing,
}

/// The RAM regions for `size` bytes: below the MMIO hole, then from 4 GiB.
pub fn layout(size: u64) -> MemoryMap {
    let low = size.min(MMIO_GAP_START);
    let mut regions = vec![Region::new(Gpa::new(0), low, 0, "ram-below-4g")];
    if size > low {
        regions.push(Region::new(Gpa::new(MMIO_GAP_END), size - low, low, "ram-above-4g"));
    }
    MemoryMap::new(regions).expect("two disjoint non-empty regions")
}

impl GuestRam {
    /// Allocates `size` bytes (a multiple of 4 KiB) of guest RAM.
    pub fn new(size: u64, backing: Backing) -> Result<Self> {
        if size == 0 || !size.is_multiple_of(4096) {
            return Err(Error::Setup(format!("RAM size {size:#x} is not a non-zero multiple of 4 KiB")));
        }
        let map = layout(size);
        let len = size as usize;
        let (memfd, flags) = match backing {
            Backing::Memfd => {
                // SAFETY: the name is a NUL-terminated literal; the return is checked.
                let fd = unsafe { libc::memfd_create(c"vmscope-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
                if fd < 0 {
                    return Err(Error::os("memfd_create"));
                }
                // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
                let file = unsafe { File::from_raw_fd(fd) };
                file.set_len(size).map_err(|e| Error::Io { what: "sizing the RAM memfd".into(), source: e })?;
                (Some(file), libc::MAP_SHARED | libc::MAP_NORESERVE)
            }
            Backing::Private => (None, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE),
        };
        let fd = memfd.as_ref().map_or(-1, |f| f.as_raw_fd());
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh mapping at an address the kernel picks; fd is a memfd of at
        // least `len` bytes or -1 with MAP_ANONYMOUS; the result is checked.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        if base == libc::MAP_FAILED {
            return Err(Error::os("mmap of guest RAM"));
        }
        let mut regions = Vec::new();
        for r in map.regions() {
            // SAFETY: [base + offset, + size) lies inside the mapping made above, which
            // lives as long as the process (it is never unmapped).
            let region = unsafe {
                MmapRegion::build_raw((base as *mut u8).add(r.offset as usize), r.size as usize, prot, flags)
            }
            .map_err(|e| Error::Setup(format!("guest RAM region {}: {e}", r.name)))?;
            regions.push(
                GuestRegionMmap::new(region, GuestAddress(r.gpa.raw()))
                    .ok_or_else(|| Error::Setup(format!("guest RAM region {} wraps", r.name)))?,
            );
        }
        let mem = GuestMemoryMmap::from_regions(regions).map_err(|e| Error::Setup(format!("guest memory: {e}")))?;
        Ok(Self { mem, map, memfd, hva: base as u64, size, backing })
    }

    /// Host address of guest-physical `gpa`.
    pub fn hva_of(&self, gpa: u64) -> Option<u64> {
        self.map.lookup(Gpa::new(gpa)).map(|(off, _)| self.hva + off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn layout_splits_at_the_hole() {
        assert_eq!(layout(1 << 30).regions().len(), 1);
        let m = layout(4 << 30);
        assert_eq!(m.regions()[1].gpa, Gpa::new(MMIO_GAP_END));
        assert_eq!(m.regions()[1].offset, MMIO_GAP_START);
        assert_eq!(m.ram_size(), 4 << 30);
    }

    #[test]
    fn memfd_ram_is_shared_with_the_fd() {
        use std::os::unix::fs::FileExt;
        let ram = GuestRam::new(1 << 20, Backing::Memfd).unwrap();
        ram.mem.write_obj(0x1122_3344u32, GuestAddress(0x1000)).unwrap();
        let mut b = [0u8; 4];
        ram.memfd.as_ref().unwrap().read_exact_at(&mut b, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x1122_3344);
    }
}
