//! `pread(2)` on `/proc/PID/mem` at the RAM's host-virtual addresses.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use vmscope_hv::{Backed, HoleGuard, RamLocation};
use vmscope_mem::{Error as MemError, Gpa, MemoryMap, PhysMem, ReadOp};

use crate::remote::{Blocks, plan};

/// Guest RAM read through `/proc/PID/mem` of the hypervisor.
#[derive(Debug)]
pub struct ProcMem {
    mem: File,
    blocks: Blocks,
    map: MemoryMap,
    holes: HoleGuard,
}

impl ProcMem {
    /// Opens `/proc/PID/mem` of `loc.pid` read-only.
    pub fn open(loc: RamLocation) -> crate::Result<Self> {
        let path = format!("/proc/{}/mem", loc.pid);
        let mem = File::open(&path).map_err(|e| crate::Error::open(loc.pid, format!("open {path}"), e))?;
        let holes = crate::error::guard(&loc)?;
        Ok(Self { mem, blocks: Blocks::new(&loc), map: loc.map, holes })
    }

    /// The hole guard, to refresh at the start of a pass.
    pub fn holes(&self) -> &HoleGuard {
        &self.holes
    }

    fn read_range(&self, dst: &mut [u8], off: u64, gpa: Gpa) -> vmscope_mem::Result<()> {
        // SAFETY: `dst` is exclusively borrowed for the call; each piece is read into
        // before `plan` returns.
        unsafe {
            plan(&self.holes, &self.blocks, off, (dst.as_mut_ptr(), dst.len()), gpa, |hva, p, n| {
                // SAFETY: `plan` hands out disjoint pieces of `dst`, in bounds.
                let buf = std::slice::from_raw_parts_mut(p, n);
                self.mem.read_exact_at(buf, hva).map_err(|source| MemError::Io { gpa, source })
            })
        }
    }
}

impl PhysMem for ProcMem {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        for op in ops {
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (gpa, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                self.read_range(&mut op.buf[done..done + n as usize], off, gpa)?;
                done += n as usize;
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

impl Backed for ProcMem {
    fn data_extents(&self) -> vmscope_hv::Result<Vec<Range<u64>>> {
        Ok(self.holes.data_extents()?.into_iter().map(|(s, e)| s..e).collect())
    }

    fn read_backing(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read_range(buf, offset, Gpa::new(0)).map_err(|e| crate::error::at_offset(e, offset))
    }
}
