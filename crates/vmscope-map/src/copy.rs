//! Copying out of memory that another process writes while we read it.
//!
//! The guest writes its RAM while we copy from our mapping of it, so a plain
//! `ptr::copy_nonoverlapping` from the mapping would be a data race under Rust's memory
//! model. Volatile loads of memory outside any Rust allocation are the case
//! [`std::ptr::read_volatile`] documents for memory changed from outside the program:
//! the mapping comes from `mmap`, no reference or slice into it is ever made, and it is
//! only read here. Each load is as wide as the source's alignment allows, up to a 32-byte
//! AVX2 vector (16-byte SSE2 without AVX2), so bulk copies keep `memcpy`'s speed; an
//! aligned 8-byte field, such as a page-table entry, is read with one 8-byte load.
//!
//! Why no crate: vm-memory 0.18's `VolatileSlice::copy_to` uses volatile loads only up
//! to 8 bytes and a plain `copy_nonoverlapping` above that (its `copy_slice`), which is
//! what this module replaces. `atomic-memcpy` copies a fixed-size `T` from behind an
//! `UnsafeCell`, not a run-time length from a mapping. Relaxed `AtomicU64` loads, the
//! other race-free copy, are not vectorised: 3 to 6 times slower than `memcpy` from
//! 4 KiB up (the README has the figures).

/// Copies `dst.len()` bytes from `src` into `dst` with volatile loads: single bytes up
/// to the first 8-byte boundary, vectors for the bulk, then 8-byte words and bytes.
///
/// # Safety
///
/// `src..src + dst.len()` must be readable for the whole call and lie in memory that
/// Rust code reaches only through volatile or atomic loads (a mapping with no reference
/// or slice into it).
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    // SAFETY: the caller's contract, passed on; `wide::bulk` is a `Bulk`.
    unsafe { copy_with(src, dst, wide::bulk) };
}

/// Copies the vector-aligned bulk of `src + at .. src + dst.len()` (`src + at` is
/// 8-aligned) and returns where it stopped, 8-aligned, or `at` to leave it all to the
/// 8-byte words.
type Bulk = unsafe fn(src: *const u8, dst: &mut [u8], at: usize) -> usize;

/// [`copy_from_shared`] with a given bulk step, so tests can run each one.
///
/// # Safety
///
/// As [`copy_from_shared`]; `bulk` can run on this CPU.
#[inline(always)]
unsafe fn copy_with(src: *const u8, dst: &mut [u8], bulk: Bulk) -> usize {
    let n = dst.len();
    // SAFETY: each step copies the next part of `src..src + n` (the caller's readable
    // range) into the same part of `dst`, starting where the previous one stopped;
    // `bytes_to_align` makes `src + at` 8-aligned for the u64 words, `bulk` keeps it so.
    unsafe {
        let at = words::<u8>(src, dst, 0, bytes_to_align(src, 8).min(n));
        let at = bulk(src, dst, at);
        let at = words::<u64>(src, dst, at, (n - at) & !7);
        words::<u8>(src, dst, at, n - at)
    }
}

/// How many bytes from `p` to the next address aligned to `align` (a power of two).
fn bytes_to_align(p: *const u8, align: usize) -> usize {
    p.addr().wrapping_neg() & (align - 1)
}

/// Copies `len` bytes from `src + at` to `dst[at..]`, one volatile `W` load per
/// `size_of::<W>()` bytes; returns `at + len`.
///
/// # Safety
///
/// `W` is an integer or SIMD vector type, or an array of them (every bit pattern is
/// valid); `len` is a multiple of its size; `src + at` is aligned for it unless `len`
/// is 0; `src + at .. src + at + len` is readable as [`copy_from_shared`] requires;
/// `at + len <= dst.len()`.
#[inline(always)]
unsafe fn words<W: Copy>(src: *const u8, dst: &mut [u8], at: usize, len: usize) -> usize {
    let size = size_of::<W>();
    debug_assert!(len.is_multiple_of(size) && at + len <= dst.len());
    debug_assert!(len == 0 || bytes_to_align(src.wrapping_add(at), align_of::<W>()) == 0);
    let out = dst.as_mut_ptr();
    let mut i = at;
    while i < at + len {
        // SAFETY: `src + i` is aligned for `W` (`src + at` is, and `i - at` is a multiple
        // of its size) and readable for `size` bytes (`i + size <= at + len`); `out + i`
        // is inside `dst` for `size` bytes, written unaligned. `W` has no invalid values.
        unsafe { out.add(i).cast::<W>().write_unaligned(src.add(i).cast::<W>().read_volatile()) };
        i += size;
    }
    at + len
}

/// Asks the CPU to start loading the cache line at `p` and goes on without waiting:
/// a hint, which reads nothing into Rust's view of memory and never faults (a
/// prefetch of an address that is not mapped is dropped).
pub(crate) use wide::prefetch;

