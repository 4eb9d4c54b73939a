//! Every field offset the views read, looked up by name in a [`Profile`] once and
//! kept in plain structs (cacheable: they are what a profile cache stores). Where
//! kernels differ in shape rather than in offsets — the RSS counters, the module
//! memory layout, exported-symbol entries — the shape is told from the types too.

mod checks;
mod ids;
mod maps;
mod mounts;
mod net;
mod printk;
mod vfs;

use serde::{Deserialize, Serialize};

pub use checks::{CheckOffsets, KsetOffsets, LdiscOffsets, NotifierOffsets, SchedOffsets};
pub use ids::{CgroupOffsets, CredsOffsets, NsOffsets};
pub use maps::{MapleNodeLayout, MapleOffsets, MapsOffsets};
pub use mounts::{
    BpfOffsets, CGROUP2_OPTIONS, Cgroup2Offsets, DevptsOffsets, Ext4Offsets, FsOptionOffsets, HIDEPID_OPTIONS,
    HugetlbfsOffsets, MempolicyOffsets, ModeFsOffsets, MountOffsets, MountSet, ProcOffsets, ShmemOffsets,
};
pub use net::{NetOffsets, SockOffsets};
pub use printk::PrintkOffsets;
pub use vfs::{FilesOffsets, VfsOffsets};

use crate::types::TypeRef;
use crate::{Error, Profile, Result};

/// `struct list_head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOffsets {
    /// `next`.
    pub next: u64,
    /// `prev`.
    pub prev: u64,
}

/// `struct task_struct`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TaskOffsets {
    /// Size of the struct.
    pub size: u64,
    pub tasks: u64,
    pub pid: u64,
    pub tgid: u64,
    pub comm: u64,
    /// Bytes of `comm`.
    pub comm_len: u64,
    /// `__state` (or `state` before 5.14).
    pub state: u64,
    /// Bytes of the state field.
    pub state_size: u64,
    pub exit_state: u64,
    pub flags: u64,
    pub real_parent: u64,
    /// `parent`: where SIGCHLD goes (the tracer under ptrace, else `real_parent`).
    pub parent: u64,
    /// `children`: head of the list of natural children (linked by `sibling`).
    pub children: u64,
    /// `sibling`: this task's link on its `real_parent`'s `children` list.
    pub sibling: u64,
    pub group_leader: u64,
    pub mm: u64,
    pub real_cred: u64,
    pub signal: u64,
    pub thread_node: u64,
    pub start_time: u64,
    pub start_boottime: Option<u64>,
    pub utime: u64,
    pub stime: u64,
    /// Where a kernel thread keeps its `struct kthread` (`worker_private`, or
    /// `set_child_tid` before 5.17).
    #[serde(default)]
    pub kthread: Option<u64>,
    /// `kthread.full_name`: the name of a kernel thread whose comm is truncated
    /// (5.17+), which /proc shows instead of the comm.
    #[serde(default)]
    pub kthread_full_name: Option<u64>,
    /// `rss_stat.count`: up to 6.1 (SPLIT_RSS_COUNTING), each thread holds up to 64
    /// page-count changes of its mm here (`int` each) before it folds them in.
    #[serde(default)]
    pub rss_cache: Option<u64>,
}

/// The most `mm_struct` page counters a kernel has had (`NR_MM_COUNTERS`: file,
/// anon, swap entries, shmem).
pub(crate) const NR_MM_COUNTERS_MAX: u64 = 4;

/// `struct cred` (each a `kuid_t`/`kgid_t`, read as its `val`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CredOffsets {
    pub uid: u64,
    pub gid: u64,
    pub euid: u64,
    pub egid: u64,
}

/// `struct signal_struct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SignalOffsets {
    pub thread_head: u64,
    pub nr_threads: u64,
    pub utime: u64,
    pub stime: u64,
}

/// How a kernel counts resident pages per mm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RssLayout {
    /// Up to 6.1: `mm->rss_stat.count[i]`, an `atomic_long_t` each.
    Atomic {
        /// Offset of `count[0]` in `mm_struct`.
        base: u64,
        /// Bytes per counter.
        stride: u64,
    },
    /// From 6.2: `mm->rss_stat[i]`, a `struct percpu_counter` each: a central
    /// `count` plus a per-CPU `s32` delta at `counters`.
    PerCpu {
        /// Offset of `rss_stat[0]` in `mm_struct`.
        base: u64,
        /// Bytes per counter.
        stride: u64,
        /// `percpu_counter.count`.
        count: u64,
        /// `percpu_counter.counters`.
        counters: u64,
    },
}

