//! A guest to introspect, found from a QEMU process id, and the techniques opened on
//! it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use vmscope_agent::Client;
use vmscope_hv::builtin::BuiltinVmm;
use vmscope_hv::qemu::{QemuCommandLine, QmpHypervisor};
use vmscope_hv::{Halted, Hypervisor, RamLocation};
use vmscope_map::Mapped;
use vmscope_mem::{MemoryMap, PageCache, PhysMem};
use vmscope_read::{Pread, ProcMem, VmReadv};
use vmscope_snap::{RamFile, SnapOptions, SnapStats, Snapshot, Source};

use crate::Technique;

/// The hypervisor's control channel.
#[derive(Debug)]
pub enum Hv {
    /// QEMU over QMP.
    Qemu(QmpHypervisor),
    /// vmscope's built-in VMM over its control socket.
    Builtin(BuiltinVmm),
}

impl Hv {
    /// As the common trait.
    pub fn as_dyn(&self) -> &dyn Hypervisor {
        match self {
            Hv::Qemu(q) => q,
            Hv::Builtin(b) => b,
        }
    }
}

/// A running guest: QEMU, or the built-in VMM.
#[derive(Debug)]
pub struct Target {
    /// The hypervisor's process id.
    pub pid: u32,
    /// Its control channel, when reachable.
    pub hv: Option<Hv>,
    /// Where its RAM is.
    pub loc: RamLocation,
    /// The guest agent's socket (ttyS1), when QEMU has one.
    pub agent_socket: Option<PathBuf>,
    /// How the memory map was learnt.
    pub map_source: &'static str,
    /// How live-read and halt-read read.
    pub read_method: ReadMethod,
}

impl Target {
    /// Finds everything from the PID: QEMU's command line names its QMP socket (unless
    /// `qmp` is given) and the agent's serial socket; QMP gives the memory map.
    pub fn qemu(pid: u32, qmp: Option<&Path>) -> anyhow::Result<Self> {
        let cmdline = QemuCommandLine::of(pid)?;
        let hv = match qmp {
            Some(p) => Some(
                QmpHypervisor::connect(p, Duration::from_secs(5))
                    .with_context(|| format!("connecting to QEMU's QMP socket {}", p.display()))?,
            ),
            None => connect_any(&cmdline.qmp)?,
        };
        let (map, map_source) = match &hv {
            Some(h) => (h.memory_map()?, "QMP info mtree"),
            None => (inferred_map(&cmdline)?, "inferred from -m (no QMP)"),
        };
        let loc = RamLocation::qemu(pid, map)?;
        if loc.file.is_none() {
            bail!(
                "QEMU {pid} keeps guest RAM private: restart it with \
                 -object memory-backend-memfd,id=ram,size=SIZE,share=on -machine memory-backend=ram"
            );
        }
        let read_method = ReadMethod::for_location(&loc);
        Ok(Self {
            pid,
            hv: hv.map(Hv::Qemu),
            loc,
            agent_socket: cmdline.agent_socket().map(Path::to_path_buf),
            map_source,
            read_method,
        })
    }

    /// A guest of vmscope's built-in VMM, through its control socket.
    pub fn builtin(control: &Path, agent_socket: Option<PathBuf>) -> anyhow::Result<Self> {
        let vmm = BuiltinVmm::connect(control)
            .with_context(|| format!("connecting to the VMM's control socket {}", control.display()))?;
        let loc = vmm.ram_location()?;
        let read_method = ReadMethod::for_location(&loc);
        Ok(Self {
            pid: loc.pid,
            hv: Some(Hv::Builtin(vmm)),
            loc,
            agent_socket,
            map_source: "VMM memory-map",
            read_method,
        })
    }

    /// The hypervisor, or an error that says how to offer one.
    pub fn hypervisor(&self, technique: Technique) -> anyhow::Result<&Hv> {
        self.hv.as_ref().ok_or_else(|| {
            anyhow!(
                "technique {technique} pauses the guest and needs QEMU's QMP socket: start QEMU with \
                 -qmp unix:qmp.sock,server=on,wait=off, or pass --qmp PATH"
            )
        })
    }

