//! Reading the kernel's virtual address space (and a process's) from guest-physical
//! memory: the image and the direct map by their fixed offsets, everything else
//! (vmalloc, modules, per-CPU areas beyond the first chunk) through the kernel
//! page tables with a TLB.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vmscope_mem::{Gpa, Gva, PAGE_SIZE, PhysMem, ReadOp};
use vmscope_x86::{AddressSpace, PagingMode, Root, Tlb};

use crate::discovery::Image;
use crate::{Error, Result};

/// TLB slots of a kernel rebound to other memory (see [`KernelMem::rebind`]).
const REBIND_TLB: usize = 64;

/// The kernel's view of memory, over any [`PhysMem`].
#[derive(Debug)]
pub struct KernelMem<M> {
    mem: M,
    image: Image,
    direct_base: Gva,
    direct_len: u64,
    space: AddressSpace,
    tlb: Mutex<Tlb>,
    /// Bytes read so far (what a pass's budget counts).
    bytes_read: AtomicU64,
}

impl<M: PhysMem> KernelMem<M> {
    pub(crate) fn new(mem: M, image: Image, direct_base: Gva, space: AddressSpace) -> Self {
        Self::with_tlb(mem, image, direct_base, space, 4096)
    }

    fn with_tlb(mem: M, image: Image, direct_base: Gva, space: AddressSpace, tlb_slots: usize) -> Self {
        let direct_len = mem.memory_map().end();
        let tlb = Mutex::new(Tlb::new(tlb_slots));
        KernelMem { mem, image, direct_base, direct_len, space, tlb, bytes_read: AtomicU64::new(0) }
    }

    /// The same kernel address space over other memory (a fresh TLB).
    pub(crate) fn rebind<N: PhysMem>(&self, mem: N) -> KernelMem<N> {
        // Rebinding happens per pass: most addresses translate through the image or
        // the direct map, so a small TLB serves and costs little to set up.
        KernelMem::with_tlb(mem, self.image, self.direct_base, self.space, REBIND_TLB)
    }

    /// The guest-physical memory underneath.
    pub fn phys(&self) -> &M {
        &self.mem
    }

