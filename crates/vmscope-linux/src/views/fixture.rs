//! A tiny kernel in synthetic memory, for the view tests: a handful of types
//! defined in code (with the shapes of a real kernel: anonymous members, a
//! typedef'd `kuid_t`, an anonymous enum), tasks, creds, mms with page tables
//! and command lines, modules with symbols — and handles to break any of it.

use std::collections::HashMap;
use std::sync::Arc;

use vmscope_mem::{Gpa, Gva, SliceMem};
use vmscope_x86::{PageSize, PagingMode, fixture::PageTableBuilder, pte};

use crate::discovery::Image;
use crate::kernel::{Addrs, Ctx};
use crate::kmem::KernelMem;
use crate::symbols::{SymbolSource, SymbolTable};
use crate::types::{EnumDef, Member, StructDef, TypeRef, TypeSource};
use crate::views::Limits;
use crate::{Offsets, Profile};

pub(crate) const DIRECT: u64 = 0xffff_8880_0000_0000;
const POOL: u64 = 0x10_0000;

#[derive(Debug, Default)]
struct MapTypes {
    structs: HashMap<String, StructDef>,
    enums: Vec<EnumDef>,
}

impl TypeSource for MapTypes {
    fn struct_def(&self, name: &str) -> Option<StructDef> {
        self.structs.get(name).cloned()
    }
    fn enum_def(&self, name: &str) -> Option<EnumDef> {
        self.enums.iter().find(|e| e.name == name).cloned()
    }
    fn enumerator(&self, name: &str) -> Option<i64> {
        self.enums.iter().flat_map(|e| &e.values).find(|(n, _)| n == name).map(|(_, v)| *v)
    }
    fn struct_names(&self) -> Vec<String> {
        self.structs.keys().cloned().collect()
    }
    fn enum_names(&self) -> Vec<String> {
        self.enums.iter().map(|e| e.name.clone()).collect()
    }
}

fn int(size: u32, signed: bool) -> TypeRef {
    TypeRef::Base { name: format!("{}int{}", if signed { "" } else { "u" }, size * 8), size, signed }
}
fn st(name: &str) -> TypeRef {
    TypeRef::Struct { name: name.into(), union: false }
}
fn ptr(to: TypeRef) -> TypeRef {
    TypeRef::Pointer { to: Box::new(to) }
}
fn arr(elem: TypeRef, count: u32) -> TypeRef {
    TypeRef::Array { elem: Box::new(elem), count }
}

fn def(types: &mut MapTypes, name: &str, size: u64, fields: &[(&str, u64, TypeRef)]) {
    let members = fields
        .iter()
        .map(|(n, off, ty)| Member { name: (*n).into(), bit_offset: off * 8, bit_size: None, ty: ty.clone() })
        .collect();
    types.structs.insert(name.into(), StructDef { name: name.into(), union: false, size, members });
}

