//! Where guest RAM lives on the host: the hypervisor process, and for each RAM block
//! its address in that process and what backs it (anonymous memory, or a file mapped
//! shared or private). This is what the technique crates start from.

mod extents;
mod guard;
mod pagemap;
mod vitals;

use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;

use vmscope_mem::{FileMem, Hva, MemoryMap, PhysMem};

pub use extents::Extents;
pub(crate) use guard::huge_page_size;
pub use guard::{HoleGuard, Piece, PieceSource};
pub use vitals::Vitals;

use crate::{Error, Result};

/// What backs one RAM block in the hypervisor process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous private memory (QEMU's plain `-m`, `memory-backend-ram`): only the
    /// process's own address space reaches it (process_vm_readv, /proc/PID/mem);
    /// another process cannot map it.
    Anonymous,
    /// A file the process maps: QEMU's memfd, a `mem-path` file, a hugetlbfs file.
    File {
        /// A path that opens it from another process (`/proc/PID/fd/N`, or
        /// `/proc/PID/map_files/A-B`).
        path: PathBuf,
        /// The file offset of the block's first byte.
        offset: u64,
        /// `share=on`: the file holds every guest write, and may be mapped or read
        /// by another process. `share=off`: copy-on-write; a page the guest wrote
        /// lives in the process only, and the file holds the rest.
        shared: bool,
    },
}

/// One RAM block: a contiguous piece of the backing space that the memory map's
/// offsets point into, and where it lives in the hypervisor process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamBlock {
    /// The hypervisor's name for it (a memory-backend id, `pc.ram`).
    pub name: String,
    /// Its first byte in the backing space ([`Region::offset`](vmscope_mem::Region::offset)
    /// points here).
    pub offset: u64,
    /// Its length.
    pub size: u64,
    /// Where its first byte is in the hypervisor process.
    pub hva: Hva,
    /// The page size of its mapping (4 KiB, or a huge page size on hugetlbfs).
    pub page_size: u64,
    /// What backs it.
    pub backing: Backing,
}

impl RamBlock {
    /// Whether another process can read it through its file and map it: a shared file.
    pub fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::File { shared: true, .. })
    }

    /// Whether its file answers `SEEK_DATA` (not hugetlbfs, which says every byte is
    /// data), so that it can be read with `pread` of its data extents alone.
    pub fn knows_its_holes(&self) -> bool {
        self.page_size <= 4096
    }

    /// What it is, for errors and `info`: `anonymous private memory`, `a shared
    /// file`, ...
    pub fn describe(&self) -> String {
        let huge =
            if self.page_size > 4096 { format!(" on {} KiB huge pages", self.page_size >> 10) } else { String::new() };
        // `/proc/PID/fd/N` opens the file; what it links to names it.
        let file = |p: &PathBuf| std::fs::read_link(p).unwrap_or_else(|_| p.clone()).display().to_string();
        match &self.backing {
            Backing::Anonymous => format!("{}: anonymous private memory{huge}", self.name),
            Backing::File { path, shared: true, .. } => format!("{}: shared file {}{huge}", self.name, file(path)),
            Backing::File { path, shared: false, .. } => {
                format!("{}: private (copy-on-write) mapping of {}{huge}", self.name, file(path))
            }
        }
    }

    /// Opens the block's file read-only.
    pub fn open_file(&self, pid: u32) -> Result<File> {
        let Backing::File { path, .. } = &self.backing else {
            return Err(Error::Unsupported(format!("RAM block {} of process {pid} is not a file", self.name)));
        };
        File::open(path).map_err(|e| {
            Error::of_process(pid, format!("open the RAM file {} of block {}", path.display(), self.name), e)
        })
    }
}

/// Guest RAM as the host sees it.
#[derive(Debug, Clone)]
pub struct RamLocation {
    /// The hypervisor process (QEMU, `vmscope-vmm`).
    pub pid: u32,
    /// Guest-physical ranges and their offsets in the backing space.
    pub map: MemoryMap,
    /// The RAM blocks, sorted by offset and disjoint; every region of `map` lies in one.
    pub blocks: Vec<RamBlock>,
}

