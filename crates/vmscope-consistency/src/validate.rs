//! Whether a recorded pass was torn: the guest wrote a page of its read set inside
//! its window.
//!
//! Two ways to decide, page granularity in both (so QEMU and the built-in VMM say the
//! same thing):
//! - [`by_dirty_log`] (exact): the hypervisor's dirty log, cleared before the pass
//!   and fetched after it, intersected with the read set. The log's window contains
//!   the pass's, so a write just before t0 can mark a view torn that was not: the
//!   error is on the safe side.
//! - [`by_double_collect`] (approximate, where no dirty log is offered): read every
//!   range of the read set again and compare. Equal collects prove that the view
//!   equals the guest's state at one instant between the two collects, *except* for
//!   ABA writes (a page changed and changed back in between), which no comparison of
//!   contents can see.

use std::time::Duration;

use serde::Serialize;
use vmscope_hv::DirtyLog;
use vmscope_mem::{Gpa, PAGE_SIZE, PhysMem, ReadOp};

use crate::readset::range_pages;
use crate::{Recorded, Result};

/// How a pass's consistency was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The hypervisor's dirty log over the window (exact).
    DirtyLog,
    /// The read set read again and compared (exact but for ABA writes).
    DoubleCollect,
    /// The guest was paused for the pass: nothing could change.
    Halted,
    /// The pass read a snapshot: a copy of one instant.
    Snapshot,
}

impl Method {
    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::DirtyLog => "dirty-log",
            Method::DoubleCollect => "double-collect",
            Method::Halted => "halted",
            Method::Snapshot => "snapshot",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict on one pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// How it was decided.
    pub method: Method,
    /// Pages of the read set the guest wrote inside the window (sorted PFNs); empty:
    /// the view is not torn.
    pub torn_pages: Vec<u64>,
    /// The pass's temporal window (t1 − t0).
    #[serde(serialize_with = "as_micros", rename = "window_us")]
    pub window: Duration,
    /// Distinct pages the pass read.
    pub read_pages: usize,
    /// Ranges the pass read (repeats counted).
    pub read_ranges: usize,
    /// Bytes the pass read (repeats counted).
    pub read_bytes: u64,
}

impl Verdict {
    /// A verdict with nothing torn, for a pass that could not be torn (`Halted`,
    /// `Snapshot`).
    pub fn untorn(method: Method, recorded: &Recorded) -> Self {
        Self::new(method, recorded, recorded.pages().len(), Vec::new())
    }

    fn new(method: Method, recorded: &Recorded, read_pages: usize, torn_pages: Vec<u64>) -> Self {
        Verdict {
            method,
            torn_pages,
            window: recorded.window(),
            read_pages,
            read_ranges: recorded.ranges().len(),
            read_bytes: recorded.bytes_read(),
        }
    }

    /// Whether the guest wrote the read set inside the window.
    pub fn torn(&self) -> bool {
        !self.torn_pages.is_empty()
    }
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros().min(u128::from(u64::MAX)) as u64)
}

/// Clears `log` so that its next fetch covers a pass about to start (the log must
/// have been started).
pub fn clear_dirty_log(log: &dyn DirtyLog) -> Result<()> {
    log.fetch()?;
    Ok(())
}

/// Decides by the dirty log: `dirty` is what the log fetched after the pass, the log
/// having been cleared ([`clear_dirty_log`]) before it (sorted PFNs).
pub fn by_dirty_log(recorded: &Recorded, dirty: &[u64]) -> Verdict {
    let pages = recorded.pages();
    let torn = intersect(&pages, dirty);
    Verdict::new(Method::DirtyLog, recorded, pages.len(), torn)
}

/// How a double collect reads the read set again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recollect {
    /// Exactly the ranges the pass read, one op each: for memory where a read costs
    /// per byte (a mapping).
    Ranges,
    /// Every page of the read set, contiguous pages in one op (at most
    /// [`RUN_PAGES`]): for readers that pay per call (syscalls) far more than per
    /// byte. Every page was read by the pass already, so nothing new is touched.
    Pages,
}

