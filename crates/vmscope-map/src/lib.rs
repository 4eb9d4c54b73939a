//! The memory-mapping technique of the study: the RAM backing of the hypervisor (QEMU's
//! `memory-backend-memfd,share=on`, or a `mem-path` file) mapped read-only into our
//! address space, so a read of guest memory is a `memcpy`. Live (`live-map`), or
//! wrapped in [`vmscope_hv::Halted`] to pause the guest per pass (`halt-map`).
//!
//! ```no_run
//! use vmscope_hv::{Hypervisor, RamLocation, qemu::QmpHypervisor};
//! use vmscope_mem::{Gpa, PhysMem};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hv = QmpHypervisor::connect("qmp.sock", std::time::Duration::from_secs(5))?;
//! let mem = vmscope_map::Mapped::open(RamLocation::qemu(1234, hv.memory_map()?)?)?;
//! let word = mem.read_u64(Gpa::new(0x1000))?;
//! # Ok(()) }
//! ```
//!
//! Doing no harm: touching a never-used page of a shared memfd through a mapping makes
//! the host allocate it, so reads consult the backing's populated extents first and
//! answer holes with zeros (see [`vmscope_hv::HoleGuard`]). The mapping is `PROT_READ`:
//! this crate cannot write guest memory.
//!
//! What this crate deliberately does not do: pause the guest, or map private RAM (a
//! hypervisor whose RAM is anonymous private memory has nothing to share; use
//! `vmscope-read`).

#![warn(missing_docs)]

use std::fs::File;
use std::os::fd::AsRawFd;

use vmscope_hv::{Error, HoleGuard, RamLocation, Result};
use vmscope_mem::{Error as MemError, MemoryMap, PhysMem, ReadOp};

/// Guest RAM through a read-only shared mapping of its backing file.
#[derive(Debug)]
pub struct Mapped {
    ptr: *const u8,
    len: usize,
    map: MemoryMap,
    holes: HoleGuard,
}

// SAFETY: the mapping is read-only and lives as long as `Mapped`; reading it from
// several threads is as safe as reading shared memory another process writes, which
// every read here copies out of with volatile-free memcpy of plain bytes.
unsafe impl Send for Mapped {}
// SAFETY: as above; `&Mapped` only ever reads.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `loc`'s backing file read-only.
    pub fn open(loc: RamLocation) -> Result<Self> {
        let file = loc.open_file()?;
        Self::from_file(&file, &loc)
    }

    fn from_file(file: &File, loc: &RamLocation) -> Result<Self> {
        let len = usize::try_from(loc.map.backing_size().max(1))
            .map_err(|_| Error::Unsupported("backing larger than the address space".into()))?;
        // SAFETY: a fresh read-only shared mapping of an fd we hold; the kernel picks
        // the address; the result is checked against MAP_FAILED below.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(Error::Io { what: "mapping the RAM backing".into(), source: std::io::Error::last_os_error() });
        }
        Ok(Self { ptr: ptr as *const u8, len, map: loc.map.clone(), holes: HoleGuard::new(loc)? })
    }

    /// The hole guard, to refresh at the start of a pass.
    pub fn holes(&self) -> &HoleGuard {
        &self.holes
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no reference into the
        // mapping outlives `self` (reads copy out).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

impl PhysMem for Mapped {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        for op in ops {
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (_, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                if self.holes.is_populated(off, n) && (off + n) as usize <= self.len {
                    let dst = &mut op.buf[done..done + n as usize];
                    // SAFETY: off + n <= self.len, inside the live mapping; dst is a
                    // distinct buffer of exactly n bytes.
                    unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off as usize), dst.as_mut_ptr(), n as usize) };
                    done += n as usize;
                    continue;
                }
                for (o, len, data) in self.holes.split(off, n) {
                    let len = len as usize;
                    let dst = &mut op.buf[done..done + len];
                    let o = o as usize;
                    if data && o + len <= self.len {
                        // SAFETY: o + len <= self.len, inside the live mapping; dst is
                        // a distinct buffer of exactly len bytes.
                        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(o), dst.as_mut_ptr(), len) };
                    } else if data {
                        return Err(MemError::Short { gpa: op.gpa, wanted: op.buf.len(), got: done });
                    } else {
                        dst.fill(0);
                    }
                    done += len;
                }
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use vmscope_mem::{Gpa, Hva, Region};

    #[test]
    fn reads_a_file_through_the_map_and_holes_as_zeros() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(0x40000).unwrap();
        f.as_file().write_all_at(b"hello", 0x20010).unwrap();
        let map = MemoryMap::new(vec![Region::new(Gpa::new(0x100000), 0x40000, 0, "ram")]).unwrap();
        let loc =
            RamLocation { pid: std::process::id(), hva: Hva::new(0), size: 0x40000, file: Some(f.path().into()), map };
        let m = Mapped::open(loc).unwrap();
        let mut b = [0u8; 5];
        m.read(Gpa::new(0x120010), &mut b).unwrap();
        assert_eq!(&b, b"hello");
        let mut z = [1u8; 16];
        m.read(Gpa::new(0x100000), &mut z).unwrap();
        assert_eq!(z, [0u8; 16]);
        assert!(m.read(Gpa::new(0x140000), &mut z).is_err());
        // A page written after the extents were scanned is still seen.
        f.as_file().write_all_at(b"later", 0x30000).unwrap();
        m.read(Gpa::new(0x130000), &mut b).unwrap();
        assert_eq!(&b, b"later");
    }
}
