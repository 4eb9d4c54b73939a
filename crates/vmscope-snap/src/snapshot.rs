//! A snapshot held in memory: guest RAM laid out like its backing store, with only
//! the pages that hold data allocated, plus what a dump file records besides RAM.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vmscope_hv::VcpuRegisters;
use vmscope_mem::{MemoryMap, PhysMem, ReadOp, SliceMem};

use crate::Result;
use crate::buf::AnonBuf;
use crate::formats::{self, Format, WriteStats};
use crate::halt::{SnapOptions, SnapStats};

/// What a snapshot or dump records besides RAM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpMeta {
    /// The guest kernel's VMCOREINFO text (`OSRELEASE=...\nPAGESIZE=4096\n...`), when
    /// known.
    pub vmcoreinfo: Option<String>,
    /// Registers of each vCPU at the time of the snapshot, when captured.
    pub vcpus: Vec<VcpuRegisters>,
}

impl DumpMeta {
    /// The value of `KEY=` in the VMCOREINFO text (`OSRELEASE`, `PAGESIZE`,
    /// `SYMBOL(init_uts_ns)`, `KERNELOFFSET`, ...).
    pub fn vmcoreinfo_value(&self, key: &str) -> Option<&str> {
        vmcoreinfo_value(self.vmcoreinfo.as_deref()?, key)
    }
}

/// The value of `key` in VMCOREINFO text.
pub fn vmcoreinfo_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Guest RAM copied into this process. Reads never touch the guest again.
#[derive(Debug)]
pub struct Snapshot {
    mem: SliceMem<AnonBuf>,
    extents: Vec<Range<u64>>,
    meta: DumpMeta,
}

impl Snapshot {
    /// Wraps a filled buffer (indexed by backing offset) and the extents that hold data.
    pub(crate) fn new(buf: AnonBuf, map: MemoryMap, extents: Vec<Range<u64>>, meta: DumpMeta) -> Self {
        Self { mem: SliceMem::new(buf, map), extents, meta }
    }

    /// The end every copying technique shares: wraps the filled buffer (indexed by
    /// backing offset), the extents that hold data and the registers read during the
    /// pause, then [`finish`](Self::finish)es it. `cost` holds what the technique
    /// measured (technique, downtime, pages re-copied, bytes copied besides the extents).
    pub(crate) fn assemble(
        buf: AnonBuf,
        map: MemoryMap,
        extents: Vec<Range<u64>>,
        vcpus: Vec<VcpuRegisters>,
        opts: SnapOptions,
        start: Instant,
        cost: SnapStats,
    ) -> (Self, SnapStats) {
        Self::new(buf, map, extents, DumpMeta { vmcoreinfo: None, vcpus }).finish(opts, start, cost)
    }

    /// Looks for VMCOREINFO if `opts` asks, and completes `cost` with the total time
    /// since `start`, the RAM size and the bytes in the snapshot.
    pub(crate) fn finish(mut self, opts: SnapOptions, start: Instant, cost: SnapStats) -> (Self, SnapStats) {
        if opts.vmcoreinfo {
            self.find_vmcoreinfo();
        }
        let stats = SnapStats {
            total: start.elapsed(),
            ram_bytes: self.memory_map().ram_size(),
            copied_bytes: cost.copied_bytes + self.copied_bytes(),
            ..cost
        };
        (self, stats)
    }

    /// The backing-store ranges that were copied (everything else reads as zero: it
    /// was a hole or a zero page in the guest).
    pub fn data_extents(&self) -> &[Range<u64>] {
        &self.extents
    }

    /// Bytes copied.
    pub fn copied_bytes(&self) -> u64 {
        self.extents.iter().map(|r| r.end - r.start).sum()
    }

    /// VMCOREINFO and vCPU registers.
    pub fn meta(&self) -> &DumpMeta {
        &self.meta
    }

    /// Mutable access to the metadata (e.g. to add registers taken elsewhere).
    pub fn meta_mut(&mut self) -> &mut DumpMeta {
        &mut self.meta
    }

    /// The RAM bytes, laid out as the backing store (see [`MemoryMap`]).
    pub fn backing(&self) -> &[u8] {
        self.mem.bytes()
    }

