//! Model-based property test: random mapping sets (mixed page sizes, 4- and
//! 5-level) built into real page tables; translate, batch translate, the TLB and
//! the mapping iterator must agree with a plain model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vmscope_mem::{Gpa, Gva};
use vmscope_x86::fixture::PageTableBuilder;
use vmscope_x86::{Mapping, PageSize, PagingMode, Perms, Tlb, pte};

/// Indices are drawn from a few values so that mappings share tables and sit next
/// to each other (which exercises merging), including both canonical halves.
const IDX: [u64; 5] = [0, 1, 2, 255, 511];

#[derive(Debug, Clone)]
struct Spec {
    size: PageSize,
    idx: [usize; 5],
    count: u64,
    gpa_frame: u64,
    leaf: u64,
    table: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    let size = prop_oneof![3 => Just(PageSize::Size4K), 2 => Just(PageSize::Size2M), 1 => Just(PageSize::Size1G)];
    let flags = prop::sample::select(vec![
        0,
        pte::WRITABLE,
        pte::USER,
        pte::NX,
        pte::WRITABLE | pte::USER,
        pte::WRITABLE | pte::NX | pte::ACCESSED | pte::DIRTY,
    ]);
    let table = prop::sample::select(vec![
        pte::WRITABLE | pte::USER,
        pte::WRITABLE | pte::USER,
        pte::WRITABLE,
        pte::USER | pte::NX,
    ]);
    (size, [0usize..5, 0usize..5, 0usize..5, 0usize..5, 0usize..5], 1u64..4, 0u64..8, flags, any::<bool>(), table)
        .prop_map(|(size, idx, count, gpa_frame, leaf, global, table)| Spec {
            size,
            idx,
            count,
            gpa_frame,
            leaf: leaf | if global { pte::GLOBAL } else { 0 },
            table,
        })
}

fn mode() -> impl Strategy<Value = PagingMode> {
    prop_oneof![Just(PagingMode::Level4), Just(PagingMode::Level5)]
}

/// A page of the model: everything the walker should report for it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Page {
    gpa: u64,
    size: PageSize,
    perms: Perms,
    leaf: u64,
}

/// Builds the tables and the model side by side. Mappings that collide with earlier
/// ones are refused by the builder and left out of the model too.
fn build(
    mode: PagingMode,
    specs: &[Spec],
) -> (vmscope_mem::SliceMem<Vec<u8>>, vmscope_x86::AddressSpace, BTreeMap<u64, Page>) {
    let mut b = PageTableBuilder::new(mode);
    let mut model: BTreeMap<u64, Page> = BTreeMap::new();
    // Flags of the table entry that governs each (level shift, linear prefix): set
    // by whichever mapping created that table first.
    let mut tables: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let levels = mode.levels();
    let lin_mask = (1u64 << mode.va_bits()) - 1;
    for s in specs {
        let bytes = s.size.bytes();
        // Linear address from the indices of the levels above the page's level.
        let mut lin = 0u64;
        for (def, &i) in levels.iter().zip(&s.idx) {
            if def.entry_span() < bytes {
                break;
            }
            lin |= IDX[i] << def.shift;
        }
        // The last page of a run must stay within its table, so the run never
        // crosses into an index the IDX pattern did not choose.
        let gpa0 = (s.gpa_frame * 3 + 1) * bytes;
        for k in 0..s.count {
            let l = lin + k * bytes;
            if (l & lin_mask) != l {
                break;
            }
            let va = mode.canonicalize(l);
            b.table_flags(s.table);
            let gpa = gpa0 + k * bytes;
            if b.map(Gva::new(va), Gpa::new(gpa), s.size, s.leaf).is_err() {
                continue;
            }
            let (mut and, mut or) = (s.leaf, s.leaf);
            for def in levels {
                if def.entry_span() == bytes {
                    break;
                }
                let key = (def.shift, l >> def.shift);
                let f = *tables.entry(key).or_insert(s.table);
                and &= f;
                or |= f;
            }
            let perms = Perms { writable: and & pte::WRITABLE != 0, user: and & pte::USER != 0, nx: or & pte::NX != 0 };
            model.insert(va, Page { gpa, size: s.size, perms, leaf: s.leaf });
        }
    }
    let (mem, space) = b.finish();
    (mem, space, model)
}

fn model_translate(model: &BTreeMap<u64, Page>, va: u64) -> Option<(u64, Page)> {
    let (&base, p) = model.range(..=va).next_back()?;
    (va - base < p.size.bytes()).then(|| (p.gpa + (va - base), *p))
}

