//! The memory-mapping technique of the study: the RAM backing of the hypervisor (QEMU's
//! `memory-backend-memfd,share=on`, or a `mem-path` file) mapped read-only into our
//! address space, so a read of guest memory is a copy out of our own address space.
//! Live (`live-map`), or wrapped in [`vmscope_hv::Halted`] to pause the guest per pass
//! (`halt-map`).
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
//! The guest writes its RAM while we copy from it, so copies use volatile loads, never a
//! plain `memcpy` (a data race under Rust's memory model); the `copy` module says why
//! and how, the README what it costs.
//!
//! What this crate deliberately does not do: pause the guest, or map private RAM (a
//! hypervisor whose RAM is anonymous private memory has nothing to share; use
//! `vmscope-read`).

#![warn(missing_docs)]

mod copy;

use std::fs::File;
use std::os::fd::AsRawFd;

use vmscope_hv::{Error, HoleGuard, Holes, RamLocation, Result};
use vmscope_mem::{Error as MemError, Gpa, MemoryMap, PhysMem, ReadOp};

/// Guest RAM through a read-only shared mapping of its backing file.
#[derive(Debug)]
pub struct Mapped {
    ptr: *const u8,
    len: usize,
    map: MemoryMap,
    holes: HoleGuard,
}

// SAFETY: `ptr` is a read-only mapping that `Mapped` owns (unmapped on drop) and that
// is tied to no thread. It is only ever read, with volatile loads
// (`copy::copy_from_shared`, which argues why that is sound while the guest writes), so
// reads from several threads do not race with each other either.
unsafe impl Send for Mapped {}
// SAFETY: as above: `&Mapped` only reads the mapping, and the hole guard is `Sync`.
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

    /// [`PhysMem::read_batch`] with `copy` in place of the volatile copy, for the
    /// benchmark, which measures the plain `memcpy` this crate used to do against it.
    /// `copy(src, dst)` is called with `src` readable for `dst.len()` bytes of the
    /// mapping, which the guest may be writing meanwhile (a plain `memcpy` from it is
    /// sound only when nothing does, as in the benchmark).
    #[doc(hidden)]
    pub fn read_batch_with(
        &self,
        ops: &mut [ReadOp<'_>],
        mut copy: impl FnMut(*const u8, &mut [u8]),
    ) -> vmscope_mem::Result<()> {
        let holes = self.holes.lock();
        for op in ops.iter().take(PREFETCH_AHEAD) {
            self.prefetch(&holes, op.gpa, op.buf.len());
        }
        for i in 0..ops.len() {
            if let Some(ahead) = ops.get(i + PREFETCH_AHEAD) {
                self.prefetch(&holes, ahead.gpa, ahead.buf.len());
            }
            let op = &mut ops[i];
            let len = op.buf.len() as u64;
            // Most reads lie in one region and in populated backing.
            if let Some((off, avail)) = self.map.lookup(op.gpa)
                && avail >= len
                && off + len <= self.len as u64
                && holes.is_populated(off, len)
            {
                // `off + len <= self.len`: inside the live mapping.
                copy(self.ptr.wrapping_add(off as usize), op.buf);
                continue;
            }
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (_, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                if holes.is_populated(off, n) && (off + n) as usize <= self.len {
                    // `off + n <= self.len`: inside the live mapping.
                    copy(self.ptr.wrapping_add(off as usize), &mut op.buf[done..done + n as usize]);
                    done += n as usize;
                    continue;
                }
                for (o, len, data) in holes.split(off, n) {
                    let len = len as usize;
                    let dst = &mut op.buf[done..done + len];
                    let o = o as usize;
                    if data && o + len <= self.len {
                        // `o + len <= self.len`: inside the live mapping.
                        copy(self.ptr.wrapping_add(o), dst);
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

    /// Asks the CPU for the first [`PREFETCH_MAX`] bytes of `len` at `gpa` (those that
    /// lie in populated backing) without waiting for them.
    fn prefetch(&self, holes: &Holes<'_>, gpa: Gpa, len: usize) {
        let Some((off, avail)) = self.map.lookup(gpa) else { return };
        let n = (len as u64).min(avail).min(PREFETCH_MAX);
        if n == 0 || !holes.is_populated(off, n) || off + n > self.len as u64 {
            return;
        }
        for line in (off & !63..off + n).step_by(64) {
            // `line < off + n <= self.len`: inside the live mapping.
            copy::prefetch(self.ptr.wrapping_add(line as usize));
        }
    }
}

/// How many ops of a batch ahead of the one being copied the mapping asks the CPU
/// for: a batch of small reads (a walk's fields of many structs) then waits for about
/// one cache miss at a time in `PREFETCH_AHEAD`, not for each in turn.
const PREFETCH_AHEAD: usize = 8;

/// The most bytes of one op prefetched: a struct's fields; a longer copy streams
/// well enough on its own.
const PREFETCH_MAX: u64 = 512;

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no reference into the
        // mapping outlives `self` (reads copy out).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

impl PhysMem for Mapped {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        self.read_batch_with(ops, |src, dst| {
            // SAFETY: `read_batch_with` passes a `src` readable for `dst.len()` bytes of
            // the mapping, which nothing in Rust references: what `copy_from_shared`
            // needs, and it reads nothing else.
            unsafe { copy::copy_from_shared(src, dst) }
        })
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::FileExt;
    use std::sync::LazyLock;
    use vmscope_mem::{Gpa, Hva, Region};

    /// Size of the property test's file: 16 pages.
    const SIZE: u64 = 0x10000;

    /// An unnamed file of patterned bytes with two never-written pages (holes),
    /// mapped at GPA 0 through `/proc/self/fd` (as a QEMU memfd is), once for all cases.
    static PATTERNED: LazyLock<(File, Mapped)> = LazyLock::new(|| {
        let f = tempfile::tempfile().unwrap();
        f.set_len(SIZE).unwrap();
        let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 131 + i / 4096) as u8).collect();
        for page in (0..SIZE / 4096).filter(|&p| p != 5 && p != 11) {
            let r = (page * 4096) as usize..((page + 1) * 4096) as usize;
            f.write_all_at(&bytes[r], page * 4096).unwrap();
        }
        let map = MemoryMap::new(vec![Region::new(Gpa::new(0), SIZE, 0, "ram")]).unwrap();
        let file = Some(format!("/proc/self/fd/{}", f.as_raw_fd()).into());
        let loc = RamLocation { pid: std::process::id(), hva: Hva::new(0), size: SIZE, file, map };
        let m = Mapped::open(loc).unwrap();
        (f, m)
    });

    proptest! {
        /// A read through the mapping equals `pread` of the file, at any start and
        /// length (holes read as zeros both ways), into a destination at any alignment.
        #[test]
        fn reads_equal_pread(start in 0..SIZE, len in 0usize..=3 * 4096 + 7, skew in 0usize..8) {
            let (f, m) = &*PATTERNED;
            let len = len.min((SIZE - start) as usize);
            let mut want = vec![0u8; len];
            f.read_exact_at(&mut want, start).unwrap();
            let mut got = vec![0xeeu8; len + skew];
            m.read(Gpa::new(start), &mut got[skew..]).unwrap();
            prop_assert_eq!(&got[skew..], &want[..]);
        }
    }

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
