//! Guest RAM laid out in a file (or anything read at an offset) by a memory map: a
//! RAM backing memfd, a raw dump, a snapshot file. [`FileMem`] is the one reader of
//! such a file by `pread`; the syscall technique (`vmscope-read`), the snapshots
//! (`vmscope-snap`) and the tests all use it.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::{Error, MemoryMap, PhysMem, ReadOp, Result};

/// Serves `ops` from a backing laid out as `map` says, with `read_at(buf, offset)`
/// filling `buf` from backing offset `offset`. Unbacked addresses fail before any
/// read of that op; a read error names the op's address.
pub fn read_mapped(
    map: &MemoryMap,
    ops: &mut [ReadOp<'_>],
    mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<()>,
) -> Result<()> {
    for op in ops {
        let mut done = 0usize;
        for c in map.chunks(op.gpa, op.buf.len() as u64) {
            let (_, off, n) = c.map_err(|gpa| Error::Unbacked { gpa })?;
            let n = n as usize;
            read_at(&mut op.buf[done..done + n], off).map_err(|source| Error::Io { gpa: op.gpa, source })?;
            done += n;
        }
    }
    Ok(())
}

/// Guest RAM in a file, read with `pread`.
///
/// ```
/// use std::os::unix::fs::FileExt;
/// use vmscope_mem::{FileMem, Gpa, MemoryMap, PhysMem};
///
/// let f = tempfile::tempfile().unwrap();
/// f.write_all_at(b"guest", 0x1000).unwrap();
/// let mem = FileMem::new(f, MemoryMap::flat(0x2000));
/// let mut b = [0u8; 5];
/// mem.read(Gpa::new(0x1000), &mut b).unwrap();
/// assert_eq!(&b, b"guest");
/// ```
#[derive(Debug)]
pub struct FileMem {
    file: File,
    map: MemoryMap,
}

impl FileMem {
    /// Serves `file` laid out as `map`.
    pub fn new(file: File, map: MemoryMap) -> Self {
        Self { file, map }
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reads `buf.len()` bytes at *backing offset* `offset` (where a
    /// [`Region::offset`](crate::Region::offset) points, not a guest-physical
    /// address): the bulk copies of snapshots read this way.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

impl PhysMem for FileMem {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
        read_mapped(&self.map, ops, |buf, off| self.file.read_exact_at(buf, off))
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}