    /// Opens `technique` on this guest.
    pub fn open(&self, technique: Technique) -> anyhow::Result<Access<'_>> {
        Ok(match technique {
            Technique::Agent => {
                let sock = self.agent_socket.as_ref().ok_or_else(|| {
                    anyhow!(
                        "technique agent needs the guest agent on QEMU's second serial port: start QEMU with \
                         -chardev socket,id=agent,path=agent.sock,server=on,wait=off -serial chardev:agent"
                    )
                })?;
                let c = Client::connect(sock, Duration::from_secs(10))
                    .with_context(|| format!("talking to the guest agent on {}", sock.display()))?;
                Access::Agent(RefCell::new(c))
            }
            Technique::LiveRead => Access::Live(Reader::syscall(&self.loc, self.read_method)?),
            Technique::LiveMap => Access::Live(Reader::Map(Mapped::open(self.loc.clone())?)),
            Technique::HaltRead => Access::Halt(Halted::new(
                Reader::syscall(&self.loc, self.read_method)?,
                self.hypervisor(technique)?.as_dyn(),
            )),
            Technique::HaltMap => Access::Halt(Halted::new(
                Reader::Map(Mapped::open(self.loc.clone())?),
                self.hypervisor(technique)?.as_dyn(),
            )),
            Technique::HaltSnap | Technique::LiveSnap => {
                let hv = self.hypervisor(technique)?.as_dyn();
                let ram = RamFile::from_location(&self.loc)?;
                Access::Snap { live: technique == Technique::LiveSnap, ram, hv, last: RefCell::new(None) }
            }
        })
    }
}

/// Connects to the first QMP socket that greets within a second (another client may
/// hold one; QEMU serves one client per socket).
fn connect_any(sockets: &[PathBuf]) -> anyhow::Result<Option<QmpHypervisor>> {
    let mut last = None;
    for s in sockets {
        match QmpHypervisor::connect(s, Duration::from_millis(1500)) {
            Ok(h) => return Ok(Some(h)),
            Err(e) => last = Some((s, e)),
        }
    }
    match last {
        None => Ok(None),
        Some((s, e)) => Err(anyhow!(
            "QEMU's QMP socket {} does not answer ({e}); another client may hold it: add a second \
             -qmp unix:PATH,server=on,wait=off to QEMU, or pass --qmp PATH",
            s.display()
        )),
    }
}

/// How the syscall techniques (live-read, halt-read) read guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    /// `pread` of the RAM backing file (QEMU's memfd through /proc/PID/fd): no page
    /// of QEMU's address space is touched, so it is the cheapest.
    Pread,
    /// `process_vm_readv` of the hypervisor process, batched into iovecs.
    VmReadv,
    /// `pread` of /proc/PID/mem.
    ProcMem,
}

impl ReadMethod {
    /// Every method, in report order.
    pub const ALL: [ReadMethod; 3] = [ReadMethod::Pread, ReadMethod::VmReadv, ReadMethod::ProcMem];

    /// The default for `loc`: pread where there is a backing file to read, else
    /// process_vm_readv (private RAM reads as the zero page where untouched).
    pub fn for_location(loc: &RamLocation) -> Self {
        if loc.file.is_some() { ReadMethod::Pread } else { ReadMethod::VmReadv }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ReadMethod::Pread => "pread",
            ReadMethod::VmReadv => "process_vm_readv",
            ReadMethod::ProcMem => "proc-mem",
        }
    }
}

impl std::str::FromStr for ReadMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReadMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown read method `{s}`; choose pread, process_vm_readv or proc-mem"))
    }
}

/// A reader of guest RAM for the syscall and mapping techniques.
#[derive(Debug)]
pub enum Reader {
    /// pread of the backing file.
    Pread(PageCache<Pread>),
    /// process_vm_readv.
    VmReadv(PageCache<VmReadv>),
    /// /proc/PID/mem.
    ProcMem(PageCache<ProcMem>),
    /// mmap.
    Map(Mapped),
}

/// Pages a syscall reader keeps within one pass (16 MiB). The cache is emptied when a
/// pass starts: system calls are the cost of these techniques, and a walk reads many
/// fields of one page.
const PASS_CACHE_PAGES: usize = 4096;

impl Reader {
    fn syscall(loc: &RamLocation, method: ReadMethod) -> anyhow::Result<Self> {
        let loc = loc.clone();
        Ok(match method {
            ReadMethod::Pread => Reader::Pread(PageCache::new(Pread::open(loc)?, PASS_CACHE_PAGES)),
            ReadMethod::VmReadv => Reader::VmReadv(PageCache::new(VmReadv::open(loc)?, PASS_CACHE_PAGES)),
            ReadMethod::ProcMem => Reader::ProcMem(PageCache::new(ProcMem::open(loc)?, PASS_CACHE_PAGES)),
        })
    }

    fn mem(&self) -> &dyn PhysMem {
        match self {
            Reader::Pread(r) => r,
            Reader::VmReadv(r) => r,
            Reader::ProcMem(r) => r,
            Reader::Map(m) => m,
        }
    }

    /// Starts a pass: forgets cached pages, and re-reads which backing pages exist
    /// at most every half second (see [`vmscope_hv::HoleGuard::refresh_if_older`]).
    fn begin_pass(&self) -> anyhow::Result<()> {
        let max_age = std::time::Duration::from_millis(500);
        match self {
            Reader::Pread(r) => {
                r.invalidate();
            }
            Reader::VmReadv(r) => {
                r.invalidate();
                r.inner().holes().refresh_if_older(max_age)?
            }
            Reader::ProcMem(r) => {
                r.invalidate();
                r.inner().holes().refresh_if_older(max_age)?
            }
            Reader::Map(m) => m.holes().refresh_if_older(max_age)?,
        }
        Ok(())
    }
}