/// The types, laid out like a small 6.1 kernel.
pub(crate) fn types() -> Arc<dyn TypeSource> {
    let mut t = MapTypes::default();
    let u64t = int(8, false);
    let lh = st("list_head");
    def(&mut t, "list_head", 16, &[("next", 0, ptr(lh.clone())), ("prev", 8, ptr(lh.clone()))]);
    def(&mut t, "kuid_t", 4, &[("val", 0, int(4, false))]);
    def(
        &mut t,
        "task_struct",
        256,
        &[
            ("tasks", 0, lh.clone()),
            ("pid", 16, int(4, true)),
            ("tgid", 20, int(4, true)),
            ("comm", 24, arr(int(1, true), 16)),
            ("__state", 40, int(4, false)),
            ("exit_state", 44, int(4, true)),
            ("flags", 48, int(4, false)),
            ("real_parent", 56, ptr(st("task_struct"))),
            ("group_leader", 64, ptr(st("task_struct"))),
            ("mm", 72, ptr(st("mm_struct"))),
            ("real_cred", 80, ptr(st("cred"))),
            ("signal", 88, ptr(st("signal_struct"))),
            ("thread_node", 96, lh.clone()),
            ("start_time", 112, u64t.clone()),
            ("start_boottime", 120, u64t.clone()),
            ("utime", 128, u64t.clone()),
            ("stime", 136, u64t.clone()),
            ("worker_private", 144, ptr(TypeRef::Void)),
        ],
    );
    def(&mut t, "kthread", 64, &[("full_name", 8, ptr(int(1, true)))]);
    def(
        &mut t,
        "cred",
        32,
        &[("uid", 4, st("kuid_t")), ("gid", 8, st("kuid_t")), ("euid", 12, st("kuid_t")), ("egid", 16, st("kuid_t"))],
    );
    def(
        &mut t,
        "signal_struct",
        64,
        &[
            ("thread_head", 0, lh.clone()),
            ("nr_threads", 16, int(4, true)),
            ("utime", 24, u64t.clone()),
            ("stime", 32, u64t.clone()),
        ],
    );
    def(&mut t, "atomic_long_t", 8, &[("counter", 0, int(8, true))]);
    def(&mut t, "mm_rss_stat", 32, &[("count", 0, arr(st("atomic_long_t"), 4))]);
    // mm_struct's members sit in an anonymous struct, as in real kernels.
    def(
        &mut t,
        "unnamed_mm",
        120,
        &[
            ("pgd", 8, u64t.clone()),
            ("arg_start", 16, u64t.clone()),
            ("arg_end", 24, u64t.clone()),
            ("rss_stat", 32, st("mm_rss_stat")),
        ],
    );
    def(&mut t, "mm_struct", 128, &[("", 0, st("unnamed_mm"))]);
    def(&mut t, "module_layout", 16, &[("base", 0, u64t.clone()), ("size", 8, int(4, false))]);
    def(
        &mut t,
        "module",
        192,
        &[
            ("list", 0, lh.clone()),
            ("name", 16, arr(int(1, true), 56)),
            ("state", 72, int(4, true)),
            ("refcnt", 76, int(4, true)),
            ("taints", 80, u64t.clone()),
            ("core_layout", 88, st("module_layout")),
            ("init_layout", 104, st("module_layout")),
            ("kallsyms", 120, u64t.clone()),
            ("syms", 128, u64t.clone()),
            ("num_syms", 136, int(4, false)),
        ],
    );
    def(
        &mut t,
        "mod_kallsyms",
        32,
        &[
            ("symtab", 0, u64t.clone()),
            ("num_symtab", 8, int(4, false)),
            ("strtab", 16, u64t.clone()),
            ("typetab", 24, u64t.clone()),
        ],
    );
    def(&mut t, "elf64_sym", 24, &[("st_name", 0, int(4, false)), ("st_value", 8, u64t.clone())]);
    def(
        &mut t,
        "kernel_symbol",
        12,
        &[("value_offset", 0, int(4, true)), ("name_offset", 4, int(4, true)), ("namespace_offset", 8, int(4, true))],
    );
    t.enums.push(EnumDef {
        name: "unnamed_btf_1".into(),
        size: 4,
        values: vec![
            ("MM_FILEPAGES".into(), 0),
            ("MM_ANONPAGES".into(), 1),
            ("MM_SWAPENTS".into(), 2),
            ("MM_SHMEMPAGES".into(), 3),
        ],
    });
    t.enums.push(EnumDef {
        name: "module_state".into(),
        size: 4,
        values: vec![
            ("MODULE_STATE_LIVE".into(), 0),
            ("MODULE_STATE_COMING".into(), 1),
            ("MODULE_STATE_GOING".into(), 2),
            ("MODULE_STATE_UNFORMED".into(), 3),
        ],
    });
    Arc::new(t)
}

/// A synthetic guest: RAM with page tables from a [`PageTableBuilder`] and a pool
/// of object memory reached through the direct map.
pub(crate) struct Fx {
    b: PageTableBuilder,
    pool: u64,
    used: u64,
    pub offsets: Offsets,
    pub init_task: u64,
    pub modules: u64,
}