/// Decides by a double collect: reads the read set of `recorded` again from `mem`
/// (which must not serve it from a cache filled during the pass: give it the
/// uncached reader), as `how` says, and compares the bytes the pass read. A page is
/// torn when any byte the pass read from it differs now, or it no longer reads.
pub fn by_double_collect(recorded: &Recorded, mem: &dyn PhysMem, how: Recollect) -> Result<Verdict> {
    let pages = recorded.pages();
    let mut torn = match how {
        Recollect::Ranges => recollect_ranges(recorded, mem),
        Recollect::Pages => recollect_pages(recorded, &pages, mem),
    };
    torn.sort_unstable();
    torn.dedup();
    Ok(Verdict::new(Method::DoubleCollect, recorded, pages.len(), torn))
}

/// The pages whose bytes differ, reading each range again.
fn recollect_ranges(recorded: &Recorded, mem: &dyn PhysMem) -> Vec<u64> {
    let mut again = vec![0u8; recorded.bytes().len()];
    let mut torn = Vec::new();
    let mut ops = Vec::with_capacity(recorded.ranges().len());
    let mut rest = &mut again[..];
    for r in recorded.ranges() {
        let (buf, tail) = rest.split_at_mut(r.len as usize);
        ops.push(ReadOp::new(r.gpa, buf));
        rest = tail;
    }
    let mut results = Vec::new();
    let all = mem.read_each(&mut ops, &mut results);
    drop(ops);
    let mut at = 0usize;
    for (i, (r, first)) in recorded.iter().enumerate() {
        let second = &again[at..at + first.len()];
        at += first.len();
        if !all && results[i].is_err() {
            torn.extend(range_pages(r.gpa, r.len));
        } else if first != second {
            // Only the pages whose bytes differ: a long range may span several.
            for (j, (a, b)) in first.iter().zip(second).enumerate() {
                let pfn = (r.gpa.raw() + j as u64) / PAGE_SIZE;
                if a != b && torn.last() != Some(&pfn) {
                    torn.push(pfn);
                }
            }
        }
    }
    torn
}

/// The pages whose bytes differ, reading every page of the read set again.
fn recollect_pages(recorded: &Recorded, pages: &[u64], mem: &dyn PhysMem) -> Vec<u64> {
    let mut again = vec![0u8; pages.len() * PAGE];
    let mut unread = Vec::new();
    {
        let mut ops = Vec::new();
        let mut runs = Vec::new();
        let mut rest = &mut again[..];
        let mut i = 0;
        while i < pages.len() {
            let mut n = 1;
            while i + n < pages.len() && pages[i + n] == pages[i] + n as u64 && n < RUN_PAGES {
                n += 1;
            }
            let (buf, tail) = rest.split_at_mut(n * PAGE);
            ops.push(ReadOp::new(Gpa::new(pages[i] * PAGE_SIZE), buf));
            runs.push((i, n));
            rest = tail;
            i += n;
        }
        let mut results = Vec::new();
        if !mem.read_each(&mut ops, &mut results) {
            for (&(first, n), r) in runs.iter().zip(&results) {
                if r.is_err() {
                    unread.extend_from_slice(&pages[first..first + n]);
                }
            }
        }
    }
    let mut torn = unread;
    for (r, first) in recorded.iter() {
        // A range may span pages: compare page by page.
        let mut at = r.gpa.raw();
        let mut done = 0usize;
        while done < first.len() {
            let pfn = at / PAGE_SIZE;
            let off = (at % PAGE_SIZE) as usize;
            let n = (PAGE - off).min(first.len() - done);
            let idx = pages.binary_search(&pfn).expect("every page of a range is in the read set");
            if first[done..done + n] != again[idx * PAGE + off..idx * PAGE + off + n] && torn.last() != Some(&pfn) {
                torn.push(pfn);
            }
            at += n as u64;
            done += n;
        }
    }
    torn
}

/// Most pages one read of a double collect covers.
pub const RUN_PAGES: usize = 64;

const PAGE: usize = PAGE_SIZE as usize;

