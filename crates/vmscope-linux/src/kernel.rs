//! [`Kernel`]: attach to a guest's memory once, then ask for views.

use std::sync::{Arc, OnceLock};

use vmscope_mem::{Gva, PhysMem};
use vmscope_x86::AddressSpace;

use crate::checks::CheckReport;
use crate::discovery::{Hints, KernelInfo, discover};
use crate::kmem::{KernelMem, member};
use crate::offsets::Offsets;
use crate::offsets::{
    CheckOffsets, CredsOffsets, FilesOffsets, MapsOffsets, MountOffsets, NetOffsets, NsOffsets, PrintkOffsets,
    VfsOffsets,
};
use crate::types::btf::BtfTypes;
use crate::views::creds::Credentials;
use crate::views::environ::Environment;
use crate::views::files::{AllOpenFiles, OpenFiles};
use crate::views::graph::{ModuleGraph, TaskGraph};
use crate::views::kmsg::KernelLog;
use crate::views::maps::{MemoryMap, MemoryMaps};
use crate::views::modules::{ModuleList, ModuleSymbol, format_module_symbols};
use crate::views::mounts::MountTable;
use crate::views::namespaces::Namespaces;
use crate::views::pids::PidTable;
use crate::views::process::{PerProcess, ProcessList, ThreadList};
use crate::views::sockets::SocketTable;
use crate::views::tree::ProcessTree;
use crate::views::{Limits, Meter, Outcome};
use crate::{Error, Profile, ProfileCache, Result, SymbolTable};

/// How to attach.
#[derive(Debug, Default)]
pub struct AttachOptions<'a> {
    /// vCPU registers, if the hypervisor gives them.
    pub hints: Hints,
    /// Where to find and keep resolved offsets for this build.
    pub cache: Option<&'a ProfileCache>,
    /// Types to use instead of the BTF in guest memory (a vmlinux's `.BTF`, an ISF
    /// file). Refused if its banner or build ID disagree with the guest's.
    pub types: Option<Profile>,
    /// Bounds of every walk.
    pub limits: Limits,
}

/// Kernel addresses the views start from.
#[derive(Debug, Clone)]
pub(crate) struct Addrs {
    pub init_task: Gva,
    pub modules: Gva,
    /// `__per_cpu_offset[0..nr_cpu_ids]`: what a per-CPU pointer adds for each CPU.
    pub per_cpu_offsets: Vec<u64>,
    /// `taint_flags` and its size in bytes.
    pub taint_flags: Option<(Gva, u64)>,
    /// `init_pid_ns` (the PID table is its `idr`).
    pub init_pid_ns: Option<Gva>,
    /// `nr_threads`, the kernel's count of tasks (an `int`).
    pub nr_threads: Option<Gva>,
    /// `net_namespace_list`, and the global `udp_table` (what every namespace
    /// uses before 6.2).
    pub net_namespace_list: Option<Gva>,
    pub udp_table: Option<Gva>,
    /// What the deeper views recognise by address.
    pub known: Known,
}

/// How a pseudo file's name is made (the kernel's `d_dname` functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DName {
    /// `pipefs_dname`: `pipe:[INODE]`.
    Pipe,
    /// `sockfs_dname`: `socket:[INODE]`.
    Socket,
    /// `anon_inodefs_dname`: `anon_inode:NAME`.
    AnonInode,
    /// `simple_dname`: `/NAME (deleted)` (memfd and other files of internal mounts).
    Simple,
}