impl Fx {
    pub fn new() -> Fx {
        let mut b = PageTableBuilder::new(PagingMode::Level4);
        let pool = b.alloc_table().raw();
        for _ in 1..POOL / 0x1000 {
            b.alloc_table();
        }
        let profile = Profile::new(SymbolTable::new(SymbolSource::Kallsyms), types());
        let offsets = Offsets::resolve(&profile).expect("the fixture types have every field");
        let mut fx = Fx { b, pool, used: 0, offsets, init_task: 0, modules: 0 };
        fx.init_task = fx.alloc(256);
        let head = fx.init_task;
        fx.link_head(head);
        fx.write_str(head + 24, "swapper/0");
        fx.modules = fx.alloc(16);
        let m = fx.modules;
        fx.link_head(m);
        fx
    }

    /// Bump-allocates `len` bytes of direct-mapped memory; returns the kernel VA.
    pub fn alloc(&mut self, len: u64) -> u64 {
        let pa = self.pool + self.used;
        self.used = (self.used + len).next_multiple_of(64);
        assert!(self.used <= POOL, "fixture pool exhausted");
        DIRECT + pa
    }

    /// A page-aligned page of direct-mapped memory.
    pub fn alloc_page(&mut self) -> u64 {
        self.used = self.used.next_multiple_of(0x1000);
        self.alloc(0x1000)
    }

    pub fn w64(&mut self, va: u64, v: u64) {
        let pa = (va - DIRECT) as usize;
        self.b.ram_mut()[pa..pa + 8].copy_from_slice(&v.to_le_bytes());
    }

