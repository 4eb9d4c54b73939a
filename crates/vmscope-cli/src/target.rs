//! A guest to introspect, found from a QEMU process id, and the techniques opened on
//! it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use vmscope_agent::Client;
use vmscope_hv::qemu::{QemuCommandLine, QmpHypervisor};
use vmscope_hv::{Halted, Hypervisor, RamLocation};
use vmscope_map::Mapped;
use vmscope_mem::{MemoryMap, PhysMem};
use vmscope_read::VmReadv;

use crate::Technique;

/// A running QEMU guest.
#[derive(Debug)]
pub struct Target {
    /// QEMU's process id.
    pub pid: u32,
    /// QMP, when reachable.
    pub hv: Option<QmpHypervisor>,
    /// Where its RAM is.
    pub loc: RamLocation,
    /// The guest agent's socket (ttyS1), when QEMU has one.
    pub agent_socket: Option<PathBuf>,
    /// How the memory map was learnt.
    pub map_source: &'static str,
}

impl Target {
    /// Finds everything from the PID: QEMU's command line names its QMP socket (unless
    /// `qmp` is given) and the agent's serial socket; QMP gives the memory map.
    pub fn qemu(pid: u32, qmp: Option<&Path>) -> anyhow::Result<Self> {
        let cmdline = QemuCommandLine::of(pid)?;
        let qmp_path = qmp.map(Path::to_path_buf).or_else(|| cmdline.qmp.clone());
        let hv = match &qmp_path {
            Some(p) => Some(QmpHypervisor::connect(p, Duration::from_secs(5)).with_context(|| {
                format!(
                    "connecting to QEMU's QMP socket {} (is another client connected? QEMU serves one per socket)",
                    p.display()
                )
            })?),
            None => None,
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
        Ok(Self { pid, hv, loc, agent_socket: cmdline.agent_socket().map(Path::to_path_buf), map_source })
    }

    /// The hypervisor, or an error that says how to offer one.
    pub fn hypervisor(&self, technique: Technique) -> anyhow::Result<&QmpHypervisor> {
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
            Technique::LiveRead => Access::Live(Reader::Read(VmReadv::open(self.loc.clone())?)),
            Technique::LiveMap => Access::Live(Reader::Map(Mapped::open(self.loc.clone())?)),
            Technique::HaltRead => {
                Access::Halt(Halted::new(Reader::Read(VmReadv::open(self.loc.clone())?), self.hypervisor(technique)?))
            }
            Technique::HaltMap => {
                Access::Halt(Halted::new(Reader::Map(Mapped::open(self.loc.clone())?), self.hypervisor(technique)?))
            }
            Technique::HaltSnap | Technique::LiveSnap => {
                self.hypervisor(technique)?;
                bail!("technique {technique} is not available in this build yet")
            }
        })
    }
}

/// A live reader of either kind.
#[derive(Debug)]
pub enum Reader {
    /// process_vm_readv.
    Read(VmReadv),
    /// mmap.
    Map(Mapped),
}

impl Reader {
    fn mem(&self) -> &dyn PhysMem {
        match self {
            Reader::Read(r) => r,
            Reader::Map(m) => m,
        }
    }

    /// Re-reads which backing pages exist, once per pass.
    fn refresh(&self) -> anyhow::Result<()> {
        match self {
            Reader::Read(r) => r.holes().refresh()?,
            Reader::Map(m) => m.holes().refresh()?,
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
    Halt(Halted<'t, Reader, QmpHypervisor>),
}

impl Access<'_> {
    /// Runs `f` on guest memory as this technique sees it for one pass.
    pub fn pass<R>(&self, f: impl FnOnce(&dyn PhysMem) -> R) -> anyhow::Result<R> {
        match self {
            Access::Agent(_) => bail!("the agent technique does not read guest memory"),
            Access::Live(r) => {
                r.refresh()?;
                Ok(f(r.mem()))
            }
            Access::Halt(h) => Ok(h.pass(|r| {
                let _ = r.refresh();
                f(r.mem())
            })?),
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