/// Kernel objects and functions the deeper views recognise by their address.
#[derive(Debug, Clone, Default)]
pub(crate) struct Known {
    /// `prb`: the pointer to the printk ring buffer in use.
    pub prb: Option<Gva>,
    /// `printk_time`: whether the log shows timestamps (a `bool`).
    pub printk_time: Option<Gva>,
    /// `gate_vma`: the vsyscall page's VMA, and `vsyscall_mode`.
    pub gate_vma: Option<Gva>,
    pub vsyscall_mode: Option<Gva>,
    /// `special_mapping_name`: the `vm_ops->name` of `[vdso]`, `[vvar]` and the like.
    pub special_mapping_name: Option<Gva>,
    /// `gate_vma_name`: the `vm_ops->name` of `[vsyscall]`.
    pub gate_vma_name: Option<Gva>,
    /// The `d_dname` functions, by address.
    pub dnames: Vec<(Gva, DName)>,
    /// The super block operations of tmpfs (`shmem_ops`) and devpts (`devpts_sops`),
    /// and `_totalram_pages` (tmpfs's default size is half of it).
    pub shmem_ops: Option<Gva>,
    pub devpts_sops: Option<Gva>,
    pub totalram_pages: Option<Gva>,
    /// `cgrp_dfl_root`: the cgroup2 hierarchy's root (its flags are cgroup2's options).
    pub cgrp_dfl_root: Option<Gva>,
    /// `cgrp_dfl_visible`: whether cgroup2 has been mounted (until then
    /// `/proc/PID/cgroup` has no `0::` line).
    pub cgrp_dfl_visible: Option<Gva>,
    /// The super block operations of ext4 (`ext4_sops`) and proc (`proc_sops`).
    pub ext4_sops: Option<Gva>,
    pub proc_sops: Option<Gva>,
    /// `tick_nsec`: nanoseconds per tick, which gives `HZ` (ext4's `commit=` is kept
    /// in ticks).
    pub tick_nsec: Option<Gva>,
    /// The super block operations of debugfs, tracefs and ramfs.
    pub debugfs_sops: Option<Gva>,
    pub tracefs_sops: Option<Gva>,
    pub ramfs_ops: Option<Gva>,
    /// The super block operations of hugetlbfs and of the BPF file system.
    pub hugetlbfs_ops: Option<Gva>,
    pub bpf_super_ops: Option<Gva>,
    /// `kernfs_sops`: the super block operations of sysfs, cgroup and cgroup2.
    pub kernfs_sops: Option<Gva>,
    /// `policy_modes`: the names `mpol_to_str` gives memory policy modes.
    pub policy_modes: Option<Gva>,
}

impl Known {
    fn lookup(s: &SymbolTable) -> Known {
        let dnames = [
            ("pipefs_dname", DName::Pipe),
            ("sockfs_dname", DName::Socket),
            ("anon_inodefs_dname", DName::AnonInode),
            ("simple_dname", DName::Simple),
        ]
        .into_iter()
        .filter_map(|(name, d)| Some((s.addr(name)?, d)))
        .collect();
        Known {
            prb: s.addr("prb"),
            printk_time: s.addr("printk_time"),
            gate_vma: s.addr("gate_vma"),
            vsyscall_mode: s.addr("vsyscall_mode"),
            special_mapping_name: s.addr("special_mapping_name"),
            gate_vma_name: s.addr("gate_vma_name"),
            dnames,
            shmem_ops: s.addr("shmem_ops"),
            devpts_sops: s.addr("devpts_sops"),
            totalram_pages: s.addr("_totalram_pages"),
            cgrp_dfl_root: s.addr("cgrp_dfl_root"),
            cgrp_dfl_visible: s.addr("cgrp_dfl_visible"),
            ext4_sops: s.addr("ext4_sops"),
            proc_sops: s.addr("proc_sops"),
            tick_nsec: s.addr("tick_nsec"),
            policy_modes: s.addr("policy_modes"),
            debugfs_sops: s.addr("debugfs_super_operations"),
            tracefs_sops: s.addr("tracefs_super_operations"),
            ramfs_ops: s.addr("ramfs_ops"),
            hugetlbfs_ops: s.addr("hugetlbfs_ops"),
            bpf_super_ops: s.addr("bpf_super_ops"),
            kernfs_sops: s.addr("kernfs_sops"),
        }
    }
}

/// What a view needs: memory, offsets, addresses, bounds.
pub(crate) struct Ctx<'a, M> {
    pub k: &'a KernelMem<M>,
    pub o: &'a Offsets,
    pub addrs: &'a Addrs,
    pub limits: Limits,
    /// What the pass has spent of `limits.budget`.
    pub meter: Meter,
}

/// A Linux guest, attached: where its kernel is, its symbols and the offsets of the
/// structures the views read.
#[derive(Debug)]
pub struct Kernel<M> {
    kmem: KernelMem<M>,
    info: KernelInfo,
    symbols: Arc<SymbolTable>,
    offsets: Offsets,
    addrs: Addrs,
    profile: OnceLock<Profile>,
    from_cache: bool,
    limits: Limits,
}

impl<M: PhysMem> Kernel<M> {
    /// Attaches with memory alone (plus whatever `hints` say): discovery, kallsyms,
    /// BTF, offsets.
    pub fn attach(mem: M, hints: Hints) -> Result<Self> {
        Self::attach_with(mem, AttachOptions { hints, ..AttachOptions::default() })
    }

