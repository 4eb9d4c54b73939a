//! The one trait every access technique implements.

use bytemuck::Pod;

use crate::{Error, Gpa, MemoryMap, Result};

/// One read of a batch: fill `buf` from guest-physical `gpa`.
#[derive(Debug)]
pub struct ReadOp<'a> {
    /// Where to read from.
    pub gpa: Gpa,
    /// Where to put the bytes; its length is the read's length.
    pub buf: &'a mut [u8],
}

impl<'a> ReadOp<'a> {
    /// A read of `buf.len()` bytes at `gpa`.
    pub fn new(gpa: Gpa, buf: &'a mut [u8]) -> Self {
        Self { gpa, buf }
    }
}

/// Guest-physical memory, readable in batches.
///
/// Implementors provide [`read_batch`](PhysMem::read_batch) and
/// [`memory_map`](PhysMem::memory_map); everything else is provided. Reads take
/// `&self` so that one reader can serve several walkers; implementations that cache
/// use interior mutability.
pub trait PhysMem {
    /// Performs every read of `ops`.
    ///
    /// Semantics every implementation keeps (decorators and callers rely on them):
    /// - A batch succeeds or fails as a whole. On error, the error names the first
    ///   failing address (in `ops` order) and the contents of *every* buffer are
    ///   unspecified. Callers that need to know which op failed use
    ///   [`read_each`](PhysMem::read_each).
    /// - Ops are independent: they may overlap, repeat, and come in any order; an
    ///   implementation may reorder or merge them. An empty buffer always succeeds.
    /// - A read never writes guest memory and never allocates guest pages the guest
    ///   did not touch.
    ///
    /// Implementations should turn the batch into as few system calls as they can.
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()>;

    /// The guest RAM layout this memory serves.
    fn memory_map(&self) -> &MemoryMap;

    /// Performs every read of `ops` and reports each op's outcome in `results`
    /// (cleared first; one entry per op, in order). Ops that succeeded have their
    /// buffers filled even when others failed.
    ///
    /// The provided version issues one [`read_batch`](PhysMem::read_batch) and only
    /// when that fails retries each op alone, so the common all-good case costs one
    /// batch. Returns whether every op succeeded.
    fn read_each(&self, ops: &mut [ReadOp<'_>], results: &mut Vec<Result<()>>) -> bool {
        results.clear();
        if self.read_batch(ops).is_ok() {
            results.extend(ops.iter().map(|_| Ok(())));
            return true;
        }
        for op in ops.iter_mut() {
            results.push(self.read_batch(std::slice::from_mut(op)));
        }
        results.iter().all(Result::is_ok)
    }

    /// Reads `buf.len()` bytes at `gpa`.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        self.read_batch(&mut [ReadOp::new(gpa, buf)])
    }

    /// Reads a plain-old-data value (little-endian, as the guest stores it).
    fn read_pod<T: Pod>(&self, gpa: Gpa) -> Result<T>
    where
        Self: Sized,
    {
        let mut v = T::zeroed();
        self.read(gpa, bytemuck::bytes_of_mut(&mut v))?;
        Ok(v)
    }

    /// Reads a little-endian `u64`. Page-table walkers call this once per level:
    /// implementations with a cheaper path than a one-op batch override it.
    fn read_u64(&self, gpa: Gpa) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Fills `out` with consecutive little-endian `u64`s from `gpa` (a page table,
    /// an array of pointers) with one read.
    fn read_u64s(&self, gpa: Gpa, out: &mut [u64]) -> Result<()> {
        self.read(gpa, bytemuck::cast_slice_mut(out))?;
        if cfg!(target_endian = "big") {
            out.iter_mut().for_each(|v| *v = u64::from_le(*v));
        }
        Ok(())
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&self, gpa: Gpa) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    /// No NUL within `max` bytes is an error ([`Error::Unterminated`]), never a
    /// string cut short (vmscope-linux's `KernelMem::read_cstr` means the same at a
    /// kernel-virtual address). Reads in small pieces so that a string near the
    /// end of RAM still reads.
    fn read_cstr(&self, gpa: Gpa, max: usize) -> Result<Vec<u8>> {
        const STEP: usize = 64;
        let mut out = Vec::new();
        let mut cur = gpa;
        while out.len() < max {
            // Never cross a page boundary in one piece: the next page may be a hole.
            let to_page_end = (crate::PAGE_SIZE - cur.offset_in_page(crate::PAGE_SIZE)) as usize;
            let n = STEP.min(to_page_end).min(max - out.len());
            let mut buf = [0u8; STEP];
            self.read(cur, &mut buf[..n])?;
            if let Some(nul) = buf[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            cur = cur.checked_add(n as u64).ok_or(Error::Overflow { gpa, len: max })?;
        }
        Err(Error::Unterminated { gpa, max })
    }
}

/// Every pointer to memory is memory: `&M`, `Box<M>`, `Arc<M>`.
macro_rules! forward_phys_mem {
    ($($ptr:ty),*) => {$(
        impl<M: PhysMem + ?Sized> PhysMem for $ptr {
            fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
                (**self).read_batch(ops)
            }
            fn read_each(&self, ops: &mut [ReadOp<'_>], results: &mut Vec<Result<()>>) -> bool {
                (**self).read_each(ops, results)
            }
            fn read_u64(&self, gpa: Gpa) -> Result<u64> {
                (**self).read_u64(gpa)
            }
            fn memory_map(&self) -> &MemoryMap {
                (**self).memory_map()
            }
        }
    )*};
}

forward_phys_mem!(&M, Box<M>, std::sync::Arc<M>);
