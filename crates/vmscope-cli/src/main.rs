//! `vmscope`: introspect a running QEMU guest (or a guest of the built-in VMM, or a
//! dump file) from outside: processes, threads and trees, modules, memory maps, open
//! files, sockets, mounts, namespaces, credentials, environments, the kernel log, the
//! kernel, a memory dump.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;

mod agent;
mod output;
mod view;
mod watch;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use vmscope_consistency::invariants;
use vmscope_linux::{AttachOptions, Budget, Hints, Kernel, Limits, ProfileCache};
use vmscope_mem::{MemoryMap, PhysMem, SliceMem};
use vmscope_snap::{Format, SnapOptions};
use vmscope_technique::{Guest, Options, ReadMethod, Target, Technique};

use view::Output;

/// Attaching to a kernel parses its BTF and kallsyms into hundreds of thousands of
/// small allocations; mimalloc makes a cold start (nothing cached) markedly cheaper
/// than glibc's malloc (see the README's "Cold start"). It is built without
/// transparent huge pages (the workspace's `no_thp` feature): zeroing a 2 MiB page at
/// each first touch of its sparsely used arena made a cold start 2.5 times slower.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Introspect a Linux guest from outside: no agent, no profile, no guest changes.
///
/// The guest is a running QEMU (--qemu PID; started however it was: private RAM from
/// plain -m, memory backends shared or private, hugetlbfs, see the README), a QEMU
/// domain of libvirt (--libvirt DOMAIN), a guest of vmscope's built-in VMM (--vmm
/// SOCKET), or a dump file (--dump FILE: ELF core as
/// QEMU's dump-guest-memory writes it, LiME, or raw).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// The QEMU process to introspect.
    #[arg(long, value_name = "PID", global = true, conflicts_with_all = ["dump", "vmm", "libvirt"])]
    qemu: Option<u32>,
    /// QEMU's QMP socket (default: found in QEMU's command line).
    #[arg(long, value_name = "SOCKET", global = true)]
    qmp: Option<PathBuf>,
    /// A QEMU domain that libvirt runs (name, UUID or id). Halting techniques pause it
    /// through libvirt (virsh suspend/resume); vmscope never opens libvirt's monitor.
    #[arg(long, value_name = "DOMAIN", global = true, conflicts_with_all = ["dump", "vmm", "qmp"])]
    libvirt: Option<String>,
    /// The libvirt connection URI, as `virsh -c` takes it (default:
    /// $LIBVIRT_DEFAULT_URI, else qemu:///system).
    #[arg(long, value_name = "URI", global = true, requires = "libvirt")]
    connect: Option<String>,
    /// The control socket of a `vmscope-vmm` guest.
    #[arg(long, value_name = "SOCKET", global = true, conflicts_with = "dump")]
    vmm: Option<PathBuf>,
    /// A memory dump to introspect instead of a live guest.
    #[arg(long, value_name = "FILE", global = true)]
    dump: Option<PathBuf>,
    /// How to reach guest memory: live-read, halt-read, live-map, halt-map, halt-snap,
    /// live-snap, consistent-read, consistent-map, agent (default: the fastest the
    /// guest's RAM allows: live-map where it is shared, else live-read).
    #[arg(long, short, value_name = "NAME", global = true)]
    technique: Option<Technique>,
    /// How live-read and halt-read read: pread (of the RAM file), process_vm_readv,
    /// proc-mem (default: the fastest the RAM allows: pread where it is a shared file,
    /// else process_vm_readv).
    #[arg(long, value_name = "METHOD", global = true)]
    read_method: Option<ReadMethod>,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Most wall time one view may take, in milliseconds; a view that runs out stops
    /// and says so (a `budget` anomaly). Default 30000.
    #[arg(long, value_name = "MS", global = true)]
    budget_ms: Option<u64>,
    /// Most guest memory one view may read, in MiB. Default 256.
    #[arg(long, value_name = "MIB", global = true)]
    budget_mb: Option<u64>,
    /// Most list and tree nodes one view may visit. Default 262144.
    #[arg(long, value_name = "N", global = true)]
    budget_nodes: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Processes, like `ps -ef`: PID, PPID, UID, STATE, COMM, CMD.
    Ps {
        /// Also say how consistent the view is: whether it was torn (the guest wrote
        /// what was read while it was read), the window, the read set, and the
        /// kernel's own rules it breaks.
        #[arg(long, conflicts_with_all = ["threads", "tree"])]
        verify: bool,
        /// One line per thread, with its TID, as `ps -eLf`.
        #[arg(long, conflicts_with = "tree")]
        threads: bool,
        /// Children under their parents, as `ps -ef --forest`.
        #[arg(long)]
        tree: bool,
    },
    /// The process tree, as `pstree -pA`.
    Pstree,
    /// The memory map of process PID, as /proc/PID/maps: start-end, permissions,
    /// offset, device, inode, path or `[heap]`, `[stack]`, `[vdso]`.
    Maps {
        /// The process.
        pid: i32,
    },
    /// Open files, as `lsof`: each descriptor's path (`socket:[INODE]`, `pipe:[INODE]`,
    /// `anon_inode:[eventfd]` for pseudo files), flags and position, with each
    /// process's working directory, root and executable.
    Lsof {
        /// Only this process.
        pid: Option<i32>,
    },
    /// TCP, UDP and unix sockets of every network namespace, as `ss -tuxanp`:
    /// state, local and peer address (a unix socket's path and its peer's inode),
    /// network namespace, inode and the processes that hold each.
    Sockets,
    /// Mounts, as /proc/PID/mountinfo: of process PID's mount namespace, or of every
    /// mount namespace (each as its first process sees it).
    Mounts {
        /// Only this process's mount namespace.
        pid: Option<i32>,
    },
    /// Namespaces, as `ls -l /proc/PID/ns` names them (their inode numbers), and
    /// the cgroup (v2) path of /proc/PID/cgroup.
    Ns {
        /// Only this process.
        pid: Option<i32>,
    },
    /// Credentials and capabilities, as the Uid, Gid, Groups and Cap* lines of
    /// /proc/PID/status.
    Creds {
        /// Only this process.
        pid: Option<i32>,
    },
    /// The kernel log (the printk ring buffer), as `dmesg`.
    Dmesg {
        /// Each line prefixed with its `<PRIORITY>`, as `dmesg -r`.
        #[arg(long, short)]
        raw: bool,
        /// Each line with its caller (`[T<TID>]` or `[C<CPU>]`), as kernels built with
        /// CONFIG_PRINTK_CALLER print it.
        #[arg(long)]
        caller: bool,
    },
    /// The environment of process PID, one NAME=value a line (/proc/PID/environ).
    Env {
        /// The process.
        pid: i32,
    },
    /// Loaded kernel modules, like /proc/modules.
    Lsmod {
        /// Also say how consistent the view is (see `ps --verify`).
        #[arg(long)]
        verify: bool,
    },
    /// The integrity checks, each finding with its evidence: system call tables and
    /// dispatch, IDT, tty and keyboard hooks, hidden processes (PID table, run queues)
    /// and modules (module kset, module area), shared credentials. Exit status 0:
    /// nothing found; 3: findings; 1: error.
    Check,
    /// The guest's symbols, as its /proc/kallsyms lists them to root: ADDRESS TYPE
    /// NAME, and `[MODULE]` for a module's.
    Kallsyms {
        /// Only symbols whose name contains this.
        pattern: Option<String>,
    },
    /// The PID table (init_pid_ns.idr): each id, its struct pid, the task attached,
    /// and what disagrees with the task list.
    Pids,
    /// The kernel: release, banner, build ID, paging mode, KASLR offsets, and the
    /// evidence each was found from.
    Info,
    /// Write a Volatility 3 symbol file (ISF JSON) of the running kernel: its types
    /// from BTF, its symbols from kallsyms at link-time addresses, the banner
    /// Volatility matches. Put it under DIR/linux/ and run `vol -s DIR ...`.
    Profile {
        /// The ISF file to write (e.g. symbols/linux/guest.json).
        #[arg(long, value_name = "FILE")]
        isf: PathBuf,
    },
    /// Watch the guest: a pass every 1/HZ seconds by the technique asked for (a
    /// halting one pauses the guest for each pass only), printing each process
    /// start and exit and each module load and unload as it is seen, until SIGINT or
    /// SIGTERM, --count or --duration; then a summary of what the passes cost.
    Watch(watch::WatchArgs),
    /// Write guest memory to a file (the guest is paused while it is copied).
    Dump {
        /// raw (with a FILE.vmscope.json memory map), elf (QEMU dump-guest-memory
        /// layout, with VMCOREINFO and registers) or lime.
        #[arg(long, value_name = "FORMAT", default_value = "elf")]
        format: Format,
        /// The file to write.
        out: PathBuf,
    },
}