    /// Attaches with options: a profile cache, external types, limits.
    pub fn attach_with(mem: M, opts: AttachOptions<'_>) -> Result<Self> {
        let (info, k) = discover(&mem, &opts.hints)?;
        let symbols = Arc::new(k.symbols);
        let image = info.image(&symbols);
        let space = AddressSpace::new(info.kernel_root, info.paging);
        let kmem = KernelMem::new(mem, image, info.page_offset_base, space);
        let key = info.build_id.clone().map(|b| (info.banner.clone(), b));

        if let Some(t) = &opts.types {
            if let Some(b) = t.build_id().filter(|b| Some(*b) != info.build_id.as_deref()) {
                return Err(Error::ProfileMismatch(format!(
                    "the types are for build {b}, the guest runs {:?}",
                    info.build_id
                )));
            }
            if let Some(b) = t.banner().filter(|b| *b != info.banner) {
                return Err(Error::ProfileMismatch(format!(
                    "the types are for {b:?}, the guest runs {:?}",
                    info.banner
                )));
            }
        }

        let profile = OnceLock::new();
        let cached = match (&opts.cache, &key, &opts.types) {
            (Some(c), Some((banner, id)), None) => c.get(banner, id),
            _ => None,
        };
        let (offsets, from_cache) = match cached {
            Some(o) => (o, true),
            None => {
                let p = match opts.types {
                    Some(t) => Profile::from_shared(symbols.clone(), t.types_arc()),
                    None => load_btf(&kmem, &info, symbols.clone())?,
                };
                let o = Offsets::resolve(&p)?;
                let _ = profile.set(p);
                (o, false)
            }
        };
        let addrs = Self::addrs(&kmem, &symbols)?;
        let mut kernel = Kernel { kmem, info, symbols, offsets, addrs, profile, from_cache, limits: opts.limits };

        // A cached entry must still describe this memory: `init_task` is the idle
        // task of CPU 0. If not, resolve again and replace it.
        if !kernel.init_task_ok()
            && let (true, Some(c), Some((banner, id))) = (from_cache, opts.cache, &key)
        {
            c.evict(banner, id);
            let p = load_btf(&kernel.kmem, &kernel.info, kernel.symbols.clone())?;
            kernel.offsets = Offsets::resolve(&p)?;
            let _ = kernel.profile.set(p);
            kernel.from_cache = false;
        }
        if let (Some(c), Some((banner, id)), false) = (opts.cache, &key, kernel.from_cache) {
            c.put(banner, id, &kernel.offsets);
        }
        Ok(kernel)
    }

    /// A kernel over the synthetic memory of the test fixture.
    #[cfg(any(test, feature = "fixture"))]
    pub(crate) fn from_fixture(kmem: KernelMem<M>, offsets: Offsets, addrs: Addrs, limits: Limits) -> Self {
        use crate::discovery::KernelInfo;
        use crate::kallsyms::KallsymsLayout;
        use vmscope_mem::Gpa;
        let space = kmem.space();
        let info = KernelInfo {
            banner: "Linux version 0.0.0-fixture (synthetic)\n".into(),
            release: "0.0.0-fixture".into(),
            build_id: None,
            text_va: Gva::new(0),
            text_pa: Gpa::new(0),
            kaslr_virtual_offset: 0,
            kaslr_physical_offset: 0,
            phys_base: 0,
            paging: space.mode(),
            kernel_root: space.root(),
            page_offset_base: Gva::new(crate::views::fixture::DIRECT),
            kallsyms: KallsymsLayout {
                num_syms: Gpa::new(0),
                names: Gpa::new(0),
                markers: Gpa::new(0),
                token_table: Gpa::new(0),
                token_index: Gpa::new(0),
                offsets: Gpa::new(0),
                relative_base: Gpa::new(0),
                seqs_of_names: None,
                count: 0,
                relative_base_value: Gva::new(0),
                absolute_percpu: false,
                order: crate::kallsyms::TableOrder::OffsetsFirst,
            },
            btf: None,
            evidence: Vec::new(),
        };
        let symbols = Arc::new(SymbolTable::new(crate::SymbolSource::Kallsyms));
        Kernel { kmem, info, symbols, offsets, addrs, profile: OnceLock::new(), from_cache: false, limits }
    }

