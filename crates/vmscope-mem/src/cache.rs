//! A decorator that keeps recently read guest pages, bounded, with explicit
//! invalidation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{Gpa, MemoryMap, PAGE_SIZE, PhysMem, ReadOp, Result};

const PAGE: usize = PAGE_SIZE as usize;

/// Hit and miss counts of a [`PageCache`], in pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Pages served from the cache.
    pub hits: u64,
    /// Pages read from the wrapped memory.
    pub misses: u64,
    /// Ops that went straight to the wrapped memory (too long, or on a page that
    /// is not wholly RAM).
    pub bypassed: u64,
}

/// Wraps any [`PhysMem`] and keeps up to `capacity` guest pages (4 KiB each).
///
/// Invalidation is explicit: the cache never knows when the guest ran. Call
/// [`invalidate`](PageCache::invalidate) (O(1): it bumps an epoch, and entries of an
/// older epoch are misses) whenever the guest may have written memory, e.g. after a
/// resume, or [`invalidate_range`](PageCache::invalidate_range) for pages a dirty log
/// reported. Eviction is CLOCK (second chance).
///
/// Only pages wholly inside one RAM region are cached; ops longer than
/// [`max_cached_read`](PageCache::with_max_cached_read) bypass the cache so that a
/// bulk copy does not flush it. Misses of one batch are fetched from the wrapped
/// memory in one batch. Readers of one cache are serialised by a mutex.
///
/// ```
/// use vmscope_mem::{Gpa, MemoryMap, Metered, PageCache, PhysMem, SliceMem};
///
/// let mem = PageCache::new(Metered::new(SliceMem::new(vec![7u8; 8192], MemoryMap::flat(8192))), 16);
/// mem.read_u64(Gpa::new(0)).unwrap();
/// mem.read_u64(Gpa::new(8)).unwrap(); // same page: served from the cache
/// assert_eq!(mem.inner().stats().batches, 1);
/// mem.invalidate(); // the guest ran
/// mem.read_u64(Gpa::new(8)).unwrap();
/// assert_eq!(mem.inner().stats().batches, 2);
/// ```
#[derive(Debug)]
pub struct PageCache<M> {
    inner: M,
    capacity: usize,
    max_cached_read: usize,
    readahead: u64,
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Page base -> slot.
    index: HashMap<u64, usize, BuildHasherDefault<PageHasher>>,
    slots: Vec<Slot>,
    /// `slots.len()` pages of data, slot `i` at `i * PAGE`.
    data: Vec<u8>,
    hand: usize,
    /// Where misses of several pages land before they go to their slots; kept, so a
    /// miss allocates and zeroes nothing.
    scratch: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    page: u64,
    epoch: u64,
    referenced: bool,
}

