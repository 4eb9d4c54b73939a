//! Each error variant, permissions along the walk, PTI pairs, batching and the TLB.

use vmscope_mem::{FaultyMem, Gpa, Gva, Metered, PhysMem};
use vmscope_x86::fixture::PageTableBuilder;
use vmscope_x86::{AddressSpace, Error, Level, PageSize, PagingMode, Tlb, pte};

const KVA: u64 = 0xffff_8880_0000_0000;

fn space_4k() -> (vmscope_mem::SliceMem<Vec<u8>>, AddressSpace) {
    let mut b = PageTableBuilder::new(PagingMode::Level4);
    b.map_range(Gva::new(KVA), Gpa::new(0x10_0000), 0x4000, PageSize::Size4K, pte::WRITABLE | pte::ACCESSED).unwrap();
    b.finish()
}

#[test]
fn each_error_names_its_level() {
    let (mem, space) = space_4k();
    let e = space.translate(&mem, Gva::new(0x0000_8000_0000_0000)).unwrap_err();
    assert!(matches!(e, Error::NonCanonical { .. }), "{e}");
    let e = space.translate(&mem, Gva::new(0x1000)).unwrap_err();
    assert!(matches!(e, Error::NotPresent { level: Level::Pml4, .. }), "{e}");
    let e = space.translate(&mem, Gva::new(KVA + 0x4000)).unwrap_err();
    assert!(matches!(e, Error::NotPresent { level: Level::Pt, .. }), "{e}");
    let e = space.translate(&mem, Gva::new(KVA + (1 << 21))).unwrap_err();
    assert!(matches!(e, Error::NotPresent { level: Level::Pd, .. }), "{e}");
    assert_eq!(e.gva(), Gva::new(KVA + (1 << 21)));
    assert!(e.is_unmapped());
}

#[test]
fn reserved_bits_and_illegal_large_pages() {
    let mut b = PageTableBuilder::new(PagingMode::Level4);
    b.map(Gva::new(KVA), Gpa::new(0x20_0000), PageSize::Size2M, pte::WRITABLE).unwrap();
    b.map(Gva::new(KVA + (1 << 30)), Gpa::new(1 << 30), PageSize::Size1G, 0).unwrap();
    let root = b.root().gpa().raw();
    // PML4 entry for KVA: index 273.
    let pml4e_at = Gpa::new(root + 273 * 8);
    let (mem, space) = b.clone().finish();
    let pdpt = mem.read_u64(pml4e_at).unwrap() & pte::ADDR_MASK;
    let pd = mem.read_u64(Gpa::new(pdpt)).unwrap() & pte::ADDR_MASK;

    // Bit 13 set in a 2 MiB leaf: reserved.
    let mut c = b.clone();
    let leaf = mem.read_u64(Gpa::new(pd)).unwrap();
    c.write_u64(Gpa::new(pd), leaf | 1 << 13);
    let (m, s) = c.finish();
    let e = s.translate(&m, Gva::new(KVA)).unwrap_err();
    assert!(matches!(e, Error::ReservedBits { level: Level::Pd, .. }), "{e}");
    // Bit 12 is the PAT bit of a large page, not part of the frame.
    let mut c = b.clone();
    c.write_u64(Gpa::new(pd), leaf | 1 << 12);
    let (m, s) = c.finish();
    assert_eq!(s.translate(&m, Gva::new(KVA + 5)).unwrap().gpa, Gpa::new(0x20_0005));

    // A physical address above MAXPHYADDR, and NX without EFER.NXE.
    let mut c = b.clone();
    c.write_u64(Gpa::new(pd), leaf | 1 << 45 | pte::NX);
    let (m, s) = c.finish();
    assert!(s.translate(&m, Gva::new(KVA)).is_ok());
    let e = s.with_max_phys_bits(40).translate(&m, Gva::new(KVA)).unwrap_err();
    assert!(matches!(e, Error::ReservedBits { .. }), "{e}");
    let e = s.with_max_phys_bits(46).with_nx_enabled(false).translate(&m, Gva::new(KVA)).unwrap_err();
    assert!(matches!(e, Error::ReservedBits { .. }), "{e}");

    // PS at the PML4: illegal large page.
    let mut c = b.clone();
    let pml4e = mem.read_u64(pml4e_at).unwrap();
    c.write_u64(pml4e_at, pml4e | pte::PAGE_SIZE);
    let (m, s) = c.finish();
    let e = s.translate(&m, Gva::new(KVA)).unwrap_err();
    assert!(matches!(e, Error::IllegalLargePage { level: Level::Pml4, .. }), "{e}");
    let items: Vec<_> = s.mappings(&m).collect();
    assert!(items.iter().any(|i| matches!(i, Err(Error::IllegalLargePage { .. }))));

    // A table outside RAM, and a root outside RAM.
    let mut c = b.clone();
    c.write_u64(pml4e_at, 0x7_0000_0000 | pte::PRESENT);
    let (m, s) = c.finish();
    let e = s.translate(&m, Gva::new(KVA)).unwrap_err();
    assert!(
        matches!(e, Error::OutsideRam { level: Level::Pdpt, table, .. } if table == Gpa::new(0x7_0000_0000)),
        "{e}"
    );
    let far = space.with_root(vmscope_x86::Root::new(Gpa::new(0x8000_0000)));
    let e = far.translate(&mem, Gva::new(KVA)).unwrap_err();
    assert!(matches!(e, Error::OutsideRam { level: Level::Pml4, .. }), "{e}");
    assert!(matches!(far.mappings(&mem).next(), Some(Err(Error::OutsideRam { .. }))));
}