    fn addrs(kmem: &KernelMem<M>, s: &SymbolTable) -> Result<Addrs> {
        let nr = s.addr("nr_cpu_ids").and_then(|a| kmem.read_u32(a).ok()).unwrap_or(1).clamp(1, 8192);
        let per_cpu_offsets = match s.addr("__per_cpu_offset") {
            Some(a) => kmem
                .read_vec(a, nr as usize * 8)
                .map(|b| {
                    b.chunks_exact(8)
                        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        // The table ends where the next symbol starts.
        let taint_flags = s.lookup("taint_flags").and_then(|t| Some((t.addr, s.extent(t)?)));
        Ok(Addrs {
            init_task: s.require("init_task")?,
            modules: s.require("modules")?,
            per_cpu_offsets,
            taint_flags,
            init_pid_ns: s.addr("init_pid_ns"),
            nr_threads: s.addr("nr_threads"),
            net_namespace_list: s.addr("net_namespace_list"),
            udp_table: s.addr("udp_table"),
            known: Known::lookup(s),
        })
    }

    fn init_task_ok(&self) -> bool {
        let o = &self.offsets.task;
        member(self.addrs.init_task, o.comm)
            .and_then(|comm| self.kmem.read_cstr(comm, o.comm_len as usize))
            .is_ok_and(|c| c.starts_with(b"swapper"))
    }

    fn ctx(&self) -> Ctx<'_, M> {
        let limits = self.limits;
        Ctx {
            k: &self.kmem,
            o: &self.offsets,
            addrs: &self.addrs,
            limits,
            meter: Meter::new(limits.budget, &self.kmem),
        }
    }

    /// Runs one pass, `f`, over a fresh context; a pass that spent its budget says
    /// so in its anomalies.
    fn pass<R: Outcome>(&self, f: impl FnOnce(&Ctx<'_, M>) -> R) -> R {
        let ctx = self.ctx();
        let mut out = f(&ctx);
        if let (Some(a), Some(an)) = (ctx.meter.anomaly(), out.anomalies()) {
            an.push(a);
        }
        out
    }

    /// The same kernel over other memory — a snapshot of this guest, or another
    /// technique's reader of it — without discovering anything again. The caller
    /// vouches that `mem` holds the kernel this one attached to; passes that take a
    /// fresh snapshot each time use this to pay for attaching once.
    pub fn rebind<N: PhysMem>(&self, mem: N) -> Kernel<N> {
        Kernel {
            kmem: self.kmem.rebind(mem),
            info: self.info.clone(),
            symbols: self.symbols.clone(),
            offsets: self.offsets.clone(),
            addrs: self.addrs.clone(),
            profile: OnceLock::new(),
            from_cache: self.from_cache,
            limits: self.limits,
        }
    }

    /// The same kernel, its views bounded by `limits` instead (a budget for one
    /// call, say) — over the same memory, nothing discovered again.
    pub fn with_limits(&self, limits: Limits) -> Kernel<&M> {
        let mut k = self.rebind(self.mem());
        k.limits = limits;
        k
    }

    /// The bounds of every walk and the budget of every pass.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What discovery found: KASLR offsets, paging mode, banner, evidence.
    pub fn info(&self) -> &KernelInfo {
        &self.info
    }

    /// The kernel's symbols (kallsyms from memory).
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// The offsets the views use.
    pub fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    /// Whether the offsets came from the profile cache.
    pub fn offsets_from_cache(&self) -> bool {
        self.from_cache
    }

    /// The full profile (symbols and types). After an attach served from the cache
    /// the BTF is parsed now, on first use.
    pub fn profile(&self) -> Result<&Profile> {
        if let Some(p) = self.profile.get() {
            return Ok(p);
        }
        let p = load_btf(&self.kmem, &self.info, self.symbols.clone())?;
        Ok(self.profile.get_or_init(|| p))
    }

    /// Kernel-virtual memory.
    pub fn kernel_mem(&self) -> &KernelMem<M> {
        &self.kmem
    }

    /// The guest-physical memory.
    pub fn mem(&self) -> &M {
        self.kmem.phys()
    }

    /// Forgets cached translations: call when the guest ran since the last view.
    pub fn invalidate(&self) {
        self.kmem.invalidate();
    }

    /// Every process (thread-group leader), with anomalies.
    pub fn processes(&self) -> ProcessList {
        self.pass(|c| c.processes())
    }

    /// The threads of process `pid`, or `None` if there is no such process.
    pub fn threads(&self, pid: i32) -> Option<ThreadList> {
        self.pass(|c| c.threads(pid))
    }

    /// The process tree.
    pub fn process_tree(&self) -> ProcessTree {
        ProcessTree::from_list(self.processes())
    }

    /// The threads of every process, in task-list order (each list with its own
    /// anomalies), and the anomalies of the task-list walk.
    pub fn all_threads(&self) -> (Vec<ThreadList>, Vec<crate::Anomaly>) {
        self.pass(|c| c.all_threads())
    }

    /// Ok when the offsets `view` needs were resolved (`have`); else why not: the
    /// first thing `check` finds missing in the kernel's types.
    fn need(&self, view: &'static str, have: bool, check: impl Fn(&Profile) -> Result<()>) -> Result<()> {
        if have {
            return Ok(());
        }
        let why = match self.profile() {
            Ok(p) => check(p).err().map_or_else(|| "its types were not resolved".to_owned(), |e| e.to_string()),
            Err(e) => e.to_string(),
        };
        Err(Error::Unsupported { view, why })
    }

    fn need_maps(&self) -> Result<()> {
        let have = self.offsets.maps.is_some() && self.offsets.vfs.is_some();
        self.need("memory maps", have, |p| VfsOffsets::resolve(p).and(MapsOffsets::resolve(p)).map(|_| ()))
    }

    fn need_files(&self) -> Result<()> {
        let have = self.offsets.files.is_some() && self.offsets.vfs.is_some();
        self.need("open files", have, |p| VfsOffsets::resolve(p).and(FilesOffsets::resolve(p)).map(|_| ()))
    }

    /// The memory map of process `pid` as `/proc/PID/maps` shows it (`None`: no
    /// such process; empty for a kernel thread). An error when the kernel's types
    /// lack the maple tree (before Linux 6.1) or the VFS structures.
    pub fn memory_map(&self, pid: i32) -> Result<Option<MemoryMap>> {
        self.need_maps()?;
        Ok(self.pass(|c| c.memory_map(pid)))
    }

    /// The memory map of every process, in one walk that reads each shared file
    /// and directory once.
    pub fn memory_maps(&self) -> Result<MemoryMaps> {
        self.need_maps()?;
        Ok(self.pass(|c| c.memory_maps()))
    }

    /// The open files of process `pid`, as `/proc/PID/fd` and `fdinfo` show them,
    /// with its working directory, root and executable (`None`: no such process).
    pub fn open_files(&self, pid: i32) -> Result<Option<OpenFiles>> {
        self.need_files()?;
        Ok(self.pass(|c| c.open_files(pid)))
    }

    /// The open files of every process, in one walk.
    pub fn all_open_files(&self) -> Result<AllOpenFiles> {
        self.need_files()?;
        Ok(self.pass(|c| c.all_open_files()))
    }

    /// The kernel log (the printk ring buffer of Linux 5.10+), oldest record first.
    pub fn kernel_log(&self) -> Result<KernelLog> {
        if self.addrs.known.prb.is_none() {
            return Err(Error::Unsupported {
                view: "the kernel log",
                why: "kallsyms has no `prb` (the ring buffer of Linux 5.10+)".into(),
            });
        }
        self.need("the kernel log", self.offsets.printk.is_some(), |p| PrintkOffsets::resolve(p).map(|_| ()))?;
        Ok(self.pass(|c| c.kernel_log()))
    }

    /// The credentials of process `pid` (or of every process, `pid` `None`) as the
    /// `Uid`, `Gid`, `Groups` and `Cap*` lines of `/proc/PID/status` show them
    /// (`Ok(None)`: no such process).
    pub fn credentials(&self, pid: Option<i32>) -> Result<Option<PerProcess<Credentials>>> {
        self.need("credentials", self.offsets.creds.is_some(), |p| CredsOffsets::resolve(p).map(|_| ()))?;
        Ok(self.pass(|c| c.credentials(pid)))
    }

    /// The namespaces of process `pid` (or of every process) as the
    /// `/proc/PID/ns/*` links show them, and each one's cgroup (`Ok(None)`: no
    /// such process).
    pub fn namespaces(&self, pid: Option<i32>) -> Result<Option<PerProcess<Namespaces>>> {
        self.need("namespaces", self.offsets.ns.is_some(), |p| NsOffsets::resolve(p).map(|_| ()))?;
        Ok(self.pass(|c| c.namespaces(pid)))
    }

    /// The mounts of the mount namespace of process `pid`, from its root, as
    /// `/proc/PID/mountinfo` shows them; of every mount namespace with `None`
    /// (`Ok(None)`: no such process).
    pub fn mounts(&self, pid: Option<i32>) -> Result<Option<MountTable>> {
        let have = self.offsets.mounts.is_some() && self.offsets.vfs.is_some() && self.offsets.ns.is_some();
        self.need("mounts", have, |p| {
            VfsOffsets::resolve(p).and(NsOffsets::resolve(p)).and(MountOffsets::resolve(p)).map(|_| ())
        })?;
        Ok(self.pass(|c| c.mount_table(pid)))
    }

    /// Every TCP, UDP and unix socket of every network namespace, with the
    /// processes that hold each.
    pub fn sockets(&self) -> Result<SocketTable> {
        if self.addrs.net_namespace_list.is_none() {
            return Err(Error::Unsupported { view: "sockets", why: "kallsyms has no `net_namespace_list`".into() });
        }
        self.need("sockets", self.offsets.net.is_some(), |p| NetOffsets::resolve(p).map(|_| ()))?;
        Ok(self.pass(|c| c.sockets()))
    }

    /// The environment of process `pid`, as `/proc/PID/environ` holds it (`None`:
    /// no such process).
    pub fn environment(&self, pid: i32) -> Option<Environment> {
        self.pass(|c| c.environment(pid))
    }

    /// Every loaded module, with anomalies.
    pub fn modules(&self) -> ModuleList {
        self.pass(|c| c.modules())
    }

    /// The task graph, raw: the task list walked both ways, every task and thread
    /// with its parents, children and thread group, and the kernel's `nr_threads`.
    /// For consistency checks (`vmscope-consistency`), not for display.
    pub fn task_graph(&self) -> TaskGraph {
        self.pass(|c| c.task_graph())
    }

    /// The PID table (`init_pid_ns.idr`), raw: every id, its `struct pid` and the
    /// tasks attached to it.
    pub fn pid_table(&self) -> PidTable {
        self.pass(|c| c.pid_table())
    }

    /// The module list, raw: walked both ways, each module's links and state.
    pub fn module_graph(&self) -> ModuleGraph {
        self.pass(|c| c.module_graph())
    }

    /// Every integrity check ([`checks`](crate::checks)): the system call tables and
    /// dispatch, the IDT, tty and keyboard hooks, hidden processes and modules,
    /// shared credentials. The checks' offsets come from the kernel's types, parsed
    /// now if the attach was served from the profile cache.
    pub fn check(&self) -> Result<CheckReport> {
        let co = CheckOffsets::resolve(self.profile()?);
        Ok(self.pass(|c| crate::checks::run(c, &co, &self.symbols)))
    }

    /// Every module's symbols, as `/proc/kallsyms` lists them after the kernel's.
    pub fn module_symbols(&self) -> (Vec<ModuleSymbol>, Vec<crate::Anomaly>) {
        self.pass(|c| c.module_symbols())
    }

    /// `/proc/kallsyms` as root would read it: the kernel's symbols, then every
    /// module's (BPF programs, ftrace and kprobe trampolines are not included).
    pub fn proc_kallsyms(&self) -> String {
        let mut s = self.symbols.to_proc_kallsyms();
        s.push_str(&format_module_symbols(&self.module_symbols().0));
        s
    }
}

/// Reads and parses the BTF blob in guest memory.
fn load_btf<M: PhysMem>(kmem: &KernelMem<M>, info: &KernelInfo, symbols: Arc<SymbolTable>) -> Result<Profile> {
    let (gpa, len) = info
        .btf
        .ok_or_else(|| Error::Btf("the kernel has no __start_BTF/__stop_BTF (CONFIG_DEBUG_INFO_BTF)".into()))?;
    let mut blob = vec![0u8; len as usize];
    kmem.phys().read(gpa, &mut blob).map_err(|e| Error::phys(gpa, e))?;
    let types = BtfTypes::parse(&blob)?;
    Ok(Profile::from_shared(symbols, Arc::new(types)).with_identity(Some(info.banner.clone()), info.build_id.clone()))
}
