//! Hidden modules: modules the kernel still holds that are not on the module list
//! (`modules`). Two other views of them: the kobjects of `module_kset` (what
//! `/sys/module` lists; a module's `mkobj.mod` points back at it), and a carve of
//! the module area for a `struct module` whose `mkobj.mod` points at itself, with a
//! NUL-terminated printable name and a valid state. Unlinking `module.list` is how
//! a DKOM rootkit hides from `lsmod`.

use std::collections::BTreeMap;

use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome};
use crate::kmem::{container, member};
use crate::offsets::{KsetOffsets, ModuleOffsets};
use crate::views::{AddrSet, Anomaly};

/// Where x86-64 loads modules: from `MODULES_VADDR` (`__START_KERNEL_map` plus the
/// image size, 512 MiB or, with KASLR, 1 GiB) to `MODULES_END`.
const MODULES_VADDR_MIN: u64 = 0xffff_ffff_a000_0000;
const MODULES_END: u64 = 0xffff_ffff_ff00_0000;

/// `struct module` is cache-line aligned.
const MODULE_ALIGN: usize = 64;

/// The most bytes of the module area carved (module text and data, BPF images).
const CARVE_BUDGET: u64 = 512 << 20;

/// Bytes read at a time while carving.
const CHUNK: u64 = 1 << 20;

/// A module one of the other views found, and which.
#[derive(Default)]
struct Seen {
    name: Option<String>,
    in_kset: bool,
    carved: bool,
}

pub(super) fn check<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let Some(ko) = c.co.kset else {
        return Outcome::skipped("the kernel's types have no struct module_kobject");
    };
    let graph = c.ctx.module_graph();
    let mut o = Outcome { anomalies: graph.anomalies, ..Outcome::default() };
    let mut listed = AddrSet::default();
    for m in &graph.modules {
        listed.insert(m.addr);
    }
    let mut others: BTreeMap<Gva, Seen> = BTreeMap::new();
    match c.symbols.addr("module_kset") {
        Some(sym) => kset(c, &ko, sym, &mut others, &mut o),
        None => o.anomalies.push(Anomaly::InvalidField {
            what: "module_kset".into(),
            addr: Gva::new(0),
            field: "symbol".into(),
            value: "not in kallsyms: the module kset is not compared".into(),
        }),
    }
    carve(c, &ko, &mut others, &mut o);
    for (addr, s) in others.into_iter().filter(|(a, _)| !listed.contains(a)) {
        let name = s.name.or_else(|| module_name(c, &c.ctx.o.module, addr)).unwrap_or_else(|| "?".into());
        let mut views = Vec::new();
        if s.in_kset {
            views.push("in module_kset");
        }
        if s.carved {
            views.push("carved from the module area");
        }
        o.findings.push(Finding {
            check: CheckKind::HiddenModule,
            subject: format!("module {name}"),
            at: Some(addr),
            value: None,
            found: format!("{}, not on the module list", views.join(" and ")),
            expected: "every module of module_kset and the module area on the module list".into(),
        });
    }
    o
}

/// A module's name, if NUL-terminated in its array.
fn module_name<M: PhysMem>(c: &CheckCtx<'_, '_, M>, mo: &ModuleOffsets, m: Gva) -> Option<String> {
    let at = member(m, mo.name).ok()?;
    let b = c.ctx.k.read_cstr(at, mo.name_len as usize).ok()?;
    Some(String::from_utf8_lossy(&b).into_owned())
}

/// The modules behind `module_kset`'s kobjects (built-in ones have no module).
fn kset<M: PhysMem>(
    c: &CheckCtx<'_, '_, M>,
    ko: &KsetOffsets,
    sym: Gva,
    others: &mut BTreeMap<Gva, Seen>,
    o: &mut Outcome,
) {
    let k = c.ctx.k;
    let kset = match k.read_ptr(sym) {
        Ok(p) if crate::views::plausible(k, p, 8) => p,
        Ok(p) => return o.anomalies.push(Anomaly::BadPointer { what: "module_kset".into(), at: sym, value: p }),
        Err(e) => {
            return o.anomalies.push(Anomaly::Unreadable {
                what: "module_kset".into(),
                addr: sym,
                error: e.to_string(),
            });
        }
    };
    let Ok(head) = member(kset, ko.kset_list) else { return };
    let nodes = c.ctx.walk_list(head, "module_kset.list", &mut o.anomalies);
    for node in nodes {
        o.examined += 1;
        let Some(mkobj) = container(node, ko.kobj_entry).and_then(|kobj| container(kobj, ko.mkobj_kobj)).ok() else {
            continue;
        };
        let m = match member(mkobj, ko.mkobj_mod).and_then(|a| k.read_ptr(a)) {
            Ok(m) => m,
            Err(e) => {
                o.anomalies.push(Anomaly::Unreadable {
                    what: "module_kobject".into(),
                    addr: mkobj,
                    error: e.to_string(),
                });
                continue;
            }
        };
        // A built-in module's kobject (parameters only) has no module; a module's
        // mkobj is inside it.
        if m.raw() == 0 || member(m, ko.module_mkobj).ok() != Some(mkobj) {
            continue;
        }
        let name = container(node, ko.kobj_entry)
            .and_then(|kobj| member(kobj, ko.kobj_name))
            .and_then(|a| k.read_ptr(a))
            .and_then(|p| k.read_cstr(p, 64))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let s = others.entry(m).or_default();
        s.in_kset = true;
        s.name = s.name.take().or(name);
    }
}