/// `struct mm_struct`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MmOffsets {
    pub pgd: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    /// `env_start`, `env_end`: the environment strings in user memory.
    pub env_start: u64,
    pub env_end: u64,
    /// `exe_file`: what `/proc/PID/exe` links to.
    pub exe_file: u64,
    pub rss: RssLayout,
    /// Indices of `MM_FILEPAGES`, `MM_ANONPAGES`, `MM_SHMEMPAGES`.
    pub rss_counters: Vec<u64>,
}

/// Where a module's size and base are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModuleMemLayout {
    /// Up to 6.3: `core_layout` and `init_layout` (`struct module_layout`).
    Layouts {
        /// `core_layout.base`.
        core_base: u64,
        /// `core_layout.size`.
        core_size: u64,
        /// `init_layout.size`.
        init_size: u64,
    },
    /// From 6.4: `mem[MOD_MEM_NUM_TYPES]` (`struct module_memory`).
    Mem {
        /// Offset of `mem[0]`.
        base: u64,
        /// Bytes per entry.
        stride: u64,
        /// Entries.
        count: u64,
        /// `module_memory.base`.
        mem_base: u64,
        /// `module_memory.size`.
        mem_size: u64,
        /// Index of `MOD_TEXT`.
        text: u64,
    },
}

/// `struct module` and what hangs off it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ModuleOffsets {
    pub size: u64,
    pub list: u64,
    pub name: u64,
    pub name_len: u64,
    pub state: u64,
    pub refcnt: u64,
    pub taints: u64,
    pub mem: ModuleMemLayout,
    pub kallsyms: u64,
    pub syms: u64,
    pub num_syms: u64,
    /// `struct mod_kallsyms`: symtab, num_symtab, strtab, typetab.
    pub mk_symtab: u64,
    pub mk_num_symtab: u64,
    pub mk_strtab: u64,
    pub mk_typetab: u64,
    /// `Elf64_Sym`: size, `st_name`, `st_value`.
    pub sym_size: u64,
    pub sym_name: u64,
    pub sym_value: u64,
    /// `struct kernel_symbol`: size and whether it holds 32-bit self-relative
    /// offsets (`value_offset`, `name_offset`) rather than pointers.
    pub ksym_size: u64,
    pub ksym_relative: bool,
    pub ksym_value: u64,
    pub ksym_name: u64,
    /// `enum module_state`: value and name, e.g. `(0, "MODULE_STATE_LIVE")`.
    pub states: Vec<(i64, String)>,
}

/// The PID table: `init_pid_ns.idr`, an IDR (a radix tree, which since 4.20 is a
/// `struct xarray`), whose entries are `struct pid *`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidOffsets {
    /// `pid_namespace.idr.idr_rt.xa_head`: the root entry.
    pub ns_xa_head: u64,
    /// `pid_namespace.idr.idr_base`: the id of index 0.
    pub ns_idr_base: u64,
    /// `xa_node.shift`.
    pub node_shift: u64,
    /// `xa_node.slots`.
    pub node_slots: u64,
    /// Entries in `xa_node.slots` (`XA_CHUNK_SIZE`, 64 unless `CONFIG_BASE_SMALL`).
    pub chunk: u64,
    /// Bytes of `struct xa_node`.
    pub node_size: u64,
    /// `pid.tasks[PIDTYPE_PID].first`.
    pub pid_tasks: u64,
    /// `pid.numbers[0].nr`: the id in the initial namespace.
    pub pid_nr: u64,
    /// `hlist_node.next`.
    pub hlist_next: u64,
    /// `task_struct.pid_links[PIDTYPE_PID]`: a task's link on its `struct pid`'s
    /// `tasks[PIDTYPE_PID]` hlist.
    pub task_pid_link: u64,
}

/// `struct taint_flag` (the kernel's `taint_flags[]` table gives the letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TaintFlagOffsets {
    pub size: u64,
    pub c_true: u64,
    pub module: u64,
}

