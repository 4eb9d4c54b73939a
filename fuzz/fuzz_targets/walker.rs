//! Arbitrary bytes as guest RAM and page tables: translation, batched translation,
//! the TLB and the mapping iterator must not panic, must terminate, and must agree
//! with each other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmscope_mem::{Gpa, Gva, MemoryMap, SliceMem};
use vmscope_x86::{AddressSpace, PagingMode, Root, Tlb};

fuzz_target!(|data: &[u8]| {
    // Header: mode, root page, 8 addresses; the rest is RAM.
    if data.len() < 2 + 8 * 8 {
        return;
    }
    let (head, ram) = data.split_at(2 + 8 * 8);
    let mode = if head[0] & 1 == 0 {
        PagingMode::Level4
    } else {
        PagingMode::Level5
    };
    let pages = (ram.len() as u64).div_ceil(4096).max(1);
    let root = Root::new(Gpa::new((u64::from(head[1]) % pages) * 4096));
    let gvas: Vec<Gva> = head[2..]
        .chunks_exact(8)
        .map(|c| {
            Gva::new(u64::from_le_bytes(
                c.try_into().expect("chunks_exact(8) yields 8 bytes"),
            ))
        })
        .collect();
    let mem = SliceMem::new(ram, MemoryMap::flat(ram.len().max(1) as u64));
    let space = AddressSpace::new(root, mode);

    let mut out = Vec::new();
    space.translate_batch(&mem, &gvas, &mut out);
    let mut tlb = Tlb::new(8);
    for (&gva, batched) in gvas.iter().zip(&out) {
        let single = space.translate(&mem, gva);
        assert_eq!(single.as_ref().ok(), batched.as_ref().ok());
        assert_eq!(
            tlb.translate(&mem, &space, gva).ok(),
            single.as_ref().ok().copied()
        );
        assert_eq!(tlb.translate(&mem, &space, gva).ok(), single.ok());
    }
    let mut it = space.mappings(&mem).max_tables(64);
    for m in it.by_ref() {
        if let Ok(m) = m {
            assert!(m.len > 0 && m.len % m.page_size.bytes() == 0);
        }
    }
    assert!(it.tables_read() <= 64);
});
