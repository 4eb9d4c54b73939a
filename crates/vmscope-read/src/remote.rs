//! What the two readers of the hypervisor's address space share: where each backing
//! offset is in the process, and how a read is cut into pieces by the hole guard.

use vmscope_hv::{HoleGuard, PieceSource, RamLocation};
use vmscope_mem::Error as MemError;

/// The RAM blocks of a location as address ranges of the hypervisor process.
#[derive(Debug)]
pub(crate) struct Blocks {
    /// `(start, end, hva)` in backing offsets, sorted.
    spans: Vec<(u64, u64, u64)>,
}

impl Blocks {
    pub(crate) fn new(loc: &RamLocation) -> Self {
        Self { spans: loc.blocks.iter().map(|b| (b.offset, b.offset + b.size, b.hva.raw())).collect() }
    }

    /// The address in the process of backing offset `off`, and how many bytes from
    /// there stay in the same block.
    #[inline]
    pub(crate) fn hva(&self, off: u64) -> Option<(u64, u64)> {
        let i = self.spans.partition_point(|s| s.1 <= off);
        let &(start, end, hva) = self.spans.get(i).filter(|s| s.0 <= off)?;
        Some((hva + (off - start), end - off))
    }
}

/// A read of `len` bytes at backing offset `off` into `dst`, cut by `holes` into what
/// must be read from the process — handed to `remote(hva, dst, len)` — and what is
/// filled here: zeros for pages never touched, the file's bytes under a private or
/// hugetlbfs mapping.
///
/// Raw pointers, because [`VmReadv`](crate::VmReadv) keeps the remote pieces of a
/// whole batch to read them in one call: a slice reborrowed from the caller's buffer
/// for each piece would invalidate the pointers kept before.
///
/// # Safety
/// `dst` is valid for writes of `len` bytes, and nothing else reads or writes them
/// until the pieces handed to `remote` have been read into.
pub(crate) unsafe fn plan(
    holes: &HoleGuard,
    blocks: &Blocks,
    off: u64,
    (dst, len): (*mut u8, usize),
    gpa: vmscope_mem::Gpa,
    mut remote: impl FnMut(u64, *mut u8, usize) -> vmscope_mem::Result<()>,
) -> vmscope_mem::Result<()> {
    let to_hva = |o: u64, n: u64| match blocks.hva(o) {
        Some((hva, room)) if room >= n => Ok(hva),
        _ => Err(MemError::Short { gpa, wanted: n as usize, got: 0 }),
    };
    if holes.is_populated(off, len as u64) {
        return remote(to_hva(off, len as u64)?, dst, len);
    }
    let pieces = holes.split(off, len as u64).map_err(|e| MemError::Io { gpa, source: std::io::Error::other(e) })?;
    for p in pieces {
        let (at, n) = ((p.offset - off) as usize, p.len as usize);
        // SAFETY: the pieces of `split` tile `off..off+len`, so `at + n <= len`.
        let piece = unsafe { dst.add(at) };
        match p.source {
            PieceSource::Resident => remote(to_hva(p.offset, p.len)?, piece, n)?,
            PieceSource::File => {
                // SAFETY: in bounds (above) and ours alone (the contract); the slice
                // lives only for this read.
                let buf = unsafe { std::slice::from_raw_parts_mut(piece, n) };
                holes.read_file(buf, p.offset).map_err(|source| MemError::Io { gpa, source })?;
            }
            // SAFETY: in bounds and ours alone, as above.
            PieceSource::Zero => unsafe { std::ptr::write_bytes(piece, 0, n) },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;

    use vmscope_hv::{Backing, HoleGuard, RamBlock, RamLocation};
    use vmscope_mem::{Gpa, Hva, MemoryMap, PhysMem};

    use crate::{ProcMem, VmReadv};

    const PAGES: usize = 16;
    const PAGE: usize = 4096;

    /// A mapping of `PAGES` pages in this process, unmapped on drop.
    struct Mapping(*mut libc::c_void);

    impl Mapping {
        /// `fd` mapped private (copy-on-write), or anonymous memory for `None`.
        fn private(fd: Option<i32>) -> Self {
            let flags = libc::MAP_PRIVATE | if fd.is_none() { libc::MAP_ANONYMOUS } else { 0 };
            // SAFETY: a fresh mapping at an address the kernel picks, checked below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PAGES * PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    fd.unwrap_or(-1),
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            // SAFETY: our own mapping; no huge page may fill in pages never touched.
            unsafe { libc::madvise(p, PAGES * PAGE, libc::MADV_NOHUGEPAGE) };
            Self(p)
        }

        /// Writes `b` to the first byte of `page` (a copy-on-write fault).
        fn touch(&self, page: usize, b: u8) {
            // SAFETY: inside our writable mapping.
            unsafe { self.0.cast::<u8>().add(page * PAGE).write_volatile(b) };
        }

        fn location(&self, backing: Backing) -> RamLocation {
            let hva = Hva::new(self.0 as u64);
            let size = (PAGES * PAGE) as u64;
            let block = RamBlock { name: "ram".into(), offset: 0, size, hva, page_size: 4096, backing };
            RamLocation::new(std::process::id(), MemoryMap::flat(size), vec![block]).unwrap()
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `private`, no longer referenced.
            unsafe { libc::munmap(self.0, PAGES * PAGE) };
        }
    }

    /// The pages the pagemap says are present.
    fn present(loc: &RamLocation) -> Vec<usize> {
        let g = HoleGuard::new(loc).unwrap();
        (0..PAGES).filter(|&p| g.is_populated((p * PAGE) as u64, PAGE as u64)).collect()
    }

    #[test]
    fn a_private_file_mapping_reads_as_the_guest_sees_it_and_stays_untouched() {
        let f = tempfile::tempfile().unwrap();
        let pattern: Vec<u8> = (0..PAGES * PAGE).map(|i| (i / PAGE) as u8 + 1).collect();
        f.write_all_at(&pattern, 0).unwrap();
        let m = Mapping::private(Some(f.as_raw_fd()));
        m.touch(3, 0xee);
        m.touch(7, 0xdd);
        let path = format!("/proc/self/fd/{}", f.as_raw_fd()).into();
        let loc = m.location(Backing::File { path, offset: 0, shared: false });
        assert_eq!(present(&loc), [3, 7]);
        let mut want = pattern.clone();
        want[3 * PAGE] = 0xee;
        want[7 * PAGE] = 0xdd;
        let readers: [(&str, Box<dyn PhysMem>); 2] = [
            ("process_vm_readv", Box::new(VmReadv::open(loc.clone()).unwrap())),
            ("/proc/PID/mem", Box::new(ProcMem::open(loc.clone()).unwrap())),
        ];
        for (name, r) in &readers {
            let mut got = vec![0u8; PAGES * PAGE];
            r.read(Gpa::new(0), &mut got).unwrap();
            assert!(got == want, "{name}: the copy-on-write pages from the process, the rest from the file");
            let mut across = [0u8; 8];
            r.read(Gpa::new((3 * PAGE - 4) as u64), &mut across).unwrap();
            assert_eq!(across, [3, 3, 3, 3, 0xee, 4, 4, 4], "{name}: a read across both");
        }
        assert_eq!(present(&loc), [3, 7], "a read faulted the file's pages into the mapping");
        // A snapshot copies the file's data and the copies: all of it here.
        assert_eq!(HoleGuard::new(&loc).unwrap().data_extents().unwrap(), [(0, (PAGES * PAGE) as u64)]);
    }

    #[test]
    fn untouched_anonymous_pages_read_as_zeros_and_stay_unmapped() {
        let m = Mapping::private(None);
        m.touch(0, 1);
        m.touch(9, 2);
        let loc = m.location(Backing::Anonymous);
        let r = VmReadv::open(loc.clone()).unwrap();
        let mut got = vec![0xffu8; PAGES * PAGE];
        r.read(Gpa::new(0), &mut got).unwrap();
        assert_eq!((got[0], got[9 * PAGE], got.iter().filter(|&&b| b != 0).count()), (1, 2, 2));
        assert_eq!(present(&loc), [0, 9], "a read mapped pages nobody touched");
        // Pages touched after the guard's last look are found, not read as zeros.
        m.touch(5, 3);
        let mut b = [0u8; 1];
        r.read(Gpa::new((5 * PAGE) as u64), &mut b).unwrap();
        assert_eq!(b, [3]);
    }
}
