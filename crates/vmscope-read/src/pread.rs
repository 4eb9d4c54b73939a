//! `pread(2)` on the RAM backing file: no ptrace rights needed beyond opening it, and
//! holes read as zeros without allocating anything.

use std::fs::File;
use std::os::unix::fs::FileExt;

use vmscope_hv::RamLocation;
use vmscope_mem::{MemoryMap, PhysMem, ReadOp, read_mapped};

/// Guest RAM read with `pread` on the backing file.
#[derive(Debug)]
pub struct Pread {
    file: File,
    map: MemoryMap,
}

impl Pread {
    /// Opens `loc`'s backing file (`/proc/PID/fd/N` of QEMU's memfd).
    pub fn open(loc: RamLocation) -> crate::Result<Self> {
        let file = loc.open_file().map_err(|e| match e {
            vmscope_hv::Error::Io { what, source } => crate::Error::open(loc.pid, what, source),
            other => other.into(),
        })?;
        Ok(Self { file, map: loc.map })
    }

    /// The backing file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl PhysMem for Pread {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        read_mapped(&self.map, ops, |buf, off| self.file.read_exact_at(buf, off))
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}
