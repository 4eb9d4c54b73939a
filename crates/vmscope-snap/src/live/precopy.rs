//! vmscope's pre-copy live snapshot: copy while running, then pause and re-copy
//! what changed, found by comparing (no dirty log is available for QEMU here).

use std::ops::Range;
use std::time::Instant;

use vmscope_hv::{Backed, Hypervisor, PauseGuard};

use crate::Result;
use crate::buf::AnonBuf;
use crate::copy::{carve, clip_to_map, data_extents, parallel, read_at};
use crate::halt::{SnapOptions, SnapStats, copy_file_extents, read_registers};
use crate::snapshot::Snapshot;

/// Copies `ram` while the guest runs, then pauses it, re-reads every data extent,
/// re-copies the pages that differ from the first copy (and zeroes pages that are no
/// longer backed), reads registers if asked, and resumes. The result is the guest's
/// RAM as of the pause. A guest that was already paused is left paused
/// ([`PauseGuard`]).
pub fn precopy_snap(hv: &dyn Hypervisor, ram: &dyn Backed, opts: SnapOptions) -> Result<(Snapshot, SnapStats)> {
    let start = Instant::now();
    let map = ram.memory_map().clone();
    let mut buf = AnonBuf::zeroed(map.backing_size())?;
    let live = copy_file_extents(ram, None, &map, &mut buf)?;

    let pause = PauseGuard::new(hv)?;
    let paused_at = pause.since();
    let recopied = recopy_changed(ram, &map, &mut buf, &live);
    let vcpus = match (&recopied, opts.registers) {
        (Ok(_), true) => read_registers(hv),
        _ => Ok(Vec::new()),
    };
    pause.release()?;
    let downtime = paused_at.elapsed();
    let (extents, changed) = recopied?;
    let cost = SnapStats { technique: "live-snap/precopy", downtime, recopied_pages: changed, ..SnapStats::default() };
    Ok(Snapshot::assemble(buf, map, extents, vcpus?, opts, start, cost))
}

/// During the pause: brings `buf` up to date. Returns the data extents and the
/// number of pages re-copied.
fn recopy_changed(
    ram: &dyn Backed,
    map: &vmscope_mem::MemoryMap,
    buf: &mut AnonBuf,
    live: &[Range<u64>],
) -> Result<(Vec<Range<u64>>, u64)> {
    const CHUNK: usize = 1 << 20;
    let now = clip_to_map(&data_extents(ram, map.backing_size())?, map);
    let changed = parallel(carve(buf.as_mut_slice(), &now, CHUNK as u64)?, |(off, dst)| {
        thread_local! { static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]) }
        SCRATCH.with_borrow_mut(|scratch| {
            let cur = &mut scratch[..dst.len()];
            read_at(ram, cur, off)?;
            let mut changed = 0;
            for (d, page) in dst.chunks_mut(4096).zip(cur.chunks(4096)) {
                if d != page {
                    d.copy_from_slice(page);
                    changed += 1;
                }
            }
            Ok(changed)
        })
    })?;
    let dst = buf.as_mut_slice();
    // Extents that were data during the live copy and are holes now (discarded by
    // the guest, e.g. a balloon) read as zero.
    for gone in subtract(live, &now) {
        dst[gone.start as usize..gone.end as usize].fill(0);
    }
    Ok((now, changed))
}

/// `a` minus `b`; both sorted and merged.
fn subtract(a: &[Range<u64>], b: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for r in a {
        let mut cur = r.start;
        for x in b.iter().filter(|x| x.end > r.start && x.start < r.end) {
            if x.start > cur {
                out.push(cur..x.start);
            }
            cur = cur.max(x.end);
        }
        if cur < r.end {
            out.push(cur..r.end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use vmscope_mem::{FileMem, Gpa, MemoryMap, PhysMem};

    /// A "guest" that writes its RAM file when paused, i.e. after the live copy.
    #[derive(Debug)]
    struct WritingHv {
        file: File,
        paused: Cell<bool>,
    }

    impl Hypervisor for WritingHv {
        fn pause(&self) -> vmscope_hv::Result<()> {
            self.file.write_all_at(b"NEW", 0x3000).unwrap(); // changed page
            self.file.write_all_at(b"HOLE", 0x9000).unwrap(); // a hole gets data
            self.paused.set(true);
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
            Ok(1)
        }
        fn vcpu_registers(&self, _: usize) -> vmscope_hv::Result<vmscope_hv::VcpuRegisters> {
            Ok(Default::default())
        }
        fn memory_map(&self) -> vmscope_hv::Result<MemoryMap> {
            Ok(MemoryMap::flat(0x10000))
        }
    }

    #[test]
    fn the_copy_is_as_of_the_pause() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(0x10000).unwrap();
        f.write_all_at(b"OLD", 0x3000).unwrap();
        f.write_all_at(b"SAME", 0x5000).unwrap();
        let hv = WritingHv { file: f.try_clone().unwrap(), paused: Cell::new(false) };
        let ram = FileMem::new(f, MemoryMap::flat(0x10000));
        let (snap, stats) = precopy_snap(&hv, &ram, SnapOptions { registers: true, vmcoreinfo: false }).unwrap();
        assert!(!hv.paused.get());
        let mut b = [0u8; 4];
        snap.read(Gpa::new(0x3000), &mut b).unwrap();
        assert_eq!(&b[..3], b"NEW");
        snap.read(Gpa::new(0x9000), &mut b).unwrap();
        assert_eq!(&b, b"HOLE");
        snap.read(Gpa::new(0x5000), &mut b).unwrap();
        assert_eq!(&b, b"SAME");
        assert_eq!(stats.recopied_pages, 2);
        assert_eq!(snap.meta().vcpus.len(), 1);
    }

    #[test]
    fn subtract_ranges() {
        assert_eq!(subtract(&[0..10, 20..30], &[2..4, 8..22, 25..26]), vec![0..2, 4..8, 22..25, 26..30]);
        assert_eq!(subtract(&[0..10], &[]), vec![0..10]);
        assert_eq!(subtract(&[0..10], &[0..10]), Vec::<Range<u64>>::new());
    }
}
