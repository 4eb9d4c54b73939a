//! Where code may be: the kernel's text (`_stext`..`_etext`) and each listed
//! module's memory. A handler or callback anywhere else was put there by something
//! the kernel does not know of.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use crate::SymbolTable;
use crate::kernel::Ctx;
use crate::offsets::ModuleMemLayout;
use crate::views::{Anomaly, Bytes, Fields, with_struct};

/// Where an address lies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Place {
    /// In the kernel's text: in `symbol` (if any), `offset` bytes in.
    KernelText {
        /// The symbol containing it.
        symbol: Option<String>,
        /// Bytes from the symbol's start.
        offset: u64,
    },
    /// In the memory of a module on the module list.
    Module {
        /// The module.
        name: String,
    },
    /// Neither.
    Outside,
}

impl Place {
    /// How a finding describes it.
    pub fn describe(&self) -> String {
        match self {
            Place::KernelText { symbol: Some(s), offset: 0 } => format!("{s} in kernel text"),
            Place::KernelText { symbol: Some(s), offset } => format!("{s}+{offset:#x} in kernel text"),
            Place::KernelText { symbol: None, .. } => "kernel text, in no symbol".into(),
            Place::Module { name } => format!("module {name}"),
            Place::Outside => "outside kernel text and every listed module".into(),
        }
    }
}

impl Place {
    /// Why a system call handler at this place is wrong — `None` when it is the
    /// start of a kernel-text symbol whose name `named` accepts.
    pub fn wrong_handler(&self, named: impl Fn(&str) -> bool) -> Option<String> {
        match self {
            Place::KernelText { symbol: Some(s), offset: 0 } if named(s) => None,
            Place::KernelText { symbol: Some(s), offset: 0 } => Some(format!("{s} in kernel text, not a system call")),
            Place::KernelText { .. } => Some(format!("{}: not the start of a function", self.describe())),
            Place::Module { name } => Some(format!("in module {name}")),
            Place::Outside => Some(self.describe()),
        }
    }
}

/// The kernel's text and the listed modules' memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeMap {
    /// `_stext`..`_etext`.
    pub text: Option<(Gva, Gva)>,
    /// Each module's memory ranges (start, end), by name.
    pub modules: Vec<(String, Gva, Gva)>,
}

impl CodeMap {
    /// The map of a kernel whose text is `text` and modules `modules`.
    pub fn new(text: Option<(Gva, Gva)>, modules: Vec<(String, Gva, Gva)>) -> Self {
        CodeMap { text, modules }
    }

    /// Whether `a` is in the kernel's text.
    pub fn in_text(&self, a: Gva) -> bool {
        self.text.is_some_and(|(s, e)| s <= a && a < e)
    }

    /// The listed module whose memory holds `a`.
    pub fn module_of(&self, a: Gva) -> Option<&str> {
        self.modules.iter().find(|(_, s, e)| *s <= a && a < *e).map(|(n, _, _)| n.as_str())
    }

    /// Where `a` lies, named by `symbols` when in the kernel's text.
    pub fn place(&self, a: Gva, symbols: &SymbolTable) -> Place {
        if self.in_text(a) {
            let (symbol, offset) = match symbols.symbolize(a) {
                Some((s, off)) => (Some(s.name.to_owned()), off),
                None => (None, 0),
            };
            return Place::KernelText { symbol, offset };
        }
        match self.module_of(a) {
            Some(name) => Place::Module { name: name.to_owned() },
            None => Place::Outside,
        }
    }

