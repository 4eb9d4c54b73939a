//! Dump files: written from any [`PhysMem`], read back as a [`PhysMem`].
//!
//! | format | layout | memory map | extra |
//! | --- | --- | --- | --- |
//! | [`Format::Raw`] | file offset = guest-physical address; gaps are zeros (sparse on disk) | sidecar `FILE.vmscope.json` (regions); without it the whole file is one region from GPA 0 | VMCOREINFO, registers in the sidecar |
//! | [`Format::Elf`] | QEMU `dump-guest-memory` (paging=false) layout: Ehdr, 2 Shdrs, PT_NOTE, one PT_LOAD per region (`p_paddr` = GPA), notes, memory | the PT_LOADs | per-vCPU `CORE`/`NT_PRSTATUS` and `QEMU` notes, the `VMCOREINFO` note |
//! | [`Format::Lime`] | per region a 32-byte header (`EMiL`, version 1, start, inclusive end, 8 reserved) then the bytes | the headers | none |
//!
//! Readers treat the file as hostile: every offset and length is checked against
//! the file's size before use, counts are bounded, and a malformed file is an
//! [`Error::Malformed`], never a panic or a huge allocation. All-zero pages are
//! written as holes, so dump files of a mostly idle guest are sparse on disk.

pub mod elf;
pub mod lime;
pub mod raw;

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use vmscope_mem::{Error as MemError, Gpa, MemoryMap, PhysMem, ReadOp};

use crate::buf::is_zero;
use crate::snapshot::DumpMeta;
use crate::{Error, Result};

/// A dump file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Flat physical image with a JSON sidecar for the memory map.
    Raw,
    /// ELF core in the layout of QEMU's `dump-guest-memory`.
    Elf,
    /// LiME (Linux Memory Extractor) ranges.
    Lime,
}

impl Format {
    /// `raw`, `elf`, `lime`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Elf => "elf",
            Format::Lime => "lime",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "raw" => Ok(Format::Raw),
            "elf" => Ok(Format::Elf),
            "lime" => Ok(Format::Lime),
            _ => Err(format!("unknown dump format {s:?} (raw, elf, lime)")),
        }
    }
}

/// What writing a dump produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// The file's length.
    pub file_bytes: u64,
    /// Bytes of guest memory actually written (non-zero pages).
    pub data_bytes: u64,
}

/// Writes the RAM of `mem` (every region of its memory map) and `meta` to `path`.
pub fn write_dump(path: &Path, format: Format, mem: &dyn PhysMem, meta: &DumpMeta) -> Result<WriteStats> {
    write_dump_from(path, format, &DumpSource { mem, data: None }, meta)
}

/// Writes a dump of `src`.
pub(crate) fn write_dump_from(
    path: &Path,
    format: Format,
    src: &DumpSource<'_>,
    meta: &DumpMeta,
) -> Result<WriteStats> {
    let file = File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let stats = match format {
        Format::Raw => raw::write(&file, path, src, meta)?,
        Format::Elf => elf::write(&file, src, meta)?,
        Format::Lime => lime::write(&file, src)?,
    };
    file.set_len(stats.file_bytes).map_err(|e| Error::io(format!("sizing {}", path.display()), e))?;
    Ok(stats)
}

/// What a dump is written from: guest memory, and where known the backing ranges
/// that hold data (a snapshot's extents), so that the rest — most of a large guest —
/// is neither read nor tested for zeros.
#[derive(Clone, Copy)]
pub(crate) struct DumpSource<'a> {
    pub(crate) mem: &'a dyn PhysMem,
    /// Sorted, disjoint backing ranges outside which everything reads as zero.
    pub(crate) data: Option<&'a [Range<u64>]>,
}

impl DumpSource<'_> {
    pub(crate) fn memory_map(&self) -> &MemoryMap {
        self.mem.memory_map()
    }

    /// Copies region `gpa..gpa+size` to `file` at `file_off`, skipping all-zero pages
    /// (the file stays sparse there) and, when the data extents are known, every
    /// range outside them. Returns the bytes written.
    pub(crate) fn write_region(&self, file: &File, file_off: u64, gpa: Gpa, size: u64) -> Result<u64> {
        let Some(data) = self.data else { return write_run(file, file_off, self.mem, gpa, size) };
        let base = self.memory_map().lookup(gpa).map(|(off, _)| off).ok_or(MemError::Unbacked { gpa })?;
        let mut written = 0;
        let first = data.partition_point(|e| e.end <= base);
        for e in data[first..].iter().take_while(|e| e.start < base + size) {
            let (a, b) = (e.start.max(base) - base, e.end.min(base + size) - base);
            let g = gpa.checked_add(a).ok_or(MemError::Overflow { gpa, len: size as usize })?;
            written += write_run(file, file_off + a, self.mem, g, b - a)?;
        }
        Ok(written)
    }
}

