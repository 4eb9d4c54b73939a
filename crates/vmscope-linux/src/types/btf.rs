//! BTF, parsed with the `btf-rs` crate, as a [`TypeSource`].

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use btf_rs::{Btf, BtfType, Type};

use super::{EnumDef, Member, StructDef, TypeRef, TypeSource};
use crate::{Error, Result};

/// The prefix of the names made up for anonymous structs, unions and enums; the
/// BTF type id follows.
pub const ANON_PREFIX: &str = "unnamed_btf_";

/// Types from a BTF blob (the kernel's `.BTF`: between `__start_BTF` and
/// `__stop_BTF` in memory, or the section of a vmlinux).
pub struct BtfTypes {
    btf: Btf,
    len: usize,
    /// Enumerator name to (value, enum name), built on first use.
    enumerators: OnceLock<HashMap<String, (i64, String)>>,
}

impl fmt::Debug for BtfTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BtfTypes").field("bytes", &self.len).field("types", &self.btf.base().type_id_range().1).finish()
    }
}

impl BtfTypes {
    /// Parses a BTF blob. Malformed input is an error, never a panic (a panic
    /// inside the parser is caught and reported as an error too).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 24 || bytes[..2] != [0x9f, 0xeb] {
            return Err(Error::Btf("no BTF magic".into()));
        }
        let parsed = std::panic::catch_unwind(|| Btf::from_bytes(bytes))
            .map_err(|_| Error::Btf("the BTF parser panicked on this blob".into()))?;
        let btf = parsed.map_err(|e| Error::Btf(e.to_string()))?;
        Ok(BtfTypes { btf, len: bytes.len(), enumerators: OnceLock::new() })
    }

    /// The `btf-rs` object, for queries this crate does not wrap.
    pub fn btf(&self) -> &Btf {
        &self.btf
    }

    fn name_of(&self, t: &dyn BtfType, id: u32) -> String {
        match self.btf.resolve_name(t) {
            Ok(n) if !n.is_empty() => n,
            _ => format!("{ANON_PREFIX}{id}"),
        }
    }

    /// The type `id` names, with typedefs and qualifiers resolved.
    fn type_ref(&self, id: u32) -> TypeRef {
        self.type_ref_depth(id, 0)
    }

    /// Bounded on any BTF: at most 32 links of typedefs, qualifiers, pointers and
    /// arrays are followed in all.
    fn type_ref_depth(&self, mut id: u32, mut depth: u32) -> TypeRef {
        while depth < 32 {
            depth += 1;
            let Ok(t) = self.btf.resolve_type_by_id(id) else {
                return TypeRef::Void;
            };
            match &t {
                Type::Void => return TypeRef::Void,
                Type::Int(i) => {
                    let name = self.btf.resolve_name(i).unwrap_or_default();
                    return TypeRef::Base { name, size: i.size() as u32, signed: i.is_signed() };
                }
                Type::Float(f) => {
                    let name = self.btf.resolve_name(f).unwrap_or_default();
                    return TypeRef::Base { name, size: f.size() as u32, signed: true };
                }
                Type::Ptr(p) => {
                    let to = p.get_type_id().map_or(TypeRef::Void, |to| self.type_ref_depth(to, depth));
                    return TypeRef::Pointer { to: Box::new(to) };
                }
                Type::Array(a) => {
                    let elem = a.get_type_id().map_or(TypeRef::Void, |e| self.type_ref_depth(e, depth));
                    return TypeRef::Array { elem: Box::new(elem), count: a.len() as u32 };
                }
                Type::Struct(s) => {
                    return TypeRef::Struct { name: self.name_of(s, id), union: false };
                }
                Type::Union(u) => {
                    return TypeRef::Struct { name: self.name_of(u, id), union: true };
                }
                Type::Fwd(f) => {
                    return TypeRef::Struct { name: self.name_of(f, id), union: f.is_union() };
                }
                Type::Enum(e) => {
                    return TypeRef::Enum { name: self.name_of(e, id), size: e.size() as u32 };
                }
                Type::Enum64(e) => {
                    return TypeRef::Enum { name: self.name_of(e, id), size: e.size() as u32 };
                }
                Type::FuncProto(_) | Type::Func(_) => return TypeRef::Function,
                other => match other.as_btf_type().and_then(|b| b.get_type_id()) {
                    Some(next) => id = next,
                    None => return TypeRef::Void,
                },
            }
        }
        TypeRef::Void
    }

    fn struct_by_id(&self, id: u32, t: &Type) -> Option<StructDef> {
        let (s, union) = match t {
            Type::Struct(s) => (s, false),
            Type::Union(u) => (u, true),
            _ => return None,
        };
        let members = s
            .members
            .iter()
            .map(|m| Member {
                name: self.btf.resolve_name(m).unwrap_or_default(),
                bit_offset: u64::from(m.bit_offset()),
                bit_size: m.bitfield_size().filter(|&b| b != 0),
                ty: m.get_type_id().map_or(TypeRef::Void, |t| self.type_ref(t)),
            })
            .collect();
        Some(StructDef { name: self.name_of(s, id), union, size: s.size() as u64, members })
    }

    fn enum_by_id(&self, id: u32, t: &Type) -> Option<EnumDef> {
        let values = match t {
            Type::Enum(e) => e
                .members
                .iter()
                .map(|m| {
                    let v = if e.is_signed() { i64::from(m.val() as i32) } else { i64::from(m.val()) };
                    (self.btf.resolve_name(m).unwrap_or_default(), v)
                })
                .collect(),
            Type::Enum64(e) => {
                e.members.iter().map(|m| (self.btf.resolve_name(m).unwrap_or_default(), m.val() as i64)).collect()
            }
            _ => return None,
        };
        let (size, name) = match t {
            Type::Enum(e) => (e.size() as u32, self.name_of(e, id)),
            Type::Enum64(e) => (e.size() as u32, self.name_of(e, id)),
            _ => return None,
        };
        Some(EnumDef { name, size, values })
    }

    /// The ids called `name`, or the id a made-up anonymous name carries.
    fn ids(&self, name: &str) -> Vec<u32> {
        if let Some(id) = name.strip_prefix(ANON_PREFIX).and_then(|i| i.parse().ok()) {
            return vec![id];
        }
        self.btf.resolve_ids_by_name(name).unwrap_or_default()
    }

    fn enumerators(&self) -> &HashMap<String, (i64, String)> {
        self.enumerators.get_or_init(|| {
            let mut map = HashMap::new();
            for id in self.all_ids() {
                let Ok(t) = self.btf.resolve_type_by_id(id) else {
                    continue;
                };
                if let Some(e) = self.enum_by_id(id, &t) {
                    for (n, v) in e.values {
                        map.entry(n).or_insert((v, e.name.clone()));
                    }
                }
            }
            map
        })
    }

    fn all_ids(&self) -> impl Iterator<Item = u32> + '_ {
        let (_, last) = self.btf.base().type_id_range();
        1..=last
    }
}

