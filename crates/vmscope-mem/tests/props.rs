//! Property tests: the memory map and every decorator against a byte-level model.

use proptest::prelude::*;
use vmscope_mem::{Error, FaultyMem, Gpa, MemoryMap, Metered, PageCache, PhysMem, ReadOp, Region, SliceMem};

/// Non-overlapping regions in a 64 KiB GPA window, backed by a shuffled layout in a
/// byte vector whose byte at backing offset `o` is `o as u8 ^ 0x5a`.
fn layout() -> impl Strategy<Value = (Vec<Region>, usize)> {
    // Cut the window at sorted points; keep every other piece as RAM.
    (prop::collection::btree_set(1u64..0x10000, 2..12), any::<bool>(), any::<u64>()).prop_map(
        |(cuts, first_is_ram, seed)| {
            let mut pts = vec![0u64];
            pts.extend(cuts);
            pts.push(0x10000);
            let mut regions = Vec::new();
            let mut offset = 0u64;
            for (i, w) in pts.windows(2).enumerate() {
                if (i % 2 == 0) == first_is_ram {
                    regions.push(Region::new(Gpa::new(w[0]), w[1] - w[0], 0, format!("r{i}")));
                }
            }
            // Backing offsets in a seed-dependent order, to test the offset mapping.
            let n = regions.len();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| (seed.rotate_left(i as u32 * 7) ^ i as u64, i));
            for &i in &order {
                regions[i].offset = offset;
                offset += regions[i].size;
            }
            (regions, offset as usize)
        },
    )
}

fn model_byte(map: &MemoryMap, gpa: u64) -> Option<u8> {
    map.regions().iter().find(|r| r.contains(Gpa::new(gpa))).map(|r| (r.offset + gpa - r.gpa.raw()) as u8 ^ 0x5a)
}

/// Every byte of the GPA window (and a bit past it) per the model, built once per
/// case from the regions alone.
struct Model(Vec<Option<u8>>);

impl Model {
    fn new(map: &MemoryMap) -> Self {
        let mut v = vec![None; 0x14000];
        for r in map.regions() {
            for i in 0..r.size {
                if let Some(b) = v.get_mut((r.gpa.raw() + i) as usize) {
                    *b = Some((r.offset + i) as u8 ^ 0x5a);
                }
            }
        }
        Model(v)
    }

    fn read(&self, gpa: u64, len: usize) -> Option<Vec<u8>> {
        self.0.get(gpa as usize..gpa as usize + len)?.iter().copied().collect()
    }
}

fn backing(size: usize) -> Vec<u8> {
    (0..size).map(|o| o as u8 ^ 0x5a).collect()
}

fn ops() -> impl Strategy<Value = Vec<(u64, usize)>> {
    prop::collection::vec((0u64..0x10400, 0usize..0x2400), 1..8)
}

