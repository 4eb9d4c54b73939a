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
    for p in holes.split(off, len as u64) {
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
