//! Volatility 3 Intermediate Symbol Format (ISF, format 6.x as `dwarf2json`
//! writes it): read as a [`TypeSource`] plus symbols, and written from any
//! [`TypeSource`] plus symbols.
//!
//! Conventions followed: anonymous members are named `unnamed_field_<hex offset>`
//! with `"anonymous": true`; a bitfield's type is `{"kind": "bitfield",
//! "bit_position", "bit_length", "type"}` with `offset` at its storage unit;
//! typedefs are resolved away; `linux_banner` carries its bytes as `constant_data`
//! (base64), which is how Volatility matches a profile to a memory image; the
//! globals Volatility's plugins read by symbol carry their declared types
//! ([`globals`](super::globals)).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use vmscope_mem::Gva;

use super::globals::GLOBALS;
use super::{EnumDef, Member, StructDef, TypeRef, TypeSource, size_of};
use crate::symbols::{SymbolSource, SymbolTable};
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IsfFile {
    metadata: serde_json::Value,
    base_types: BTreeMap<String, IsfBase>,
    user_types: BTreeMap<String, IsfStruct>,
    enums: BTreeMap<String, IsfEnum>,
    symbols: BTreeMap<String, IsfSymbol>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IsfBase {
    size: u32,
    signed: bool,
    kind: String,
    endian: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IsfStruct {
    size: u64,
    fields: BTreeMap<String, IsfField>,
    kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IsfField {
    #[serde(rename = "type")]
    ty: IsfType,
    offset: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    anonymous: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IsfEnum {
    size: u32,
    base: String,
    constants: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IsfSymbol {
    address: u64,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    ty: Option<IsfType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    constant_data: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum IsfType {
    Base {
        name: String,
    },
    Pointer {
        subtype: Box<IsfType>,
    },
    Array {
        count: u32,
        subtype: Box<IsfType>,
    },
    Struct {
        name: String,
    },
    Union {
        name: String,
    },
    Class {
        name: String,
    },
    Enum {
        name: String,
    },
    Function,
    Bitfield {
        bit_position: u32,
        bit_length: u32,
        #[serde(rename = "type")]
        ty: Box<IsfType>,
    },
}

/// Types (and symbols) from an ISF file.
#[derive(Debug, Clone)]
pub struct IsfTypes {
    file: IsfFile,
    /// Enumerator name to (value, enum name).
    enumerators: HashMap<String, (i64, String)>,
}

fn base_kind(name: &str) -> &'static str {
    if name.contains("char") {
        "char"
    } else if name.contains("Bool") || name == "bool" {
        "bool"
    } else if name.contains("float") || name.contains("double") {
        "float"
    } else {
        "int"
    }
}

impl IsfTypes {
    /// Parses ISF JSON.
    pub fn parse(json: &[u8]) -> Result<Self> {
        let file: IsfFile = serde_json::from_slice(json).map_err(|e| Error::Isf(e.to_string()))?;
        let mut enumerators = HashMap::new();
        for (name, e) in &file.enums {
            for (n, v) in &e.constants {
                enumerators.entry(n.clone()).or_insert((*v, name.clone()));
            }
        }
        Ok(IsfTypes { file, enumerators })
    }

    /// The symbols, sorted by address (ISF addresses are link-time ones).
    pub fn symbols(&self) -> SymbolTable {
        let mut v: Vec<(&str, u64)> = self.file.symbols.iter().map(|(n, s)| (n.as_str(), s.address)).collect();
        v.sort_by_key(|&(n, a)| (a, n));
        SymbolTable::from_iter(SymbolSource::Isf, v.into_iter().map(|(n, a)| (n, Gva::new(a), '?')))
    }

    /// The bytes of `linux_banner`, if the file carries them.
    pub fn banner(&self) -> Option<String> {
        let data = self.file.symbols.get("linux_banner")?.constant_data.as_deref()?;
        let bytes = base64_decode(data)?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8(bytes[..end].to_vec()).ok()
    }

    fn type_ref(&self, t: &IsfType, depth: u32) -> TypeRef {
        if depth > 32 {
            return TypeRef::Void;
        }
        match t {
            IsfType::Base { name } if name == "void" => TypeRef::Void,
            IsfType::Base { name } => {
                let b = self.file.base_types.get(name);
                TypeRef::Base { name: name.clone(), size: b.map_or(0, |b| b.size), signed: b.is_some_and(|b| b.signed) }
            }
            IsfType::Pointer { subtype } => TypeRef::Pointer { to: Box::new(self.type_ref(subtype, depth + 1)) },
            IsfType::Array { count, subtype } => {
                TypeRef::Array { elem: Box::new(self.type_ref(subtype, depth + 1)), count: *count }
            }
            IsfType::Struct { name } | IsfType::Class { name } => TypeRef::Struct { name: name.clone(), union: false },
            IsfType::Union { name } => TypeRef::Struct { name: name.clone(), union: true },
            IsfType::Enum { name } => {
                TypeRef::Enum { name: name.clone(), size: self.file.enums.get(name).map_or(4, |e| e.size) }
            }
            IsfType::Function => TypeRef::Function,
            IsfType::Bitfield { ty, .. } => self.type_ref(ty, depth + 1),
        }
    }
}

impl TypeSource for IsfTypes {
    fn struct_def(&self, name: &str) -> Option<StructDef> {
        let s = self.file.user_types.get(name)?;
        let mut members: Vec<Member> = s
            .fields
            .iter()
            .map(|(n, f)| {
                let (bit_offset, bit_size) = match &f.ty {
                    IsfType::Bitfield { bit_position, bit_length, .. } => {
                        (f.offset * 8 + u64::from(*bit_position), Some(*bit_length))
                    }
                    _ => (f.offset * 8, None),
                };
                let anonymous = f.anonymous || n.starts_with("unnamed_field");
                Member {
                    name: if anonymous { String::new() } else { n.clone() },
                    bit_offset,
                    bit_size,
                    ty: self.type_ref(&f.ty, 0),
                }
            })
            .collect();
        members.sort_by_key(|m| m.bit_offset);
        Some(StructDef { name: name.into(), union: s.kind == "union", size: s.size, members })
    }

    fn enum_def(&self, name: &str) -> Option<EnumDef> {
        let e = self.file.enums.get(name)?;
        let mut values: Vec<(String, i64)> = e.constants.iter().map(|(n, v)| (n.clone(), *v)).collect();
        values.sort_by_key(|&(_, v)| v);
        Some(EnumDef { name: name.into(), size: e.size, values })
    }

    fn enumerator(&self, name: &str) -> Option<i64> {
        self.enumerators.get(name).map(|e| e.0)
    }

    fn enum_containing(&self, name: &str) -> Option<String> {
        self.enumerators.get(name).map(|e| e.1.clone())
    }

    fn struct_names(&self) -> Vec<String> {
        self.file.user_types.keys().cloned().collect()
    }

    fn enum_names(&self) -> Vec<String> {
        self.file.enums.keys().cloned().collect()
    }
}

/// What [`write_isf`] puts in the file.
#[derive(Debug, Clone, Default)]
pub struct IsfOptions {
    /// Structs, unions, enums (or enumerators, for their enum) to write with what
    /// they embed (members by value, anonymous types, enums); `None` writes every
    /// type the source has.
    pub roots: Option<Vec<String>>,
    /// Subtracted from every symbol address in the kernel image range, to write
    /// link-time addresses (the KASLR virtual offset of the running kernel).
    pub slide: i64,
    /// The bytes of `linux_banner`, written as its `constant_data`.
    pub banner: Option<String>,
    /// Producer name and version for the metadata.
    pub producer: Option<(String, String)>,
}

/// Collects the types a member type needs written beside it.
fn deps(ty: &TypeRef, out: &mut Vec<(bool, String)>) {
    match ty {
        TypeRef::Array { elem, .. } => deps(elem, out),
        TypeRef::Struct { name, .. } => out.push((true, name.clone())),
        TypeRef::Enum { name, .. } => out.push((false, name.clone())),
        TypeRef::Pointer { to } => {
            // Pointed-at structs stay references; pointed-at enums are cheap.
            if let TypeRef::Enum { name, .. } = &**to {
                out.push((false, name.clone()));
            }
        }
        _ => {}
    }
}

fn isf_type(ty: &TypeRef, bases: &mut BTreeMap<String, IsfBase>) -> IsfType {
    match ty {
        TypeRef::Void => IsfType::Base { name: "void".into() },
        TypeRef::Base { name, size, signed } => {
            bases.entry(name.clone()).or_insert_with(|| IsfBase {
                size: *size,
                signed: *signed,
                kind: base_kind(name).into(),
                endian: "little".into(),
            });
            IsfType::Base { name: name.clone() }
        }
        TypeRef::Pointer { to } => IsfType::Pointer { subtype: Box::new(isf_type(to, bases)) },
        TypeRef::Array { elem, count } => IsfType::Array { count: *count, subtype: Box::new(isf_type(elem, bases)) },
        TypeRef::Struct { name, union: false } => IsfType::Struct { name: name.clone() },
        TypeRef::Struct { name, union: true } => IsfType::Union { name: name.clone() },
        TypeRef::Enum { name, .. } => IsfType::Enum { name: name.clone() },
        TypeRef::Function => IsfType::Function,
    }
}

fn enum_base(size: u32, signed: bool, bases: &mut BTreeMap<String, IsfBase>) -> String {
    let name = match (size, signed) {
        (1, false) => "unsigned char",
        (1, true) => "signed char",
        (2, false) => "short unsigned int",
        (2, true) => "short int",
        (8, false) => "long unsigned int",
        (8, true) => "long int",
        (_, false) => "unsigned int",
        (_, true) => "int",
    };
    bases.entry(name.into()).or_insert_with(|| IsfBase {
        size,
        signed,
        kind: base_kind(name).into(),
        endian: "little".into(),
    });
    name.into()
}

/// Writes `types` and `symbols` as ISF JSON.
pub fn write_isf(types: &dyn TypeSource, symbols: Option<&SymbolTable>, opts: &IsfOptions) -> Result<String> {
    let mut bases = BTreeMap::new();
    bases.insert("void".into(), IsfBase { size: 0, signed: false, kind: "void".into(), endian: "little".into() });
    bases.insert("pointer".into(), IsfBase { size: 8, signed: false, kind: "int".into(), endian: "little".into() });
    let mut user_types = BTreeMap::new();
    let mut enums = BTreeMap::new();

    let mut queue: VecDeque<(bool, String)> = match &opts.roots {
        Some(roots) => roots
            .iter()
            .filter_map(|r| {
                if types.struct_def(r).is_some() {
                    Some((true, r.clone()))
                } else if types.enum_def(r).is_some() {
                    Some((false, r.clone()))
                } else {
                    // An enumerator: write the enum that declares it.
                    types.enum_containing(r).map(|e| (false, e))
                }
            })
            .collect(),
        None => {
            let mut q: VecDeque<_> = types.struct_names().into_iter().map(|n| (true, n)).collect();
            q.extend(types.enum_names().into_iter().map(|n| (false, n)));
            q
        }
    };
    // The globals tools read by symbol get their declared types, and those types
    // are written whatever the roots.
    let globals: Vec<(&str, TypeRef)> = match symbols {
        Some(table) => GLOBALS
            .iter()
            .filter(|(n, _)| table.addr(n).is_some())
            .filter_map(|(n, d)| Some((*n, d.resolve(types)?)))
            .collect(),
        None => Vec::new(),
    };
    for (_, ty) in &globals {
        let mut d = Vec::new();
        deps(ty, &mut d);
        if let TypeRef::Pointer { to } = ty {
            deps(to, &mut d);
        }
        queue.extend(d);
    }
    let mut seen = BTreeSet::new();
    while let Some((is_struct, name)) = queue.pop_front() {
        if !seen.insert((is_struct, name.clone())) {
            continue;
        }
        if is_struct {
            let Some(def) = types.struct_def(&name) else {
                continue;
            };
            let mut fields = BTreeMap::new();
            for m in &def.members {
                let mut d = Vec::new();
                deps(&m.ty, &mut d);
                queue.extend(d);
                let inner = isf_type(&m.ty, &mut bases);
                let (ty, offset) = match m.bit_size {
                    Some(len) => {
                        let unit = size_of(types, &m.ty).unwrap_or(1).max(1) * 8;
                        let start = (m.bit_offset / unit) * unit;
                        let ty = IsfType::Bitfield {
                            bit_position: (m.bit_offset - start) as u32,
                            bit_length: len,
                            ty: Box::new(inner),
                        };
                        (ty, start / 8)
                    }
                    None => (inner, m.bit_offset / 8),
                };
                let anonymous = m.name.is_empty();
                let mut key = if anonymous { format!("unnamed_field_{offset:x}") } else { m.name.clone() };
                let mut n = 1;
                while fields.contains_key(&key) {
                    key = format!("unnamed_field_{offset:x}_{n}");
                    n += 1;
                }
                fields.insert(key, IsfField { ty, offset, anonymous });
            }
            let kind = if def.union { "union" } else { "struct" };
            user_types.insert(name, IsfStruct { size: def.size, fields, kind: kind.into() });
        } else if let Some(e) = types.enum_def(&name) {
            let signed = e.values.iter().any(|&(_, v)| v < 0);
            let base = enum_base(e.size, signed, &mut bases);
            enums.insert(name, IsfEnum { size: e.size, base, constants: e.values.into_iter().collect() });
        }
    }

    let mut syms = BTreeMap::new();
    if let Some(table) = symbols {
        for s in table.iter() {
            // Modulo 2^64, as the kernel relocates itself (and a slide of i64::MIN
            // has no negation).
            let address = if s.addr >= crate::discovery::START_KERNEL_MAP && !s.is_absolute() {
                s.addr.raw().wrapping_add_signed(opts.slide.wrapping_neg())
            } else {
                s.addr.raw()
            };
            syms.entry(s.name.to_owned()).or_insert(IsfSymbol { address, ty: None, constant_data: None });
        }
    }
    for (name, ty) in &globals {
        if let Some(sym) = syms.get_mut(*name) {
            sym.ty = Some(isf_type(ty, &mut bases));
        }
    }
    if let (Some(banner), Some(sym)) = (&opts.banner, syms.get_mut("linux_banner")) {
        let mut bytes = banner.as_bytes().to_vec();
        bytes.push(0);
        sym.constant_data = Some(base64_encode(&bytes));
    }
    let (pname, pver) = opts.producer.clone().unwrap_or_else(|| ("vmscope".into(), env!("CARGO_PKG_VERSION").into()));
    let file = IsfFile {
        metadata: serde_json::json!({
            "format": "6.2.0",
            "producer": { "name": pname, "version": pver },
            "linux": { "symbols": [{ "kind": "kallsyms", "name": "guest memory" }],
                       "types": [{ "kind": "btf", "name": "guest memory" }] }
        }),
        base_types: bases,
        user_types,
        enums,
        symbols: syms,
    };
    serde_json::to_string(&file).map_err(|e| Error::Isf(e.to_string()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()) {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_get_their_declared_types() {
        let src = br#"{"metadata": {}, "base_types": {}, "enums": {}, "symbols": {},
            "user_types": {
              "task_struct": {"size": 16, "kind": "struct", "fields": {"tasks": {"type": {"kind": "struct", "name": "list_head"}, "offset": 0}}},
              "list_head": {"size": 16, "kind": "struct", "fields": {"next": {"type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "list_head"}}, "offset": 0}}}}}"#;
        let types = IsfTypes::parse(src).unwrap();
        let k = |a: u64| Gva::new(0xffff_ffff_8100_0000 + a);
        let syms = SymbolTable::from_iter(
            SymbolSource::Kallsyms,
            [("init_task", k(0x100), 'D'), ("modules", k(0x200), 'd'), ("init_mm", k(0x300), 'D')],
        );
        let opts = IsfOptions { roots: Some(vec!["list_head".into()]), slide: 0x1000, ..IsfOptions::default() };
        let out: IsfFile = serde_json::from_str(&write_isf(&types, Some(&syms), &opts).unwrap()).unwrap();
        let ty = |n: &str| out.symbols[n].ty.clone();
        assert!(matches!(ty("init_task"), Some(IsfType::Struct { name }) if name == "task_struct"));
        assert!(matches!(ty("modules"), Some(IsfType::Struct { name }) if name == "list_head"));
        assert!(ty("init_mm").is_none(), "mm_struct is not in the types: left untyped");
        assert!(out.user_types.contains_key("task_struct"), "a global's type is written whatever the roots");
        assert_eq!(out.symbols["init_task"].address, 0xffff_ffff_8100_0100 - 0x1000, "the slide is taken off");
    }

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"Linux version 6.1\n\0"] {
            assert_eq!(base64_decode(&base64_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
    }
}
