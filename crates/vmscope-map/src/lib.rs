//! The memory-mapping technique of the study: the RAM backing of the hypervisor (QEMU's
//! `memory-backend-memfd,share=on`, or a `mem-path` file) mapped read-only into our
//! address space, so a read of guest memory is a copy out of our own address space.
//! Live (`live-map`), or wrapped in [`vmscope_hv::Halted`] to pause the guest per pass
//! (`halt-map`).
//!
//! ```no_run
//! use vmscope_hv::{RamLocation, qemu::QmpHypervisor};
//! use vmscope_mem::{Gpa, PhysMem};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hv = QmpHypervisor::connect("qmp.sock", std::time::Duration::from_secs(5))?;
//! let mem = vmscope_map::Mapped::open(RamLocation::qemu(1234, &hv.ram_layout()?)?)?;
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
//! plain `memcpy` (a data race under Rust's memory model):
//! [`vmscope_hv::copy_from_shared`] says why and how, the README what it costs.
//!
//! Several RAM blocks (QEMU with a memory backend per NUMA node) are mapped side by
//! side in one reserved range, so a backing offset is one pointer away; hugetlbfs
//! files map too, their untouched huge pages read from the file rather than through
//! the mapping (which would allocate them).
//!
//! What this crate deliberately does not do: pause the guest, or map private RAM (a
//! hypervisor whose RAM is anonymous private memory, or a file mapped copy-on-write,
//! has nothing another process can map; use `vmscope-read`).

#![warn(missing_docs)]

mod sigbus;

use std::os::fd::AsRawFd;

use vmscope_hv::{Backing, Error, HoleGuard, PieceSource, RamLocation, Result};
use vmscope_mem::{Error as MemError, MemoryMap, PhysMem, ReadOp};

/// Guest RAM through read-only shared mappings of its backing files, one per RAM
/// block, laid out in one reserved range of our address space as the backing offsets
/// say.
#[derive(Debug)]
pub struct Mapped {
    ptr: *const u8,
    len: usize,
    map: MemoryMap,
    holes: HoleGuard,
    /// SIGBUS in the mapping (its file truncated) turned into read errors.
    sigbus: sigbus::Guarded,
}

