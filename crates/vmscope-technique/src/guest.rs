//! What to introspect ([`Target`]) and the guest it names, opened ([`Guest`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmscope_hv::builtin::BuiltinVmm;
use vmscope_hv::libvirt::Libvirt;
use vmscope_hv::qemu::{QemuCommandLine, QmpHypervisor};
use vmscope_hv::{Hypervisor, RamLocation, VcpuRegisters};
use vmscope_snap::DumpFile;

use crate::access::{Access, How};
use crate::reader::{Options, ReadMethod, Reader};
use crate::{Error, MemoryAccess, Result, Technique};

/// A guest to introspect, as a user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A running QEMU, by process id. QEMU's command line names its QMP sockets
    /// (the first that answers is used, unless `qmp` is given), the agent's serial
    /// socket, and how its RAM is backed.
    Qemu {
        /// QEMU's process id.
        pid: u32,
        /// The QMP socket to use.
        qmp: Option<PathBuf>,
    },
    /// A QEMU domain that libvirt runs, by name (or UUID, or id). libvirt holds QEMU's
    /// monitor: halting techniques pause through libvirt, and the memory map and
    /// registers come through its monitor passthrough; memory is read from QEMU's
    /// process. Serial port 1, if it is a unix socket, is the agent's.
    Libvirt {
        /// The domain.
        domain: String,
        /// The libvirt connection URI (`None`: `LIBVIRT_DEFAULT_URI`, else
        /// `qemu:///system`).
        uri: Option<String>,
    },
    /// A guest of vmscope's built-in VMM, by its control socket.
    Builtin {
        /// The VMM's control socket.
        control: PathBuf,
        /// The socket of the guest's ttyS1 (agent), if it has one.
        agent: Option<PathBuf>,
    },
    /// A dump file: ELF core (vmscope's or QEMU's `dump-guest-memory`), LiME, or raw.
    Dump(PathBuf),
}

impl Target {
    /// Opens the target: connects to its hypervisor and finds its RAM, or parses the
    /// dump.
    pub fn open(&self) -> Result<Guest> {
        match self {
            Target::Qemu { pid, qmp } => Guest::qemu(*pid, qmp.as_deref()),
            Target::Libvirt { domain, uri } => Guest::libvirt(domain, uri.as_deref()),
            Target::Builtin { control, agent } => Guest::builtin(control, agent.clone()),
            Target::Dump(path) => Ok(Guest {
                hv: None,
                ram: Ram::Dump(Box::new(DumpFile::open(path)?)),
                agent_socket: None,
                map_source: "the dump file",
            }),
        }
    }
}

/// The hypervisor's control channel.
#[derive(Debug)]
enum Hv {
    Qemu(QmpHypervisor),
    Libvirt(Libvirt),
    Builtin(BuiltinVmm),
}

impl Hv {
    fn as_dyn(&self) -> &dyn Hypervisor {
        match self {
            Hv::Qemu(q) => q,
            Hv::Libvirt(l) => l,
            Hv::Builtin(b) => b,
        }
    }
}

#[derive(Debug)]
enum Ram {
    Live(RamLocation),
    Dump(Box<DumpFile>),
}

/// An opened [`Target`], on which techniques open as an [`Access`].
#[derive(Debug)]
pub struct Guest {
    hv: Option<Hv>,
    ram: Ram,
    agent_socket: Option<PathBuf>,
    map_source: &'static str,
}

impl Guest {
    fn qemu(pid: u32, qmp: Option<&Path>) -> Result<Self> {
        let cmdline = QemuCommandLine::of(pid)?;
        let hv = match qmp {
            Some(p) => Some(QmpHypervisor::connect(p, Duration::from_secs(5))?),
            None => connect_any(&cmdline.qmp)?,
        };
        let layout = match &hv {
            Some(h) => h.ram_layout()?,
            None => cmdline.inferred_layout(pid)?,
        };
        let map_source = layout.source;
        let loc = RamLocation::qemu(pid, &layout)?;
        Ok(Self {
            hv: hv.map(Hv::Qemu),
            ram: Ram::Live(loc),
            agent_socket: cmdline.agent_socket().map(Path::to_path_buf),
            map_source,
        })
    }

    fn libvirt(domain: &str, uri: Option<&str>) -> Result<Self> {
        let lv = Libvirt::connect(domain, uri)?;
        let layout = lv.ram_layout()?;
        let loc = RamLocation::qemu(lv.qemu_pid()?, &layout)?;
        Ok(Self {
            agent_socket: lv.serial_socket(1)?,
            hv: Some(Hv::Libvirt(lv)),
            ram: Ram::Live(loc),
            map_source: layout.source,
        })
    }

    fn builtin(control: &Path, agent_socket: Option<PathBuf>) -> Result<Self> {
        let vmm = BuiltinVmm::connect(control)?;
        let loc = vmm.ram_location()?;
        Ok(Self { hv: Some(Hv::Builtin(vmm)), ram: Ram::Live(loc), agent_socket, map_source: "VMM memory-map" })
    }

