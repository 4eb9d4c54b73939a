//! The read set of a pass, recorded by a decorator of any [`PhysMem`].

use std::cell::RefCell;
use std::time::{Duration, Instant};

use vmscope_mem::{Gpa, MemoryMap, PAGE_SIZE, PhysMem, ReadOp, Result};

/// A [`PhysMem`] that records every byte range a pass reads through it, with the
/// bytes it got, and when the pass read first (t0).
///
/// Recording is what a double collect needs: the ranges to read again and what they
/// held. It costs one append per read (range and bytes, amortised into two vectors)
/// and no clock read per range: t0 is taken at the first read of a pass and t1 when
/// the pass is [finished](ReadSet::finish), which is no earlier than its last read.
/// Reads that fail are not recorded (they returned nothing to compare).
///
/// Caches must sit *below* a `ReadSet` (or live for one pass), so that every read of
/// the pass reaches the set.
///
/// ```
/// use vmscope_consistency::ReadSet;
/// use vmscope_mem::{Gpa, MemoryMap, PhysMem, SliceMem};
///
/// let ram = vec![7u8; 0x3000];
/// let set = ReadSet::new(SliceMem::new(&ram[..], MemoryMap::flat(0x3000)));
/// set.read_u64(Gpa::new(0x1ffc)).unwrap(); // spans two pages
/// let recorded = set.finish();
/// assert_eq!(recorded.pages(), vec![1, 2]);
/// assert_eq!(recorded.bytes_read(), 8);
/// ```
#[derive(Debug)]
pub struct ReadSet<M> {
    inner: M,
    log: RefCell<Log>,
}

#[derive(Debug, Default)]
struct Log {
    t0: Option<Instant>,
    ranges: Vec<Range>,
    bytes: Vec<u8>,
}

/// One recorded read: `len` bytes at `gpa`, found at `at` in [`Recorded::bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Where the pass read.
    pub gpa: Gpa,
    /// How many bytes.
    pub len: u64,
}

impl<M: PhysMem> ReadSet<M> {
    /// Records the reads made through `inner`.
    pub fn new(inner: M) -> Self {
        Self { inner, log: RefCell::new(Log::default()) }
    }

    /// The memory underneath (reads through it are not recorded).
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Ends the pass: what it read, and its window. The set starts empty again.
    pub fn finish(&self) -> Recorded {
        let log = std::mem::take(&mut *self.log.borrow_mut());
        let t1 = Instant::now();
        Recorded { t0: Some(log.t0.unwrap_or(t1)), t1: Some(t1), ranges: log.ranges, bytes: log.bytes }
    }

    fn record(&self, gpa: Gpa, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut log = self.log.borrow_mut();
        if log.t0.is_none() {
            log.t0 = Some(Instant::now());
        }
        log.ranges.push(Range { gpa, len: bytes.len() as u64 });
        log.bytes.extend_from_slice(bytes);
    }
}

impl<M: PhysMem> PhysMem for ReadSet<M> {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
        self.inner.read_batch(ops)?;
        for op in ops.iter() {
            self.record(op.gpa, op.buf);
        }
        Ok(())
    }

    fn read_each(&self, ops: &mut [ReadOp<'_>], results: &mut Vec<Result<()>>) -> bool {
        let all = self.inner.read_each(ops, results);
        for (op, r) in ops.iter().zip(results.iter()) {
            if r.is_ok() {
                self.record(op.gpa, op.buf);
            }
        }
        all
    }

    fn read_u64(&self, gpa: Gpa) -> Result<u64> {
        let v = self.inner.read_u64(gpa)?;
        self.record(gpa, &v.to_le_bytes());
        Ok(v)
    }

    fn memory_map(&self) -> &MemoryMap {
        self.inner.memory_map()
    }
}

/// What one pass read: every range with the bytes it held, and the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    t0: Option<Instant>,
    t1: Option<Instant>,
    ranges: Vec<Range>,
    bytes: Vec<u8>,
}

impl Recorded {
    /// The ranges read, in the order the pass read them (repeats included).
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// The bytes each range held when the pass read it, concatenated in range order.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes read in all (repeats counted).
    pub fn bytes_read(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The pages of the read set: sorted, distinct page-frame numbers (GPA >> 12).
    pub fn pages(&self) -> Vec<u64> {
        let mut pages: Vec<u64> = self.ranges.iter().flat_map(|r| range_pages(r.gpa, r.len)).collect();
        pages.sort_unstable();
        pages.dedup();
        pages
    }

    /// When the pass read first.
    pub fn t0(&self) -> Option<Instant> {
        self.t0
    }

    /// When the pass ended (no earlier than its last read).
    pub fn t1(&self) -> Option<Instant> {
        self.t1
    }

    /// The temporal window, t1 − t0 (zero for a pass that read nothing).
    pub fn window(&self) -> Duration {
        match (self.t0, self.t1) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        }
    }

    /// Each range with the bytes it held.
    pub fn iter(&self) -> impl Iterator<Item = (Range, &[u8])> {
        let mut at = 0usize;
        self.ranges.iter().map(move |r| {
            let b = &self.bytes[at..at + r.len as usize];
            at += r.len as usize;
            (*r, b)
        })
    }
}

/// The page-frame numbers `len` bytes at `gpa` touch (`len` > 0).
pub(crate) fn range_pages(gpa: Gpa, len: u64) -> std::ops::RangeInclusive<u64> {
    let first = gpa.raw() / PAGE_SIZE;
    let last = gpa.raw().saturating_add(len.max(1) - 1) / PAGE_SIZE;
    first..=last
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmscope_mem::SliceMem;

    #[test]
    fn records_what_succeeded_and_the_window() {
        let ram: Vec<u8> = (0..0x4000u32).map(|i| i as u8).collect();
        let set = ReadSet::new(SliceMem::new(&ram[..], MemoryMap::flat(0x4000)));
        assert_eq!(set.finish().window(), Duration::ZERO);
        let mut a = [0u8; 16];
        let mut b = [0u8; 4];
        set.read_batch(&mut [ReadOp::new(Gpa::new(0x10), &mut a), ReadOp::new(Gpa::new(0x3000), &mut b)]).unwrap();
        assert!(set.read_u64(Gpa::new(0x5000)).is_err(), "outside RAM");
        let mut c = [0u8; 8];
        let mut results = Vec::new();
        let all = set.read_each(
            &mut [ReadOp::new(Gpa::new(0x2ff8), &mut c), ReadOp::new(Gpa::new(0x4000), &mut [0u8; 1])],
            &mut results,
        );
        assert!(!all);
        let r = set.finish();
        assert_eq!(r.ranges().len(), 3);
        assert_eq!(r.pages(), vec![0, 2, 3]);
        assert_eq!(r.bytes_read(), 28);
        let got: Vec<_> = r.iter().map(|(range, bytes)| (range.gpa.raw(), bytes.to_vec())).collect();
        assert_eq!(got[1], (0x3000, ram[0x3000..0x3004].to_vec()));
        assert_eq!(got[2], (0x2ff8, ram[0x2ff8..0x3000].to_vec()));
        assert!(set.finish().ranges().is_empty(), "finish starts a new pass");
    }
}