impl RamLocation {
    /// A location whose every region lies inside one of `blocks`.
    pub fn new(pid: u32, map: MemoryMap, mut blocks: Vec<RamBlock>) -> Result<Self> {
        blocks.sort_by_key(|b| b.offset);
        for w in blocks.windows(2) {
            if w[0].offset.checked_add(w[0].size).is_none_or(|e| e > w[1].offset) {
                return Err(Error::Protocol(format!("RAM blocks {} and {} overlap", w[0].name, w[1].name)));
            }
        }
        for r in map.regions() {
            let inside = blocks.iter().any(|b| b.offset <= r.offset && r.offset + r.size <= b.offset + b.size);
            if !inside {
                return Err(Error::Protocol(format!(
                    "region {} at {} ({:#x} bytes at offset {:#x}) lies in no RAM block of process {pid}",
                    r.name, r.gpa, r.size, r.offset
                )));
            }
        }
        Ok(Self { pid, map, blocks })
    }

    /// The RAM of QEMU process `pid` laid out as `layout` says (from QMP, or inferred
    /// from its command line): each block's mapping found in `/proc/PID/maps` —
    /// anonymous memory, or a file mapped shared or private.
    pub fn qemu(pid: u32, layout: &crate::qemu::RamLayout) -> Result<Self> {
        let vmas = crate::qemu::read_maps(pid)?;
        let blocks = layout
            .blocks
            .iter()
            .map(|b| crate::qemu::block_at(pid, &vmas, &b.span.name, b.span.offset, b.hva, b.span.size))
            .collect::<Result<Vec<_>>>()?;
        Self::new(pid, layout.map.clone(), blocks)
    }

    /// One block of anonymous memory at `hva`, or of the shared file `file`,
    /// holding all of `map` (the built-in VMM, tests).
    pub fn single(pid: u32, map: MemoryMap, hva: Hva, file: Option<PathBuf>) -> Self {
        let backing = match file {
            Some(path) => Backing::File { path, offset: 0, shared: true },
            None => Backing::Anonymous,
        };
        let block = RamBlock { name: "ram".into(), offset: 0, size: map.backing_size(), hva, page_size: 4096, backing };
        Self { pid, map, blocks: vec![block] }
    }

    /// The size of the backing space: the end of the last block.
    pub fn backing_size(&self) -> u64 {
        self.blocks.iter().map(|b| b.offset + b.size).max().unwrap_or(0).max(self.map.backing_size())
    }

    /// Whether every block is a shared file: what mapping it (live-map, halt-map)
    /// needs.
    pub fn is_shared(&self) -> bool {
        !self.blocks.is_empty() && self.blocks.iter().all(RamBlock::is_shared)
    }

    /// Whether every block is a shared file that knows its holes: what reading it
    /// with `pread` of the files needs.
    pub fn is_readable_by_file(&self) -> bool {
        self.is_shared() && self.blocks.iter().all(RamBlock::knows_its_holes)
    }

    /// The blocks another process cannot map, described for an error.
    pub fn private_blocks(&self) -> Vec<String> {
        self.blocks.iter().filter(|b| !b.is_shared()).map(RamBlock::describe).collect()
    }

