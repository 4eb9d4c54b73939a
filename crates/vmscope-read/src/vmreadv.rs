//! `process_vm_readv(2)`: one system call reads up to IOV_MAX pieces of a batch.

use std::io;
use std::ops::Range;

use vmscope_hv::{Backed, HoleGuard, RamLocation};
use vmscope_mem::{Error as MemError, Gpa, MemoryMap, PhysMem, ReadOp};

use crate::remote::{Blocks, plan};

/// The kernel's limit on iovecs per call (UIO_MAXIOV).
const IOV_MAX: usize = 1024;

/// Guest RAM read with batched `process_vm_readv` from the hypervisor process.
#[derive(Debug)]
pub struct VmReadv {
    pid: libc::pid_t,
    blocks: Blocks,
    map: MemoryMap,
    holes: HoleGuard,
}

/// One piece of a batch: copy `len` bytes from remote `addr` into `local`.
struct Piece {
    remote: u64,
    local: *mut u8,
    len: usize,
    gpa: Gpa,
}

impl VmReadv {
    /// Prepares reads from `loc.pid`, checking once that we may read it.
    pub fn open(loc: RamLocation) -> crate::Result<Self> {
        let holes = crate::error::guard(&loc)?;
        let r = Self { pid: loc.pid as libc::pid_t, blocks: Blocks::new(&loc), map: loc.map, holes };
        // A 1-byte probe of a page QEMU holds tells a permission problem now rather
        // than at the first pass (a page it does not hold is never read).
        if let Some(hva) = r.holes.first_resident().and_then(|off| r.blocks.hva(off)).map(|h| h.0) {
            let mut probe = [0u8; 1];
            let p = Piece { remote: hva, local: probe.as_mut_ptr(), len: 1, gpa: Gpa::new(0) };
            if let Err(MemError::Io { source, .. }) = r.transfer(&[p]) {
                return Err(crate::Error::open(loc.pid, "read the memory (process_vm_readv)".into(), source));
            }
        }
        Ok(r)
    }

    /// The hole guard, to refresh at the start of a pass.
    pub fn holes(&self) -> &HoleGuard {
        &self.holes
    }

    /// Adds the pieces of a read of `len` bytes at backing offset `off` into `dst` to
    /// `pieces`; the parts that are not the process's (holes, file pages) are filled
    /// now.
    ///
    /// # Safety
    /// As [`plan`]: `dst` is valid for `len` bytes and left alone until `pieces` are
    /// transferred.
    unsafe fn plan(
        &self,
        dst: (*mut u8, usize),
        off: u64,
        gpa: Gpa,
        pieces: &mut Vec<Piece>,
    ) -> vmscope_mem::Result<()> {
        // SAFETY: passed on from the caller.
        unsafe {
            plan(&self.holes, &self.blocks, off, dst, gpa, |remote, local, len| {
                pieces.push(Piece { remote, local, len, gpa });
                Ok(())
            })
        }
    }

    fn transfer(&self, pieces: &[Piece]) -> vmscope_mem::Result<()> {
        for group in pieces.chunks(IOV_MAX) {
            let local: Vec<libc::iovec> =
                group.iter().map(|p| libc::iovec { iov_base: p.local.cast(), iov_len: p.len }).collect();
            let remote: Vec<libc::iovec> =
                group.iter().map(|p| libc::iovec { iov_base: p.remote as *mut libc::c_void, iov_len: p.len }).collect();
            let want: usize = group.iter().map(|p| p.len).sum();
            // SAFETY: every local iovec points into a distinct `&mut [u8]` of the
            // caller's buffers, alive and exclusively borrowed for this call, with its
            // exact length; remote addresses are only read by the kernel, and the
            // counts are at most IOV_MAX.
            let got = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    local.as_ptr(),
                    local.len() as _,
                    remote.as_ptr(),
                    remote.len() as _,
                    0,
                )
            };
            if got < 0 {
                let source = io::Error::last_os_error();
                return Err(MemError::Io { gpa: group[0].gpa, source });
            }
            if got as usize != want {
                // The call stops at the first piece it cannot read: name it.
                let mut acc = 0usize;
                let bad = group.iter().find(|p| {
                    acc += p.len;
                    acc > got as usize
                });
                let gpa = bad.map_or(group[0].gpa, |p| p.gpa);
                return Err(MemError::Short { gpa, wanted: want, got: got as usize });
            }
        }
        Ok(())
    }
}

impl PhysMem for VmReadv {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        let mut pieces = Vec::with_capacity(ops.len());
        for op in ops.iter_mut() {
            // One raw pointer per op, taken once: the pieces' pointers derive from it.
            let base = op.buf.as_mut_ptr();
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (gpa, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                // SAFETY: the chunks tile the op's buffer, so `done + n <= len`; the
                // buffer is exclusively borrowed until `transfer` below has read into it.
                unsafe { self.plan((base.add(done), n as usize), off, gpa, &mut pieces)? };
                done += n as usize;
            }
        }
        self.transfer(&pieces)
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

impl Backed for VmReadv {
    fn data_extents(&self) -> vmscope_hv::Result<Vec<Range<u64>>> {
        Ok(self.holes.data_extents()?.into_iter().map(|(s, e)| s..e).collect())
    }

    fn read_backing(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut pieces = Vec::new();
        // SAFETY: `buf` is exclusively borrowed until `transfer` has read into it.
        let planned = unsafe { self.plan((buf.as_mut_ptr(), buf.len()), offset, Gpa::new(0), &mut pieces) };
        planned.and_then(|()| self.transfer(&pieces)).map_err(|e| crate::error::at_offset(e, offset))
    }
}
