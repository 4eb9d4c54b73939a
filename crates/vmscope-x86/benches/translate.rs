//! vmscope-x86 against memflow's x64 translator on the same page tables in the same
//! bytes. Each benchmark id ends in `/vmscope` or `/memflow`. Both sides consume the
//! physical address of each translation (what memflow's `virt_to_phys` returns). Run with
//! `cargo bench -p vmscope-x86`; see the crate README for the numbers.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memflow::architecture::x86::x64;
use memflow::connector::MappedPhysicalMemory;
use memflow::mem::{
    CachedVirtualTranslate, DirectTranslate, MemoryMap as MfMap, VirtualDma, VirtualTranslate, VirtualTranslate2,
    VirtualTranslate3,
};
use memflow::types::Address;
use vmscope_mem::{Gpa, Gva, SliceMem};
use vmscope_x86::fixture::PageTableBuilder;
use vmscope_x86::{AddressSpace, PageSize, PagingMode, Tlb, pte};

/// The Linux direct map base (4-level, no KASLR).
const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
/// The 5-level direct map base.
const DIRECT_MAP_5: u64 = 0xff11_0000_0000_0000;
const GIB: u64 = 1 << 30;
/// Addresses translated per iteration (criterion then reports per-element rates).
const N: usize = 1024;

/// A 1 GiB direct map with pages of `size`, as Linux would build it.
fn direct_map(mode: PagingMode, base: u64, size: PageSize) -> (SliceMem<Vec<u8>>, AddressSpace) {
    let mut b = PageTableBuilder::new(mode);
    b.map_range(
        Gva::new(base),
        Gpa::new(0),
        GIB,
        size,
        pte::WRITABLE | pte::NX | pte::GLOBAL | pte::ACCESSED | pte::DIRTY,
    )
    .expect("a fresh builder accepts an aligned, non-overlapping range");
    b.finish()
}

/// Scattered addresses in the direct map (xorshift, fixed seed).
fn addresses(base: u64, n: usize) -> Vec<Gva> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            Gva::new(base + (s % GIB))
        })
        .collect()
}

/// memflow's read-only connector over the very same bytes.
fn memflow_mem(mem: &SliceMem<Vec<u8>>) -> MappedPhysicalMemory<&[u8], MfMap<&[u8]>> {
    let mut map = MfMap::new();
    map.push(Address::null(), mem.bytes());
    MappedPhysicalMemory::with_info(map)
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

fn uncached(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncached_walk");
    g.throughput(Throughput::Elements(N as u64));
    for (name, mode, base) in
        [("4level_4k", PagingMode::Level4, DIRECT_MAP), ("5level_4k", PagingMode::Level5, DIRECT_MAP_5)]
    {
        let (mem, space) = direct_map(mode, base, PageSize::Size4K);
        let gvas = addresses(base, N);
        g.bench_function(format!("{name}/vmscope"), |b| {
            b.iter(|| {
                for &gva in &gvas {
                    black_box(space.translate(&mem, black_box(gva)).map(|t| t.gpa).ok());
                }
            })
        });
        if mode == PagingMode::Level4 {
            // memflow has no 5-level paging.
            let mut mf = memflow_mem(&mem);
            let tr = x64::new_translator(Address::from(space.root().gpa().raw()));
            g.bench_function(format!("{name}/memflow"), |b| {
                b.iter(|| {
                    for &gva in &gvas {
                        black_box(tr.virt_to_phys(&mut mf, Address::from(black_box(gva.raw()))).ok());
                    }
                })
            });
        }
    }
    g.finish();
}

fn batched(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_walk");
    g.throughput(Throughput::Elements(N as u64));
    let (mem, space) = direct_map(PagingMode::Level4, DIRECT_MAP, PageSize::Size4K);
    let gvas = addresses(DIRECT_MAP, N);
    let mut out = Vec::with_capacity(N);
    g.bench_function("4level_4k/vmscope", |b| {
        b.iter(|| {
            space.translate_batch(&mem, black_box(&gvas), &mut out);
            black_box(out.len());
        })
    });
    let mut mf = memflow_mem(&mem);
    let tr = x64::new_translator(Address::from(space.root().gpa().raw()));
    let mut vat = DirectTranslate::new();
    g.bench_function("4level_4k/memflow", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let mut ok = |_| {
                n += 1;
                true
            };
            let mut fail = |_| true;
            let addrs = gvas
                .iter()
                .map(|g| memflow::cglue::CTup3(Address::from(g.raw()), Address::null(), 1 as memflow::types::umem));
            vat.virt_to_phys_iter(&mut mf, &tr, addrs, &mut (&mut ok).into(), &mut (&mut fail).into());
            black_box(n);
        })
    });
    g.finish();
}

fn cached(c: &mut Criterion) {
    let mut g = c.benchmark_group("cached");
    g.throughput(Throughput::Elements(N as u64));
    let (mem, space) = direct_map(PagingMode::Level4, DIRECT_MAP, PageSize::Size4K);
    let gvas = addresses(DIRECT_MAP, N);
    let mut tlb = Tlb::new(8 * N);
    g.bench_function("4level_4k/vmscope", |b| {
        b.iter(|| {
            for &gva in &gvas {
                black_box(tlb.translate(&mem, &space, black_box(gva)).map(|t| t.gpa).ok());
            }
        })
    });
    let mut mf = memflow_mem(&mem);
    let tr = x64::new_translator(Address::from(space.root().gpa().raw()));
    let mut vat = CachedVirtualTranslate::builder(DirectTranslate::new())
        .arch(x64::ARCH)
        .entries(8 * N)
        .build()
        .expect("memflow builds a TLB for x64");
    g.bench_function("4level_4k/memflow", |b| {
        b.iter(|| {
            for &gva in &gvas {
                black_box(vat.virt_to_phys(&mut mf, &tr, Address::from(black_box(gva.raw()))).ok());
            }
        })
    });
    g.finish();
}

fn iterate(c: &mut Criterion) {
    let mut g = c.benchmark_group("iterate_1GiB_direct_map");
    for (name, size) in [("2m", PageSize::Size2M), ("4k", PageSize::Size4K)] {
        let (mem, space) = direct_map(PagingMode::Level4, DIRECT_MAP, size);
        g.throughput(Throughput::Elements(GIB / size.bytes()));
        g.bench_function(format!("{name}/vmscope"), |b| {
            b.iter(|| {
                let runs: usize = space.mappings(&mem).filter(|m| m.is_ok()).count();
                assert_eq!(runs, 1);
            })
        });
        let mf = memflow_mem(&mem);
        let tr = x64::new_translator(Address::from(space.root().gpa().raw()));
        let mut dma = VirtualDma::new(mf, x64::ARCH, tr);
        g.bench_function(format!("{name}/memflow"), |b| {
            b.iter(|| {
                let mut runs = 0usize;
                let mut cb = |_| {
                    runs += 1;
                    true
                };
                dma.virt_translation_map_range(Address::null(), Address::invalid(), (&mut cb).into());
                assert_eq!(runs, 1);
            })
        });
    }
    g.finish();
}

criterion_group! { name = benches; config = config(); targets = cached, uncached, batched, iterate }
criterion_main!(benches);
