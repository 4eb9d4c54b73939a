//! Kernel types, whatever their source: BTF (from guest memory or a vmlinux) or a
//! Volatility 3 ISF file. One small model ([`StructDef`], [`TypeRef`], [`EnumDef`])
//! and one trait ([`TypeSource`]); field lookup by name — through nested and
//! anonymous members, into arrays, down to bitfields — is written once on top.

pub mod btf;
pub mod globals;
pub mod isf;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A reference to a type, as a member or pointer target names it. Typedefs and
/// qualifiers are resolved away; structs, unions and enums are named (anonymous
/// ones by a name their source makes up, e.g. `unnamed_btf_123`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TypeRef {
    /// `void`.
    Void,
    /// An integer, character, boolean or floating-point type.
    Base {
        /// Its C name (`unsigned int`, `char`, `_Bool`, ...).
        name: String,
        /// Bytes.
        size: u32,
        /// Signed integer.
        signed: bool,
    },
    /// A pointer (8 bytes).
    Pointer {
        /// What it points at.
        to: Box<TypeRef>,
    },
    /// A fixed-size array.
    Array {
        /// Element type.
        elem: Box<TypeRef>,
        /// Number of elements (0 for flexible arrays).
        count: u32,
    },
    /// A struct or union, by name.
    Struct {
        /// Its name.
        name: String,
        /// Whether it is a union.
        union: bool,
    },
    /// An enum, by name.
    Enum {
        /// Its name.
        name: String,
        /// Bytes.
        size: u32,
    },
    /// A function (only ever pointed at).
    Function,
}

impl fmt::Display for TypeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeRef::Void => f.write_str("void"),
            TypeRef::Base { name, .. } => f.write_str(name),
            TypeRef::Pointer { to } => write!(f, "{to} *"),
            TypeRef::Array { elem, count } => write!(f, "{elem}[{count}]"),
            TypeRef::Struct { name, union } => {
                write!(f, "{} {name}", if *union { "union" } else { "struct" })
            }
            TypeRef::Enum { name, .. } => write!(f, "enum {name}"),
            TypeRef::Function => f.write_str("function"),
        }
    }
}

/// A member of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name; empty for an anonymous struct or union member.
    pub name: String,
    /// Offset from the start of the enclosing type, in bits.
    pub bit_offset: u64,
    /// Width in bits, for bitfields.
    pub bit_size: Option<u32>,
    /// Its type.
    pub ty: TypeRef,
}

/// A struct or union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructDef {
    /// Its name (made up for anonymous ones).
    pub name: String,
    /// Whether it is a union.
    pub union: bool,
    /// Size in bytes.
    pub size: u64,
    /// Members in declaration order.
    pub members: Vec<Member>,
}

/// An enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumDef {
    /// Its name (made up for anonymous ones).
    pub name: String,
    /// Size in bytes.
    pub size: u32,
    /// Enumerators in declaration order.
    pub values: Vec<(String, i64)>,
}

/// A place that knows the kernel's types.
pub trait TypeSource: fmt::Debug + Send + Sync {
    /// The struct or union called `name`.
    fn struct_def(&self, name: &str) -> Option<StructDef>;
    /// The enum called `name`.
    fn enum_def(&self, name: &str) -> Option<EnumDef>;
    /// The value of the enumerator `name`, whichever enum declares it.
    fn enumerator(&self, name: &str) -> Option<i64>;
    /// The name of the enum that declares enumerator `name`.
    fn enum_containing(&self, name: &str) -> Option<String> {
        let _ = name;
        None
    }
    /// The names of every complete struct and union (anonymous ones included).
    fn struct_names(&self) -> Vec<String>;
    /// The names of every enum (anonymous ones included).
    fn enum_names(&self) -> Vec<String>;
}

/// A field found by name: where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    /// Byte offset from the start of the outer type (of the storage unit holding
    /// it, for a bitfield).
    pub offset: u64,
    /// Bit offset from the start of the outer type.
    pub bit_offset: u64,
    /// Width in bits for a bitfield.
    pub bit_size: Option<u32>,
    /// Its type.
    pub ty: TypeRef,
}

/// Size in bytes of `ty` (`None` for void, functions, and unknown structs).
pub fn size_of(src: &dyn TypeSource, ty: &TypeRef) -> Option<u64> {
    size_of_depth(src, ty, 0)
}

fn size_of_depth(src: &dyn TypeSource, ty: &TypeRef, depth: u32) -> Option<u64> {
    if depth > 32 {
        return None;
    }
    match ty {
        TypeRef::Void | TypeRef::Function => None,
        TypeRef::Base { size, .. } | TypeRef::Enum { size, .. } => Some(u64::from(*size)),
        TypeRef::Pointer { .. } => Some(8),
        TypeRef::Array { elem, count } => size_of_depth(src, elem, depth + 1)?.checked_mul(u64::from(*count)),
        TypeRef::Struct { name, .. } => src.struct_def(name).map(|s| s.size),
    }
}

/// Finds member `name` of `def`, looking through anonymous struct and union
/// members; returns its bit offset from the start of `def`.
fn find_member(src: &dyn TypeSource, def: &StructDef, name: &str, depth: u32) -> Option<(u64, Member)> {
    if depth > 16 {
        return None;
    }
    if let Some(m) = def.members.iter().find(|m| m.name == name) {
        return Some((m.bit_offset, m.clone()));
    }
    for m in def.members.iter().filter(|m| m.name.is_empty()) {
        if let TypeRef::Struct { name: inner, .. } = &m.ty
            && let Some(inner) = src.struct_def(inner)
            && let Some((off, found)) = find_member(src, &inner, name, depth + 1)
        {
            return Some((m.bit_offset + off, found));
        }
    }
    None
}

/// Resolves a member path in struct `ty`: names joined by `.`, each optionally
/// indexed (`rss_stat.count[1]`, `mem[0].size`). Anonymous members are looked
/// through at every step.
pub fn field(src: &dyn TypeSource, ty: &str, path: &str) -> Result<FieldInfo> {
    let missing = || Error::field(ty, path);
    let mut def = src.struct_def(ty).ok_or_else(|| Error::TypeMissing(ty.into()))?;
    let mut bits = 0u64;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => {
                let idx: u64 = rest.strip_suffix(']').and_then(|i| i.parse().ok()).ok_or_else(missing)?;
                (n, Some(idx))
            }
            None => (part, None),
        };
        let (off, m) = find_member(src, &def, name, 0).ok_or_else(missing)?;
        bits += off;
        let mut cur = m.ty.clone();
        if let Some(i) = index {
            let TypeRef::Array { elem, count } = cur else {
                return Err(missing());
            };
            if count != 0 && i >= u64::from(count) {
                return Err(missing());
            }
            let esize = size_of(src, &elem).ok_or_else(missing)?;
            bits += i * esize * 8;
            cur = *elem;
        }
        if parts.peek().is_none() {
            let bit_size = if index.is_none() { m.bit_size } else { None };
            let offset = match bit_size {
                // The storage unit: the member type's size, aligned.
                Some(_) => {
                    let unit = size_of(src, &cur).unwrap_or(1).max(1) * 8;
                    (bits / unit) * unit / 8
                }
                None => bits / 8,
            };
            return Ok(FieldInfo { offset, bit_offset: bits, bit_size, ty: cur });
        }
        let TypeRef::Struct { name: next, .. } = &cur else {
            return Err(missing());
        };
        def = src.struct_def(next).ok_or_else(missing)?;
    }
    Err(missing())
}
