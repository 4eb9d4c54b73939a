//! `process_vm_readv(2)`: one system call reads up to IOV_MAX pieces of a batch.

use std::io;

use vmscope_hv::RamLocation;
use vmscope_mem::{Error as MemError, Gpa, MemoryMap, PhysMem, ReadOp};

use vmscope_hv::HoleGuard;

/// The kernel's limit on iovecs per call (UIO_MAXIOV).
const IOV_MAX: usize = 1024;

/// Guest RAM read with batched `process_vm_readv` from the hypervisor process.
#[derive(Debug)]
pub struct VmReadv {
    pid: libc::pid_t,
    base: u64,
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
        let holes = HoleGuard::new(&loc)?;
        let r = Self { pid: loc.pid as libc::pid_t, base: loc.hva.raw(), map: loc.map, holes };
        // A 1-byte probe of the first populated byte tells a permission problem now
        // rather than at the first pass.
        let mut probe = [0u8; 1];
        let first = r.map.regions().first().map(|x| x.gpa).unwrap_or_default();
        if let Err(MemError::Io { source, .. }) = r.read(first, &mut probe) {
            return Err(crate::Error::open(loc.pid, format!("process_vm_readv of {}", loc.pid), source));
        }
        Ok(r)
    }

    /// The hole guard, to refresh at the start of a pass.
    pub fn holes(&self) -> &HoleGuard {
        &self.holes
    }

    fn transfer(&self, pieces: &[Piece]) -> vmscope_mem::Result<()> {
        for group in pieces.chunks(IOV_MAX) {
            let local: Vec<libc::iovec> =
                group.iter().map(|p| libc::iovec { iov_base: p.local.cast(), iov_len: p.len }).collect();
            let remote: Vec<libc::iovec> =
                group.iter().map(|p| libc::iovec { iov_base: p.remote as *mut libc::c_void, iov_len: p.len }).collect();
            let want: usize = group.iter().map(|p| p.len).sum();
            // SAFETY: every local iovec points into a distinct `&mut [u8]` of the
            // caller's ReadOps, alive and exclusively borrowed for this call, with its
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
        let holes = self.holes.lock();
        for op in ops.iter_mut() {
            let base = op.buf.as_mut_ptr();
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (gpa, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                if holes.is_populated(off, n) {
                    // SAFETY: done + n <= op.buf.len(): the chunks cover exactly
                    // the op's length.
                    let local = unsafe { base.add(done) };
                    pieces.push(Piece { remote: self.base + off, local, len: n as usize, gpa });
                    done += n as usize;
                    continue;
                }
                for (o, len, data) in holes.split(off, n) {
                    let len = len as usize;
                    if data {
                        pieces.push(Piece {
                            remote: self.base + o,
                            // SAFETY: done + len <= op.buf.len(): the chunks cover
                            // exactly the op's length.
                            local: unsafe { base.add(done) },
                            len,
                            gpa,
                        });
                    } else {
                        // SAFETY: as above, in bounds; only the raw pointer is used
                        // once taken, so the pieces' pointers stay valid.
                        unsafe { std::ptr::write_bytes(base.add(done), 0, len) };
                    }
                    done += len;
                }
            }
        }
        drop(holes);
        self.transfer(&pieces)
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}
