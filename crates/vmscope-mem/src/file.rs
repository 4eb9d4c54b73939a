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

/// One file of a [`FileMem`]: backing offsets `start..start+len` are the file's
/// bytes from `file_offset` on.
#[derive(Debug)]
pub struct FileSegment {
    /// First backing offset it holds.
    pub start: u64,
    /// How many bytes.
    pub len: u64,
    /// The file.
    pub file: File,
    /// Where `start` is in the file.
    pub file_offset: u64,
}

/// Guest RAM in a file (or in several, one per RAM block), read with `pread`.
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
    /// Sorted by `start`, disjoint.
    segments: Vec<FileSegment>,
    map: MemoryMap,
}

impl FileMem {
    /// Serves `file` laid out as `map` (backing offset = file offset).
    pub fn new(file: File, map: MemoryMap) -> Self {
        Self { segments: vec![FileSegment { start: 0, len: u64::MAX, file, file_offset: 0 }], map }
    }

    /// Serves a backing made of several files laid out as `map`; every region must
    /// lie inside one segment.
    pub fn segmented(mut segments: Vec<FileSegment>, map: MemoryMap) -> Result<Self> {
        segments.sort_by_key(|s| s.start);
        for w in segments.windows(2) {
            if w[0].start.checked_add(w[0].len).is_none_or(|e| e > w[1].start) {
                return Err(Error::BadMap(format!("file segments at {:#x} and {:#x} overlap", w[0].start, w[1].start)));
            }
        }
        for r in map.regions() {
            if !segments.iter().any(|s| s.start <= r.offset && r.offset + r.size <= s.start.saturating_add(s.len)) {
                return Err(Error::BadMap(format!("region {} at {} lies in no file", r.name, r.gpa)));
            }
        }
        Ok(Self { segments, map })
    }

    /// The files and where each sits in the backing.
    pub fn segments(&self) -> &[FileSegment] {
        &self.segments
    }

    /// Reads `buf.len()` bytes at *backing offset* `offset` (where a
    /// [`Region::offset`](crate::Region::offset) points, not a guest-physical
    /// address): the bulk copies of snapshots read this way.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let i = self.segments.partition_point(|s| s.start.saturating_add(s.len) <= at);
            let s = self.segments.get(i).filter(|s| s.start <= at).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("backing offset {at:#x} is in no file"))
            })?;
            let n = ((s.start.saturating_add(s.len) - at).min((buf.len() - done) as u64)) as usize;
            s.file.read_exact_at(&mut buf[done..done + n], s.file_offset + (at - s.start))?;
            done += n;
        }
        Ok(())
    }
}

impl PhysMem for FileMem {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
        match self.segments.as_slice() {
            [one] if one.start == 0 && one.file_offset == 0 => {
                read_mapped(&self.map, ops, |buf, off| one.file.read_exact_at(buf, off))
            }
            _ => read_mapped(&self.map, ops, |buf, off| self.read_at(buf, off)),
        }
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gpa, Region};

    #[test]
    fn segments_each_from_their_own_file() {
        let a = tempfile::tempfile().unwrap();
        let b = tempfile::tempfile().unwrap();
        a.set_len(0x1000).unwrap();
        a.write_all_at(b"AAAA", 0x10).unwrap();
        b.write_all_at(b"BBBB", 0x2000).unwrap();
        let map = MemoryMap::new(vec![
            Region::new(Gpa::new(0), 0x1000, 0, "a"),
            Region::new(Gpa::new(0x10_0000), 0x1000, 0x1000, "b"),
        ])
        .unwrap();
        let segs = vec![
            FileSegment { start: 0x1000, len: 0x1000, file: b, file_offset: 0x2000 },
            FileSegment { start: 0, len: 0x1000, file: a, file_offset: 0 },
        ];
        let mem = FileMem::segmented(segs, map.clone()).unwrap();
        let mut x = [0u8; 4];
        mem.read(Gpa::new(0x10), &mut x).unwrap();
        assert_eq!(&x, b"AAAA");
        mem.read(Gpa::new(0x10_0000), &mut x).unwrap();
        assert_eq!(&x, b"BBBB");
        let mut across = [0u8; 8];
        mem.read_at(&mut across, 0xffc).unwrap();
        assert_eq!(&across[4..], b"BBBB");
        let lone = vec![FileSegment { start: 0, len: 0x1000, file: tempfile::tempfile().unwrap(), file_offset: 0 }];
        assert!(FileMem::segmented(lone, map).is_err(), "region b has no file");
    }
}