    pub fn w32(&mut self, va: u64, v: u32) {
        let pa = (va - DIRECT) as usize;
        self.b.ram_mut()[pa..pa + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn write_bytes(&mut self, va: u64, bytes: &[u8]) {
        let pa = (va - DIRECT) as usize;
        self.b.ram_mut()[pa..pa + bytes.len()].copy_from_slice(bytes);
    }

    pub fn write_str(&mut self, va: u64, s: &str) {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.write_bytes(va, &b);
    }

    fn link_head(&mut self, head: u64) {
        self.w64(head, head);
        self.w64(head + 8, head);
    }

    /// Inserts `node` before `head` (at the tail).
    pub fn link_tail(&mut self, head: u64, node: u64) {
        let last = self.r64(head + 8);
        self.w64(node, head);
        self.w64(node + 8, last);
        self.w64(last, node);
        self.w64(head + 8, node);
    }

    pub fn r64(&mut self, va: u64) -> u64 {
        let pa = (va - DIRECT) as usize;
        u64::from_le_bytes(self.b.ram_mut()[pa..pa + 8].try_into().expect("8 bytes"))
    }

    /// A process with one thread; `cmdline` mapped at user address 0x40_0000 of its
    /// own page tables (unless `None`: then the page is absent).
    pub fn process(&mut self, pid: i32, parent: u64, uid: u32, comm: &str, cmdline: Option<&str>) -> u64 {
        let t = self.alloc(256);
        self.w32(t + 16, pid as u32);
        self.w32(t + 20, pid as u32);
        self.write_str(t + 24, comm);
        self.w32(t + 40, 1); // TASK_INTERRUPTIBLE: 'S'
        self.w64(t + 56, parent);
        self.w64(t + 64, t);
        let cred = self.alloc(32);
        for off in [4, 8, 12, 16] {
            self.w32(cred + off, uid);
        }
        self.w64(t + 80, cred);
        let sig = self.alloc(64);
        self.link_head(sig);
        self.link_tail(sig, t + 96);
        self.w32(sig + 16, 1);
        self.w64(t + 88, sig);
        self.w64(t + 128, 1000);
        self.w64(t + 136, 2000);
        let mm = self.alloc(128);
        self.w64(mm + 8, DIRECT + self.b.root().gpa().raw());
        if let Some(c) = cmdline {
            let user_va = 0x40_0000 + (pid as u64) * 0x1000;
            let page = self.alloc_page();
            self.b
                .map(Gva::new(user_va), Gpa::new(page - DIRECT), PageSize::Size4K, pte::USER | pte::WRITABLE)
                .expect("a fresh user page");
            let args = c.replace(' ', "\0") + "\0";
            self.write_bytes(page, args.as_bytes());
            self.w64(mm + 16, user_va);
            self.w64(mm + 24, user_va + args.len() as u64);
        } else {
            self.w64(mm + 16, 0x7f00_0000);
            self.w64(mm + 24, 0x7f00_0010);
        }
        self.w64(mm + 32, 3); // file pages
        self.w64(mm + 40, 4); // anon pages
        self.w64(t + 72, mm);
        let head = self.init_task;
        self.link_tail(head, t);
        t
    }

    /// A kernel thread, child of `parent`.
    pub fn kthread(&mut self, pid: i32, parent: u64, comm: &str) -> u64 {
        let t = self.process(pid, parent, 0, comm, None);
        self.w32(t + 48, crate::views::process::PF_KTHREAD);
        self.w32(t + 40, 0x402); // TASK_IDLE: 'I'
        self.w64(t + 72, 0);
        t
    }

    /// Gives kernel thread `t` a `struct kthread` whose `full_name` is `name`.
    pub fn full_name(&mut self, t: u64, name: &str) {
        let kthread = self.alloc(64);
        let s = self.alloc(name.len() as u64 + 1);
        self.write_str(s, name);
        self.w64(kthread + 8, s);
        self.w64(t + 144, kthread);
    }

    /// A module with `exports` exported and `locals` local symbols; symbol `i` is at
    /// the module's address plus `0x10 * i`.
    pub fn module(&mut self, name: &str, size: u32, taints: u64, exports: &[&str], locals: &[&str]) -> u64 {
        let m = self.alloc(192);
        self.write_str(m + 16, name);
        self.w32(m + 76, 1);
        self.w64(m + 80, taints);
        self.w64(m + 88, 0xffff_ffff_c000_0000);
        self.w32(m + 96, size);
        self.w32(m + 112, 0);
        let all: Vec<&str> = exports.iter().chain(locals).copied().collect();
        let strtab = self.alloc(1024);
        let symtab = self.alloc(24 * (all.len() as u64 + 1));
        let typetab = self.alloc(all.len() as u64 + 1);
        let mut at = 1u32;
        for (i, s) in all.iter().enumerate() {
            let e = symtab + 24 * (i as u64 + 1);
            self.write_str(strtab + u64::from(at), s);
            self.w32(e, at);
            // Values near the module, so that self-relative export entries reach.
            self.w64(e + 8, m + 0x10 * i as u64);
            self.write_bytes(typetab + i as u64 + 1, b"t");
            at += s.len() as u32 + 1;
        }
        let mk = self.alloc(32);
        self.w64(mk, symtab);
        self.w32(mk + 8, all.len() as u32 + 1);
        self.w64(mk + 16, strtab);
        self.w64(mk + 24, typetab);
        self.w64(m + 120, mk);
        let ksyms = self.alloc(12 * exports.len() as u64);
        for (i, s) in exports.iter().enumerate() {
            let k = ksyms + 12 * i as u64;
            let value = m + 0x10 * i as u64;
            let name_at = strtab + 1 + all[..i].iter().map(|x| x.len() as u64 + 1).sum::<u64>();
            debug_assert_eq!(all[i], *s);
            self.w32(k, value.wrapping_sub(k) as u32);
            self.w32(k + 4, name_at.wrapping_sub(k + 4) as u32);
        }
        self.w64(m + 128, ksyms);
        self.w32(m + 136, exports.len() as u32);
        let head = self.modules;
        self.link_tail(head, m);
        m
    }

    /// The memory and a view context over it.
    pub fn finish(&self) -> (KernelMem<SliceMem<Vec<u8>>>, Addrs) {
        let (mem, space) = self.b.clone().finish();
        let image = Image { text_va: Gva::new(0), end_va: Gva::new(0), delta: 0 };
        let k = KernelMem::new(mem, image, Gva::new(DIRECT), space);
        let addrs = Addrs {
            init_task: Gva::new(self.init_task),
            modules: Gva::new(self.modules),
            per_cpu_offsets: Vec::new(),
            taint_flags: None,
        };
        (k, addrs)
    }

    pub fn ctx<'a>(
        &'a self,
        k: &'a KernelMem<SliceMem<Vec<u8>>>,
        addrs: &'a Addrs,
        limits: Limits,
    ) -> Ctx<'a, SliceMem<Vec<u8>>> {
        Ctx { k, o: &self.offsets, addrs, limits }
    }
}