/// Offsets in `chunk` (read from `base`) where a `struct module` may start: cache
/// aligned, its `mkobj.mod` (at `back`) pointing at itself.
pub(crate) fn candidates(chunk: &[u8], base: u64, back: u64) -> Vec<usize> {
    let Ok(back) = usize::try_from(back) else { return Vec::new() };
    (0..chunk.len())
        .step_by(MODULE_ALIGN)
        .filter(|&p| {
            let Some(w) = p.checked_add(back).and_then(|s| chunk.get(s..s.checked_add(8)?)) else { return false };
            let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            base.checked_add(p as u64) == Some(v)
        })
        .collect()
}

/// Whether the module at `m` has a plausible name and state.
fn plausible_module<M: PhysMem>(c: &CheckCtx<'_, '_, M>, m: Gva) -> Option<String> {
    let mo = &c.ctx.o.module;
    let name = module_name(c, mo, m)?;
    let printable = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
    let state = member(m, mo.state).and_then(|a| c.ctx.k.read_u32(a)).ok()?;
    let valid = mo.states.iter().any(|(v, _)| *v == i64::from(state as i32));
    (printable && valid).then_some(name)
}

/// Every plausible `struct module` in the mapped pages of the module area.
fn carve<M: PhysMem>(c: &CheckCtx<'_, '_, M>, ko: &KsetOffsets, others: &mut BTreeMap<Gva, Seen>, o: &mut Outcome) {
    let k = c.ctx.k;
    let Some(back) = ko.module_mkobj.checked_add(ko.mkobj_mod) else { return };
    let start = c.symbols.addr("_end").map_or(MODULES_VADDR_MIN, |e| e.raw().max(MODULES_VADDR_MIN));
    if start >= MODULES_END {
        return;
    }
    let mut budget = CARVE_BUDGET;
    let mut buf = Vec::new();
    for run in k.space().mappings(k.phys()).range(Gva::new(start), Gva::new(MODULES_END - 1)) {
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                o.anomalies.push(Anomaly::Unreadable {
                    what: "module area page tables".into(),
                    addr: e.gva(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let mut off = 0;
        while off < run.len {
            if budget == 0 {
                o.anomalies.push(Anomaly::StepLimit {
                    list: "module area carve (bytes)".into(),
                    limit: CARVE_BUDGET as usize,
                });
                return;
            }
            // Read past the chunk by the back pointer's reach, so a struct at its
            // end is seen whole.
            let n = CHUNK.min(run.len - off).min(budget);
            let len = (n + back + 8).min(run.len - off);
            budget -= n;
            buf.resize(len as usize, 0);
            let Some(gpa) = run.gpa.checked_add(off) else { break };
            if let Err(e) = k.phys().read(gpa, &mut buf) {
                let addr = Gva::new(run.gva.raw().wrapping_add(off));
                o.anomalies.push(Anomaly::Unreadable { what: "module area".into(), addr, error: e.to_string() });
                off += n;
                continue;
            }
            let base = run.gva.raw().wrapping_add(off);
            for p in candidates(&buf[..], base, back).into_iter().filter(|&p| (p as u64) < n) {
                let m = Gva::new(base + p as u64);
                o.examined += 1;
                if let Some(name) = plausible_module(c, m) {
                    let s = others.entry(m).or_default();
                    s.carved = true;
                    s.name.get_or_insert(name);
                }
            }
            off += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_self_pointer_at_the_back_offset_is_a_candidate() {
        let base = 0xffff_ffff_c000_0000u64;
        let mut chunk = vec![0u8; 512];
        chunk[128 + 0x50..128 + 0x58].copy_from_slice(&(base + 128).to_le_bytes());
        // Not cache-aligned: not a candidate.
        chunk[200 + 0x50..200 + 0x58].copy_from_slice(&(base + 200).to_le_bytes());
        // Past the end: never read.
        chunk[448 + 0x30..448 + 0x38].copy_from_slice(&(base + 448).to_le_bytes());
        assert_eq!(candidates(&chunk, base, 0x50), [128]);
    }

    proptest! {
        #[test]
        fn arbitrary_chunks_never_panic(chunk in prop::collection::vec(any::<u8>(), 0..2048), base in any::<u64>(), back in any::<u64>()) {
            for p in candidates(&chunk, base, back) {
                prop_assert!(p % MODULE_ALIGN == 0 && p < chunk.len());
            }
        }
    }
}
