//! A decorator that makes reads fail on purpose, to test error paths.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{Error, Gpa, MemoryMap, PhysMem, ReadOp, Result};

/// Wraps any [`PhysMem`] and fails chosen reads with [`Error::Injected`]:
/// every op that overlaps a poisoned range, and/or every Nth op.
///
/// Counting is per op, across batches, so "every 3rd read" means the same with and
/// without batching. A failing op fails its batch, as `read_batch` promises.
///
/// ```
/// use vmscope_mem::{Error, FaultyMem, Gpa, MemoryMap, PhysMem, SliceMem};
///
/// let mem = FaultyMem::new(SliceMem::new(vec![0u8; 8192], MemoryMap::flat(8192)));
/// mem.poison(Gpa::new(0x1000), 8);
/// assert!(mem.read_u64(Gpa::new(0x0)).is_ok());
/// assert!(matches!(mem.read_u64(Gpa::new(0xffc)), Err(Error::Injected { .. })));
/// mem.fail_every(2);
/// assert!(mem.read_u64(Gpa::new(0x0)).is_ok()); // read #3 overall
/// assert!(mem.read_u64(Gpa::new(0x0)).is_err()); // read #4
/// ```
#[derive(Debug)]
pub struct FaultyMem<M> {
    inner: M,
    poisoned: Mutex<Vec<(u64, u64)>>,
    every: AtomicU64,
    count: AtomicU64,
    injected: AtomicU64,
}

impl<M> FaultyMem<M> {
    /// Passes everything through until told otherwise.
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            poisoned: Mutex::new(Vec::new()),
            every: AtomicU64::new(0),
            count: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Fails every op that overlaps `len` bytes from `gpa`.
    pub fn poison(&self, gpa: Gpa, len: u64) {
        let end = gpa.raw().saturating_add(len);
        self.lock().push((gpa.raw(), end));
    }

    /// Removes every poisoned range.
    pub fn clear_poison(&self) {
        self.lock().clear();
    }

    /// Fails every `n`th op (counting ops since creation); 0 turns this off.
    pub fn fail_every(&self, n: u64) {
        self.every.store(n, Relaxed);
    }

    /// How many ops were failed on purpose.
    pub fn injected(&self) -> u64 {
        self.injected.load(Relaxed)
    }

    /// The wrapped memory.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        // The vector is always valid; a panic elsewhere cannot corrupt it.
        self.poisoned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<M: PhysMem> PhysMem for FaultyMem<M> {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
        let every = self.every.load(Relaxed);
        let first = self.count.fetch_add(ops.len() as u64, Relaxed);
        {
            let poisoned = self.lock();
            for (i, op) in ops.iter().enumerate() {
                let start = op.gpa.raw();
                let end = start.saturating_add(op.buf.len() as u64);
                let hit = !op.buf.is_empty() && poisoned.iter().any(|&(s, e)| start < e && s < end);
                let nth = every != 0 && (first + i as u64 + 1).is_multiple_of(every);
                if hit || nth {
                    self.injected.fetch_add(1, Relaxed);
                    return Err(Error::Injected { gpa: op.gpa });
                }
            }
        }
        self.inner.read_batch(ops)
    }

    fn memory_map(&self) -> &MemoryMap {
        self.inner.memory_map()
    }
}
