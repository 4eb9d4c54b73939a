//! Guest memory held in a byte slice: for tests, and for snapshots already in memory.

use crate::{Error, Gpa, MemoryMap, PhysMem, ReadOp, Result};

/// Guest RAM in a byte slice laid out as the backing store of a [`MemoryMap`].
#[derive(Debug, Clone)]
pub struct SliceMem<B> {
    bytes: B,
    map: MemoryMap,
}

impl<B: AsRef<[u8]>> SliceMem<B> {
    /// Serves `bytes` through `map`. Regions that reach past the end of `bytes` read
    /// as [`Error::Short`].
    pub fn new(bytes: B, map: MemoryMap) -> Self {
        Self { bytes, map }
    }

    /// The backing bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

impl<B: AsRef<[u8]>> PhysMem for SliceMem<B> {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
        let bytes = self.bytes.as_ref();
        for op in ops.iter_mut() {
            let len = op.buf.len();
            // Fast path: the whole op lies in one region and in the slice.
            if let Some((off, avail)) = self.map.lookup(op.gpa)
                && avail >= len as u64
                && let Some(src) = bytes.get(off as usize..).and_then(|s| s.get(..len))
            {
                op.buf.copy_from_slice(src);
                continue;
            }
            let mut done = 0usize;
            for chunk in self.map.chunks(op.gpa, len as u64) {
                let (_, off, n) = chunk.map_err(|gpa| Error::Unbacked { gpa })?;
                let (off, n) = (off as usize, n as usize);
                let src = bytes.get(off..off + n).ok_or(Error::Short { gpa: op.gpa, wanted: len, got: done })?;
                op.buf[done..done + n].copy_from_slice(src);
                done += n;
            }
            if done != len {
                return Err(Error::Overflow { gpa: op.gpa, len });
            }
        }
        Ok(())
    }

    #[inline]
    fn read_u64(&self, gpa: Gpa) -> Result<u64> {
        // Fast path for the page walker: one lookup, one 8-byte copy.
        if let Some((off, avail)) = self.map.lookup(gpa)
            && avail >= 8
            && let Some(b) = self.bytes.as_ref().get(off as usize..).and_then(|s| s.first_chunk::<8>())
        {
            return Ok(u64::from_le_bytes(*b));
        }
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Region;

    #[test]
    fn reads_across_regions_and_fails_on_holes() {
        let mut ram = vec![0u8; 0x3000];
        ram[0x2ffc..0x3000].copy_from_slice(b"abcd");
        ram[0..4].copy_from_slice(b"efgh");
        // GPA 0x1000..0x2000 -> offset 0x2000; GPA 0x2000..0x3000 -> offset 0.
        let map = MemoryMap::new(vec![
            Region::new(Gpa::new(0x1000), 0x1000, 0x2000, "lo"),
            Region::new(Gpa::new(0x2000), 0x1000, 0, "hi"),
        ])
        .unwrap();
        let mem = SliceMem::new(ram, map);
        let mut b = [0u8; 8];
        mem.read(Gpa::new(0x1ffc), &mut b).unwrap();
        assert_eq!(&b, b"abcdefgh");
        assert!(matches!(mem.read(Gpa::new(0x2ffc), &mut b), Err(Error::Unbacked { gpa }) if gpa == Gpa::new(0x3000)));
        assert!(matches!(mem.read(Gpa::new(0x0), &mut b), Err(Error::Unbacked { .. })));
    }

    #[test]
    fn cstr_is_bounded() {
        let mut ram = vec![b'x'; 0x2000];
        ram[0x1005] = 0;
        let mem = SliceMem::new(ram, MemoryMap::flat(0x2000));
        assert_eq!(mem.read_cstr(Gpa::new(0x1000), 100).unwrap(), b"xxxxx");
        assert!(matches!(mem.read_cstr(Gpa::new(0), 16), Err(Error::Unterminated { .. })));
        // A string running into the end of RAM fails as unbacked, not by panicking.
        assert!(matches!(
            mem.read_cstr(Gpa::new(0x1ffe), 100).unwrap_err(),
            Error::Unterminated { .. } | Error::Unbacked { .. }
        ));
    }
}