/// The elements of both sorted lists.
fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use proptest::prelude::*;
    use vmscope_mem::{Gpa, MemoryMap, SliceMem};

    use super::*;
    use crate::ReadSet;

    const RAM: usize = 16 * 4096;

    /// Guest memory the test can write between collects.
    #[derive(Debug)]
    struct Writable {
        ram: RefCell<Vec<u8>>,
        map: MemoryMap,
    }

    impl PhysMem for Writable {
        fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
            let ram = self.ram.borrow();
            SliceMem::new(&ram[..], self.map.clone()).read_batch(ops)
        }
        fn memory_map(&self) -> &MemoryMap {
            &self.map
        }
    }

    fn ram() -> Writable {
        Writable { ram: RefCell::new((0..RAM).map(|i| (i * 7) as u8).collect()), map: MemoryMap::flat(RAM as u64) }
    }

    fn pass(mem: &Writable, reads: &[(u64, usize)]) -> Recorded {
        let set = ReadSet::new(mem);
        for &(gpa, len) in reads {
            let mut buf = vec![0u8; len];
            set.read(Gpa::new(gpa), &mut buf).unwrap();
        }
        set.finish()
    }

    #[test]
    fn equal_collects_are_not_torn_and_a_write_elsewhere_does_not_count() {
        let mem = ram();
        let rec = pass(&mem, &[(0x10, 8), (0x2ff0, 0x20)]);
        mem.ram.borrow_mut()[0x5000] ^= 1; // not read by the pass
        for how in [Recollect::Ranges, Recollect::Pages] {
            let v = by_double_collect(&rec, &mem, how).unwrap();
            assert!(!v.torn());
            assert_eq!((v.read_pages, v.read_ranges, v.read_bytes), (3, 2, 40));
        }
        let v = by_double_collect(&rec, &mem, Recollect::Pages).unwrap();
        assert_eq!((v.read_pages, v.read_ranges, v.read_bytes), (3, 2, 40));
    }

    #[test]
    fn a_write_to_an_unread_byte_of_a_read_page_is_not_seen_by_double_collect() {
        // Double collect compares the bytes the pass used; the dirty log would
        // report the page. This is the documented difference in granularity.
        let mem = ram();
        let rec = pass(&mem, &[(0x10, 8)]);
        mem.ram.borrow_mut()[0x800] ^= 1;
        assert!(!by_double_collect(&rec, &mem, Recollect::Ranges).unwrap().torn());
        assert!(!by_double_collect(&rec, &mem, Recollect::Pages).unwrap().torn());
        assert_eq!(by_dirty_log(&rec, &[0]).torn_pages, vec![0]);
    }

    #[test]
    fn the_dirty_log_counts_only_pages_of_the_read_set() {
        let mem = ram();
        let rec = pass(&mem, &[(0x1ffc, 8), (0x9000, 1)]);
        assert_eq!(by_dirty_log(&rec, &[0, 2, 5, 9, 12]).torn_pages, vec![2, 9]);
        assert!(!by_dirty_log(&rec, &[]).torn());
    }

    proptest! {
        /// Double collect catches every single-byte change made between the collects
        /// to a byte the pass read, and names exactly that byte's page.
        #[test]
        fn double_collect_catches_every_single_page_change(
            reads in prop::collection::vec((0u64..RAM as u64 - 64, 1usize..64), 1..40),
            pick in any::<prop::sample::Index>(),
            off in any::<prop::sample::Index>(),
            whole_pages in any::<bool>(),
        ) {
            let how = if whole_pages { Recollect::Pages } else { Recollect::Ranges };
            let mem = ram();
            let rec = pass(&mem, &reads);
            prop_assert!(!by_double_collect(&rec, &mem, how).unwrap().torn());
            let (gpa, len) = reads[pick.index(reads.len())];
            let at = (gpa + off.index(len) as u64) as usize;
            mem.ram.borrow_mut()[at] ^= 0x5a;
            let v = by_double_collect(&rec, &mem, how).unwrap();
            prop_assert_eq!(v.torn_pages, vec![at as u64 / PAGE_SIZE]);
        }
    }
}