/// The vector part of a copy: x86-64 has SSE2 always and AVX2 on most machines.
#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::{__m128i, __m256i, _MM_HINT_T0, _mm_prefetch};

    use super::{bytes_to_align, words};

    #[inline(always)]
    pub(crate) fn prefetch(p: *const u8) {
        // SAFETY: SSE is part of x86-64, so the CPU has the instruction; a prefetch
        // dereferences nothing (any address will do, and an unmapped one is ignored).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }

    /// Below this many bytes, 8-byte words do as well as vectors.
    const MIN_BULK: usize = 64;

    /// A [`super::Bulk`]: 32-byte AVX2 vectors where the CPU has them, else SSE2.
    ///
    /// # Safety
    ///
    /// As [`super::copy_from_shared`] for `src..src + dst.len()`; `src + at` is 8-aligned.
    pub(super) unsafe fn bulk(src: *const u8, dst: &mut [u8], at: usize) -> usize {
        if dst.len() - at < MIN_BULK {
            return at;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above); the rest is the caller's contract.
            unsafe { avx2(src, dst, at) }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { sse2(src, dst, at) }
        }
    }

    /// A [`super::Bulk`] of 32-byte vectors.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2; otherwise as [`bulk`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(src: *const u8, dst: &mut [u8], at: usize) -> usize {
        // SAFETY: the caller's contract, passed on; this function has AVX2 for `__m256i`.
        unsafe { vectors::<__m256i>(src, dst, at) }
    }

    /// A [`super::Bulk`] of 16-byte vectors (SSE2 is part of x86-64).
    ///
    /// # Safety
    ///
    /// As [`bulk`].
    pub(super) unsafe fn sse2(src: *const u8, dst: &mut [u8], at: usize) -> usize {
        // SAFETY: the caller's contract, passed on.
        unsafe { vectors::<__m128i>(src, dst, at) }
    }

    /// # Safety
    ///
    /// As [`bulk`], and the CPU can load a `V`.
    #[inline(always)]
    unsafe fn vectors<V: Copy>(src: *const u8, dst: &mut [u8], at: usize) -> usize {
        let size = size_of::<V>();
        // A multiple of 8, since `src + at` is 8-aligned and `size` a multiple of 8.
        let lead = bytes_to_align(src.wrapping_add(at), size);
        if dst.len() - at < lead + size {
            return at;
        }
        // SAFETY: `at..at + lead` and then whole vectors up to `dst.len()` stay inside
        // the caller's range; `lead` brings `src + at` from 8- to `size`-alignment, and
        // `[V; 4]` has `V`'s alignment. Four vectors a step halve the loop's overhead;
        // they are still four volatile vector loads.
        unsafe {
            let at = words::<u64>(src, dst, at, lead);
            let at = words::<[V; 4]>(src, dst, at, (dst.len() - at) / (4 * size) * (4 * size));
            words::<V>(src, dst, at, (dst.len() - at) / size * size)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::tests::copies_like_memcpy;
        use super::*;

        #[test]
        fn sse2_copies_every_alignment_and_length() {
            copies_like_memcpy(sse2);
        }

        #[test]
        fn avx2_copies_every_alignment_and_length() {
            if std::arch::is_x86_feature_detected!("avx2") {
                copies_like_memcpy(avx2);
            }
        }
    }
}

/// Elsewhere the copy is 8-byte words and bytes, and nothing is prefetched.
#[cfg(not(target_arch = "x86_64"))]
mod wide {
    #[inline(always)]
    pub(crate) fn prefetch(_p: *const u8) {}

    /// A [`super::Bulk`] that leaves everything to the 8-byte words.
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` to be a `Bulk`.
    pub(super) unsafe fn bulk(_src: *const u8, _dst: &mut [u8], at: usize) -> usize {
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies with `bulk` from every start alignment, with lengths around the word and
    /// vector boundaries, into destinations at every alignment, and checks every byte
    /// and that nothing outside the destination changed.
    pub(super) fn copies_like_memcpy(bulk: Bulk) {
        let src: Vec<u8> = (0..1024u32).map(|i| (i * 31 + i / 256) as u8).collect();
        for start in 0..72 {
            for len in (0..=300).chain([511, 512, 513, 900]) {
                let mut dst = vec![0xeeu8; len + 9];
                let skew = (start + len) % 9;
                // SAFETY: `src[start..start + len]` is in bounds (start + len <= 972),
                // and nothing writes `src` meanwhile; the test's `bulk` runs here.
                let end = unsafe { copy_with(src.as_ptr().add(start), &mut dst[skew..skew + len], bulk) };
                assert_eq!(end, len);
                assert_eq!(&dst[skew..skew + len], &src[start..start + len], "start {start} len {len}");
                assert!(dst[..skew].iter().chain(&dst[skew + len..]).all(|&b| b == 0xee), "wrote outside dst");
            }
        }
    }

    #[test]
    fn copies_every_alignment_and_length() {
        copies_like_memcpy(wide::bulk);
    }
}
