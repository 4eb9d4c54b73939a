use std::hint::black_box;
use vmscope_mem::{Gpa, Gva};
use vmscope_x86::fixture::PageTableBuilder;
use vmscope_x86::{PageSize, PagingMode, Tlb, pte};
fn main() {
    let mut b = PageTableBuilder::new(PagingMode::Level4);
    b.map_range(Gva::new(0xffff_8880_0000_0000), Gpa::new(0), 1 << 30, PageSize::Size4K, pte::WRITABLE).unwrap();
    let (mem, space) = b.finish();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let gvas: Vec<Gva> = (0..1024).map(|_| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; Gva::new(0xffff_8880_0000_0000 + (s % (1 << 30))) }).collect();
    let mut tlb = Tlb::new(8192);
    for _ in 0..3 { for &g in &gvas { tlb.translate(&mem, &space, g).unwrap(); } }
    println!("{:?} sizes: err {} res {} tr {}", tlb.stats(), std::mem::size_of::<vmscope_x86::Error>(), std::mem::size_of::<vmscope_x86::Result<vmscope_x86::Translation>>(), std::mem::size_of::<vmscope_x86::Translation>());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..2000 { for &g in &gvas { black_box(tlb.translate(&mem, &space, black_box(g)).ok()); } }
        println!("translate: {:.2} ns", t.elapsed().as_nanos() as f64 / 2048000.0);
        let t = std::time::Instant::now();
        for _ in 0..2000 { for &g in &gvas { black_box(tlb.lookup(&space, black_box(g))); } }
        println!("lookup: {:.2} ns", t.elapsed().as_nanos() as f64 / 2048000.0);
        let t = std::time::Instant::now();
        for _ in 0..2000 { for &g in &gvas { black_box(tlb.translate(&mem, &space, black_box(g)).map(|t| t.gpa).ok()); } }
        println!("translate->gpa: {:.2} ns", t.elapsed().as_nanos() as f64 / 2048000.0);
        let t = std::time::Instant::now();
        for _ in 0..200 { for &g in &gvas { black_box(space.translate(&mem, black_box(g)).ok()); } }
        println!("walk: {:.2} ns", t.elapsed().as_nanos() as f64 / 204800.0);
    }
    println!("{:?}", tlb.stats());
}