/// An opened technique.
#[derive(Debug)]
pub enum Access<'t> {
    /// The guest answers for itself.
    Agent(RefCell<Client>),
    /// Reads while the guest runs.
    Live(Reader),
    /// Reads with the guest paused per pass.
    Halt(Halted<'t, Reader, dyn Hypervisor + 't>),
    /// A snapshot per pass: halt-snap (pause, copy, resume) or live-snap (vmscope's
    /// pre-copy: copy running, pause, re-copy what changed).
    Snap {
        /// live-snap rather than halt-snap.
        live: bool,
        /// The RAM backing, read with pread of its data extents.
        ram: RamFile,
        /// Pauses the guest.
        hv: &'t dyn Hypervisor,
        /// What the last snapshot cost.
        last: RefCell<Option<SnapStats>>,
    },
}

impl Access<'_> {
    /// Runs `f` on guest memory as this technique sees it for one pass.
    pub fn pass<R>(&self, f: impl FnOnce(&dyn PhysMem) -> R) -> anyhow::Result<R> {
        match self {
            Access::Agent(_) => bail!("the agent technique does not read guest memory"),
            Access::Live(r) => {
                r.begin_pass()?;
                Ok(f(r.mem()))
            }
            Access::Halt(h) => h.pass(|r| -> anyhow::Result<R> {
                r.begin_pass()?;
                Ok(f(r.mem()))
            })?,
            Access::Snap { .. } => {
                let snap = self.snapshot()?;
                Ok(f(&snap))
            }
        }
    }

    /// Takes one snapshot (snapshot techniques only).
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let Access::Snap { live, ram, hv, last } = self else { bail!("not a snapshot technique") };
        let opts = SnapOptions { registers: false, vmcoreinfo: false };
        let (snap, stats) = if *live {
            vmscope_snap::live::precopy_snap(*hv, ram, opts)?
        } else {
            vmscope_snap::halt_snap(*hv, Source::File(ram), opts)?
        };
        *last.borrow_mut() = Some(stats);
        Ok(snap)
    }

    /// What the last snapshot cost (snapshot techniques only).
    pub fn last_snapshot(&self) -> Option<SnapStats> {
        match self {
            Access::Snap { last, .. } => last.borrow().clone(),
            _ => None,
        }
    }

    /// Page-cache counters of a syscall reader (pages fetched from the hypervisor are
    /// its misses).
    pub fn cache_stats(&self) -> Option<vmscope_mem::CacheStats> {
        let r = match self {
            Access::Live(r) => r,
            Access::Halt(h) => h.inner(),
            _ => return None,
        };
        match r {
            Reader::Pread(c) => Some(c.stats()),
            Reader::VmReadv(c) => Some(c.stats()),
            Reader::ProcMem(c) => Some(c.stats()),
            Reader::Map(_) => None,
        }
    }

    /// The agent client, for the agent technique.
    pub fn agent(&self) -> Option<std::cell::RefMut<'_, Client>> {
        match self {
            Access::Agent(c) => Some(c.borrow_mut()),
            _ => None,
        }
    }
}

/// The memory map QEMU builds for `-m SIZE` on a PC machine when no QMP is there to
/// ask: RAM from 0, split at the PCI hole (q35: 2 GiB below 4 GiB once RAM reaches
/// 2.75 GiB, i440fx: 3 GiB once it reaches 3.5 GiB — we assume q35, the default of
/// our flags), the rest from 4 GiB.
fn inferred_map(cmdline: &QemuCommandLine) -> anyhow::Result<MemoryMap> {
    let m = cmdline.memory.as_deref().unwrap_or("128M");
    let size = parse_size(m.split(',').next().unwrap_or(m).trim_start_matches("size="))
        .ok_or_else(|| anyhow!("cannot read QEMU's -m {m}"))?;
    let low = if size >= 0xb000_0000 { 0x8000_0000 } else { size };
    let mut regions = vec![vmscope_mem::Region::new(vmscope_mem::Gpa::new(0), low, 0, "ram-below-4g")];
    if size > low {
        regions.push(vmscope_mem::Region::new(vmscope_mem::Gpa::new(1 << 32), size - low, low, "ram-above-4g"));
    }
    Ok(MemoryMap::new(regions)?)
}

/// `1G`, `512M`, `1024` (MiB), `2048k`.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1 << 20),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_the_inferred_split() {
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512 << 20));
        let c = QemuCommandLine { memory: Some("4G".into()), ..Default::default() };
        let m = inferred_map(&c).unwrap();
        assert_eq!(m.regions().len(), 2);
        assert_eq!(m.regions()[1].offset, 0x8000_0000);
        assert_eq!(m.ram_size(), 4 << 30);
    }
}