    /// The hypervisor process, for a live guest.
    pub fn pid(&self) -> Option<u32> {
        self.ram_location().map(|l| l.pid)
    }

    /// Where the RAM of a live guest is.
    pub fn ram_location(&self) -> Option<&RamLocation> {
        match &self.ram {
            Ram::Live(l) => Some(l),
            Ram::Dump(_) => None,
        }
    }

    /// The dump, for a dump target.
    pub fn dump(&self) -> Option<&DumpFile> {
        match &self.ram {
            Ram::Dump(d) => Some(d),
            Ram::Live(_) => None,
        }
    }

    /// The hypervisor's control channel, when one was found.
    pub fn hypervisor(&self) -> Option<&dyn Hypervisor> {
        self.hv.as_ref().map(Hv::as_dyn)
    }

    /// How the guest memory map was learnt (QMP, `VMM memory-map`, ...).
    pub fn map_source(&self) -> &'static str {
        self.map_source
    }

    /// The registers of vCPU 0 (from the hypervisor, or as the dump recorded them),
    /// when there are any with paging on; they locate the kernel's page tables.
    pub fn registers(&self) -> Option<VcpuRegisters> {
        let r = match &self.ram {
            Ram::Dump(d) => d.meta().vcpus.first().cloned(),
            Ram::Live(_) => self.hypervisor()?.vcpu_registers(0).ok(),
        };
        r.filter(|r| r.cr3 != 0)
    }

    /// The technique used when none is asked for: the fastest this guest allows
    /// (a mapping where all of guest RAM is shared files, else syscall reads of
    /// QEMU's address space); `None` for a dump, which is read as it is.
    pub fn default_technique(&self) -> Option<Technique> {
        match &self.ram {
            Ram::Live(l) if l.is_shared() => Some(Technique::LiveMap),
            Ram::Live(_) => Some(Technique::LiveRead),
            Ram::Dump(_) => None,
        }
    }

    /// Opens `technique` on this guest (`None`: the [default](Self::default_technique);
    /// for a dump, the dump itself).
    pub fn access(&self, technique: Option<Technique>, opts: &Options) -> Result<Access<'_>> {
        let loc = match (&self.ram, technique) {
            (Ram::Dump(d), None) => return Ok(Access::new(None, How::Dump(d), opts, None)),
            (Ram::Dump(_), Some(t)) => return Err(Error::DumpHasNoTechnique(t)),
            (Ram::Live(loc), _) => loc,
        };
        let t = technique.or_else(|| self.default_technique()).expect("a live guest has a default technique");
        let hv = || self.hv.as_ref().map(Hv::as_dyn).ok_or(Error::NeedsHypervisor(t));
        let method = opts.read_method.unwrap_or_else(|| ReadMethod::for_location(loc));
        if t.axes().access == MemoryAccess::Mapping && !loc.is_shared() {
            return Err(Error::PrivateRam { technique: t, pid: loc.pid, blocks: loc.private_blocks().join("; ") });
        }
        let how = match t {
            Technique::Agent => {
                let sock = self.agent_socket.as_ref().ok_or(Error::NoAgent)?;
                How::Agent(std::cell::RefCell::new(vmscope_agent::Client::connect(sock, opts.agent_timeout)?))
            }
            Technique::LiveRead => {
                How::Live { reader: Reader::syscall(loc, method, opts.pass_cache_pages)?, hv: self.hypervisor() }
            }
            Technique::LiveMap => How::Live { reader: Reader::map(loc)?, hv: self.hypervisor() },
            Technique::ConsistentRead => {
                How::Consistent { reader: Reader::syscall(loc, method, opts.pass_cache_pages)?, hv: self.hypervisor() }
            }
            Technique::ConsistentMap => How::Consistent { reader: Reader::map(loc)?, hv: self.hypervisor() },
            Technique::HaltRead => {
                How::Halt(vmscope_hv::Halted::new(Reader::syscall(loc, method, opts.pass_cache_pages)?, hv()?))
            }
            Technique::HaltMap => How::Halt(vmscope_hv::Halted::new(Reader::map(loc)?, hv()?)),
            Technique::HaltSnap | Technique::LiveSnap => How::Snap { hv: hv()?, ram: Reader::backed(loc, method)? },
        };
        Ok(Access::new(Some(t), how, opts, Some(vmscope_hv::Vitals::new(loc)?)))
    }
}

/// Connects to the first QMP socket that greets within 1.5 s (another client may
/// hold one; QEMU serves one client per socket).
fn connect_any(sockets: &[PathBuf]) -> Result<Option<QmpHypervisor>> {
    let mut last = None;
    for s in sockets {
        match QmpHypervisor::connect(s, Duration::from_millis(1500)) {
            Ok(h) => return Ok(Some(h)),
            Err(e) => last = Some((s.clone(), e)),
        }
    }
    match last {
        None => Ok(None),
        Some((socket, vmscope_hv::Error::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Err(Error::QmpDenied { socket, source })
        }
        Some((socket, source)) => Err(Error::QmpBusy { socket, source }),
    }
}