fn main() {
    let args = Args::parse();
    // A halting technique must not die with the guest paused: until the pass has
    // resumed it, these signals wait (SIGKILL cannot).
    // `watch` ends itself on these signals, between passes, with a summary.
    let signals = match args.command {
        Command::Watch(_) => vmscope_technique::stop::on_signals_noted(),
        _ => vmscope_technique::stop::on_signals(),
    };
    if let Err(e) = signals {
        eprintln!("vmscope: warning: cannot handle SIGINT/SIGTERM ({e}); do not interrupt a halting technique");
    }
    if let Err(e) = run(&args) {
        eprintln!("vmscope: {e:#}");
        if let Some(found) = e.downcast_ref::<view::integrity::Found>() {
            eprintln!("vmscope: {found}");
            std::process::exit(view::integrity::FOUND_STATUS);
        }
        let code = match e.downcast_ref::<vmscope_technique::Error>() {
            Some(vmscope_technique::Error::Interrupted { signal }) => 128 + signal,
            _ => 1,
        };
        std::process::exit(code);
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let target = match (args.qemu, &args.vmm, &args.dump) {
        _ if args.libvirt.is_some() => {
            Target::Libvirt { domain: args.libvirt.clone().unwrap_or_default(), uri: args.connect.clone() }
        }
        (Some(pid), _, _) => Target::Qemu { pid, qmp: args.qmp.clone() },
        (None, Some(control), _) => Target::Builtin { control: control.clone(), agent: None },
        (None, None, Some(path)) => {
            if let Command::Dump { .. } = args.command {
                bail!("`dump` writes a live guest's memory; this is already a dump");
            }
            Target::Dump(path.clone())
        }
        (None, None, None) => bail!("say which guest: --qemu PID, --libvirt DOMAIN, --vmm SOCKET or --dump FILE"),
    };
    let guest = target.open()?;
    let opts = Options { read_method: args.read_method, ..Options::default() };
    match &args.command {
        Command::Dump { format, out } => return dump(&guest, args.technique, &opts, *format, out),
        Command::Watch(w) => return watch::run(&guest, args.technique, &opts, w, args.json, args.limits()),
        _ => {}
    }
    let access = guest.access(args.technique, &opts)?;
    if let Some(mut client) = access.agent() {
        let out = agent::view(args, &mut client)?;
        return emit(args.json, out);
    }
    let name = access.technique().map_or("dump", Technique::name);
    let hints = guest
        .registers()
        .map_or_else(Hints::none, |r| Hints::from_registers(r.cr3, r.cr4).with_lstar(vmscope_mem::Gva::new(r.lstar)));
    // The view is built inside the pass and printed after it: a slow reader of
    // stdout must not keep a halted guest paused.
    let validates = access.technique().is_some_and(Technique::validates);
    if !args.command.verify() && !validates {
        let out = access.pass(|mem| view(args, name, &attach(mem, hints, args.limits())?))??;
        return emit(args.json, with_ram(args, &guest, out));
    }
    // Attaching reads what the kernel does not change while it runs (its symbols and
    // types); the view is what must be consistent, so it gets a pass (and a read set)
    // of its own.
    let kernel = access.pass(|mem| {
        attach(mem, hints, args.limits()).map(|k| k.rebind(SliceMem::new(Vec::new(), MemoryMap::flat(0))))
    })??;
    if !args.command.verify() {
        let out = access.pass(|mem| view(args, name, &kernel.rebind(mem)))??;
        return emit(args.json, with_ram(args, &guest, out));
    }
    let seen = access.observed_pass(|mem| {
        let k = kernel.rebind(mem);
        view(args, name, &k).map(|out| (out, invariants::check(&k)))
    })?;
    let (mut out, checked) = seen.value?;
    let verified = output::Verified::new(&seen.consistency, &checked);
    out.doc["consistency"] = serde_json::to_value(&verified)?;
    out.table.push_str(&verified.text());
    emit(args.json, out)
}

/// `info` also says where guest RAM lives (a live guest's).
fn with_ram(args: &Args, guest: &Guest, mut out: Output) -> Output {
    if let (Command::Info, Some(loc)) = (&args.command, guest.ram_location()) {
        output::add_ram(&mut out.doc, &mut out.table, loc, guest.map_source());
    }
    out
}

impl Args {
    /// The bounds of every view, with the budget the flags ask for.
    fn limits(&self) -> Limits {
        let d = Budget::default();
        let budget = Budget {
            max_bytes: self.budget_mb.map_or(d.max_bytes, |mb| mb.saturating_mul(1 << 20)),
            max_nodes: self.budget_nodes.unwrap_or(d.max_nodes),
            max_time: self.budget_ms.map_or(d.max_time, std::time::Duration::from_millis),
        };
        Limits { budget, ..Limits::default() }
    }
}

impl Command {
    /// Whether `--verify` was asked for.
    fn verify(&self) -> bool {
        matches!(self, Command::Ps { verify: true, .. } | Command::Lsmod { verify: true })
    }
}

fn emit(json: bool, out: Output) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out.doc)?)?;
    } else {
        stdout.write_all(out.table.as_bytes())?;
        if let Some(n) = output::anomalies_note(&out.anomalies) {
            eprint!("{n}");
        }
    }
    view::integrity::verdict(&out)
}

