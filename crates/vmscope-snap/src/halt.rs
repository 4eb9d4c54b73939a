//! halt-snap: pause the guest, copy all of its RAM, resume; introspect the copy.

use std::ops::Range;
use std::time::{Duration, Instant};

use vmscope_hv::{Backed, Hypervisor, PauseGuard, SharedMapping};
use vmscope_mem::{FileMem, Gpa, MemoryMap, PhysMem};

use crate::buf::{AnonBuf, is_zero};
use crate::copy::{carve, clip_to_map, copy_data, data_extents, merge_ranges, parallel, populated_mapping};
use crate::snapshot::Snapshot;
use crate::{Error, Result};

/// Where a snapshot copies guest RAM from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Guest RAM that knows where its data is: only pages that hold data are read
    /// (the RAM file's `SEEK_DATA` extents, or the pages QEMU's pagemap says it holds);
    /// holes stay holes in QEMU and in the copy. The fast path: where one file backs
    /// all of RAM, halt-snap copies out of a read-only mapping of it populated before
    /// the pause; otherwise, and in the pre-copies, it reads (`pread`, or through
    /// QEMU's address space).
    Backed(&'a dyn Backed),
    /// Any [`PhysMem`]: every byte of every region is read (whether that can
    /// allocate guest pages depends on the technique behind it); zero pages are not
    /// stored.
    Mem(&'a dyn PhysMem),
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Backed(r) => f.debug_tuple("Backed").field(&r.memory_map()).finish(),
            Source::Mem(m) => f.debug_tuple("Mem").field(&m.memory_map()).finish(),
        }
    }
}

impl<'a> From<&'a FileMem> for Source<'a> {
    fn from(r: &'a FileMem) -> Self {
        Source::Backed(r)
    }
}

impl Source<'_> {
    /// The memory map the copy is laid out by.
    pub fn memory_map(&self) -> &MemoryMap {
        match self {
            Source::Backed(r) => r.memory_map(),
            Source::Mem(m) => m.memory_map(),
        }
    }
}

/// What to take besides RAM while the guest is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapOptions {
    /// Read every vCPU's registers during the pause (about 1 ms per vCPU on QEMU).
    pub registers: bool,
    /// Look for the guest's VMCOREINFO note in the copy (after resuming).
    pub vmcoreinfo: bool,
}

impl Default for SnapOptions {
    fn default() -> Self {
        Self { registers: true, vmcoreinfo: true }
    }
}

/// What a snapshot cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapStats {
    /// `halt-snap`, `live-snap/qemu`, `live-snap/precopy`.
    pub technique: &'static str,
    /// How long the guest was paused, measured here (from the stop command until
    /// the resume command returned, or from QEMU's STOP to RESUME events).
    pub downtime: Duration,
    /// The downtime QEMU itself reports (`query-migrate`), where it does.
    pub qemu_downtime: Option<Duration>,
    /// From the start of the call until the snapshot is usable.
    pub total: Duration,
    /// Bytes of guest RAM in the memory map.
    pub ram_bytes: u64,
    /// Bytes copied into the snapshot.
    pub copied_bytes: u64,
    /// Pre-copy: pages that changed between the live copy and the pause.
    pub recopied_pages: u64,
    /// QEMU live-snap: bytes of migration stream read.
    pub stream_bytes: u64,
}

