//! Loaded modules (`modules` walked) and their symbols (each module's own
//! `mod_kallsyms`), as `/proc/modules` and `/proc/kallsyms` show them.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::{Anomaly, Bytes, Fields, owner, plausible};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::ModuleMemLayout;

/// The most of a module's string table read in one go.
const MAX_STRTAB: usize = 4 << 20;

/// `KSYM_NAME_LEN` (512 since Linux 6.1): the most of a symbol's name
/// `/proc/kallsyms` prints, with its NUL. Names read one by one are read up to it.
pub const KSYM_NAME_LEN: usize = 512;

/// `MODULE_REF_BASE`: `refcnt` counts one more than the references.
const MODULE_REF_BASE: i64 = 1;

/// One loaded module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Its name.
    pub name: String,
    /// Where its text starts (what `/proc/modules` prints).
    pub base: Gva,
    /// Its size in bytes, all of its memory (what `/proc/modules` prints).
    pub size: u64,
    /// `Live`, `Loading`, `Unloading` (as `/proc/modules` words it) or `Unformed`.
    pub state: String,
    /// The `enum module_state` value.
    pub state_value: i64,
    /// References held (`refcnt` minus its base of 1).
    pub refcount: i64,
    /// The taint bits (`taints`).
    pub taints: u64,
    /// The taint letters `/proc/modules` would print, e.g. `OE`.
    pub taint_flags: String,
    /// Address of its `struct module`.
    pub addr: Gva,
}

/// The module list and what was wrong on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleList {
    /// Modules in `modules` list order (newest first).
    pub modules: Vec<Module>,
    /// Anomalies met.
    pub anomalies: Vec<Anomaly>,
}

/// A symbol of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSymbol {
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: Gva,
    /// The type letter as `/proc/kallsyms` prints it: upper case when the module
    /// exports the symbol, lower case otherwise.
    pub kind: char,
    /// The module.
    pub module: String,
    /// Whether `name` is the first [`KSYM_NAME_LEN`] bytes of a longer one (only a
    /// name read on its own is cut; `/proc/kallsyms` cuts one byte earlier).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub name_truncated: bool,
}

fn state_word(name: &str) -> String {
    match name {
        "MODULE_STATE_LIVE" => "Live".into(),
        "MODULE_STATE_COMING" => "Loading".into(),
        "MODULE_STATE_GOING" => "Unloading".into(),
        "MODULE_STATE_UNFORMED" => "Unformed".into(),
        other => other.trim_start_matches("MODULE_STATE_").to_owned(),
    }
}

