//! A decorator that counts what goes through a [`PhysMem`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::{MemoryMap, PhysMem, ReadOp, Result};

/// Counters of a [`Metered`] memory at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemStats {
    /// Calls of `read_batch` (and ops of `read_each` retried alone).
    pub batches: u64,
    /// Read ops, summed over batches.
    pub reads: u64,
    /// Bytes asked for, summed over ops.
    pub bytes: u64,
    /// Batches that failed.
    pub errors: u64,
}

impl MemStats {
    /// The counts accumulated since `earlier` (saturating).
    pub fn since(&self, earlier: &MemStats) -> MemStats {
        MemStats {
            batches: self.batches.saturating_sub(earlier.batches),
            reads: self.reads.saturating_sub(earlier.reads),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

/// Wraps any [`PhysMem`] and counts batches, reads, bytes and failed batches with
/// relaxed atomic adds: cheap enough to leave on, exact once the readers are done.
///
/// ```
/// use vmscope_mem::{Gpa, MemoryMap, Metered, PhysMem, SliceMem};
///
/// let mem = Metered::new(SliceMem::new(vec![0u8; 4096], MemoryMap::flat(4096)));
/// mem.read_u64(Gpa::new(8)).unwrap();
/// let s = mem.stats();
/// assert_eq!((s.batches, s.reads, s.bytes), (1, 1, 8));
/// ```
#[derive(Debug, Default)]
pub struct Metered<M> {
    inner: M,
    batches: AtomicU64,
    reads: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

impl<M> Metered<M> {
    /// Counts the reads of `inner`, from zero.
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            batches: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> MemStats {
        MemStats {
            batches: self.batches.load(Relaxed),
            reads: self.reads.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    /// Sets every counter back to zero and returns what they were.
    pub fn reset(&self) -> MemStats {
        MemStats {
            batches: self.batches.swap(0, Relaxed),
            reads: self.reads.swap(0, Relaxed),
            bytes: self.bytes.swap(0, Relaxed),
            errors: self.errors.swap(0, Relaxed),
        }
    }

    /// The wrapped memory.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Unwraps the memory.
    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<M: PhysMem> PhysMem for Metered<M> {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
        let bytes: usize = ops.iter().map(|op| op.buf.len()).sum();
        self.batches.fetch_add(1, Relaxed);
        self.reads.fetch_add(ops.len() as u64, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
        let r = self.inner.read_batch(ops);
        if r.is_err() {
            self.errors.fetch_add(1, Relaxed);
        }
        r
    }

    fn memory_map(&self) -> &MemoryMap {
        self.inner.memory_map()
    }
}
