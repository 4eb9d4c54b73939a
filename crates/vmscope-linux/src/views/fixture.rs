//! A tiny kernel in synthetic memory, for the view tests: a handful of types
//! defined in code (with the shapes of a real kernel: anonymous members, a
//! typedef'd `kuid_t`, an anonymous enum), tasks, creds, mms with page tables
//! and command lines, modules with symbols, parent/children/sibling links,
//! thread groups, a PID table (an IDR of several levels) and `nr_threads` — and
//! handles to break any of it.
//!
//! Compiled for the crate's own tests, and for other crates' tests behind the
//! `fixture` feature: not a stable API.

use std::collections::HashMap;
use std::sync::Arc;

use vmscope_mem::{Gpa, Gva, SliceMem};
use vmscope_x86::{PageSize, PagingMode, fixture::PageTableBuilder, pte};

use crate::Kernel;
use crate::discovery::Image;
use crate::kernel::Addrs;
#[cfg(test)]
use crate::kernel::Ctx;
use crate::kmem::KernelMem;
use crate::symbols::{SymbolSource, SymbolTable};
use crate::types::{EnumDef, Member, StructDef, TypeRef, TypeSource};
use crate::views::Limits;
use crate::{Offsets, Profile};

pub const DIRECT: u64 = 0xffff_8880_0000_0000;
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
pub fn types() -> Arc<dyn TypeSource> {
    let mut t = MapTypes::default();
    let u64t = int(8, false);
    let lh = st("list_head");
    def(&mut t, "list_head", 16, &[("next", 0, ptr(lh.clone())), ("prev", 8, ptr(lh.clone()))]);
    def(&mut t, "kuid_t", 4, &[("val", 0, int(4, false))]);
    def(
        &mut t,
        "task_struct",
        384,
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
            ("parent", 256, ptr(st("task_struct"))),
            ("children", 264, lh.clone()),
            ("sibling", 280, lh.clone()),
            ("pid_links", 296, arr(st("hlist_node"), 4)),
        ],
    );
    let u8t = int(1, false);
    def(&mut t, "hlist_node", 16, &[("next", 0, ptr(st("hlist_node"))), ("pprev", 8, u64t.clone())]);
    def(&mut t, "hlist_head", 8, &[("first", 0, ptr(st("hlist_node")))]);
    def(&mut t, "upid", 16, &[("nr", 0, int(4, true)), ("ns", 8, ptr(st("pid_namespace")))]);
    def(
        &mut t,
        "pid",
        64,
        &[
            ("count", 0, int(4, false)),
            ("level", 4, int(4, false)),
            ("tasks", 8, arr(st("hlist_head"), 4)),
            ("numbers", 48, arr(st("upid"), 1)),
        ],
    );
    def(
        &mut t,
        "xarray",
        16,
        &[("xa_lock", 0, int(4, false)), ("xa_flags", 4, int(4, false)), ("xa_head", 8, ptr(TypeRef::Void))],
    );
    def(
        &mut t,
        "idr",
        24,
        &[("idr_rt", 0, st("xarray")), ("idr_base", 16, int(4, false)), ("idr_next", 20, int(4, false))],
    );
    def(&mut t, "pid_namespace", 64, &[("idr", 8, st("idr"))]);
    def(
        &mut t,
        "xa_node",
        576,
        &[
            ("shift", 0, u8t.clone()),
            ("offset", 1, u8t.clone()),
            ("count", 2, u8t.clone()),
            ("nr_values", 3, u8t),
            ("parent", 8, ptr(st("xa_node"))),
            ("array", 16, ptr(st("xarray"))),
            ("private_list", 24, lh.clone()),
            ("slots", 40, arr(ptr(TypeRef::Void), 64)),
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
        name: "pid_type".into(),
        size: 4,
        values: vec![
            ("PIDTYPE_PID".into(), 0),
            ("PIDTYPE_TGID".into(), 1),
            ("PIDTYPE_PGID".into(), 2),
            ("PIDTYPE_SID".into(), 3),
            ("PIDTYPE_MAX".into(), 4),
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

/// Offsets of the fixture's structures, for tests that break them on purpose.
pub mod layout {
    /// `task_struct.tasks`.
    pub const TASKS: u64 = 0;
    /// `task_struct.pid`.
    pub const PID: u64 = 16;
    /// `task_struct.tgid`.
    pub const TGID: u64 = 20;
    /// `task_struct.flags`.
    pub const FLAGS: u64 = 48;
    /// `task_struct.real_parent`.
    pub const REAL_PARENT: u64 = 56;
    /// `task_struct.group_leader`.
    pub const GROUP_LEADER: u64 = 64;
    /// `task_struct.mm`.
    pub const MM: u64 = 72;
    /// `task_struct.signal`.
    pub const SIGNAL: u64 = 88;
    /// `task_struct.thread_node`.
    pub const THREAD_NODE: u64 = 96;
    /// `task_struct.parent`.
    pub const PARENT: u64 = 256;
    /// `task_struct.children`.
    pub const CHILDREN: u64 = 264;
    /// `task_struct.sibling`.
    pub const SIBLING: u64 = 280;
    /// `task_struct.pid_links[PIDTYPE_PID]`.
    pub const PID_LINK: u64 = 296;
    /// Bytes of `task_struct`.
    pub const TASK_SIZE: u64 = 384;
    /// `signal_struct.nr_threads`.
    pub const NR_THREADS: u64 = 16;
    /// `pid.tasks[PIDTYPE_PID]`.
    pub const PID_TASKS: u64 = 8;
    /// `pid.numbers[0].nr`.
    pub const PID_NR: u64 = 48;
    /// `pid_namespace.idr.idr_rt.xa_head`.
    pub const XA_HEAD: u64 = 16;
    /// `xa_node.slots`.
    pub const SLOTS: u64 = 40;
    /// `module.state`.
    pub const MODULE_STATE: u64 = 72;
}

use layout::*;

/// A synthetic guest: RAM with page tables from a [`PageTableBuilder`] and a pool
/// of object memory reached through the direct map.
#[allow(missing_debug_implementations)]
pub struct Fx {
    b: PageTableBuilder,
    pool: u64,
    used: u64,
    /// The offsets the fixture's types resolve to.
    pub offsets: Offsets,
    /// `init_task`.
    pub init_task: u64,
    /// The `modules` list head.
    pub modules: u64,
    /// `init_pid_ns`.
    pub pid_ns: u64,
    /// The `nr_threads` global.
    pub nr_threads: u64,
    /// Every `struct pid` made, by id.
    pub pids: std::collections::BTreeMap<u32, u64>,
}

impl Default for Fx {
    fn default() -> Self {
        Fx::new()
    }
}

impl Fx {
    /// An empty kernel: `init_task` (its own thread group), no other task, no
    /// module, an empty PID table.
    pub fn new() -> Fx {
        let mut b = PageTableBuilder::new(PagingMode::Level4);
        let pool = b.alloc_table().raw();
        for _ in 1..POOL / 0x1000 {
            b.alloc_table();
        }
        let profile = Profile::new(SymbolTable::new(SymbolSource::Kallsyms), types());
        let offsets = Offsets::resolve(&profile).expect("the fixture types have every field");
        let mut fx = Fx {
            b,
            pool,
            used: 0,
            offsets,
            init_task: 0,
            modules: 0,
            pid_ns: 0,
            nr_threads: 0,
            pids: Default::default(),
        };
        fx.init_task = fx.alloc(TASK_SIZE);
        let head = fx.init_task;
        fx.link_head(head);
        fx.link_head(head + CHILDREN);
        fx.write_str(head + 24, "swapper/0");
        for off in [REAL_PARENT, PARENT, GROUP_LEADER] {
            fx.w64(head + off, head);
        }
        let sig = fx.alloc(64);
        fx.link_head(sig);
        fx.link_tail(sig, head + THREAD_NODE);
        fx.w32(sig + NR_THREADS, 1);
        fx.w64(head + SIGNAL, sig);
        fx.modules = fx.alloc(16);
        let m = fx.modules;
        fx.link_head(m);
        fx.pid_ns = fx.alloc(64);
        fx.nr_threads = fx.alloc(8);
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
    /// own page tables (unless `None`: then the page is absent). On the task list,
    /// on `parent`'s children list, in the PID table, counted in `nr_threads`.
    pub fn process(&mut self, pid: i32, parent: u64, uid: u32, comm: &str, cmdline: Option<&str>) -> u64 {
        let t = self.alloc(TASK_SIZE);
        self.w32(t + PID, pid as u32);
        self.w32(t + TGID, pid as u32);
        self.write_str(t + 24, comm);
        self.w32(t + 40, 1); // TASK_INTERRUPTIBLE: 'S'
        self.w64(t + REAL_PARENT, parent);
        self.w64(t + PARENT, parent);
        self.w64(t + GROUP_LEADER, t);
        self.link_head(t + CHILDREN);
        self.link_tail(parent + CHILDREN, t + SIBLING);
        let cred = self.alloc(32);
        for off in [4, 8, 12, 16] {
            self.w32(cred + off, uid);
        }
        self.w64(t + 80, cred);
        let sig = self.alloc(64);
        self.link_head(sig);
        self.link_tail(sig, t + THREAD_NODE);
        self.w32(sig + NR_THREADS, 1);
        self.w64(t + SIGNAL, sig);
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
        self.w64(t + MM, mm);
        let head = self.init_task;
        self.link_tail(head, t);
        self.attach_pid(t, pid as u32);
        t
    }

    /// Another thread of the group led by `leader`: same tgid, signal, mm, parents;
    /// on the group's thread list (its `nr_threads` counted up), in the PID table,
    /// not on the task list or any children list.
    pub fn thread(&mut self, leader: u64, tid: i32, comm: &str) -> u64 {
        let t = self.alloc(TASK_SIZE);
        let tgid = self.r64(leader + TGID) as u32; // tgid sits in the low half
        self.w32(t + PID, tid as u32);
        self.w32(t + TGID, tgid);
        self.write_str(t + 24, comm);
        self.w32(t + 40, 1);
        for off in [REAL_PARENT, PARENT, GROUP_LEADER, MM, SIGNAL, 80] {
            let v = if off == GROUP_LEADER { leader } else { self.r64(leader + off) };
            self.w64(t + off, v);
        }
        let flags = self.r64(leader + FLAGS) as u32;
        self.w32(t + FLAGS, flags);
        self.link_head(t + CHILDREN);
        let sig = self.r64(leader + SIGNAL);
        self.link_tail(sig, t + THREAD_NODE);
        let n = self.r64(sig + NR_THREADS) as u32;
        self.w32(sig + NR_THREADS, n + 1);
        self.attach_pid(t, tid as u32);
        t
    }

    /// A `struct pid` for `nr`, in the PID table, with task `t` attached as
    /// `PIDTYPE_PID`; `nr_threads` counted up.
    fn attach_pid(&mut self, t: u64, nr: u32) {
        let pid = self.alloc(64);
        self.w32(pid, 1);
        self.w32(pid + PID_NR, nr);
        self.w64(pid + PID_TASKS, t + PID_LINK);
        self.w64(t + PID_LINK + 8, pid + PID_TASKS); // pprev
        self.idr_insert(u64::from(nr), pid);
        self.pids.insert(nr, pid);
        let n = self.r64(self.nr_threads) as u32;
        self.w32(self.nr_threads, n + 1);
    }

    /// Stores `value` at `index` of `init_pid_ns.idr`, growing the tree as the
    /// kernel does: a new root above the old one while the index does not fit.
    pub fn idr_insert(&mut self, index: u64, value: u64) {
        let head_at = self.pid_ns + XA_HEAD;
        let mut head = self.r64(head_at);
        if head == 0 {
            head = self.xa_node(0) | 2;
        }
        loop {
            let shift = self.r64(head - 2) & 0xff;
            if shift + 6 >= 64 || index >> (shift + 6) == 0 {
                break;
            }
            let up = self.xa_node(shift + 6);
            self.w64(up + SLOTS, head);
            head = up | 2;
        }
        self.w64(head_at, head);
        let mut node = head - 2;
        loop {
            let shift = self.r64(node) & 0xff;
            let slot = node + SLOTS + 8 * ((index >> shift) & 63);
            if shift == 0 {
                self.w64(slot, value);
                return;
            }
            let mut child = self.r64(slot);
            if child == 0 {
                child = self.xa_node(shift - 6) | 2;
                self.w64(slot, child);
            }
            node = child - 2;
        }
    }

    fn xa_node(&mut self, shift: u64) -> u64 {
        let n = self.alloc(576);
        self.write_bytes(n, &[shift as u8]);
        n
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
    pub(crate) fn finish(&self) -> (KernelMem<SliceMem<Vec<u8>>>, Addrs) {
        let (mem, space) = self.b.clone().finish();
        let image = Image { text_va: Gva::new(0), end_va: Gva::new(0), delta: 0 };
        let k = KernelMem::new(mem, image, Gva::new(DIRECT), space);
        let addrs = Addrs {
            init_task: Gva::new(self.init_task),
            modules: Gva::new(self.modules),
            per_cpu_offsets: Vec::new(),
            taint_flags: None,
            init_pid_ns: Some(Gva::new(self.pid_ns)),
            nr_threads: Some(Gva::new(self.nr_threads)),
            known: Default::default(),
        };
        (k, addrs)
    }

    #[cfg(test)]
    pub(crate) fn ctx<'a>(
        &'a self,
        k: &'a KernelMem<SliceMem<Vec<u8>>>,
        addrs: &'a Addrs,
        limits: Limits,
    ) -> Ctx<'a, SliceMem<Vec<u8>>> {
        Ctx { k, o: &self.offsets, addrs, limits }
    }

    /// A [`Kernel`] over a copy of the fixture's memory as it is now.
    pub fn kernel(&self, limits: Limits) -> Kernel<SliceMem<Vec<u8>>> {
        let (k, addrs) = self.finish();
        Kernel::from_fixture(k, self.offsets.clone(), addrs, limits)
    }
}