    /// The RAM files for `pread`, one [`FileMem`] laid out by `map` (refused unless
    /// every block is a shared file with holes it knows, see
    /// [`is_readable_by_file`](Self::is_readable_by_file)).
    pub fn open_files(&self) -> Result<FileMem> {
        if !self.is_readable_by_file() {
            let why = if self.is_shared() {
                "its hugetlbfs file reports every byte as data, so a copy would read and keep all of it".to_owned()
            } else {
                format!("it is not a shared file ({})", self.private_blocks().join("; "))
            };
            return Err(Error::Unsupported(format!(
                "QEMU {}'s guest RAM cannot be read through its file: {why}; read it through the \
                 process instead (--read-method process_vm_readv)",
                self.pid
            )));
        }
        let mut segments = Vec::new();
        for b in &self.blocks {
            let Backing::File { offset, .. } = &b.backing else { unreachable!("checked shared") };
            segments.push(vmscope_mem::FileSegment {
                start: b.offset,
                len: b.size,
                file: b.open_file(self.pid)?,
                file_offset: *offset,
            });
        }
        Ok(FileMem::segmented(segments, self.map.clone())?)
    }

    /// The file of a location that is one shared file (the built-in VMM's memfd, a
    /// single-backend QEMU), opened read-only.
    pub fn open_file(&self) -> Result<File> {
        match self.blocks.as_slice() {
            [b] if b.is_shared() && b.offset == 0 => b.open_file(self.pid),
            _ => Err(Error::Unsupported(format!(
                "guest RAM of process {} is not one shared file ({} blocks: {})",
                self.pid,
                self.blocks.len(),
                self.blocks.iter().map(RamBlock::describe).collect::<Vec<_>>().join("; ")
            ))),
        }
    }
}

/// Guest RAM laid out in a backing (the offsets a [`MemoryMap`] points at) that says
/// which parts of it hold data: what a snapshot copies, without reading — or making
/// the hypervisor allocate — the rest.
pub trait Backed: PhysMem + Sync + std::fmt::Debug {
    /// The backing ranges that hold data now, sorted and disjoint; the rest reads as
    /// zeros.
    fn data_extents(&self) -> Result<Vec<Range<u64>>>;

    /// Reads `buf.len()` bytes at backing offset `offset`.
    fn read_backing(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;

    /// The one file that holds all of this RAM, backing offset = file offset, if it
    /// is so backed (a memfd or `mem-path` file): halt-snap maps it to copy at memory
    /// speed ([`SharedMapping`](crate::SharedMapping)).
    fn whole_file(&self) -> Option<&std::fs::File> {
        None
    }
}

/// The RAM files read with `pread`: their data extents are what `SEEK_DATA` finds.
impl Backed for FileMem {
    fn data_extents(&self) -> Result<Vec<Range<u64>>> {
        let mut out = Vec::new();
        for s in self.segments() {
            let size = s.file.metadata().map_err(|e| Error::io("stat of the RAM file", e))?.len();
            let len = size.saturating_sub(s.file_offset).min(s.len);
            let x = Extents::scan_range(&s.file, s.file_offset, len)?;
            out.extend(x.ranges().iter().map(|&(a, b)| s.start + a - s.file_offset..s.start + b - s.file_offset));
        }
        Ok(out)
    }

    fn read_backing(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read_at(buf, offset)
    }

    fn whole_file(&self) -> Option<&std::fs::File> {
        match self.segments() {
            [s] if s.start == 0 && s.file_offset == 0 => Some(&s.file),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmscope_mem::{Gpa, Region};

    #[test]
    fn regions_must_lie_in_blocks() {
        let map = MemoryMap::new(vec![
            Region::new(Gpa::new(0), 0x1000, 0, "a"),
            Region::new(Gpa::new(0x10000), 0x1000, 0x3000, "b"),
        ])
        .unwrap();
        let block = |name: &str, offset, size| RamBlock {
            name: name.into(),
            offset,
            size,
            hva: Hva::new(0x7000_0000 + offset),
            page_size: 4096,
            backing: Backing::Anonymous,
        };
        assert!(RamLocation::new(1, map.clone(), vec![block("b", 0x2000, 0x2000), block("a", 0, 0x2000)]).is_ok());
        assert!(RamLocation::new(1, map.clone(), vec![block("a", 0, 0x2000)]).is_err());
        assert!(RamLocation::new(1, map, vec![block("a", 0, 0x3000), block("b", 0x2000, 0x2000)]).is_err());
    }
}