    /// Reads the kernel's text bounds from `symbols` and each listed module's
    /// memory from its `struct module`.
    pub(crate) fn read<M: PhysMem>(ctx: &Ctx<'_, M>, symbols: &SymbolTable) -> (CodeMap, Vec<Anomaly>) {
        let text = symbols.addr("_stext").zip(symbols.addr("_etext")).filter(|(s, e)| s < e);
        let list = ctx.modules();
        let mut an = list.anomalies;
        let mo = &ctx.o.module;
        let mut modules = Vec::new();
        for m in &list.modules {
            let ranges = with_struct(ctx.k, m.addr, mo.size, "struct module", &mut an, |b| module_ranges(&mo.mem, &b))
                .unwrap_or_default();
            modules.extend(ranges.into_iter().map(|(s, e)| (m.name.clone(), s, e)));
        }
        (CodeMap { text, modules }, an)
    }
}

/// The memory ranges of the module whose `struct module` is `b`: the core (and
/// init) layout up to 6.3, each `mem[]` region from 6.4. Empty and overflowing
/// ranges are left out.
pub(crate) fn module_ranges(layout: &ModuleMemLayout, b: &Bytes<'_>) -> Vec<(Gva, Gva)> {
    let range = |base: Option<Gva>, size: Option<u64>| {
        let (base, size) = (base?, size?);
        let end = base.raw().checked_add(size).filter(|_| size > 0)?;
        Some((base, Gva::new(end)))
    };
    match layout {
        ModuleMemLayout::Layouts { core_base, core_size, .. } => {
            range(b.ptr(*core_base), b.u32(*core_size).map(u64::from)).into_iter().collect()
        }
        ModuleMemLayout::Mem { base, stride, count, mem_base, mem_size, .. } => (0..(*count).min(16))
            .filter_map(|i| {
                let at = base.checked_add(i.checked_mul(*stride)?)?;
                range(b.ptr(at.checked_add(*mem_base)?), b.u32(at.checked_add(*mem_size)?).map(u64::from))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SymbolSource;

    #[test]
    fn places_text_modules_and_the_rest() {
        let syms = SymbolTable::from_iter(
            SymbolSource::Kallsyms,
            [
                ("_stext", Gva::new(0xffff_ffff_8100_0000), 'T'),
                ("__x64_sys_read", Gva::new(0xffff_ffff_8100_0100), 'T'),
            ],
        );
        let code = CodeMap::new(
            Some((Gva::new(0xffff_ffff_8100_0000), Gva::new(0xffff_ffff_8200_0000))),
            vec![("dummy".into(), Gva::new(0xffff_ffff_c000_0000), Gva::new(0xffff_ffff_c000_4000))],
        );
        assert_eq!(
            code.place(Gva::new(0xffff_ffff_8100_0100), &syms),
            Place::KernelText { symbol: Some("__x64_sys_read".into()), offset: 0 }
        );
        assert_eq!(code.place(Gva::new(0xffff_ffff_c000_3fff), &syms), Place::Module { name: "dummy".into() });
        assert_eq!(code.place(Gva::new(0xffff_ffff_c000_4000), &syms), Place::Outside);
        assert_eq!(code.place(Gva::new(0xffff_ffff_8200_0000), &syms), Place::Outside);
    }

    #[test]
    fn module_ranges_skip_empty_and_overflowing_regions() {
        let mut raw = vec![0u8; 64];
        let put =
            |raw: &mut Vec<u8>, off: usize, v: u64, n: usize| raw[off..off + n].copy_from_slice(&v.to_le_bytes()[..n]);
        put(&mut raw, 0, 0xffff_ffff_c000_0000, 8);
        put(&mut raw, 8, 0x2000, 4);
        put(&mut raw, 16, u64::MAX - 4, 8);
        put(&mut raw, 24, 0x100, 4);
        put(&mut raw, 32, 0xffff_ffff_c001_0000, 8);
        let layout = ModuleMemLayout::Mem { base: 0, stride: 16, count: 4, mem_base: 0, mem_size: 8, text: 0 };
        let got = module_ranges(&layout, &Bytes(&raw));
        assert_eq!(got, [(Gva::new(0xffff_ffff_c000_0000), Gva::new(0xffff_ffff_c000_2000))]);
    }
}
