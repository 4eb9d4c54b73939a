//! A [`Profile`]: what vmscope knows about one kernel build — symbols and types —
//! from whichever source: guest memory (kallsyms + BTF), a vmlinux (`.BTF`) plus a
//! symbol table, a System.map plus types, or a Volatility 3 ISF file.

use std::sync::Arc;

use vmscope_mem::Gva;

use crate::symbols::SymbolTable;
use crate::types::btf::BtfTypes;
use crate::types::isf::{IsfOptions, IsfTypes, write_isf};
use crate::types::{self, EnumDef, FieldInfo, StructDef, TypeSource};
use crate::{Error, Result};

/// Symbols and types of one kernel build, answering sizes, offsets and enum values
/// by name.
///
/// ```
/// use std::sync::Arc;
/// use vmscope_linux::{Profile, SymbolTable, SymbolSource};
/// use vmscope_linux::types::isf::IsfTypes;
///
/// let isf = br#"{"metadata": {}, "base_types": {"int": {"size": 4, "signed": true, "kind": "int", "endian": "little"}},
///   "user_types": {"pair": {"kind": "struct", "size": 8, "fields": {
///       "a": {"offset": 0, "type": {"kind": "base", "name": "int"}},
///       "b": {"offset": 4, "type": {"kind": "base", "name": "int"}}}}},
///   "enums": {"color": {"size": 4, "base": "int", "constants": {"RED": 0, "BLUE": 2}}},
///   "symbols": {"init_task": {"address": 18446744071600000000}}}"#;
/// let p = Profile::from_isf(isf).unwrap();
/// assert_eq!(p.struct_size("pair").unwrap(), 8);
/// assert_eq!(p.offset_of("pair", "b").unwrap(), 4);
/// assert_eq!(p.enum_value("BLUE").unwrap(), 2);
/// assert!(p.symbol("init_task").is_some());
/// ```
#[derive(Debug, Clone)]
pub struct Profile {
    symbols: Arc<SymbolTable>,
    types: Arc<dyn TypeSource>,
    banner: Option<String>,
    build_id: Option<String>,
}

impl Profile {
    /// A profile from a symbol table and a type source.
    pub fn new(symbols: SymbolTable, types: Arc<dyn TypeSource>) -> Self {
        Profile { symbols: Arc::new(symbols), types, banner: None, build_id: None }
    }

    pub(crate) fn from_shared(symbols: Arc<SymbolTable>, types: Arc<dyn TypeSource>) -> Self {
        Profile { symbols, types, banner: None, build_id: None }
    }

    /// Symbols plus the types of a raw BTF blob.
    pub fn from_btf(btf: &[u8], symbols: SymbolTable) -> Result<Self> {
        Ok(Self::new(symbols, Arc::new(BtfTypes::parse(btf)?)))
    }

    /// Symbols plus the types of a vmlinux ELF file's `.BTF` section; the build ID
    /// comes from its notes.
    pub fn from_vmlinux(elf: &[u8], symbols: SymbolTable) -> Result<Self> {
        let elf = crate::elf::Elf::parse(elf)?;
        let btf = elf.section(".BTF")?.ok_or_else(|| Error::Btf("the ELF file has no .BTF section".into()))?;
        let mut p = Self::from_btf(btf.data, symbols)?;
        p.build_id = elf.build_id()?.map(|b| hex(&b));
        Ok(p)
    }

    /// [`from_vmlinux`](Self::from_vmlinux) reading the file at `path`.
    pub fn from_vmlinux_file(path: impl AsRef<std::path::Path>, symbols: SymbolTable) -> Result<Self> {
        let bytes = std::fs::read(path.as_ref()).map_err(|e| Error::io(path.as_ref(), e))?;
        Self::from_vmlinux(&bytes, symbols)
    }

    /// [`from_isf`](Self::from_isf) reading the file at `path`.
    pub fn from_isf_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let bytes = std::fs::read(path.as_ref()).map_err(|e| Error::io(path.as_ref(), e))?;
        Self::from_isf(&bytes)
    }

    /// A System.map's symbols plus `types` (a System.map has none).
    pub fn from_system_map(text: &str, types: Arc<dyn TypeSource>) -> Result<Self> {
        Ok(Self::new(SymbolTable::from_system_map(text)?, types))
    }

    /// A Volatility 3 ISF file: its types, symbols and banner.
    pub fn from_isf(json: &[u8]) -> Result<Self> {
        let isf = IsfTypes::parse(json)?;
        let symbols = isf.symbols();
        let banner = isf.banner();
        let mut p = Self::new(symbols, Arc::new(isf));
        p.banner = banner;
        Ok(p)
    }

    /// This profile with `banner` and `build_id` recorded (they identify the build).
    pub fn with_identity(mut self, banner: Option<String>, build_id: Option<String>) -> Self {
        self.banner = banner.or(self.banner);
        self.build_id = build_id.or(self.build_id);
        self
    }

    /// The same profile with every non-absolute symbol moved by `delta` (link-time
    /// to running-kernel addresses: the KASLR virtual offset).
    pub fn slid(&self, delta: i64) -> Profile {
        Profile { symbols: Arc::new(self.symbols.slid(delta)), ..self.clone() }
    }

    /// The symbols.
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// The types.
    pub fn types(&self) -> &dyn TypeSource {
        &*self.types
    }

    pub(crate) fn types_arc(&self) -> Arc<dyn TypeSource> {
        self.types.clone()
    }

    /// The banner of the build, when known.
    pub fn banner(&self) -> Option<&str> {
        self.banner.as_deref()
    }

    /// The GNU build ID (hex), when known.
    pub fn build_id(&self) -> Option<&str> {
        self.build_id.as_deref()
    }

    /// The address of symbol `name`.
    pub fn symbol(&self, name: &str) -> Option<Gva> {
        self.symbols.addr(name)
    }

    /// The struct or union `name`.
    pub fn struct_def(&self, name: &str) -> Option<StructDef> {
        self.types.struct_def(name)
    }

    /// The size of struct or union `name` in bytes.
    pub fn struct_size(&self, name: &str) -> Result<u64> {
        self.types.struct_def(name).map(|s| s.size).ok_or_else(|| Error::TypeMissing(name.into()))
    }

    /// The member `path` of struct `ty` (see [`types::field`]: dotted, indexed,
    /// through anonymous members).
    pub fn field(&self, ty: &str, path: &str) -> Result<FieldInfo> {
        types::field(&*self.types, ty, path)
    }

    /// The byte offset of member `path` in struct `ty`.
    pub fn offset_of(&self, ty: &str, path: &str) -> Result<u64> {
        self.field(ty, path).map(|f| f.offset)
    }

    /// The value of enumerator `name`.
    pub fn enum_value(&self, name: &str) -> Result<i64> {
        self.types.enumerator(name).ok_or_else(|| Error::EnumMissing(name.into()))
    }

    /// The enum `name`.
    pub fn enum_def(&self, name: &str) -> Option<EnumDef> {
        self.types.enum_def(name)
    }

    /// This profile as Volatility 3 ISF JSON. Symbols in the kernel image are
    /// written at link-time addresses: `slide` (the running kernel's KASLR virtual
    /// offset, 0 for a link-time table) is taken off them.
    pub fn to_isf(&self, roots: Option<&[&str]>, slide: i64) -> Result<String> {
        let opts = IsfOptions {
            roots: roots.map(|r| r.iter().map(|s| s.to_string()).collect()),
            slide,
            banner: self.banner.clone(),
            producer: None,
        };
        write_isf(&*self.types, Some(&self.symbols), &opts)
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