/// Copies `gpa..gpa+size` of `mem` to `file` at `file_off`, skipping all-zero pages.
/// Returns the bytes written.
fn write_run(file: &File, file_off: u64, mem: &dyn PhysMem, gpa: Gpa, size: u64) -> Result<u64> {
    const CHUNK: u64 = 4 << 20;
    let mut buf = vec![0u8; CHUNK.min(size) as usize];
    let mut written = 0;
    let mut at = 0;
    while at < size {
        let n = (size - at).min(CHUNK) as usize;
        let g = gpa.checked_add(at).ok_or(MemError::Overflow { gpa, len: n })?;
        mem.read(g, &mut buf[..n])?;
        // Write runs of non-zero pages.
        let mut i = 0;
        while i < n {
            let page_end = |i: usize| (i + 4096).min(n);
            if is_zero(&buf[i..page_end(i)]) {
                i = page_end(i);
                continue;
            }
            let mut j = page_end(i);
            while j < n && !is_zero(&buf[j..page_end(j)]) {
                j = page_end(j);
            }
            let off = file_off + at + i as u64;
            file.write_all_at(&buf[i..j], off).map_err(|e| Error::io(format!("writing the dump at {off:#x}"), e))?;
            written += (j - i) as u64;
            i = j;
        }
        at += n as u64;
    }
    Ok(written)
}

/// Random-access bytes a dump is parsed from: a file, or memory (tests, fuzzing).
pub trait Backing: Send + Sync + std::fmt::Debug {
    /// Length in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; fails if the range is not all inside.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl Backing for File {
    fn size(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl Backing for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| self.get(o..o.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Bounds-checked reads of a dump being parsed.
pub(crate) struct Parser<'a> {
    pub(crate) b: &'a dyn Backing,
    pub(crate) path: &'a Path,
    pub(crate) format: &'static str,
    pub(crate) size: u64,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(b: &'a dyn Backing, path: &'a Path, format: &'static str) -> Self {
        Self { b, path, format, size: b.size() }
    }

    pub(crate) fn bad(&self, offset: u64, why: impl Into<String>) -> Error {
        Error::Malformed { path: self.path.to_owned(), format: self.format, offset, why: why.into() }
    }

    /// Whether `len` bytes at `off` lie inside the file.
    pub(crate) fn fits(&self, off: u64, len: u64) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.size)
    }

    /// `len` bytes at `off` (`len` bounded by the caller).
    pub(crate) fn bytes(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        if !self.fits(off, len as u64) {
            return Err(self.bad(off, format!("{len} bytes needed, the file ends at {:#x}", self.size)));
        }
        let mut v = vec![0u8; len];
        self.b.read_exact_at(&mut v, off).map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        Ok(v)
    }
}

pub(crate) fn le_u16(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
pub(crate) fn le_u32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
pub(crate) fn le_u64(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// A dump file opened for reading: guest RAM served from the file by `pread`.
#[derive(Debug)]
pub struct DumpFile {
    backing: Box<dyn Backing>,
    map: MemoryMap,
    format: Format,
    meta: DumpMeta,
    path: PathBuf,
}

impl DumpFile {
    /// Opens a dump, recognising ELF and LiME by their magic; anything else is raw
    /// (laid out by its sidecar `PATH.vmscope.json` if present). QEMU's own
    /// `dump-guest-memory` ELF files (paging=false) read too.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let sidecar = raw::read_sidecar(path)?;
        Self::parse(Box::new(file), path, sidecar)
    }

    /// Parses a dump held in memory (raw without sidecar: one region from GPA 0).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Box::new(bytes), Path::new("<bytes>"), None)
    }

    fn parse(backing: Box<dyn Backing>, path: &Path, sidecar: Option<Vec<u8>>) -> Result<Self> {
        let mut magic = [0u8; 8];
        let n = backing.size().min(8) as usize;
        backing.read_exact_at(&mut magic[..n], 0).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let p = Parser::new(&*backing, path, "dump");
        let (format, map, meta) = if magic.starts_with(b"\x7fELF") {
            let (m, meta) = elf::parse(&Parser { format: "ELF", ..p })?;
            (Format::Elf, m, meta)
        } else if magic[..4] == lime::MAGIC.to_le_bytes() {
            (Format::Lime, lime::parse(&Parser { format: "LiME", ..p })?, DumpMeta::default())
        } else if magic.starts_with(b"QEVM") {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                why:
                    "a QEMU migration stream: parse it with vmscope_snap::live::parse_stream and the guest's memory map"
                        .into(),
            });
        } else if magic.starts_with(b"KDUMP   ") || magic.starts_with(b"makedumpfile") {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                why: "a kdump-compressed dump: take an ELF dump instead (dump-guest-memory format=elf)".into(),
            });
        } else {
            let (m, meta) = raw::parse(&Parser { format: "raw", ..p }, sidecar.as_deref())?;
            (Format::Raw, m, meta)
        };
        Ok(Self { backing, map, format, meta, path: path.to_owned() })
    }

    /// The format recognised.
    pub fn format(&self) -> Format {
        self.format
    }

    /// VMCOREINFO and vCPU registers recorded in the file.
    pub fn meta(&self) -> &DumpMeta {
        &self.meta
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PhysMem for DumpFile {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        vmscope_mem::read_mapped(&self.map, ops, |buf, off| self.backing.read_exact_at(buf, off))
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

#[cfg(test)]
mod tests;