// SAFETY: `ptr` is a read-only mapping that `Mapped` owns (unmapped on drop) and that
// is tied to no thread. It is only ever read, with volatile loads
// (`vmscope_hv::copy_from_shared`, which argues why that is sound while the guest writes), so
// reads from several threads do not race with each other either.
unsafe impl Send for Mapped {}
// SAFETY: as above: `&Mapped` only reads the mapping, and the hole guard is `Sync`.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `loc`'s backing files read-only. Private RAM (anonymous, or a file mapped
    /// copy-on-write) cannot be mapped by another process: that is an error which
    /// says so.
    pub fn open(loc: RamLocation) -> Result<Self> {
        if !loc.is_shared() {
            return Err(Error::Unsupported(format!(
                "process {}'s guest RAM is private to it ({}): another process cannot map it; read it with \
                 process_vm_readv instead (vmscope-read)",
                loc.pid,
                loc.private_blocks().join("; ")
            )));
        }
        let len = usize::try_from(loc.backing_size().max(1))
            .map_err(|_| Error::Unsupported("backing larger than the address space".into()))?;
        let align = loc.blocks.iter().map(|b| b.page_size).max().unwrap_or(4096).max(4096) as usize;
        // Reserve the whole range (aligned for huge pages), then map each block over it.
        // SAFETY: a fresh inaccessible anonymous reservation at an address the kernel
        // picks; checked against MAP_FAILED below.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + align,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(Error::Io {
                what: "reserving room to map guest RAM".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let base = (raw as usize).next_multiple_of(align);
        let m = Self {
            ptr: base as *const u8,
            len,
            sigbus: sigbus::Guarded::new(base, len, align),
            map: loc.map.clone(),
            holes: HoleGuard::new(&loc).inspect_err(|_| {
                // SAFETY: the reservation made above, not yet handed to anyone.
                unsafe { libc::munmap(raw, len + align) };
            })?,
        };
        // Give back the alignment slack; `m` owns `base..base+len` from here on.
        // SAFETY: both pieces lie in our reservation and outside `base..base+len`.
        unsafe {
            libc::munmap(raw, base - raw as usize);
            libc::munmap((base + len) as *mut libc::c_void, raw as usize + align - base);
        }
        for b in &loc.blocks {
            let Backing::File { offset, .. } = &b.backing else { unreachable!("checked shared") };
            let file = b.open_file(loc.pid)?;
            let (at, size) = (base + b.offset as usize, b.size as usize);
            // SAFETY: a read-only shared mapping of an fd we hold, placed with MAP_FIXED
            // over our own reservation (inside `base..base+len`, which `m` owns and
            // nothing references yet); checked against MAP_FAILED below.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    size,
                    libc::PROT_READ,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    file.as_raw_fd(),
                    *offset as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                let source = std::io::Error::last_os_error();
                return Err(Error::Io { what: format!("mapping RAM block {}", b.describe()), source });
            }
        }
        Ok(m)
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
        for op in ops {
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (_, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                if self.holes.is_populated(off, n) && (off + n) as usize <= self.len {
                    // `off + n <= self.len`: inside the live mapping.
                    copy(self.ptr.wrapping_add(off as usize), &mut op.buf[done..done + n as usize]);
                    done += n as usize;
                    continue;
                }
                let pieces = self
                    .holes
                    .split(off, n)
                    .map_err(|e| MemError::Io { gpa: op.gpa, source: std::io::Error::other(e) })?;
                for p in pieces {
                    let len = p.len as usize;
                    let dst = &mut op.buf[done..done + len];
                    let o = p.offset as usize;
                    match p.source {
                        // `o + len <= self.len`: inside the live mapping.
                        PieceSource::Resident if o + len <= self.len => copy(self.ptr.wrapping_add(o), dst),
                        PieceSource::Resident => {
                            return Err(MemError::Short { gpa: op.gpa, wanted: op.buf.len(), got: done });
                        }
                        PieceSource::File => self
                            .holes
                            .read_file(dst, p.offset)
                            .map_err(|source| MemError::Io { gpa: op.gpa, source })?,
                        PieceSource::Zero => dst.fill(0),
                    }
                    done += len;
                }
            }
            if self.sigbus.faulted() {
                return Err(MemError::Io {
                    gpa: op.gpa,
                    source: std::io::Error::other(
                        "the file backing guest RAM was truncated under the mapping (a read raised SIGBUS)",
                    ),
                });
            }
        }
        Ok(())
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        self.sigbus.release();
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
            unsafe { vmscope_hv::copy_from_shared(src, dst) }
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
    use std::fs::File;
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
        let loc = RamLocation::single(std::process::id(), map, Hva::new(0), file);
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

    /// Two RAM blocks, each its own file (QEMU with a memfd per NUMA node), mapped
    /// side by side; private RAM is refused with the reason.
    #[test]
    fn blocks_of_several_files() {
        use vmscope_hv::{Backing, RamBlock};
        let files = [tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap()];
        for (i, f) in files.iter().enumerate() {
            f.set_len(0x20000).unwrap();
            f.write_all_at(format!("block{i}").as_bytes(), 0x10000).unwrap();
        }
        let map = MemoryMap::new(vec![
            Region::new(Gpa::new(0), 0x10000, 0x10000, "a"),
            Region::new(Gpa::new(0x100000), 0x10000, 0x20000 + 0x10000, "b"),
        ])
        .unwrap();
        let block = |name: &str, offset: u64, f: &File, shared| RamBlock {
            name: name.into(),
            offset,
            size: 0x20000,
            hva: Hva::new(0),
            page_size: 4096,
            backing: Backing::File { path: format!("/proc/self/fd/{}", f.as_raw_fd()).into(), offset: 0, shared },
        };
        let blocks = vec![block("a", 0, &files[0], true), block("b", 0x20000, &files[1], true)];
        let m = Mapped::open(RamLocation::new(std::process::id(), map.clone(), blocks).unwrap()).unwrap();
        let mut b = [0u8; 6];
        m.read(Gpa::new(0), &mut b).unwrap();
        assert_eq!(&b, b"block0");
        m.read(Gpa::new(0x100000), &mut b).unwrap();
        assert_eq!(&b, b"block1");
        let private = vec![block("a", 0, &files[0], true), block("b", 0x20000, &files[1], false)];
        let err = Mapped::open(RamLocation::new(std::process::id(), map, private).unwrap()).unwrap_err();
        assert!(err.to_string().contains("cannot map"), "{err}");
    }

    /// A file truncated under the mapping (a memfd with `seal=off`): the read that
    /// lands past its new end is an error, not a SIGBUS, and so is every read after
    /// it (the mapping no longer shows guest memory).
    #[test]
    fn a_truncated_file_is_a_read_error_not_a_signal() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(0x40000).unwrap();
        f.as_file().write_all_at(&[7u8; 0x40000], 0).unwrap();
        let map = MemoryMap::new(vec![Region::new(Gpa::new(0), 0x40000, 0, "ram")]).unwrap();
        let m = Mapped::open(RamLocation::single(std::process::id(), map, Hva::new(0), Some(f.path().into()))).unwrap();
        let mut b = [0u8; 8];
        m.read(Gpa::new(0x30000), &mut b).unwrap();
        assert_eq!(b, [7; 8]);
        f.as_file().set_len(0x10000).unwrap();
        let e = m.read(Gpa::new(0x30000), &mut b).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(m.read(Gpa::new(0), &mut b).is_err(), "every read after the fault fails");
        // Another mapping is not affected.
        let g = tempfile::NamedTempFile::new().unwrap();
        g.as_file().set_len(0x1000).unwrap();
        let map = MemoryMap::new(vec![Region::new(Gpa::new(0), 0x1000, 0, "ram")]).unwrap();
        let n = Mapped::open(RamLocation::single(std::process::id(), map, Hva::new(0), Some(g.path().into()))).unwrap();
        n.read(Gpa::new(0), &mut b).unwrap();
    }

    /// A SIGBUS outside every guarded mapping still ends the process, as it would have
    /// without the guard (run in a child: this test binary, asked by an env var).
    #[test]
    fn a_sigbus_elsewhere_still_ends_the_process() {
        use std::os::unix::process::ExitStatusExt;
        if std::env::var_os("VMSCOPE_MAP_SIGBUS_CHILD").is_some() {
            let _guarded = &PATTERNED.1; // the handler is installed
            let f = tempfile::tempfile().unwrap();
            f.set_len(0x2000).unwrap();
            // SAFETY: a fresh read-only shared mapping of a file we own, read below
            // after the file is cut short: the SIGBUS this test wants.
            let p = unsafe {
                libc::mmap(std::ptr::null_mut(), 0x2000, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0)
            };
            assert_ne!(p, libc::MAP_FAILED);
            f.set_len(0).unwrap();
            // SAFETY: inside the mapping made above (past the file's end now: SIGBUS).
            let v = unsafe { std::ptr::read_volatile((p as *const u8).add(0x1000)) };
            panic!("read {v} past the end of a truncated file");
        }
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args(["--exact", "tests::a_sigbus_elsewhere_still_ends_the_process", "--nocapture"])
            .env("VMSCOPE_MAP_SIGBUS_CHILD", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("the child hung on a SIGBUS outside the guarded mappings");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}");
    }

    #[test]
    fn reads_a_file_through_the_map_and_holes_as_zeros() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(0x40000).unwrap();
        f.as_file().write_all_at(b"hello", 0x20010).unwrap();
        let map = MemoryMap::new(vec![Region::new(Gpa::new(0x100000), 0x40000, 0, "ram")]).unwrap();
        let loc = RamLocation::single(std::process::id(), map, Hva::new(0), Some(f.path().into()));
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