/// Pauses the guest, copies its RAM from `src`, reads registers if asked, resumes.
///
/// With [`Source::Backed`] the copy is prepared before the pause (data extents found,
/// the destination pages allocated, the backing mapped and its data pages entered in
/// our page tables), so the pause holds only a memory copy. A guest that was already
/// paused is left paused ([`PauseGuard`]).
pub fn halt_snap(hv: &dyn Hypervisor, src: Source<'_>, opts: SnapOptions) -> Result<(Snapshot, SnapStats)> {
    let start = Instant::now();
    let map = src.memory_map().clone();
    let mut buf = AnonBuf::zeroed(map.backing_size())?;
    let mapping = match src {
        Source::Backed(ram) => {
            let extents = clip_to_map(&data_extents(ram, map.backing_size())?, &map);
            for e in &extents {
                buf.prefault(e.start, e.end - e.start);
            }
            populated_mapping(ram, &map, &extents)
        }
        Source::Mem(_) => None,
    };
    let pause = PauseGuard::new(hv)?;
    let paused_at = pause.since();
    let copied = copy_paused(hv, src, mapping.as_ref(), &map, &mut buf, opts);
    pause.release()?;
    let downtime = paused_at.elapsed();
    let (extents, vcpus) = copied?;
    let cost = SnapStats { technique: "halt-snap", downtime, ..SnapStats::default() };
    Ok(Snapshot::assemble(buf, map, extents, vcpus, opts, start, cost))
}

/// The work done while the guest is paused.
fn copy_paused(
    hv: &dyn Hypervisor,
    src: Source<'_>,
    mapping: Option<&SharedMapping>,
    map: &MemoryMap,
    buf: &mut AnonBuf,
    opts: SnapOptions,
) -> Result<(Vec<Range<u64>>, Vec<vmscope_hv::VcpuRegisters>)> {
    let extents = match src {
        Source::Backed(ram) => copy_file_extents(ram, mapping, map, buf)?,
        Source::Mem(mem) => copy_all_nonzero(mem, map, buf)?,
    };
    let vcpus = if opts.registers { read_registers(hv)? } else { Vec::new() };
    Ok((extents, vcpus))
}

/// Every vCPU's registers.
pub(crate) fn read_registers(hv: &dyn Hypervisor) -> Result<Vec<vmscope_hv::VcpuRegisters>> {
    (0..hv.vcpu_count()?).map(|i| hv.vcpu_registers(i).map_err(Error::from)).collect()
}

/// Copies the data extents of `ram` that `map` covers into `buf` (out of `mapping`
/// where given, else by `pread`); returns them. The extents are found anew, so pages
/// the guest touched since `mapping` was populated are copied too.
pub(crate) fn copy_file_extents(
    ram: &dyn Backed,
    mapping: Option<&SharedMapping>,
    map: &MemoryMap,
    buf: &mut AnonBuf,
) -> Result<Vec<Range<u64>>> {
    let extents = clip_to_map(&data_extents(ram, map.backing_size())?, map);
    let pieces = carve(buf.as_mut_slice(), &extents, 8 << 20)?;
    parallel(pieces, |(off, dst)| copy_data(ram, mapping, dst, off).map(|()| 0))?;
    Ok(extents)
}