/// The model's pages merged by the documented rule.
fn model_runs(model: &BTreeMap<u64, Page>) -> Vec<Mapping> {
    let mut runs: Vec<Mapping> = Vec::new();
    for (&va, p) in model {
        if let Some(r) = runs.last_mut()
            && r.gva.raw().checked_add(r.len) == Some(va)
            && r.gpa.raw() + r.len == p.gpa
            && r.page_size == p.size
            && r.perms == p.perms
        {
            r.len += p.size.bytes();
            continue;
        }
        runs.push(Mapping {
            gva: Gva::new(va),
            gpa: Gpa::new(p.gpa),
            len: p.size.bytes(),
            page_size: p.size,
            perms: p.perms,
        });
    }
    runs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn walker_agrees_with_model(mode in mode(), specs in prop::collection::vec(spec(), 1..10), probes in prop::collection::vec((any::<u64>(), 0usize..8, any::<u64>()), 8)) {
        let (mem, space, model) = build(mode, &specs);

        // Addresses to translate: inside, just before and just after each page, and
        // random addresses, some near the mapped window.
        let mut gvas: Vec<Gva> = Vec::new();
        for (&va, p) in model.iter().step_by(model.len() / 6 + 1) {
            gvas.push(Gva::new(va));
            gvas.push(Gva::new(va.wrapping_sub(1)));
            gvas.push(Gva::new(va.wrapping_add(p.size.bytes())));
            gvas.push(Gva::new(va + p.size.bytes() / 2 + 0x7));
        }
        for &(r, which, near) in &probes {
            let anchor = model.keys().nth(which % model.len().max(1)).copied().unwrap_or(0);
            gvas.push(Gva::new(r));
            gvas.push(Gva::new(anchor ^ (near & 0x3fff_ffff)));
        }

        let mut tlb = Tlb::new(64);
        let singles: Vec<_> = gvas.iter().map(|&gva| space.translate(&mem, gva)).collect();
        for (&gva, got) in gvas.iter().zip(&singles) {
            let canonical = mode.is_canonical(gva);
            match model_translate(&model, gva.raw()).filter(|_| canonical) {
                Some((gpa, p)) => {
                    let t = got.as_ref().map_err(|e| TestCaseError::fail(format!("{gva}: {e}")))?;
                    prop_assert_eq!(t.gpa.raw(), gpa);
                    prop_assert_eq!(t.page_size, p.size);
                    prop_assert_eq!(t.perms, p.perms);
                    prop_assert_eq!(t.accessed, p.leaf & pte::ACCESSED != 0);
                    prop_assert_eq!(t.dirty, p.leaf & pte::DIRTY != 0);
                    prop_assert_eq!(t.global, p.leaf & pte::GLOBAL != 0);
                    prop_assert_eq!(t.page_gva().raw(), gva.raw() - (gpa - t.page_gpa().raw()));
                }
                None => {
                    let e = got.as_ref().err().ok_or_else(|| TestCaseError::fail(format!("{gva} mapped, model says not")))?;
                    prop_assert!(e.is_unmapped(), "{gva}: {e}");
                }
            }
            // The TLB, asked twice (miss then hit), says the same as the walk.
            let once = tlb.translate(&mem, &space, gva).ok();
            let twice = tlb.translate(&mem, &space, gva).ok();
            prop_assert_eq!(once, got.as_ref().ok().copied());
            prop_assert_eq!(twice, once);
        }

        // Batched translation equals one-by-one translation.
        let mut out = Vec::new();
        space.translate_batch(&mem, &gvas, &mut out);
        prop_assert_eq!(out.len(), gvas.len());
        for ((&gva, r), single) in gvas.iter().zip(&out).zip(&singles) {
            match (r, single) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "{gva}: batch {a:?}, single {b:?}"),
            }
        }
        tlb.invalidate();
        tlb.translate_batch(&mem, &space, &gvas, &mut out);
        for (r, single) in out.iter().zip(&singles) {
            prop_assert_eq!(r.as_ref().ok(), single.as_ref().ok());
        }

        // The iterator yields exactly the model's merged runs, without errors.
        let runs: Vec<Mapping> = space.mappings(&mem).collect::<Result<_, _>>().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&runs, &model_runs(&model));

        // A range restricted walk yields the runs overlapping the range, split at
        // page granularity only where the range cuts.
        let upper: Vec<Mapping> = space.mappings(&mem).upper_half().collect::<Result<_, _>>().unwrap();
        let want: Vec<Mapping> = model_runs(&model).into_iter().filter(|m| (m.gva.raw() as i64) < 0).collect();
        prop_assert_eq!(upper, want);
    }
}
