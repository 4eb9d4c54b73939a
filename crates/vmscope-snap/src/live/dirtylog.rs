//! vmscope's pre-copy with the hypervisor's dirty log (the built-in VMM): copy while
//! the guest runs, re-copy what it wrote meanwhile, then pause and copy only the
//! pages the log names — the pause is proportional to the dirty rate, not to RAM.

use std::ops::Range;
use std::time::Instant;

use vmscope_hv::{Backed, DirtyLog, Hypervisor, PauseGuard};
use vmscope_mem::{Gpa, MemoryMap};

use crate::buf::AnonBuf;
use crate::copy::{merge_ranges, read_at};
use crate::halt::{SnapOptions, SnapStats, copy_file_extents, read_registers};
use crate::snapshot::Snapshot;
use crate::{Error, Result};

/// Live rounds of re-copying dirty pages before the pause.
pub const LIVE_ROUNDS: usize = 2;

/// Starts `hv`'s dirty log, copies `ram`'s data extents while the guest runs, re-copies
/// the pages written meanwhile ([`LIVE_ROUNDS`] times), then pauses, copies the pages
/// written since the last round, reads registers if asked, resumes and stops the log.
/// The result is the guest's RAM as of the pause. Only guest writes are tracked: the
/// RAM must not be written by another host process meanwhile. A guest that was already
/// paused is left paused ([`PauseGuard`]).
pub fn dirtylog_precopy_snap(
    hv: &dyn Hypervisor,
    ram: &dyn Backed,
    opts: SnapOptions,
) -> Result<(Snapshot, SnapStats)> {
    let log = hv.dirty_log().ok_or_else(|| {
        vmscope_hv::Error::Unsupported("a dirty-log pre-copy needs the hypervisor's dirty log".into())
    })?;
    let start = Instant::now();
    log.start()?;
    let r = precopy(hv, log, ram, opts, start);
    let stopped = log.stop();
    let r = r?;
    stopped?;
    Ok(r)
}

fn precopy(
    hv: &dyn Hypervisor,
    log: &dyn DirtyLog,
    ram: &dyn Backed,
    opts: SnapOptions,
    start: Instant,
) -> Result<(Snapshot, SnapStats)> {
    let map = ram.memory_map().clone();
    let mut buf = AnonBuf::zeroed(map.backing_size())?;
    let mut extents = copy_file_extents(ram, None, &map, &mut buf)?;
    let mut recopied = 0;
    for _ in 0..LIVE_ROUNDS {
        recopied += recopy(ram, &map, &mut buf, &log.fetch()?, &mut extents)?;
    }
    let pause = PauseGuard::new(hv)?;
    let paused_at = pause.since();
    let last = log.fetch().map_err(Error::from).and_then(|pfns| recopy(ram, &map, &mut buf, &pfns, &mut extents));
    let vcpus = match (&last, opts.registers) {
        (Ok(_), true) => read_registers(hv),
        _ => Ok(Vec::new()),
    };
    pause.release()?;
    let downtime = paused_at.elapsed();
    let recopied = recopied + last?;
    let cost = SnapStats {
        technique: "live-snap/dirtylog",
        downtime,
        copied_bytes: recopied * 4096,
        recopied_pages: recopied,
        ..SnapStats::default()
    };
    Ok(Snapshot::assemble(buf, map, extents, vcpus?, opts, start, cost))
}

/// Copies the pages `pfns` names into `buf` and adds them to `extents`; returns how many.
fn recopy(
    ram: &dyn Backed,
    map: &MemoryMap,
    buf: &mut AnonBuf,
    pfns: &[u64],
    extents: &mut Vec<Range<u64>>,
) -> Result<u64> {
    let dst = buf.as_mut_slice();
    let mut added = Vec::with_capacity(pfns.len());
    for &pfn in pfns {
        let Some((off, left)) = map.lookup(Gpa::new(pfn << 12)) else { continue };
        if left < 4096 {
            continue;
        }
        let page = &mut dst[off as usize..off as usize + 4096];
        read_at(ram, page, off)?;
        added.push(off..off + 4096);
    }
    let n = added.len() as u64;
    if n > 0 {
        added.append(extents);
        *extents = merge_ranges(added);
    }
    Ok(n)
}