/// Every offset the views use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Offsets {
    pub list: ListOffsets,
    pub task: TaskOffsets,
    pub cred: CredOffsets,
    pub signal: SignalOffsets,
    pub mm: MmOffsets,
    pub module: ModuleOffsets,
    pub taint_flag: Option<TaintFlagOffsets>,
    /// The PID table, when the types describe it.
    #[serde(default)]
    pub pid: Option<PidOffsets>,
    /// Paths and files, when the types describe them.
    #[serde(default)]
    pub vfs: Option<VfsOffsets>,
    /// A task's open files and filesystem root and working directory.
    #[serde(default)]
    pub files: Option<FilesOffsets>,
    /// Memory maps (the maple tree of Linux 6.1+).
    #[serde(default)]
    pub maps: Option<MapsOffsets>,
    /// The lockless printk ring buffer (Linux 5.10+).
    #[serde(default)]
    pub printk: Option<PrintkOffsets>,
    /// Credentials and capabilities.
    #[serde(default)]
    pub creds: Option<CredsOffsets>,
    /// Namespaces.
    #[serde(default)]
    pub ns: Option<NsOffsets>,
    /// The cgroup (v2) of a task.
    #[serde(default)]
    pub cgroup: Option<CgroupOffsets>,
    /// Mount namespaces and their mounts.
    #[serde(default)]
    pub mounts: Option<MountOffsets>,
    /// Network namespaces and their sockets.
    #[serde(default)]
    pub net: Option<NetOffsets>,
}

/// The value of enumerator `name`, which must not be negative.
pub(crate) fn enum_u64(p: &Profile, name: &str) -> Result<u64> {
    u64::try_from(p.enum_value(name)?).map_err(|_| Error::layout(name, "negative"))
}

pub(crate) fn array_len(ty: &TypeRef) -> Option<u64> {
    match ty {
        TypeRef::Array { count, .. } => Some(u64::from(*count)),
        _ => None,
    }
}

fn struct_name(ty: &TypeRef) -> Option<&str> {
    match ty {
        TypeRef::Struct { name, .. } => Some(name),
        _ => None,
    }
}

