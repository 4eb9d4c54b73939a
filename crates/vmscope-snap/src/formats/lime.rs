//! LiME dumps: for each range of RAM, a 32-byte header then the range's bytes.
//!
//! Header (little-endian): `u32 magic = 0x4C694D45` ("EMiL" on disk), `u32 version
//! = 1`, `u64 s_addr`, `u64 e_addr` (inclusive), `u8 reserved[8]`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use vmscope_mem::{Gpa, MemoryMap, Region};

use super::{DumpSource, Parser, WriteStats, le_u32, le_u64};
use crate::{Error, Result};

/// The LiME header magic.
pub const MAGIC: u32 = 0x4C69_4D45;
/// The only LiME version there is.
pub const VERSION: u32 = 1;
/// Size of a range header.
pub const HEADER_SIZE: u64 = 32;
/// More ranges than this are refused.
const MAX_RANGES: usize = 1 << 16;

/// The header of range `start..=end`.
pub fn header(start: u64, end_inclusive: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&start.to_le_bytes());
    h[16..24].copy_from_slice(&end_inclusive.to_le_bytes());
    h
}

pub(crate) fn write(file: &File, src: &DumpSource<'_>) -> Result<WriteStats> {
    let mut off = 0u64;
    let mut data = 0;
    for r in src.memory_map().regions() {
        file.write_all_at(&header(r.gpa.raw(), r.end() - 1), off).map_err(|e| Error::io("writing a LiME header", e))?;
        off += HEADER_SIZE;
        data += src.write_region(file, off, r.gpa, r.size)?;
        off += r.size;
    }
    Ok(WriteStats { file_bytes: off, data_bytes: data })
}

pub(crate) fn parse(p: &Parser<'_>) -> Result<MemoryMap> {
    let mut regions = Vec::new();
    let mut off = 0u64;
    while off < p.size {
        let h = p.bytes(off, HEADER_SIZE as usize)?;
        let (magic, version) = (le_u32(&h, 0), le_u32(&h, 4));
        let (start, end) = (le_u64(&h, 8), le_u64(&h, 16));
        if magic != MAGIC {
            return Err(p.bad(off, format!("bad magic {magic:#010x}")));
        }
        if version != VERSION {
            return Err(p.bad(off, format!("unknown version {version}")));
        }
        let Some(len) = end.checked_sub(start).and_then(|d| d.checked_add(1)) else {
            return Err(p.bad(off, format!("range {start:#x}..={end:#x} is backwards or too large")));
        };
        let data = off + HEADER_SIZE;
        if !p.fits(data, len) {
            return Err(p.bad(off, format!("range {start:#x}..={end:#x} runs past the end of the file")));
        }
        if regions.len() == MAX_RANGES {
            return Err(p.bad(off, "too many ranges"));
        }
        regions.push(Region::new(Gpa::new(start), len, data, format!("lime{}", regions.len())));
        off = data + len;
    }
    if regions.is_empty() {
        return Err(p.bad(0, "no ranges"));
    }
    MemoryMap::new(regions).map_err(|e| p.bad(0, e.to_string()))
}
