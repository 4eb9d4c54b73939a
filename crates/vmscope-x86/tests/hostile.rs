//! Arbitrary memory as page tables: no panic, always terminates, errors are typed.

use proptest::prelude::*;
use vmscope_mem::{FaultyMem, Gpa, Gva, MemoryMap, PhysMem, SliceMem};
use vmscope_x86::{AddressSpace, Error, PagingMode, Root, Tlb, pte};

/// Deterministic noise (xorshift) so that large memories are cheap to generate.
fn noise(mut s: u64) -> impl FnMut() -> u64 {
    s |= 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// `pages` pages of RAM where each entry is, by weight: zero, random bits, or a
/// present pointer to one of the pages (often the root) with random flag bits.
fn hostile_ram(seed: u64, pages: u64) -> Vec<u8> {
    let mut r = noise(seed);
    let mut ram = Vec::with_capacity((pages * 4096) as usize);
    for _ in 0..pages * 512 {
        let kind = r() % 8;
        let e = match kind {
            0 | 1 => 0,
            2 => r(),
            3 => (r() % pages) << 12 | (r() & 0x8000_0000_0000_01ff) | pte::PRESENT, // page-size bit random too
            4 => pte::PRESENT | pte::WRITABLE,                                       // points at page 0: the root
            _ => ((r() % pages) << 12) | pte::PRESENT | (r() & 0x1fe),
        };
        ram.extend_from_slice(&e.to_le_bytes());
    }
    ram
}

fn mode() -> impl Strategy<Value = PagingMode> {
    prop_oneof![Just(PagingMode::Level4), Just(PagingMode::Level5)]
}

/// With `exact`, batch, single and cached translation must agree (memory that does
/// not change under them); otherwise only that nothing panics or runs away.
fn check_all<M: PhysMem>(mem: &M, space: AddressSpace, gvas: &[Gva], exact: bool) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    space.translate_batch(mem, gvas, &mut out);
    let mut tlb = Tlb::new(16);
    for (&gva, b) in gvas.iter().zip(&out) {
        let t = space.translate(mem, gva);
        let cached = tlb.translate(mem, &space, gva);
        if !exact {
            continue;
        }
        prop_assert_eq!(b.as_ref().ok(), t.as_ref().ok());
        prop_assert_eq!(cached.ok(), t.as_ref().ok().copied());
        if let Ok(t) = t {
            prop_assert_eq!(t.gpa.offset_in_page(4096), gva.offset_in_page(4096));
        }
    }
    // Bounded: stops after at most 16 tables, however the tables point.
    let mut n = 0usize;
    let mut it = space.mappings(mem).max_tables(16);
    for m in it.by_ref() {
        n += 1;
        prop_assert!(n <= 16 * 512 + 16, "too many items");
        if let Ok(m) = m {
            prop_assert!(m.len > 0 && m.len % m.page_size.bytes() == 0);
        }
    }
    prop_assert!(it.tables_read() <= 16);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_tables_never_panic(mode in mode(), seed in any::<u64>(), pages in 1u64..12, root_page in 0u64..12, gvas in prop::collection::vec(any::<u64>(), 32)) {
        let ram = hostile_ram(seed, pages);
        let mem = SliceMem::new(ram, MemoryMap::flat(pages * 4096));
        let space = AddressSpace::new(Root::new(Gpa::new(root_page * 4096)), mode);
        let gvas: Vec<Gva> = gvas.into_iter().map(|g| Gva::new(mode.canonicalize(g))).collect();
        check_all(&mem, space, &gvas, true)?;
        check_all(&mem, space.with_max_phys_bits(39).with_nx_enabled(false), &gvas, true)?;
        // Read failures anywhere are errors too, never panics.
        let faulty = FaultyMem::new(&mem);
        faulty.fail_every(3);
        check_all(&faulty, space, &gvas, false)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(mode in mode(), bytes in prop::collection::vec(any::<u8>(), 0..9000), gvas in prop::collection::vec(any::<u64>(), 8)) {
        let len = bytes.len() as u64;
        let mem = SliceMem::new(bytes, MemoryMap::flat(len.max(1)));
        let space = AddressSpace::new(Root::new(Gpa::new(0)), mode);
        let gvas: Vec<Gva> = gvas.into_iter().map(Gva::new).collect();
        check_all(&mem, space, &gvas, true)?;
    }
}

/// One table whose every entry points at itself (the root), at every level.
#[test]
fn every_entry_points_at_the_root() {
    for mode in [PagingMode::Level4, PagingMode::Level5] {
        let e = pte::PRESENT | pte::WRITABLE;
        let ram: Vec<u8> = (0..512).flat_map(|_| e.to_le_bytes()).collect();
        let mem = SliceMem::new(ram, MemoryMap::flat(4096));
        let space = AddressSpace::new(Root::new(Gpa::new(0)), mode);
        // Translation: the root used at every level ends at the PT level as a 4 KiB
        // page mapped at GPA 0, as a CPU would do.
        let t = space.translate(&mem, Gva::new(0x1234)).unwrap();
        assert_eq!(t.gpa, Gpa::new(0x234));
        // Iteration: every top-level entry is a self-reference, with the default limit.
        let items: Vec<_> = space.mappings(&mem).collect();
        assert_eq!(items.len(), 512);
        assert!(items.iter().all(|i| matches!(i, Err(Error::TableLoop { .. }))));
    }
}

/// Loops across levels: the PD points back at the PML4, the PDPT at itself.
#[test]
fn loops_across_levels_are_detected() {
    let mut ram = vec![0u8; 4 * 4096];
    let mut put = |table: u64, idx: u64, v: u64| {
        let at = (table * 4096 + idx * 8) as usize;
        ram[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    let p = pte::PRESENT | pte::WRITABLE;
    put(0, 0, 0x1000 | p); // PML4[0] -> PDPT
    put(1, 0, 0x2000 | p); // PDPT[0] -> PD
    put(1, 1, 0x1000 | p); // PDPT[1] -> PDPT itself
    put(2, 0, p); // PD[0] -> PML4
    put(2, 1, 0x3000 | p); // PD[1] -> PT
    put(3, 5, 0x7000 | p); // PT[5] -> 4 KiB page
    let mem = SliceMem::new(ram, MemoryMap::flat(4 * 4096));
    let space = AddressSpace::new(Root::new(Gpa::new(0)), PagingMode::Level4);
    let items: Vec<_> = space.mappings(&mem).collect();
    let loops = items.iter().filter(|i| matches!(i, Err(Error::TableLoop { .. }))).count();
    let maps: Vec<_> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
    assert_eq!(loops, 2);
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0].gva, Gva::new(0x20_5000));
    assert_eq!(maps[0].gpa, Gpa::new(0x7000));
}

/// A chain of distinct tables that fan out 512-fold: bounded by the table budget.
#[test]
fn fan_out_stops_at_the_budget() {
    let p = pte::PRESENT | pte::WRITABLE;
    // Table k: every entry points at table k+1; the last table maps 4 KiB pages.
    let mut ram = Vec::new();
    for k in 0..4u64 {
        let e = if k < 3 { ((k + 1) << 12) | p } else { (0x100 << 12) | p };
        for _ in 0..512 {
            ram.extend_from_slice(&e.to_le_bytes());
        }
    }
    let mem = SliceMem::new(ram, MemoryMap::flat(4 * 4096));
    let space = AddressSpace::new(Root::new(Gpa::new(0)), PagingMode::Level4);
    let mut it = space.mappings(&mem).max_tables(1000);
    let items: Vec<_> = it.by_ref().collect();
    assert!(matches!(items.last(), Some(Err(Error::Budget { tables: 1000, .. }))));
    assert_eq!(it.tables_read(), 1000);
    assert!(it.next().is_none());
}