/// Attaches to the kernel in `mem` (offsets cached per kernel build in the user's
/// cache).
fn attach(mem: &dyn PhysMem, hints: Hints, limits: Limits) -> anyhow::Result<Kernel<&dyn PhysMem>> {
    let cache = ProfileCache::per_user();
    Kernel::attach_with(mem, AttachOptions { hints, cache: cache.as_ref(), limits, ..AttachOptions::default() })
        .context("finding the Linux kernel in guest memory")
}

/// Builds the requested view.
fn view<M: PhysMem>(args: &Args, technique: &str, k: &Kernel<M>) -> anyhow::Result<Output> {
    view::build(&args.command, technique, k)
}

/// Writes guest memory to `out`, with registers and VMCOREINFO: a snapshot
/// technique copies it (halt-snap unless live-snap is asked for).
fn dump(
    guest: &Guest,
    technique: Option<Technique>,
    opts: &Options,
    format: Format,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let snap_technique = match technique {
        Some(Technique::LiveSnap) => Technique::LiveSnap,
        Some(Technique::Agent) => bail!("the agent cannot dump memory; choose halt-snap or live-snap"),
        _ => Technique::HaltSnap,
    };
    let access = guest.access(Some(snap_technique), opts)?;
    let (mut snap, cost) = access.snapshot(SnapOptions { registers: true, vmcoreinfo: false })?;
    let source = add_vmcoreinfo(&mut snap);
    let stats = snap.write(out, format).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "vmscope: wrote {} ({} format, {} MiB of data, {} vCPU(s), VMCOREINFO {source}); guest paused {:.1} ms",
        out.display(),
        format.name(),
        stats.data_bytes >> 20,
        snap.meta().vcpus.len(),
        cost.downtime.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Puts the guest kernel's VMCOREINFO into `snap`: the kernel's own note, found
/// through kallsyms (`vmcoreinfo_note`, the note QEMU's vmcoreinfo device is told
/// about), else a page-aligned note found by scanning the copy, else text built
/// from what attaching found. Says which.
fn add_vmcoreinfo(snap: &mut vmscope_snap::Snapshot) -> &'static str {
    let hints = snap.meta().vcpus.first().map_or_else(Hints::none, |r| Hints::from_registers(r.cr3, r.cr4));
    let found = match attach(&*snap, hints, Limits::default()) {
        Ok(k) => match vmscope_linux::vmcoreinfo::read_note(&k) {
            Ok(Some(text)) => Ok((text, "from the kernel's vmcoreinfo_note")),
            _ => Err(Some(vmscope_linux::vmcoreinfo::build(&k))),
        },
        Err(_) => Err(None),
    };
    match found {
        Ok((text, source)) => {
            snap.meta_mut().vmcoreinfo = Some(text);
            source
        }
        Err(_) if snap.find_vmcoreinfo() => "from a note in guest memory",
        Err(Some(built)) => {
            snap.meta_mut().vmcoreinfo = Some(built);
            "built by vmscope (the kernel has none)"
        }
        Err(None) => "absent (no Linux kernel found)",
    }
}
