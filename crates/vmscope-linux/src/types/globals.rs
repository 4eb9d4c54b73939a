//! The declared types of the kernel's global variables that introspection tools
//! read by symbol. BTF describes every type but types only per-CPU variables, and
//! kallsyms has names without types; Volatility 3's Linux plugins read e.g.
//! `init_task` as a `struct task_struct` (`object_from_symbol`), so an ISF file
//! written from BTF and kallsyms needs these. Each entry is the variable's
//! declaration in the kernel source, stable across the 5.x and 6.x kernels; an
//! entry whose type the kernel's BTF lacks is left out.

use super::{TypeRef, TypeSource};

/// A global variable's declared type, named as the kernel source declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// `struct NAME sym` (or a union).
    Struct(&'static str),
    /// `struct NAME *sym`.
    PointerTo(&'static str),
    /// A base type by its C name (`int`, `long unsigned int`).
    Base(&'static str, u32, bool),
}

/// The variables Volatility 3's Linux plugins (2.28) look up with a type, and a few
/// more that tools commonly read, with their declarations.
pub const GLOBALS: &[(&str, Declared)] = &[
    ("init_task", Declared::Struct("task_struct")),
    ("init_mm", Declared::Struct("mm_struct")),
    ("init_files", Declared::Struct("files_struct")),
    ("init_pid_ns", Declared::Struct("pid_namespace")),
    ("init_uts_ns", Declared::Struct("uts_namespace")),
    ("init_net", Declared::Struct("net")),
    ("modules", Declared::Struct("list_head")),
    ("net_namespace_list", Declared::Struct("list_head")),
    ("tty_drivers", Declared::Struct("list_head")),
    ("super_blocks", Declared::Struct("list_head")),
    ("mod_tree", Declared::Struct("mod_tree_root")),
    ("prog_idr", Declared::Struct("idr")),
    ("keyboard_notifier_list", Declared::Struct("atomic_notifier_head")),
    ("prb", Declared::PointerTo("printk_ringbuffer")),
    ("module_kset", Declared::PointerTo("kset")),
    ("mount_hashtable", Declared::PointerTo("hlist_head")),
    ("cap_last_cap", Declared::Base("int", 4, true)),
    ("nr_threads", Declared::Base("int", 4, true)),
    ("page_offset_base", Declared::Base("long unsigned int", 8, false)),
    ("vmemmap_base", Declared::Base("long unsigned int", 8, false)),
    ("phys_base", Declared::Base("long unsigned int", 8, false)),
];

impl Declared {
    /// The type as `types` knows it, if it has the struct named.
    pub fn resolve(self, types: &dyn TypeSource) -> Option<TypeRef> {
        let named =
            |name: &str| types.struct_def(name).map(|d| TypeRef::Struct { name: name.to_owned(), union: d.union });
        match self {
            Declared::Struct(name) => named(name),
            Declared::PointerTo(name) => named(name).map(|t| TypeRef::Pointer { to: Box::new(t) }),
            Declared::Base(name, size, signed) => Some(TypeRef::Base { name: name.to_owned(), size, signed }),
        }
    }
}

/// The declared type of global `symbol`, if it is one of [`GLOBALS`] and `types`
/// has it.
pub fn declared_type(types: &dyn TypeSource, symbol: &str) -> Option<TypeRef> {
    GLOBALS.iter().find(|(n, _)| *n == symbol).and_then(|(_, d)| d.resolve(types))
}