    /// The kernel address space (`init_top_pgt`).
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.space.mode()
    }

    /// Bytes read through this kernel view so far (page-table reads of a
    /// translation not counted): what a pass's [`Budget`](crate::views::Budget)
    /// counts.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    fn count(&self, n: usize) {
        // A load and a store, not an atomic add: no locked instruction on every
        // read. Passes running at once on one `KernelMem` may lose a count, which a
        // budget can afford.
        let was = self.bytes_read.load(Ordering::Relaxed);
        self.bytes_read.store(was.wrapping_add(n as u64), Ordering::Relaxed);
    }

    /// Forgets cached translations; call when the guest may have run since.
    pub fn invalidate(&self) {
        self.tlb.lock().unwrap_or_else(|p| p.into_inner()).invalidate();
    }

    /// Whether `va` lies in the kernel half (the only place kernel pointers go).
    pub fn is_kernel_address(&self, va: Gva) -> bool {
        let m = self.space.mode();
        m.is_canonical(va) && va >= m.upper_half_start()
    }

    /// The guest-physical address of kernel-virtual `va`, and how many bytes stay
    /// physically contiguous from there.
    pub fn translate(&self, va: Gva) -> Result<(Gpa, u64)> {
        if let (Some(pa), Some(left)) = (self.image.pa(va), self.image.end_va.offset_from(va)) {
            return Ok((pa, left));
        }
        if let Some(off) = va.offset_from(self.direct_base).filter(|&off| off < self.direct_len) {
            return Ok((Gpa::new(off), self.direct_len - off));
        }
        let mut tlb = self.tlb.lock().unwrap_or_else(|p| p.into_inner());
        let t = tlb.translate(&self.mem, &self.space, va).map_err(|source| Error::Translate { gva: va, source })?;
        Ok((t.gpa, t.page_size.bytes() - va.offset_in_page(t.page_size.bytes())))
    }

    /// Reads `buf.len()` bytes at kernel-virtual `va`.
    pub fn read(&self, va: Gva, buf: &mut [u8]) -> Result<()> {
        self.count(buf.len());
        let mut done = 0usize;
        while done < buf.len() {
            let at = member(va, done as u64)?;
            let (pa, contiguous) = self.translate(at)?;
            let n = (buf.len() - done).min(usize::try_from(contiguous).unwrap_or(usize::MAX));
            self.mem.read(pa, &mut buf[done..done + n]).map_err(|e| Error::phys(pa, e))?;
            done += n;
        }
        Ok(())
    }

    /// Reads every piece of `pieces` (`buf.len()` bytes at `va` each) as one batch of
    /// the memory underneath — one system call for a syscall reader, cache misses
    /// overlapped for a mapping — and says for each piece whether it was read: one
    /// that fails does not fail the others.
    pub fn read_each(&self, pieces: &mut [(Gva, &mut [u8])]) -> Vec<Result<()>> {
        let mut out: Vec<Result<()>> = pieces.iter().map(|_| Ok(())).collect();
        let mut ops = Vec::with_capacity(pieces.len());
        // The piece each op reads for.
        let mut of = Vec::with_capacity(pieces.len());
        self.count(pieces.iter().map(|(_, buf)| buf.len()).sum());
        for (i, (va, buf)) in pieces.iter_mut().enumerate() {
            let mut rest = &mut buf[..];
            let mut done = 0u64;
            while !rest.is_empty() {
                let at = member(*va, done).and_then(|at| self.translate(at));
                let (pa, contiguous) = match at {
                    Ok(t) => t,
                    Err(e) => {
                        out[i] = Err(e);
                        break;
                    }
                };
                let n = rest.len().min(usize::try_from(contiguous).unwrap_or(usize::MAX));
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
                ops.push(ReadOp::new(pa, head));
                of.push(i);
                rest = tail;
                done += n as u64;
            }
        }
        let mut results = Vec::with_capacity(ops.len());
        self.mem.read_each(&mut ops, &mut results);
        for ((r, i), op) in results.into_iter().zip(of).zip(&ops) {
            if let (Err(e), Ok(())) = (r, &out[i]) {
                out[i] = Err(Error::phys(op.gpa, e));
            }
        }
        out
    }

    /// Reads `len` bytes at `va` into a new vector.
    pub fn read_vec(&self, va: Gva, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read(va, &mut v)?;
        Ok(v)
    }

    /// A little-endian `u64` at `va`.
    pub fn read_u64(&self, va: Gva) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A pointer at `va` (whatever it holds: check it before following it).
    pub fn read_ptr(&self, va: Gva) -> Result<Gva> {
        self.read_u64(va).map(Gva::new)
    }

    /// A little-endian `u32` at `va`.
    pub fn read_u32(&self, va: Gva) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// The NUL-terminated string at `va`, without its NUL. No NUL within `max`
    /// bytes is an error ([`Error::Unterminated`]), never a string cut short: the
    /// same as [`PhysMem::read_cstr`] at a guest-physical address. Where a prefix
    /// is what is wanted, ask for one: [`read_cstr_prefix`](Self::read_cstr_prefix).
    pub fn read_cstr(&self, va: Gva, max: usize) -> Result<Vec<u8>> {
        let s = self.read_cstr_prefix(va, max)?;
        if s.truncated {
            return Err(Error::Unterminated { gva: va, max });
        }
        Ok(s.bytes)
    }

    /// The string at `va` up to its NUL or `max` bytes, whichever comes first,
    /// saying which: for strings whose prefix is what the kernel itself shows.
    pub fn read_cstr_prefix(&self, va: Gva, max: usize) -> Result<CStrPrefix> {
        let mut bytes = Vec::new();
        while bytes.len() < max {
            let at = member(va, bytes.len() as u64)?;
            // One page at a time: the next one may not be mapped.
            let n = (PAGE_SIZE - at.offset_in_page(PAGE_SIZE)).min((max - bytes.len()) as u64) as usize;
            let start = bytes.len();
            bytes.resize(start + n, 0);
            self.read(at, &mut bytes[start..])?;
            if let Some(nul) = bytes[start..].iter().position(|&b| b == 0) {
                bytes.truncate(start + nul);
                return Ok(CStrPrefix { bytes, truncated: false });
            }
        }
        Ok(CStrPrefix { bytes, truncated: true })
    }

    /// Reads user memory at `va` of the address space rooted at `pgd` (a
    /// kernel-virtual pointer, as `mm->pgd` holds it). Fails at the first page that
    /// is not present.
    pub fn read_user(&self, pgd: Gva, va: Gva, buf: &mut [u8]) -> Result<()> {
        self.count(buf.len());
        let (root, _) = self.translate(pgd)?;
        let space = self.space.with_root(Root::new(root));
        let mut done = 0usize;
        while done < buf.len() {
            let gva = member(va, done as u64)?;
            let t = space.translate(&self.mem, gva).map_err(|source| Error::Translate { gva, source })?;
            let left = t.page_size.bytes() - gva.offset_in_page(t.page_size.bytes());
            let n = (buf.len() - done).min(left as usize);
            self.mem.read(t.gpa, &mut buf[done..done + n]).map_err(|e| Error::phys(t.gpa, e))?;
            done += n;
        }
        Ok(())
    }
}