impl TypeSource for BtfTypes {
    fn struct_def(&self, name: &str) -> Option<StructDef> {
        self.ids(name).into_iter().find_map(|id| self.struct_by_id(id, &self.btf.resolve_type_by_id(id).ok()?))
    }

    fn enum_def(&self, name: &str) -> Option<EnumDef> {
        self.ids(name).into_iter().find_map(|id| self.enum_by_id(id, &self.btf.resolve_type_by_id(id).ok()?))
    }

    fn enumerator(&self, name: &str) -> Option<i64> {
        self.enumerators().get(name).map(|e| e.0)
    }

    fn enum_containing(&self, name: &str) -> Option<String> {
        self.enumerators().get(name).map(|e| e.1.clone())
    }

    fn struct_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for id in self.all_ids() {
            match self.btf.resolve_type_by_id(id) {
                Ok(Type::Struct(s)) | Ok(Type::Union(s)) => out.push(self.name_of(&s, id)),
                _ => {}
            }
        }
        out
    }

    fn enum_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for id in self.all_ids() {
            match self.btf.resolve_type_by_id(id) {
                Ok(Type::Enum(e)) => out.push(self.name_of(&e, id)),
                Ok(Type::Enum64(e)) => out.push(self.name_of(&e, id)),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::types::field;

    /// A small BTF blob, encoded by hand: `int`; `struct pair { int a:3; union {
    /// int b; }; }` (an anonymous member at byte 4); `enum color { RED, BLUE = 2 }`;
    /// `typedef struct pair pair_t`; `pair_t *`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0pair\0a\0b\0color\0RED\0BLUE\0pair_t\0";
        let off = |s: &str| {
            let pat = [s.as_bytes(), b"\0"].concat();
            strings.windows(pat.len()).position(|w| w == pat.as_slice()).unwrap() as u32
        };
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32, kflag: u32| (kflag << 31) | (kind << 24) | vlen;
        t.extend([off("int"), info(1, 0, 0), 4, (1 << 24) | 32]); // 1: int
        t.extend([off("pair"), info(4, 2, 1), 8, off("a"), 1, (3 << 24), 0, 3, 32]); // 2: struct pair
        t.extend([0, info(5, 1, 0), 4, off("b"), 1, 0]); // 3: anonymous union
        t.extend([off("color"), info(6, 2, 0), 4, off("RED"), 0, off("BLUE"), 2]); // 4: enum color
        t.extend([off("pair_t"), info(8, 0, 0), 2]); // 5: typedef
        t.extend([0, info(2, 0, 0), 5]); // 6: pointer to pair_t
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = vec![0x9f, 0xeb, 1, 0];
        for v in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn anonymous_members_bitfields_enums() {
        let t = BtfTypes::parse(&blob()).unwrap();
        let a = field(&t, "pair", "a").unwrap();
        assert_eq!((a.offset, a.bit_offset, a.bit_size), (0, 0, Some(3)));
        let b = field(&t, "pair", "b").unwrap();
        assert_eq!((b.offset, b.bit_size), (4, None), "found through the anonymous union");
        assert_eq!(
            t.struct_def("pair").unwrap().members[1].ty,
            TypeRef::Struct { name: "unnamed_btf_3".into(), union: true }
        );
        assert_eq!(t.enumerator("BLUE"), Some(2));
        assert_eq!(t.enum_containing("RED").as_deref(), Some("color"));
        assert_eq!(t.enum_def("color").unwrap().values.len(), 2);
        let mut names = t.struct_names();
        names.sort();
        assert_eq!(names, ["pair", "unnamed_btf_3"]);
        assert!(field(&t, "pair", "c").is_err());
    }

    proptest! {
        /// Arbitrary bytes, and the valid blob with bytes changed, never panic the
        /// parser or the queries.
        #[test]
        fn arbitrary_btf_never_panics(
            noise in prop::collection::vec(any::<u8>(), 0..512),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let _ = BtfTypes::parse(&noise);
            let mut b = blob();
            for (at, v) in flips {
                let i = at.index(b.len());
                b[i] = v;
            }
            if let Ok(t) = BtfTypes::parse(&b) {
                let _ = field(&t, "pair", "b");
                let _ = field(&t, "pair", "a.b[2]");
                let _ = t.enumerator("BLUE");
                for n in t.struct_names() {
                    let _ = t.struct_def(&n);
                }
                let _ = crate::types::isf::write_isf(&t, None, &Default::default());
            }
        }

        #[test]
        fn arbitrary_isf_never_panics(json in "\\PC{0,200}") {
            let _ = crate::types::isf::IsfTypes::parse(json.as_bytes());
        }
    }
}