impl<M: PhysMem> Ctx<'_, M> {
    fn module_nodes(&self, an: &mut Vec<Anomaly>) -> Vec<(Gva, Vec<u8>)> {
        let mo = &self.o.module;
        self.walk_list(self.addrs.modules, "modules", an)
            .into_iter()
            .take_while(|_| !self.meter.exhausted(self.k))
            .filter_map(|n| {
                let addr = owner(n, mo.list, "struct module", an)?;
                match self.k.read_vec(addr, mo.size as usize) {
                    Ok(b) => Some((addr, b)),
                    Err(e) => {
                        an.push(Anomaly::Unreadable { what: "struct module".into(), addr, error: e.to_string() });
                        None
                    }
                }
            })
            .collect()
    }

    fn taint_letters(&self, taints: u64) -> String {
        let (Some(tf), Some((table, bytes))) = (self.o.taint_flag, self.addrs.taint_flags) else {
            return String::new();
        };
        // Entries in the table, not bytes: a bit past its end is guest corruption.
        let count = bytes / tf.size.max(1);
        let mut out = String::new();
        for bit in (0..64u64).filter(|b| taints & (1 << b) != 0 && *b < count) {
            let Some(entry) = bit.checked_mul(tf.size).and_then(|off| table.checked_add(off)) else {
                continue;
            };
            let Ok(e) = self.k.read_vec(entry, tf.size as usize) else {
                continue;
            };
            let e = Bytes(&e);
            if e.uint(tf.module, 1).unwrap_or(0) != 0
                && let Some(c) = e.uint(tf.c_true, 1)
            {
                out.push(c as u8 as char);
            }
        }
        out
    }

    /// A module's name; an unterminated one is recorded and gives none.
    fn module_name(&self, addr: Gva, b: &Bytes<'_>, an: &mut Vec<Anomaly>) -> Option<String> {
        let mo = &self.o.module;
        b.cstr(mo.name, mo.name_len)?
            .map_err(|_| {
                an.push(Anomaly::Unterminated {
                    what: "struct module".into(),
                    addr,
                    field: "name".into(),
                    len: mo.name_len,
                })
            })
            .ok()
    }

    fn module(&self, addr: Gva, bytes: &[u8], an: &mut Vec<Anomaly>) -> Option<Module> {
        let (b, mo) = (Bytes(bytes), &self.o.module);
        let name = self.module_name(addr, &b, an)?;
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_graphic()) {
            an.push(Anomaly::InvalidField {
                what: "struct module".into(),
                addr,
                field: "name".into(),
                value: format!("{name:?}"),
            });
            return None;
        }
        let state_value = i64::from(b.i32(mo.state)?);
        let state = mo
            .states
            .iter()
            .find(|(v, _)| *v == state_value)
            .map_or_else(|| format!("state {state_value}"), |(_, n)| state_word(n));
        let (base, size) = match &mo.mem {
            ModuleMemLayout::Layouts { core_base, core_size, init_size } => {
                (b.ptr(*core_base)?, u64::from(b.u32(*core_size)?) + u64::from(b.u32(*init_size)?))
            }
            ModuleMemLayout::Mem { base, stride, count, mem_base, mem_size, text } => {
                let size = (0..*count).filter_map(|i| b.u32(base + i * stride + mem_size)).map(u64::from).sum();
                (b.ptr(base + text * stride + mem_base)?, size)
            }
        };
        let taints = b.u64(mo.taints)?;
        Some(Module {
            name,
            base,
            size,
            state,
            state_value,
            refcount: i64::from(b.i32(mo.refcnt)?) - MODULE_REF_BASE,
            taints,
            taint_flags: self.taint_letters(taints),
            addr,
        })
    }

    pub(crate) fn modules(&self) -> ModuleList {
        let mut anomalies = Vec::new();
        let nodes = self.module_nodes(&mut anomalies);
        let modules = nodes.iter().filter_map(|(a, b)| self.module(*a, b, &mut anomalies)).collect();
        ModuleList { modules, anomalies }
    }

    /// The names and values a module exports (`syms[0..num_syms]`).
    fn exports(&self, b: &Bytes<'_>, an: &mut Vec<Anomaly>) -> HashMap<String, Gva> {
        let mo = &self.o.module;
        let mut out = HashMap::new();
        let (Some(syms), Some(n)) = (b.ptr(mo.syms), b.u32(mo.num_syms)) else {
            return out;
        };
        if syms.raw() == 0 || n == 0 || n as usize > self.limits.max_module_symbols {
            return out;
        }
        let Ok(raw) = self.k.read_vec(syms, n as usize * mo.ksym_size as usize) else {
            an.push(Anomaly::Unreadable { what: "module exports".into(), addr: syms, error: "unreadable".into() });
            return out;
        };
        let raw = Bytes(&raw);
        for i in 0..u64::from(n) {
            let at = i * mo.ksym_size;
            let (value, name_ptr) = if mo.ksym_relative {
                // Self-relative: the field's own address plus the offset it holds,
                // modulo 2^64 as the kernel's `offset_to_ptr` computes it.
                let (Some(v), Some(nm)) = (raw.i32(at + mo.ksym_value), raw.i32(at + mo.ksym_name)) else {
                    continue;
                };
                let (Ok(value_field), Ok(name_field)) =
                    (member(syms, at + mo.ksym_value), member(syms, at + mo.ksym_name))
                else {
                    continue;
                };
                (
                    Gva::new(value_field.raw().wrapping_add_signed(i64::from(v))),
                    Gva::new(name_field.raw().wrapping_add_signed(i64::from(nm))),
                )
            } else {
                let (Some(v), Some(nm)) = (raw.ptr(at + mo.ksym_value), raw.ptr(at + mo.ksym_name)) else {
                    continue;
                };
                (v, nm)
            };
            // Read as the symbol names are: a name cut at KSYM_NAME_LEN can only
            // match a symbol name cut the same way.
            if let Ok(name) = self.k.read_cstr_prefix(name_ptr, KSYM_NAME_LEN) {
                out.insert(String::from_utf8_lossy(&name.bytes).into_owned(), value);
            }
        }
        out
    }

    fn symbols_of(&self, module: &str, bytes: &[u8], an: &mut Vec<Anomaly>) -> Vec<ModuleSymbol> {
        let (b, mo) = (Bytes(bytes), &self.o.module);
        let mut out = Vec::new();
        let Some(mk) = b.ptr(mo.kallsyms).filter(|&p| plausible(self.k, p, 8)) else {
            return out;
        };
        let end = mo.mk_symtab.max(mo.mk_num_symtab).max(mo.mk_strtab).max(mo.mk_typetab) + 8;
        let Ok(kb) = self.k.read_vec(mk, end as usize) else {
            an.push(Anomaly::Unreadable { what: "mod_kallsyms".into(), addr: mk, error: "unreadable".into() });
            return out;
        };
        let kb = Bytes(&kb);
        let (Some(symtab), Some(n), Some(strtab), Some(typetab)) =
            (kb.ptr(mo.mk_symtab), kb.u32(mo.mk_num_symtab), kb.ptr(mo.mk_strtab), kb.ptr(mo.mk_typetab))
        else {
            return out;
        };
        let n = n as usize;
        if n > self.limits.max_module_symbols {
            an.push(Anomaly::InvalidField {
                what: "mod_kallsyms".into(),
                addr: mk,
                field: "num_symtab".into(),
                value: n.to_string(),
            });
            return out;
        }
        let (Ok(syms), Ok(types)) = (self.k.read_vec(symtab, n * mo.sym_size as usize), self.k.read_vec(typetab, n))
        else {
            an.push(Anomaly::Unreadable { what: "module symtab".into(), addr: symtab, error: "unreadable".into() });
            return out;
        };
        let syms = Bytes(&syms);
        let names: Vec<u32> = (0..n).map(|i| syms.u32(i as u64 * mo.sym_size + mo.sym_name).unwrap_or(0)).collect();
        // One read of the string table, unless the offsets claim an implausibly
        // large one (then each name is read alone).
        let strtab_len = names.iter().max().map_or(0, |&m| m as usize + 512).min(MAX_STRTAB);
        // The string table is read once; a name that runs past it is read alone.
        let strings = self.k.read_vec(strtab, strtab_len).ok();
        let exports = self.exports(&b, an);
        for (i, &name_off) in names.iter().enumerate() {
            let (name, name_truncated) = match strings.as_deref().and_then(|s| s.get(name_off as usize..)) {
                Some(s) if s.contains(&0) => {
                    let end = s.iter().position(|&c| c == 0).unwrap_or(0);
                    (String::from_utf8_lossy(&s[..end]).into_owned(), false)
                }
                _ => member(strtab, u64::from(name_off))
                    .and_then(|at| self.k.read_cstr_prefix(at, KSYM_NAME_LEN))
                    .map_or((String::new(), false), |s| (String::from_utf8_lossy(&s.bytes).into_owned(), s.truncated)),
            };
            if name.is_empty() {
                continue;
            }
            let addr = syms.ptr(i as u64 * mo.sym_size + mo.sym_value).unwrap_or_default();
            let t = types[i] as char;
            let kind = if exports.get(&name) == Some(&addr) { t.to_ascii_uppercase() } else { t.to_ascii_lowercase() };
            out.push(ModuleSymbol { name, addr, kind, module: module.to_owned(), name_truncated });
        }
        out
    }

    /// Every module's symbols, in `/proc/kallsyms` order, and the anomalies met.
    pub(crate) fn module_symbols(&self) -> (Vec<ModuleSymbol>, Vec<Anomaly>) {
        let mut an = Vec::new();
        let mut out = Vec::new();
        let unformed = self.o.module.states.iter().find(|(_, n)| n == "MODULE_STATE_UNFORMED").map(|(v, _)| *v);
        for (addr, bytes) in self.module_nodes(&mut an) {
            if self.meter.exhausted(self.k) {
                break;
            }
            let b = Bytes(&bytes);
            if b.i32(self.o.module.state).map(i64::from) == unformed {
                continue;
            }
            // Unterminated, the module is left out here as from the module list.
            let Some(name) = self.module_name(addr, &b, &mut an) else { continue };
            out.extend(self.symbols_of(&name, &bytes, &mut an));
        }
        (out, an)
    }
}

/// Module symbols in `/proc/kallsyms` format (`%016x %c %s\t[%s]\n`).
pub fn format_module_symbols(syms: &[ModuleSymbol]) -> String {
    let mut out = String::with_capacity(syms.len() * 48);
    for s in syms {
        let _ = writeln!(out, "{:016x} {} {}\t[{}]", s.addr, s.kind, s.name, s.module);
    }
    out
}