fn check_batch<M: PhysMem>(mem: &M, map: &Model, ops: &[(u64, usize)]) -> Result<(), TestCaseError> {
    let mut bufs: Vec<Vec<u8>> = ops.iter().map(|&(_, l)| vec![0u8; l]).collect();
    let mut rops: Vec<ReadOp<'_>> =
        ops.iter().zip(bufs.iter_mut()).map(|(&(g, _), b)| ReadOp::new(Gpa::new(g), b)).collect();
    let r = mem.read_batch(&mut rops);
    let want: Vec<Option<Vec<u8>>> = ops.iter().map(|&(g, l)| map.read(g, l)).collect();
    if want.iter().all(Option::is_some) {
        prop_assert!(r.is_ok(), "{r:?}");
        for (b, w) in bufs.iter().zip(&want) {
            prop_assert_eq!(Some(b), w.as_ref());
        }
    } else {
        prop_assert!(matches!(r, Err(Error::Unbacked { .. })), "{r:?}");
    }
    // read_each: per-op outcomes match the model.
    let mut bufs: Vec<Vec<u8>> = ops.iter().map(|&(_, l)| vec![0u8; l]).collect();
    let mut rops: Vec<ReadOp<'_>> =
        ops.iter().zip(bufs.iter_mut()).map(|(&(g, _), b)| ReadOp::new(Gpa::new(g), b)).collect();
    let mut results = Vec::new();
    mem.read_each(&mut rops, &mut results);
    drop(rops);
    for ((b, w), r) in bufs.iter().zip(&want).zip(&results) {
        match w {
            Some(w) => prop_assert_eq!(b, w),
            None => prop_assert!(r.is_err()),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn map_lookup_matches_model((regions, _) in layout(), probes in prop::collection::vec(0u64..0x10100, 16)) {
        let map = MemoryMap::new(regions).unwrap();
        for g in probes {
            let got = map.lookup(Gpa::new(g)).map(|(off, _)| off as u8 ^ 0x5a);
            prop_assert_eq!(got, model_byte(&map, g));
            if let Some((_, avail)) = map.lookup(Gpa::new(g)) {
                // Contiguous exactly up to the region's end.
                prop_assert!(model_byte(&map, g + avail - 1).is_some());
                prop_assert_eq!(map.region_of(Gpa::new(g)).unwrap().end(), g + avail);
            }
        }
    }

    #[test]
    fn slice_mem_matches_model((regions, size) in layout(), ops in ops()) {
        let map = MemoryMap::new(regions).unwrap();
        let mem = SliceMem::new(backing(size), map.clone());
        check_batch(&mem, &Model::new(&map), &ops)?;
    }

    #[test]
    fn page_cache_is_transparent((regions, size) in layout(), batches in prop::collection::vec(ops(), 1..6), cap in 1usize..6, inval in any::<u8>()) {
        let map = MemoryMap::new(regions).unwrap();
        let mem = PageCache::new(SliceMem::new(backing(size), map.clone()), cap);
        let model = Model::new(&map);
        for (i, ops) in batches.iter().enumerate() {
            check_batch(&mem, &model, ops)?;
            if inval & (1 << i) != 0 {
                mem.invalidate();
            }
        }
    }

    #[test]
    fn page_cache_never_keeps_a_failed_fetch(ops in ops(), pg in 0u64..0x10000, plen in 1u64..0x3000, cap in 1usize..6) {
        // Faults below the cache: a page whose fetch failed must not be served later.
        let map = MemoryMap::flat(0x12000);
        let model = Model::new(&map);
        let faulty = FaultyMem::new(SliceMem::new(backing(0x12000), map.clone()));
        faulty.poison(Gpa::new(pg), plen);
        let mem = PageCache::new(faulty, cap);
        for &(g, l) in &ops {
            let mut b = vec![0u8; l];
            let _ = mem.read(Gpa::new(g), &mut b);
        }
        mem.inner().clear_poison();
        for &(g, l) in &ops {
            let mut b = vec![0u8; l];
            let r = mem.read(Gpa::new(g), &mut b);
            match model.read(g, l) {
                Some(want) => {
                    prop_assert!(r.is_ok(), "{r:?}");
                    prop_assert_eq!(b, want);
                }
                None => prop_assert!(r.is_err()),
            }
        }
    }

    #[test]
    fn page_cache_sees_writes_after_invalidation(g in 0u64..0x3ff8, v in any::<u64>()) {
        use std::sync::{Arc, RwLock};
        // A memory whose bytes change behind the cache, like a running guest.
        #[derive(Debug)]
        struct Shared(Arc<RwLock<Vec<u8>>>, MemoryMap);
        impl PhysMem for Shared {
            fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
                SliceMem::new(self.0.read().unwrap().as_slice(), self.1.clone()).read_batch(ops)
            }
            fn memory_map(&self) -> &MemoryMap { &self.1 }
        }
        let bytes = Arc::new(RwLock::new(vec![0u8; 0x4000]));
        let mem = PageCache::new(Shared(bytes.clone(), MemoryMap::flat(0x4000)), 2);
        prop_assert_eq!(mem.read_u64(Gpa::new(g)).unwrap(), 0);
        bytes.write().unwrap()[g as usize..g as usize + 8].copy_from_slice(&v.to_le_bytes());
        prop_assert_eq!(mem.read_u64(Gpa::new(g)).unwrap(), 0, "stale until invalidated");
        mem.invalidate_range(Gpa::new(g), 8);
        prop_assert_eq!(mem.read_u64(Gpa::new(g)).unwrap(), v);
        bytes.write().unwrap()[g as usize..g as usize + 8].copy_from_slice(&(!v).to_le_bytes());
        mem.invalidate();
        prop_assert_eq!(mem.read_u64(Gpa::new(g)).unwrap(), !v);
    }

    #[test]
    fn metered_counts_exactly((regions, size) in layout(), batches in prop::collection::vec(ops(), 1..6)) {
        let map = MemoryMap::new(regions).unwrap();
        let mem = Metered::new(SliceMem::new(backing(size), map.clone()));
        let (mut reads, mut bytes, mut errors) = (0, 0, 0);
        for ops in &batches {
            let mut bufs: Vec<Vec<u8>> = ops.iter().map(|&(_, l)| vec![0u8; l]).collect();
            let mut rops: Vec<ReadOp<'_>> =
                ops.iter().zip(bufs.iter_mut()).map(|(&(g, _), b)| ReadOp::new(Gpa::new(g), b)).collect();
            errors += u64::from(mem.read_batch(&mut rops).is_err());
            reads += ops.len() as u64;
            bytes += ops.iter().map(|&(_, l)| l as u64).sum::<u64>();
        }
        let s = mem.stats();
        prop_assert_eq!((s.batches, s.reads, s.bytes, s.errors), (batches.len() as u64, reads, bytes, errors));
        prop_assert_eq!(mem.reset(), s);
        prop_assert_eq!(mem.stats().reads, 0);
    }

    #[test]
    fn faults_hit_exactly_the_poisoned_ranges(ops in ops(), pg in 0u64..0x10000, plen in 1u64..0x100) {
        let map = MemoryMap::flat(0x12000);
        let model = Model::new(&map);
        let mem = FaultyMem::new(PageCache::new(SliceMem::new(backing(0x12000), map.clone()), 4));
        mem.poison(Gpa::new(pg), plen);
        for &(g, l) in &ops {
            let mut b = vec![0u8; l];
            let r = mem.read(Gpa::new(g), &mut b);
            let overlaps = l > 0 && g < pg + plen && pg < g + l as u64;
            if overlaps {
                prop_assert!(matches!(r, Err(Error::Injected { .. })), "{r:?}");
            } else {
                prop_assert_eq!(r.is_ok(), model.read(g, l).is_some());
            }
        }
    }

    #[test]
    fn every_nth_read_fails(n in 1u64..6, count in 1usize..40) {
        let mem = FaultyMem::new(SliceMem::new(vec![0u8; 64], MemoryMap::flat(64)));
        mem.fail_every(n);
        for i in 1..=count as u64 {
            prop_assert_eq!(mem.read_u64(Gpa::new(0)).is_err(), i % n == 0);
        }
        prop_assert_eq!(mem.injected(), count as u64 / n);
    }
}