    /// Writes this snapshot to `path` in `format` (see [`formats`](crate::formats)).
    pub fn write(&self, path: &Path, format: Format) -> Result<WriteStats> {
        // Only the copied extents can hold data: a large guest's untouched RAM is
        // neither read nor scanned for zeros.
        let src = formats::DumpSource { mem: self, data: Some(&self.extents) };
        formats::write_dump_from(path, format, &src, &self.meta)
    }

    /// Looks for the guest kernel's VMCOREINFO note in the copied pages and records
    /// it in [`meta`](Self::meta). Returns whether one was found.
    pub fn find_vmcoreinfo(&mut self) -> bool {
        if self.meta.vmcoreinfo.is_none() {
            self.meta.vmcoreinfo = scan_vmcoreinfo(self.mem.bytes(), &self.extents);
        }
        self.meta.vmcoreinfo.is_some()
    }
}

impl PhysMem for Snapshot {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        self.mem.read_batch(ops)
    }
    fn read_u64(&self, gpa: vmscope_mem::Gpa) -> vmscope_mem::Result<u64> {
        self.mem.read_u64(gpa)
    }
    fn memory_map(&self) -> &MemoryMap {
        self.mem.memory_map()
    }
}

/// The kernel keeps its VMCOREINFO ELF note in page-aligned memory
/// (`alloc_pages_exact`): look at the start of every page that holds data.
pub(crate) fn scan_vmcoreinfo(bytes: &[u8], extents: &[Range<u64>]) -> Option<String> {
    for e in extents {
        let mut p = e.start.next_multiple_of(4096);
        while p < e.end {
            if let Some(page) = bytes.get(p as usize..(p as usize + 4096).min(bytes.len()))
                && let Some(t) = parse_vmcoreinfo_note(page)
            {
                return Some(t);
            }
            p += 4096;
        }
    }
    None
}

/// Parses one ELF note `VMCOREINFO` (Nhdr, name, text) at the start of `b`.
pub(crate) fn parse_vmcoreinfo_note(b: &[u8]) -> Option<String> {
    let u32_at = |o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    if u32_at(0)? != 11 || u32_at(8)? != 0 || b.get(12..23)? != b"VMCOREINFO\0" {
        return None;
    }
    let desc = b.get(24..24usize.checked_add(u32_at(4)? as usize)?)?;
    parse_vmcoreinfo_text(desc)
}

/// VMCOREINFO text, if `desc` looks like one.
pub(crate) fn parse_vmcoreinfo_text(desc: &[u8]) -> Option<String> {
    let end = desc.iter().position(|&c| c == 0).unwrap_or(desc.len());
    let t = std::str::from_utf8(&desc[..end]).ok()?;
    t.starts_with("OSRELEASE=").then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn note(text: &str) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&11u32.to_le_bytes());
        n.extend_from_slice(&(text.len() as u32).to_le_bytes());
        n.extend_from_slice(&0u32.to_le_bytes());
        n.extend_from_slice(b"VMCOREINFO\0\0");
        n.extend_from_slice(text.as_bytes());
        n
    }

    #[test]
    fn finds_the_page_aligned_note() {
        let mut buf = AnonBuf::zeroed(0x10000).unwrap();
        let text = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\n";
        let n = note(text);
        buf.as_mut_slice()[0x100..0x100 + n.len()].copy_from_slice(&n); // not aligned: ignored
        buf.as_mut_slice()[0x3000..0x3000 + n.len()].copy_from_slice(&n);
        let mut s = Snapshot::new(buf, MemoryMap::flat(0x10000), vec![0..0x10000], DumpMeta::default());
        assert!(s.find_vmcoreinfo());
        assert_eq!(s.meta().vmcoreinfo_value("OSRELEASE"), Some("6.1.0-test"));
        assert_eq!(s.meta().vmcoreinfo_value("PAGESIZE"), Some("4096"));
        assert_eq!(s.meta().vmcoreinfo_value("NOPE"), None);
    }

    #[test]
    fn rejects_damaged_notes() {
        let mut n = note("OSRELEASE=x\n");
        assert!(parse_vmcoreinfo_note(&n).is_some());
        n[4] = 0xff; // descsz past the end
        assert!(parse_vmcoreinfo_note(&n).is_none());
        assert!(parse_vmcoreinfo_note(&note("garbage")).is_none());
        assert!(parse_vmcoreinfo_note(&[11, 0, 0]).is_none());
    }
}