#[test]
fn permissions_combine_along_the_walk() {
    let mut b = PageTableBuilder::new(PagingMode::Level5);
    b.table_flags(pte::USER | pte::NX); // read-only, no-exec tables
    b.map(
        Gva::new(0x40_0000),
        Gpa::new(0x40_0000),
        PageSize::Size4K,
        pte::WRITABLE | pte::USER | pte::DIRTY | pte::ACCESSED,
    )
    .unwrap();
    let (mem, space) = b.finish();
    let t = space.translate(&mem, Gva::new(0x40_0010)).unwrap();
    assert!(!t.perms.writable && t.perms.user && t.perms.nx);
    assert!(t.dirty && t.accessed && !t.global);
    assert_eq!(t.page_size, PageSize::Size4K);
    assert_eq!(t.bytes_to_page_end(), 0xff0);
}

#[test]
fn linux_pti_pair() {
    let mut b = PageTableBuilder::new_pti(PagingMode::Level4);
    let kernel = b.space();
    let user = kernel.pti_user();
    assert_eq!(user.root().gpa().raw(), kernel.root().gpa().raw() | 0x1000);
    assert_eq!(vmscope_x86::Root::from_cr3(user.root().gpa().raw() | 0x5).pti_kernel(), kernel.root());
    b.map(Gva::new(KVA), Gpa::new(0x1000), PageSize::Size4K, pte::WRITABLE).unwrap();
    b.map(Gva::new(0x40_0000), Gpa::new(0x9000), PageSize::Size4K, pte::USER).unwrap();
    b.map_in(user.root(), Gva::new(0x40_0000), Gpa::new(0x9000), PageSize::Size4K, pte::USER).unwrap();
    let (mem, _) = b.finish();
    // The user half sees user space but not the kernel.
    assert!(user.translate(&mem, Gva::new(KVA)).unwrap_err().is_unmapped());
    assert_eq!(user.translate(&mem, Gva::new(0x40_0123)).unwrap().gpa, Gpa::new(0x9123));
    assert_eq!(kernel.translate(&mem, Gva::new(KVA + 1)).unwrap().gpa, Gpa::new(0x1001));
    assert_eq!(user.pti_kernel(), kernel);
}