impl<M: PhysMem> PageCache<M> {
    /// Caches at most `capacity` pages (at least 1) of `inner`.
    pub fn new(inner: M, capacity: usize) -> Self {
        Self {
            inner,
            capacity: capacity.max(1),
            max_cached_read: 4 * PAGE,
            readahead: 1,
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// Ops longer than `bytes` go straight to the wrapped memory (default 16 KiB).
    pub fn with_max_cached_read(mut self, bytes: usize) -> Self {
        self.max_cached_read = bytes;
        self
    }

    /// On a miss, also fetch the other uncached pages of the aligned block of `pages`
    /// pages (a power of two; 1, the default, turns this off), in the same batch.
    /// Kernel objects of one kind sit together in slabs of 8 pages or more, so when
    /// each batch costs a system call, fetching the block saves the calls its
    /// neighbours would cost.
    pub fn with_readahead(mut self, pages: usize) -> Self {
        self.readahead = pages.clamp(1, self.capacity / 2 + 1).next_power_of_two() as u64;
        self
    }

    /// Forgets every cached page (O(1)). Returns the new epoch.
    pub fn invalidate(&self) -> u64 {
        self.epoch.fetch_add(1, Relaxed) + 1
    }

    /// The current epoch: how many times [`invalidate`](Self::invalidate) ran.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// Forgets the cached pages that overlap `len` bytes from `gpa`.
    pub fn invalidate_range(&self, gpa: Gpa, len: u64) {
        if len == 0 {
            return;
        }
        let first = gpa.raw() & !(PAGE_SIZE - 1);
        let last = gpa.raw().saturating_add(len - 1) & !(PAGE_SIZE - 1);
        let mut st = self.lock();
        if (last - first) / PAGE_SIZE > st.index.len() as u64 {
            st.index.retain(|&p, _| p < first || p > last);
        } else {
            let mut p = first;
            loop {
                st.index.remove(&p);
                if p >= last {
                    break;
                }
                p += PAGE_SIZE;
            }
        }
    }

    /// Hits, misses and bypasses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            bypassed: self.bypassed.load(Relaxed),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only cache entries behind, which the
        // epoch and the index keep consistent; recover instead of propagating.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cacheable(&self, op: &ReadOp<'_>) -> bool {
        let len = op.buf.len() as u64;
        if len == 0 || op.buf.len() > self.max_cached_read {
            return false;
        }
        let Some(end) = op.gpa.raw().checked_add(len - 1) else {
            return false;
        };
        let first = op.gpa.page_base(PAGE_SIZE);
        let span = (end & !(PAGE_SIZE - 1)) - first.raw() + PAGE_SIZE;
        self.inner.memory_map().is_backed(first, span)
    }
}

/// Hashes a page base with one multiplication (Fibonacci hashing). SipHash was the
/// cost of every cache hit. A guest choosing its pointers could make keys collide,
/// but the table never holds more than `capacity` pages, which bounds every probe.
#[derive(Debug, Default, Clone, Copy)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fold the well-mixed high half down: pages at a power-of-two stride (slabs)
        // would otherwise share their low bits, which pick the bucket.
        let x = (n >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl State {
    fn lookup(&mut self, page: u64, epoch: u64) -> Option<usize> {
        let &slot = self.index.get(&page)?;
        let s = &mut self.slots[slot];
        if s.epoch != epoch {
            return None;
        }
        s.referenced = true;
        Some(slot)
    }

    /// A slot for `page`, evicting with CLOCK once `capacity` slots exist. Slots
    /// holding `pinned` pages (sorted; the pages of the batch in progress, at most
    /// `capacity` of them, `page` among them) are not evicted.
    fn insert(&mut self, page: u64, epoch: u64, capacity: usize, pinned: &[u64]) -> usize {
        if let Some(&slot) = self.index.get(&page) {
            self.slots[slot] = Slot { page, epoch, referenced: true };
            return slot;
        }
        let slot = if self.slots.len() < capacity {
            self.slots.push(Slot { page, epoch, referenced: true });
            self.data.resize(self.slots.len() * PAGE, 0);
            self.slots.len() - 1
        } else {
            // Bounded: one sweep clears every reference bit, the next finds a victim,
            // because fewer than `capacity` pinned pages can already hold a slot.
            let mut victim = self.hand;
            for _ in 0..3 * self.slots.len() {
                victim = self.hand;
                self.hand = (self.hand + 1) % self.slots.len();
                let s = &mut self.slots[victim];
                let stale = s.epoch != epoch || self.index.get(&s.page) != Some(&victim);
                if stale || (!s.referenced && pinned.binary_search(&s.page).is_err()) {
                    break;
                }
                s.referenced = false;
            }
            let old = self.slots[victim].page;
            if self.index.get(&old) == Some(&victim) {
                self.index.remove(&old);
            }
            self.slots[victim] = Slot { page, epoch, referenced: true };
            victim
        };
        self.index.insert(page, slot);
        slot
    }
}

impl<M: PhysMem> PhysMem for PageCache<M> {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<()> {
        let epoch = self.epoch.load(Relaxed);
        // Fast path, no allocation: one op within one cached page (a page-table entry,
        // a field).
        if let [op] = ops {
            let len = op.buf.len() as u64;
            let off = op.gpa.offset_in_page(PAGE_SIZE);
            if len > 0 && off + len <= PAGE_SIZE {
                let mut st = self.lock();
                if let Some(slot) = st.lookup(op.gpa.page_base(PAGE_SIZE).raw(), epoch) {
                    let src = slot * PAGE + off as usize;
                    op.buf.copy_from_slice(&st.data[src..src + op.buf.len()]);
                    drop(st);
                    self.hits.fetch_add(1, Relaxed);
                    return Ok(());
                }
            }
        }
        // Every page the cacheable ops touch, sorted and deduplicated.
        let mut needed: Vec<u64> = Vec::new();
        let mut bypass = false;
        for op in ops.iter() {
            if !self.cacheable(op) {
                bypass |= !op.buf.is_empty();
                continue;
            }
            let end = op.gpa.raw() + op.buf.len() as u64;
            let mut p = op.gpa.page_base(PAGE_SIZE).raw();
            while p < end {
                needed.push(p);
                p += PAGE_SIZE;
            }
        }
        needed.sort_unstable();
        needed.dedup();
        // A batch needing more pages than fit cannot be served from the cache.
        if needed.len() > self.capacity {
            self.bypassed.fetch_add(ops.len() as u64, Relaxed);
            return self.inner.read_batch(ops);
        }
        let mut st = self.lock();
        let mut missing: Vec<u64> = needed.iter().copied().filter(|&p| st.lookup(p, epoch).is_none()).collect();
        let wanted = missing.len();
        if self.readahead > 1 && !missing.is_empty() {
            let block = self.readahead * PAGE_SIZE;
            let room = self.capacity - needed.len();
            let mut extra = Vec::new();
            for &p in &missing {
                let start = p & !(block - 1);
                for q in (start..start.saturating_add(block)).step_by(PAGE) {
                    if extra.len() >= room {
                        break;
                    }
                    if needed.binary_search(&q).is_err()
                        && st.index.get(&q).is_none_or(|&i| st.slots[i].epoch != epoch)
                        && self.inner.memory_map().is_backed(Gpa::new(q), PAGE_SIZE)
                    {
                        extra.push(q);
                    }
                }
            }
            missing.extend(extra);
            missing.sort_unstable();
            missing.dedup();
        }
        if let [page] = missing[..] {
            // One page missing, the common case: straight into its slot.
            let slot = st.insert(page, epoch, self.capacity, &needed);
            let mut fetch = [ReadOp::new(Gpa::new(page), &mut st.data[slot * PAGE..(slot + 1) * PAGE])];
            if self.inner.read_batch(&mut fetch).is_err() {
                st.index.remove(&page);
                drop(st);
                return self.inner.read_batch(ops);
            }
        } else if !missing.is_empty() {
            let mut buf = std::mem::take(&mut st.scratch);
            buf.resize(buf.len().max(missing.len() * PAGE), 0);
            // One op per run of consecutive pages: a backend that pays per op (a
            // pread each) reads a run in one call.
            let mut fetch: Vec<ReadOp<'_>> = Vec::new();
            let mut rest: &mut [u8] = &mut buf;
            let mut i = 0;
            while i < missing.len() {
                let mut j = i + 1;
                while j < missing.len() && missing[j] == missing[j - 1] + PAGE_SIZE {
                    j += 1;
                }
                let (run, tail) = std::mem::take(&mut rest).split_at_mut((j - i) * PAGE);
                fetch.push(ReadOp::new(Gpa::new(missing[i]), run));
                rest = tail;
                i = j;
            }
            let fetched = self.inner.read_batch(&mut fetch);
            drop(fetch);
            if fetched.is_err() {
                // Let the wrapped memory report the exact first failure of the caller's
                // batch; nothing of this batch is cached.
                st.scratch = buf;
                drop(st);
                return self.inner.read_batch(ops);
            }
            for (p, page) in missing.iter().zip(buf.chunks_exact(PAGE)) {
                let slot = st.insert(*p, epoch, self.capacity, &needed);
                st.data[slot * PAGE..(slot + 1) * PAGE].copy_from_slice(page);
            }
            st.scratch = buf;
        }
        for op in ops.iter_mut() {
            if !self.cacheable(op) {
                continue;
            }
            let mut gpa = op.gpa.raw();
            let mut done = 0usize;
            while done < op.buf.len() {
                let page = gpa & !(PAGE_SIZE - 1);
                let off = (gpa - page) as usize;
                let n = (PAGE - off).min(op.buf.len() - done);
                // Every needed page is in the index now: a hit above, or inserted just
                // now, and needed pages are pinned against eviction during this batch.
                let Some(&slot) = st.index.get(&page) else {
                    unreachable!("page {page:#x} of this batch was cached above")
                };
                let src = slot * PAGE + off;
                op.buf[done..done + n].copy_from_slice(&st.data[src..src + n]);
                done += n;
                gpa += n as u64;
            }
        }
        drop(st);
        self.misses.fetch_add(wanted as u64, Relaxed);
        self.hits.fetch_add((needed.len() - wanted) as u64, Relaxed);
        if bypass {
            let mut rest: Vec<ReadOp<'_>> = ops
                .iter_mut()
                .filter(|op| !op.buf.is_empty() && !self.cacheable(op))
                .map(|op| ReadOp::new(op.gpa, &mut *op.buf))
                .collect();
            self.bypassed.fetch_add(rest.len() as u64, Relaxed);
            self.inner.read_batch(&mut rest)?;
        }
        Ok(())
    }

    fn memory_map(&self) -> &MemoryMap {
        self.inner.memory_map()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metered, SliceMem};

    fn ram() -> Metered<SliceMem<Vec<u8>>> {
        let bytes: Vec<u8> = (0..16 * PAGE).map(|i| (i / PAGE) as u8).collect();
        Metered::new(SliceMem::new(bytes, MemoryMap::flat(16 * PAGE_SIZE)))
    }

    #[test]
    fn readahead_fetches_the_block_in_one_op() {
        let c = PageCache::new(ram(), 64).with_readahead(4);
        let mut b = [0u8; 8];
        c.read(Gpa::new(5 * PAGE_SIZE + 8), &mut b).unwrap();
        assert_eq!(b, [5; 8]);
        let s = c.inner().stats();
        // Pages 4..8 as one run: one batch, one op, four pages.
        assert_eq!((s.batches, s.reads, s.bytes), (1, 1, 4 * PAGE_SIZE));
        for p in 4..8 {
            c.read(Gpa::new(p * PAGE_SIZE), &mut b).unwrap();
            assert_eq!(b, [p as u8; 8]);
        }
        assert_eq!(c.inner().stats().batches, 1, "the neighbours were served from the block");
        assert_eq!(c.stats().misses, 1, "read-ahead pages are not counted as misses");
        c.read(Gpa::new(8 * PAGE_SIZE), &mut b).unwrap();
        assert_eq!(c.inner().stats().batches, 2);
    }

    #[test]
    fn consecutive_misses_are_one_op() {
        let c = PageCache::new(ram(), 64);
        let mut b = vec![0u8; 3 * PAGE];
        c.read(Gpa::new(2 * PAGE_SIZE), &mut b).unwrap();
        assert_eq!(c.inner().stats().reads, 1);
        assert!(b.chunks(PAGE).enumerate().all(|(i, p)| p.iter().all(|&x| x == 2 + i as u8)));
    }
}
