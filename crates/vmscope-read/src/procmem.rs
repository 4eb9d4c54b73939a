//! `pread(2)` on `/proc/PID/mem` at the RAM's host-virtual address.

use std::fs::File;
use std::os::unix::fs::FileExt;

use vmscope_hv::RamLocation;
use vmscope_mem::{Error as MemError, MemoryMap, PhysMem, ReadOp};

use vmscope_hv::HoleGuard;

/// Guest RAM read through `/proc/PID/mem` of the hypervisor.
#[derive(Debug)]
pub struct ProcMem {
    mem: File,
    base: u64,
    map: MemoryMap,
    holes: HoleGuard,
}

impl ProcMem {
    /// Opens `/proc/PID/mem` of `loc.pid` read-only.
    pub fn open(loc: RamLocation) -> crate::Result<Self> {
        let path = format!("/proc/{}/mem", loc.pid);
        let mem = File::open(&path).map_err(|e| crate::Error::open(loc.pid, path, e))?;
        let holes = HoleGuard::new(&loc)?;
        Ok(Self { mem, base: loc.hva.raw(), map: loc.map, holes })
    }

    /// The hole guard, to refresh at the start of a pass.
    pub fn holes(&self) -> &HoleGuard {
        &self.holes
    }
}

impl PhysMem for ProcMem {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        let holes = self.holes.lock();
        for op in ops {
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (_, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                if holes.is_populated(off, n) {
                    self.mem
                        .read_exact_at(&mut op.buf[done..done + n as usize], self.base + off)
                        .map_err(|source| MemError::Io { gpa: op.gpa, source })?;
                    done += n as usize;
                    continue;
                }
                for (o, len, data) in holes.split(off, n) {
                    let dst = &mut op.buf[done..done + len as usize];
                    if data {
                        self.mem
                            .read_exact_at(dst, self.base + o)
                            .map_err(|source| MemError::Io { gpa: op.gpa, source })?;
                    } else {
                        dst.fill(0);
                    }
                    done += len as usize;
                }
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}