impl Offsets {
    /// The types (and enumerators) [`resolve`](Self::resolve) reads: enough roots
    /// for an ISF file that serves every view ([`Profile::to_isf`]).
    pub const TYPES: &'static [&'static str] = &[
        "task_struct",
        "kthread",
        "cred",
        "signal_struct",
        "mm_struct",
        "list_head",
        "percpu_counter",
        "module",
        "mod_kallsyms",
        "elf64_sym",
        "kernel_symbol",
        "taint_flag",
        "module_state",
        "pid",
        "pid_namespace",
        "xa_node",
        "hlist_node",
        "pid_type",
        "MM_FILEPAGES",
        "MOD_TEXT",
        "path",
        "dentry",
        "dentry_operations",
        "mount",
        "vfsmount",
        "inode",
        "super_block",
        "super_operations",
        "file",
        "files_struct",
        "fdtable",
        "fs_struct",
        "vm_area_struct",
        "vm_operations_struct",
        "vm_special_mapping",
        "maple_node",
        "maple_type",
        "printk_ringbuffer",
        "prb_desc",
        "printk_info",
        "desc_state",
        "XONLY",
        "group_info",
        "nsproxy",
        "upid",
        "ns_common",
        "cgroup_namespace",
        "ipc_namespace",
        "mnt_namespace",
        "net",
        "time_namespace",
        "uts_namespace",
        "user_namespace",
        "css_set",
        "cgroup",
        "kernfs_node",
        "file_system_type",
        "shmem_sb_info",
        "pts_fs_info",
        "pts_mount_opts",
        "cgroup_root",
        "CGRP_ROOT_NS_DELEGATE",
        "ext4_sb_info",
        "mempolicy",
        "debugfs_fs_info",
        "tracefs_fs_info",
        "ramfs_fs_info",
        "hugetlbfs_sb_info",
        "hstate",
        "hugepage_subpool",
        "bpf_mount_opts",
        "ext4_super_block",
        "proc_fs_info",
        "HIDEPID_OFF",
        "rb_node",
        "inet_hashinfo",
        "inet_listen_hashbucket",
        "udp_table",
        "udp_hslot",
        "sock_common",
        "sock",
        "socket",
        "socket_alloc",
        "unix_sock",
        "unix_address",
    ];

    /// Looks every offset up in `p`.
    pub fn resolve(p: &Profile) -> Result<Offsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        let comm = p.field("task_struct", "comm")?;
        let state = p.field("task_struct", "__state").or_else(|_| p.field("task_struct", "state"))?;
        let task = TaskOffsets {
            size: p.struct_size("task_struct")?,
            tasks: off("task_struct", "tasks")?,
            pid: off("task_struct", "pid")?,
            tgid: off("task_struct", "tgid")?,
            comm: comm.offset,
            comm_len: array_len(&comm.ty).unwrap_or(16),
            state: state.offset,
            state_size: crate::types::size_of(p.types(), &state.ty).unwrap_or(4),
            exit_state: off("task_struct", "exit_state")?,
            flags: off("task_struct", "flags")?,
            real_parent: off("task_struct", "real_parent")?,
            parent: off("task_struct", "parent")?,
            children: off("task_struct", "children")?,
            sibling: off("task_struct", "sibling")?,
            group_leader: off("task_struct", "group_leader")?,
            mm: off("task_struct", "mm")?,
            real_cred: off("task_struct", "real_cred")?,
            signal: off("task_struct", "signal")?,
            thread_node: off("task_struct", "thread_node")?,
            start_time: off("task_struct", "start_time")?,
            start_boottime: off("task_struct", "start_boottime").ok(),
            utime: off("task_struct", "utime")?,
            stime: off("task_struct", "stime")?,
            kthread: off("task_struct", "worker_private").or_else(|_| off("task_struct", "set_child_tid")).ok(),
            kthread_full_name: off("kthread", "full_name").ok(),
            rss_cache: off("task_struct", "rss_stat.count").ok(),
        };
        let cred = CredOffsets {
            uid: off("cred", "uid.val")?,
            gid: off("cred", "gid.val")?,
            euid: off("cred", "euid.val")?,
            egid: off("cred", "egid.val")?,
        };
        let signal = SignalOffsets {
            thread_head: off("signal_struct", "thread_head")?,
            nr_threads: off("signal_struct", "nr_threads")?,
            utime: off("signal_struct", "utime")?,
            stime: off("signal_struct", "stime")?,
        };
        Ok(Offsets {
            list: ListOffsets { next: off("list_head", "next")?, prev: off("list_head", "prev")? },
            task,
            cred,
            signal,
            mm: Self::mm(p)?,
            module: Self::module(p)?,
            taint_flag: p.struct_size("taint_flag").ok().and_then(|size| {
                Some(TaintFlagOffsets {
                    size,
                    c_true: off("taint_flag", "c_true").ok()?,
                    module: off("taint_flag", "module").ok()?,
                })
            }),
            pid: Self::pid(p).ok(),
            vfs: VfsOffsets::resolve(p).ok(),
            files: FilesOffsets::resolve(p).ok(),
            maps: MapsOffsets::resolve(p).ok(),
            printk: PrintkOffsets::resolve(p).ok(),
            creds: CredsOffsets::resolve(p).ok(),
            ns: NsOffsets::resolve(p).ok(),
            cgroup: CgroupOffsets::resolve(p).ok(),
            mounts: MountOffsets::resolve(p).ok(),
            net: NetOffsets::resolve(p).ok(),
        })
    }

    /// `task_struct.pid_links[PIDTYPE_PID]`.
    fn pid_link(p: &Profile) -> Result<u64> {
        let links = p.field("task_struct", "pid_links")?;
        let TypeRef::Array { elem, .. } = &links.ty else {
            return Err(Error::layout("task_struct.pid_links", "not an array"));
        };
        let stride = crate::types::size_of(p.types(), elem)
            .ok_or_else(|| Error::layout("task_struct.pid_links[]", "no size"))?;
        Ok(links.offset + enum_u64(p, "PIDTYPE_PID")? * stride)
    }

    fn pid(p: &Profile) -> Result<PidOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        let tasks = p.field("pid", "tasks")?;
        let TypeRef::Array { elem, .. } = &tasks.ty else {
            return Err(Error::layout("pid.tasks", "not an array"));
        };
        let stride = crate::types::size_of(p.types(), elem).ok_or_else(|| Error::layout("pid.tasks[]", "no size"))?;
        let index = enum_u64(p, "PIDTYPE_PID")?;
        let slots = p.field("xa_node", "slots")?;
        let idr = off("pid_namespace", "idr")?;
        Ok(PidOffsets {
            ns_xa_head: idr + off("idr", "idr_rt.xa_head")?,
            ns_idr_base: idr + off("idr", "idr_base")?,
            node_shift: off("xa_node", "shift")?,
            node_slots: slots.offset,
            chunk: array_len(&slots.ty).ok_or_else(|| Error::layout("xa_node.slots", "not an array"))?,
            node_size: p.struct_size("xa_node")?,
            pid_tasks: tasks.offset + index * stride + off("hlist_head", "first")?,
            pid_nr: off("pid", "numbers[0].nr")?,
            hlist_next: off("hlist_node", "next")?,
            task_pid_link: Self::pid_link(p)?,
        })
    }

    fn mm(p: &Profile) -> Result<MmOffsets> {
        let rss = p.field("mm_struct", "rss_stat")?;
        let layout = match &rss.ty {
            // 6.2+: an array of percpu_counter.
            TypeRef::Array { elem, .. } if struct_name(elem) == Some("percpu_counter") => RssLayout::PerCpu {
                base: rss.offset,
                stride: p.struct_size("percpu_counter")?,
                count: p.offset_of("percpu_counter", "count")?,
                counters: p.offset_of("percpu_counter", "counters")?,
            },
            TypeRef::Struct { name, .. } => {
                let count = p.field(name, "count")?;
                let TypeRef::Array { elem, .. } = &count.ty else {
                    return Err(Error::layout("mm_struct.rss_stat.count", "not an array"));
                };
                let stride = crate::types::size_of(p.types(), elem)
                    .ok_or_else(|| Error::layout("rss_stat.count[]", "no size"))?;
                RssLayout::Atomic { base: rss.offset + count.offset, stride }
            }
            other => {
                return Err(Error::layout("mm_struct.rss_stat", format!("unexpected type {other}")));
            }
        };
        let counters = ["MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"]
            .iter()
            .map(|n| p.enum_value(n).map(|v| v as u64))
            .collect::<Result<Vec<_>>>()?;
        Ok(MmOffsets {
            pgd: p.offset_of("mm_struct", "pgd")?,
            arg_start: p.offset_of("mm_struct", "arg_start")?,
            arg_end: p.offset_of("mm_struct", "arg_end")?,
            env_start: p.offset_of("mm_struct", "env_start")?,
            env_end: p.offset_of("mm_struct", "env_end")?,
            exe_file: p.offset_of("mm_struct", "exe_file")?,
            rss: layout,
            rss_counters: counters,
        })
    }

    fn module(p: &Profile) -> Result<ModuleOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        let name = p.field("module", "name")?;
        let mem = match p.field("module", "mem") {
            Ok(m) => {
                let TypeRef::Array { elem, count } = &m.ty else {
                    return Err(Error::layout("module.mem", "not an array"));
                };
                let elem_name = struct_name(elem).ok_or_else(|| Error::layout("module.mem[]", "not a struct"))?;
                ModuleMemLayout::Mem {
                    base: m.offset,
                    stride: p.struct_size(elem_name)?,
                    count: u64::from(*count),
                    mem_base: off(elem_name, "base")?,
                    mem_size: off(elem_name, "size")?,
                    text: p.enum_value("MOD_TEXT")? as u64,
                }
            }
            Err(_) => ModuleMemLayout::Layouts {
                core_base: off("module", "core_layout.base")?,
                core_size: off("module", "core_layout.size")?,
                init_size: off("module", "init_layout.size")?,
            },
        };
        let ksym = p.struct_def("kernel_symbol").ok_or_else(|| Error::TypeMissing("kernel_symbol".into()))?;
        let ksym_relative = ksym.members.iter().any(|m| m.name == "value_offset");
        let (kv, kn) = if ksym_relative { ("value_offset", "name_offset") } else { ("value", "name") };
        let states =
            p.enum_def("module_state").map(|e| e.values.into_iter().map(|(n, v)| (v, n)).collect()).unwrap_or_default();
        Ok(ModuleOffsets {
            size: p.struct_size("module")?,
            list: off("module", "list")?,
            name: name.offset,
            name_len: array_len(&name.ty).unwrap_or(56),
            state: off("module", "state")?,
            refcnt: off("module", "refcnt")?,
            taints: off("module", "taints")?,
            mem,
            kallsyms: off("module", "kallsyms")?,
            syms: off("module", "syms")?,
            num_syms: off("module", "num_syms")?,
            mk_symtab: off("mod_kallsyms", "symtab")?,
            mk_num_symtab: off("mod_kallsyms", "num_symtab")?,
            mk_strtab: off("mod_kallsyms", "strtab")?,
            mk_typetab: off("mod_kallsyms", "typetab")?,
            sym_size: p.struct_size("elf64_sym")?,
            sym_name: off("elf64_sym", "st_name")?,
            sym_value: off("elf64_sym", "st_value")?,
            ksym_size: ksym.size,
            ksym_relative,
            ksym_value: off("kernel_symbol", kv)?,
            ksym_name: off("kernel_symbol", kn)?,
            states,
        })
    }
}