#[test]
fn batch_issues_one_read_per_level_and_isolates_failures() {
    let (mem, space) = space_4k();
    let gvas: Vec<Gva> = (0..4).map(|i| Gva::new(KVA + i * 0x1000 + 8)).chain([Gva::new(0x1000)]).collect();
    let metered = Metered::new(&mem);
    let mut out = Vec::new();
    space.translate_batch(&metered, &gvas, &mut out);
    assert_eq!(metered.stats().batches, 4, "one batch per level");
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 4);
    assert!(matches!(out[4], Err(Error::NotPresent { level: Level::Pml4, .. })));

    // One poisoned PT entry fails its own walk only.
    let faulty = FaultyMem::new(&mem);
    // The fixture allocated the PT last; entry of gvas[2] in it.
    let pt_entry = Gpa::new(mem.bytes().len() as u64 - 0x1000 + ((KVA + 0x2000) >> 12 & 0x1ff) * 8);
    faulty.poison(pt_entry, 8);
    space.translate_batch(&faulty, &gvas, &mut out);
    assert!(matches!(out[2], Err(Error::Read { level: Level::Pt, .. })), "{:?}", out[2]);
    assert!(out[0].is_ok() && out[1].is_ok() && out[3].is_ok());
}

#[test]
fn tlb_hits_bounds_and_invalidation() {
    let (mem, space) = space_4k();
    let metered = Metered::new(&mem);
    let mut tlb = Tlb::new(3);
    assert_eq!(tlb.capacity(), 4);
    let g = Gva::new(KVA + 0x1008);
    let a = tlb.translate(&metered, &space, g).unwrap();
    let reads = metered.stats().reads;
    let b = tlb.translate(&metered, &space, Gva::new(KVA + 0x1ff0)).unwrap();
    assert_eq!(metered.stats().reads, reads, "a hit reads nothing");
    assert_eq!(b.gpa.raw(), a.gpa.raw() - 8 + 0xff0);
    tlb.invalidate();
    tlb.translate(&metered, &space, g).unwrap();
    assert!(metered.stats().reads > reads, "invalidated: walks again");
    // Another root never hits entries of this one.
    let other = space.with_root(vmscope_x86::Root::new(Gpa::new(0x0)));
    assert!(tlb.lookup(&other, g).is_none());
    // The slot keeps 12 bits of the epoch: 4096 invalidations later, still a miss.
    tlb.translate(&mem, &space, g).unwrap();
    assert!(tlb.lookup(&space, g).is_some());
    for _ in 0..4096 {
        tlb.invalidate();
    }
    assert!(tlb.lookup(&space, g).is_none());
    // Failures are not cached.
    assert!(tlb.translate(&mem, &space, Gva::new(0x1000)).is_err());
    assert!(tlb.lookup(&space, Gva::new(0x1000)).is_none());
}

#[test]
fn direct_map_iterates_merged() {
    let mut b = PageTableBuilder::new(PagingMode::Level4);
    b.map_range(Gva::new(KVA), Gpa::new(0), 64 << 20, PageSize::Size2M, pte::WRITABLE | pte::NX).unwrap();
    b.map_range(Gva::new(KVA + (64 << 20)), Gpa::new(64 << 20), 1 << 20, PageSize::Size4K, pte::WRITABLE | pte::NX)
        .unwrap();
    // A read-only page in the middle splits the 4 KiB run.
    b.map(Gva::new(KVA + (65 << 20)), Gpa::new(65 << 20), PageSize::Size4K, pte::NX).unwrap();
    let (mem, space) = b.finish();
    let runs: Vec<_> = space.mappings(&mem).collect::<Result<_, _>>().unwrap();
    assert_eq!(runs.len(), 3, "{runs:#?}");
    assert_eq!((runs[0].len, runs[0].page_size), (64 << 20, PageSize::Size2M));
    assert_eq!((runs[1].len, runs[1].page_size), (1 << 20, PageSize::Size4K));
    assert!(!runs[2].perms.writable && runs[2].contains(Gva::new(KVA + (65 << 20) + 5)));
    let some: Vec<_> = space
        .mappings(&mem)
        .range(Gva::new(KVA + (64 << 20)), Gva::new(KVA + (64 << 20)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(some[0].gva, Gva::new(KVA + (64 << 20)));
}