/// A string read by [`KernelMem::read_cstr_prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CStrPrefix {
    /// The bytes before the NUL, or the first `max` bytes when none came.
    pub bytes: Vec<u8>,
    /// Whether no NUL came within `max` bytes: the string may go on.
    pub truncated: bool,
}

/// `base + offset`: where a member of the object at `base` is. Past the top of the
/// address space (only a corrupt pointer or offset leads there) it is an error.
pub(crate) fn member(base: Gva, offset: u64) -> Result<Gva> {
    // A match, not `ok_or`: building the error on every call (and dropping it) cost
    // 5% of a process list (callgrind).
    match base.checked_add(offset) {
        Some(at) => Ok(at),
        None => Err(Error::AddressOverflow { base, offset }),
    }
}

/// `node - offset`: the object whose member at `offset` is at `node`
/// (`container_of`). Below address 0 it is an error.
pub(crate) fn container(node: Gva, offset: u64) -> Result<Gva> {
    match node.checked_sub(offset) {
        Some(at) => Ok(at),
        None => Err(Error::AddressUnderflow { base: node, offset }),
    }
}

#[cfg(test)]
mod tests {
    use vmscope_mem::Gva;

    use crate::Error;
    use crate::views::fixture::Fx;

    #[test]
    fn read_cstr_errs_without_a_nul_and_read_cstr_prefix_says_it_cut() {
        let mut fx = Fx::new();
        // A string that crosses a page boundary, and one with no NUL in reach.
        let page = fx.alloc_page();
        let next = fx.alloc_page();
        assert_eq!(next, page + 0x1000);
        let at = next - 3;
        fx.write_str(at, "abcdef");
        let (k, _) = fx.finish();
        let (at, page) = (Gva::new(at), Gva::new(page));

        assert_eq!(k.read_cstr(at, 7).unwrap(), b"abcdef");
        assert!(matches!(k.read_cstr(at, 6), Err(Error::Unterminated { gva, max: 6 }) if gva == at));
        assert!(matches!(k.read_cstr(at, 0), Err(Error::Unterminated { .. })));

        let whole = k.read_cstr_prefix(at, 7).unwrap();
        assert_eq!((whole.bytes.as_slice(), whole.truncated), (&b"abcdef"[..], false));
        let cut = k.read_cstr_prefix(at, 4).unwrap();
        assert_eq!((cut.bytes.as_slice(), cut.truncated), (&b"abcd"[..], true));
        // An empty string is a string.
        assert_eq!(k.read_cstr(page, 16).unwrap(), b"");
    }
}
