//! A large, page-aligned, zero-filled buffer whose untouched pages cost nothing:
//! private anonymous memory from `mmap`. A snapshot of a 1 GiB guest that uses
//! 150 MiB costs about 150 MiB here.

use std::ptr::NonNull;

use crate::{Error, Result};

/// A transparent huge page.
const HUGE: usize = 2 << 20;

/// Zero-initialised anonymous memory of a fixed length.
#[derive(Debug)]
pub(crate) struct AnonBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AnonBuf owns its mapping exclusively; access goes through &self/&mut self.
unsafe impl Send for AnonBuf {}
// SAFETY: shared references only read the mapping.
unsafe impl Sync for AnonBuf {}

impl AnonBuf {
    /// `len` zero bytes (no page is allocated until written).
    pub(crate) fn zeroed(len: u64) -> Result<Self> {
        let len = usize::try_from(len).map_err(|_| Error::Map(format!("{len} bytes do not fit in memory")))?;
        if len == 0 {
            return Ok(Self { ptr: NonNull::dangling(), len: 0 });
        }
        // SAFETY: an anonymous private mapping with no address hint; the result is
        // checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::io(format!("allocating a {len}-byte snapshot buffer"), std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| Error::Map("mmap returned NULL".into()))?;
        Ok(Self { ptr, len })
    }

    /// Allocates the pages of `start..start+len` now, so that a later copy into them
    /// (during a pause) takes no page faults. Best effort.
    pub(crate) fn prefault(&mut self, start: u64, len: u64) {
        let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
            return;
        };
        let end = start.saturating_add(len).min(self.len);
        if start >= end {
            return;
        }
        let page_start = start & !4095;
        // The 2 MiB blocks the range covers whole may be huge pages: a copy into them
        // then misses the TLB 512 times less, and they are filled anyway. Partly
        // covered blocks stay 4 KiB pages, so a sparse snapshot stays sparse.
        let (huge_start, huge_end) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
        if huge_start < huge_end {
            // SAFETY: inside our own mapping (as below); MADV_HUGEPAGE only changes
            // how later faults allocate. Failure (no THP) leaves 4 KiB pages.
            unsafe {
                libc::madvise(self.ptr.as_ptr().add(huge_start).cast(), huge_end - huge_start, libc::MADV_HUGEPAGE)
            };
        }
        // SAFETY: the range lies within our own mapping (clamped to `self.len`, and
        // the mapping starts page-aligned); MADV_POPULATE_WRITE only allocates pages.
        let r = unsafe {
            libc::madvise(self.ptr.as_ptr().add(page_start).cast(), end - page_start, libc::MADV_POPULATE_WRITE)
        };
        if r != 0 {
            // Older kernels: write the zero each page holds, one byte per page.
            let base = self.ptr.as_ptr();
            let mut i = page_start;
            while i < end {
                // SAFETY: `i < end <= len`, inside our mapping, which is writable.
                unsafe { std::ptr::write_volatile(base.add(i), std::ptr::read_volatile(base.add(i))) };
                i += 4096;
            }
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len describe our live mapping (or a dangling pointer with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AnonBuf {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmaps exactly the mapping created in `zeroed`, once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// Whether every byte of `b` is zero. ORs 64-byte blocks without early exit inside a
/// block, which the compiler vectorises (a byte-wise `any` does not).
pub(crate) fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    for blk in &mut blocks {
        let acc = blk
            .chunks_exact(8)
            .fold(0u64, |a, w| a | u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]));
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

impl AsRef<[u8]> for AnonBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_sparse() {
        let mut b = AnonBuf::zeroed(64 << 20).unwrap();
        assert!(b.as_slice().iter().step_by(4096).all(|&x| x == 0));
        b.prefault(4096, 8192);
        b.as_mut_slice()[5000] = 7;
        assert_eq!(b.as_slice()[5000], 7);
        assert_eq!(AnonBuf::zeroed(0).unwrap().as_slice().len(), 0);
        let mut page = vec![0u8; 4096 + 3];
        assert!(is_zero(&page));
        for i in [0, 63, 64, 4095, 4098] {
            page[i] = 1;
            assert!(!is_zero(&page), "{i}");
            page[i] = 0;
        }
    }
}
