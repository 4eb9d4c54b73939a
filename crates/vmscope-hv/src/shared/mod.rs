//! Guest RAM through a read-only shared mapping of its backing file (QEMU's memfd or
//! `mem-path` file, the built-in VMM's memfd): what live-map reads through, and what
//! halt-snap copies from during the pause (a copy out of a populated mapping runs at
//! memcpy speed; `pread` of a memfd pays the kernel's per-page lookup and reaches a
//! third to a half of it).
//!
//! Doing no harm is the caller's part: touching a page of a shared memfd that the guest
//! never used allocates it, so only ranges known to hold data ([`Extents`],
//! [`HoleGuard`]) may be copied or populated. The mapping is `PROT_READ`: nothing
//! here can write guest memory.
//!
//! [`Extents`]: crate::Extents
//! [`HoleGuard`]: crate::HoleGuard

mod copy;

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;

pub use copy::copy_from_shared;

use crate::{Error, Result};

/// A read-only shared mapping of a whole RAM backing file. Reads go through
/// [`copy_from_shared`] (volatile loads: the guest may write meanwhile).
#[derive(Debug)]
pub struct SharedMapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr` is a read-only mapping that `SharedMapping` owns (unmapped on drop)
// and that is tied to no thread. It is only ever read, with volatile loads
// (`copy_from_shared`, which argues why that is sound while the guest writes), so reads
// from several threads do not race with each other either.
unsafe impl Send for SharedMapping {}
// SAFETY: as above: `&SharedMapping` only reads the mapping.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Maps the first `len` bytes of `file` read-only and shared (at least one byte is
    /// mapped, so an empty backing still yields a valid mapping).
    pub fn new(file: &File, len: u64) -> Result<Self> {
        let len = usize::try_from(len.max(1))
            .map_err(|_| Error::Unsupported("backing larger than the address space".into()))?;
        // SAFETY: a fresh read-only shared mapping of an fd we hold; the kernel picks
        // the address; the result is checked against MAP_FAILED below.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(Error::io("mapping the RAM backing", std::io::Error::last_os_error()));
        }
        Ok(Self { ptr: ptr as *const u8, len })
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped (never: at least one byte is).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte of the mapping, for a copy made another way than
    /// [`copy`](Self::copy) (a benchmark's baseline); reachable only through volatile
    /// loads, see [`copy_from_shared`].
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Enters the pages of `range` (backing offsets, clipped to the mapping) into this
    /// process's page tables now (`MADV_POPULATE_READ`), so that a later copy takes
    /// no page faults; a copy during a pause is then a plain memory copy. Best effort:
    /// a kernel without it (before 5.14) leaves the faults to the copy.
    ///
    /// Only for ranges that hold data: populating a hole of a shared memfd allocates
    /// it in the host, as any read of it through the mapping would.
    pub fn populate(&self, range: Range<u64>) {
        let (Ok(start), Ok(end)) = (usize::try_from(range.start), usize::try_from(range.end)) else { return };
        let (start, end) = (start & !4095, end.min(self.len));
        if start >= end {
            return;
        }
        // SAFETY: `start..end` lies inside our mapping (clamped to `len`; `start` is
        // page-aligned, as the mapping is); MADV_POPULATE_READ only faults pages in.
        unsafe { libc::madvise(self.ptr.add(start) as *mut libc::c_void, end - start, libc::MADV_POPULATE_READ) };
    }

    /// Copies `dst.len()` bytes from backing offset `offset` with volatile loads;
    /// `false` (nothing copied) if that is not all inside the mapping. Only for ranges
    /// that hold data (see [`populate`](Self::populate)).
    pub fn copy(&self, offset: u64, dst: &mut [u8]) -> bool {
        let Some(start) =
            usize::try_from(offset).ok().filter(|&o| o.checked_add(dst.len()).is_some_and(|e| e <= self.len))
        else {
            return false;
        };
        // SAFETY: `start..start + dst.len()` is inside the live mapping (checked above),
        // which nothing in Rust references: what `copy_from_shared` needs.
        unsafe { copy_from_shared(self.ptr.add(start), dst) };
        true
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no reference into the
        // mapping outlives `self` (reads copy out).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn copies_what_the_file_holds_and_refuses_past_the_end() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(0x3000).unwrap();
        f.write_all_at(b"shared", 0x1ffd).unwrap();
        let m = SharedMapping::new(&f, 0x3000).unwrap();
        assert_eq!(m.len(), 0x3000);
        m.populate(0x1000..0x3000);
        m.populate(0x2000..0x9000); // clipped
        let mut b = [0u8; 6];
        assert!(m.copy(0x1ffd, &mut b));
        assert_eq!(&b, b"shared");
        assert!(!m.copy(0x2ffb, &mut b), "one byte past the end");
        assert!(!m.copy(u64::MAX - 2, &mut b));
        assert!(m.copy(0x2ffa, &mut b));
    }
}