/// Reads every region of `mem` in chunks and stores the pages that are not zero.
fn copy_all_nonzero(mem: &dyn PhysMem, map: &MemoryMap, buf: &mut AnonBuf) -> Result<Vec<Range<u64>>> {
    const CHUNK: u64 = 2 << 20;
    let mut scratch = vec![0u8; CHUNK as usize];
    let dst = buf.as_mut_slice();
    let mut extents = Vec::new();
    for r in map.regions() {
        let mut at = 0;
        while at < r.size {
            let n = (r.size - at).min(CHUNK) as usize;
            let gpa = Gpa::new(r.gpa.raw() + at);
            mem.read(gpa, &mut scratch[..n])?;
            let base = r.offset + at;
            for (i, page) in scratch[..n].chunks(4096).enumerate() {
                if !is_zero(page) {
                    let off = (base + i as u64 * 4096) as usize;
                    dst[off..off + page.len()].copy_from_slice(page);
                    extents.push(off as u64..(off + page.len()) as u64);
                }
            }
            at += n as u64;
        }
    }
    Ok(merge_ranges(extents))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use vmscope_mem::{Region, SliceMem};

    /// A hypervisor that only counts pauses.
    #[derive(Debug, Default)]
    pub(crate) struct FakeHv {
        pub paused: Cell<bool>,
        pub pauses: Cell<u32>,
    }

    impl Hypervisor for FakeHv {
        fn pause(&self) -> vmscope_hv::Result<()> {
            self.paused.set(true);
            self.pauses.set(self.pauses.get() + 1);
            Ok(())
        }
        fn resume(&self) -> vmscope_hv::Result<()> {
            self.paused.set(false);
            Ok(())
        }
        fn is_paused(&self) -> vmscope_hv::Result<bool> {
            Ok(self.paused.get())
        }
        fn vcpu_count(&self) -> vmscope_hv::Result<usize> {
            Ok(2)
        }
        fn vcpu_registers(&self, index: usize) -> vmscope_hv::Result<vmscope_hv::VcpuRegisters> {
            Ok(vmscope_hv::VcpuRegisters { cr3: 0x1000 * (index as u64 + 1), ..Default::default() })
        }
        fn memory_map(&self) -> vmscope_hv::Result<MemoryMap> {
            Ok(MemoryMap::flat(0))
        }
    }

    #[test]
    fn copies_through_any_physmem_and_resumes() {
        let mut ram = vec![0u8; 0x10_0000];
        ram[0x5000..0x5004].copy_from_slice(b"HALT");
        let map = MemoryMap::new(vec![
            Region::new(Gpa::new(0), 0x8_0000, 0, "lo"),
            Region::new(Gpa::new(0x100_0000), 0x8_0000, 0x8_0000, "hi"),
        ])
        .unwrap();
        let mem = SliceMem::new(ram, map);
        let hv = FakeHv::default();
        let (snap, stats) = halt_snap(&hv, Source::Mem(&mem), SnapOptions::default()).unwrap();
        assert!(!hv.paused.get());
        assert_eq!(hv.pauses.get(), 1);
        let mut b = [0u8; 4];
        snap.read(Gpa::new(0x5000), &mut b).unwrap();
        assert_eq!(&b, b"HALT");
        assert_eq!(snap.data_extents(), &[0x5000..0x6000]);
        assert_eq!(stats.copied_bytes, 4096);
        assert_eq!(snap.meta().vcpus.len(), 2);
        assert_eq!(snap.meta().vcpus[1].cr3, 0x2000);
    }

    #[test]
    fn copies_a_backing_file_out_of_its_mapping_and_leaves_holes_alone() {
        use std::os::unix::fs::FileExt;
        let f = tempfile::tempfile().unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[7u8; 3 << 20], 1 << 20).unwrap(); // a whole 2 MiB block and more
        f.write_all_at(b"FILE", 6 << 20).unwrap();
        let ram = FileMem::new(f, MemoryMap::flat(8 << 20));
        let before = data_extents(&ram, u64::MAX).unwrap();
        let hv = FakeHv::default();
        let (snap, stats) = halt_snap(&hv, Source::Backed(&ram), SnapOptions::default()).unwrap();
        assert_eq!(hv.pauses.get(), 1);
        assert!(!hv.paused.get());
        assert_eq!(data_extents(&ram, u64::MAX).unwrap(), before, "no hole of the backing was allocated");
        assert_eq!(snap.data_extents(), &before[..]);
        assert_eq!(stats.copied_bytes, before.iter().map(|e| e.end - e.start).sum::<u64>());
        let mut b = [0u8; 4];
        snap.read(Gpa::new(6 << 20), &mut b).unwrap();
        assert_eq!(&b, b"FILE");
        snap.read(Gpa::new((4 << 20) - 2), &mut b).unwrap();
        assert_eq!(b, [7, 7, 0, 0]);
    }

    #[test]
    fn leaves_a_paused_guest_paused() {
        let mem = SliceMem::new(vec![0u8; 0x2000], MemoryMap::flat(0x2000));
        let hv = FakeHv::default();
        hv.paused.set(true);
        halt_snap(&hv, Source::Mem(&mem), SnapOptions { registers: false, vmcoreinfo: false }).unwrap();
        assert!(hv.paused.get());
        assert_eq!(hv.pauses.get(), 0);
    }
}
