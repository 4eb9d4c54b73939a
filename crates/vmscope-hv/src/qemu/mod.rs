//! QEMU: the QMP client, the [`Hypervisor`] implementation over
//! it, the guest memory map from `info mtree`, and what a running QEMU's command line
//! and address space say about its sockets and RAM.

mod cmdline;
mod hmp;
mod process;
mod qmp;

pub use cmdline::{MemoryBackend, QemuCommandLine};
pub use hmp::{BlockSpan, parse_gpa2hva, parse_mtree_blocks, parse_mtree_flat, parse_registers};
pub use process::{RamMapping, Vma, block_at, parse_maps, ram_mapping, read_maps};
pub use qmp::{Event, Qmp};

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use vmscope_mem::{Hva, MemoryMap};

use crate::{Error, Hypervisor, Result, VcpuRegisters};

/// Guest RAM as a QEMU process lays it out: the memory map over its RAM blocks (one
/// after another in the backing space) and where QEMU holds each block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamLayout {
    /// Guest-physical ranges and their offsets in the backing space.
    pub map: MemoryMap,
    /// The RAM blocks the map uses.
    pub blocks: Vec<LayoutBlock>,
    /// How it was learnt, for `info` and errors.
    pub source: &'static str,
}

/// One RAM block of a [`RamLayout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutBlock {
    /// Its name and place in the backing space.
    pub span: BlockSpan,
    /// Where its first byte is in QEMU's address space.
    pub hva: Hva,
}

/// A way to send QEMU monitor commands: vmscope's own QMP connection ([`Qmp`]), or
/// one that another program owns and passes commands through (libvirt's).
pub trait Monitor {
    /// Runs QMP `command`; its `return` value.
    fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value>;

    /// Runs an HMP command line (`info mtree -f`, `info registers`), on vCPU `cpu` if
    /// given, through QMP's `human-monitor-command`; its text.
    fn hmp(&mut self, command_line: &str, cpu: Option<usize>) -> Result<String> {
        let mut args = serde_json::json!({ "command-line": command_line });
        if let Some(c) = cpu {
            args["cpu-index"] = serde_json::json!(c);
        }
        let r = self.execute("human-monitor-command", Some(args))?;
        r.as_str().map(str::to_owned).ok_or_else(|| Error::Protocol(format!("HMP returned a non-string: {r}")))
    }
}

impl Monitor for Qmp {
    fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        Qmp::execute(self, command, arguments)
    }
}

/// Guest RAM as the QEMU behind `m` lays it out: its memory backends
/// (`query-memdev`), the ranges of guest-physical memory each backs (`info mtree -f`),
/// and where QEMU holds each (`gpa2hva` at the block's lowest range). Only the block
/// called `ram_name`, if given.
pub fn ram_layout(m: &mut impl Monitor, ram_name: Option<&str>, source: &'static str) -> Result<RamLayout> {
    let (map, spans) = map_and_blocks(m, ram_name)?;
    let mut blocks = Vec::new();
    for span in spans {
        let r = map.regions().iter().find(|r| r.name == span.name).expect("every span maps a region");
        let text = m.hmp(&format!("gpa2hva {:#x}", r.gpa.raw()), None)?;
        let (name, hva) = parse_gpa2hva(&text)?;
        let into_block = r.offset - span.offset;
        let hva = hva
            .checked_sub(into_block)
            .filter(|_| name == span.name)
            .ok_or_else(|| Error::Protocol(format!("gpa2hva {} says {text:?}, not RAM block {}", r.gpa, span.name)))?;
        blocks.push(LayoutBlock { span, hva: Hva::new(hva) });
    }
    Ok(RamLayout { map, blocks, source })
}

/// The memory map over the RAM blocks of QEMU's memory backends (all of them, or the
/// one called `ram_name`).
pub fn map_and_blocks(m: &mut impl Monitor, ram_name: Option<&str>) -> Result<(MemoryMap, Vec<BlockSpan>)> {
    let mtree = m.hmp("info mtree -f", None)?;
    // Every QEMU since 5.0 lists its RAM backends here, the implicit pc.ram of a
    // plain -m too.
    let memdevs = m.execute("query-memdev", None).unwrap_or(Value::Null);
    let mut blocks: Vec<(String, u64)> = memdevs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d.get("id")?.as_str()?.to_owned(), d.get("size")?.as_u64()?)))
        .filter(|(id, _)| ram_name.is_none_or(|n| n == id))
        .collect();
    if blocks.is_empty() {
        // No backend to name: the largest RAM region, as large as it is mapped.
        let m = parse_mtree_flat(&mtree, ram_name)?;
        let name = m.regions()[0].name.clone();
        blocks.push((name, m.backing_size().next_multiple_of(4096)));
    }
    parse_mtree_blocks(&mtree, &blocks)
}

/// QEMU controlled over one QMP connection. A connection that breaks (QEMU's end
/// closed, a proxy gone) is opened again once per command, so that a guest paused
/// for a pass can still be resumed.
#[derive(Debug)]
pub struct QmpHypervisor {
    qmp: Mutex<Qmp>,
    path: PathBuf,
    timeout: Duration,
    /// The RAM region name to map (`None`: the largest RAM region).
    ram_name: Option<String>,
}

impl QmpHypervisor {
    /// Connects to QEMU's QMP socket.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Ok(Self { qmp: Mutex::new(Qmp::connect(&path, timeout)?), path, timeout, ram_name: None })
    }

    /// Maps only the RAM region called `name` (a memory-backend id, or `pc.ram`).
    pub fn with_ram_name(mut self, name: impl Into<String>) -> Self {
        self.ram_name = Some(name.into());
        self
    }

    /// The QMP connection, for commands this type does not wrap (they are not retried
    /// on a new connection).
    pub fn qmp(&self) -> MutexGuard<'_, Qmp> {
        // A panic while holding the lock leaves the connection usable: take it back.
        self.qmp.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// Guest RAM as QEMU lays it out: see [`ram_layout`].
    pub fn ram_layout(&self) -> Result<RamLayout> {
        let name = self.ram_name.as_deref();
        self.retrying(|q| ram_layout(q, name, "QMP (query-memdev, info mtree -f, gpa2hva)"))
    }

    /// A new connection after `lost` broke the old one.
    fn reconnect(&self, lost: &Error) -> Result<Qmp> {
        Qmp::connect_now(&self.path, self.timeout).map_err(|again| {
            Error::Disconnected(format!(
                "the QMP connection to {} broke ({lost}) and connecting again failed: {again}",
                self.path.display()
            ))
        })
    }

    /// Runs `f` on the connection; if the connection turns out lost, connects again
    /// and runs `f` once more. Only for commands that may safely run twice (every
    /// command of the [`Hypervisor`] trait: `stop`, `cont`, queries).
    fn retrying<T>(&self, f: impl Fn(&mut Qmp) -> Result<T>) -> Result<T> {
        let mut qmp = self.qmp();
        match f(&mut qmp) {
            Err(e) if e.is_connection_lost() => {
                *qmp = self.reconnect(&e)?;
                f(&mut qmp)
            }
            r => r,
        }
    }
}

impl Hypervisor for QmpHypervisor {
    fn pause(&self) -> Result<()> {
        self.retrying(|q| q.execute("stop", None).map(drop))
    }

    fn resume(&self) -> Result<()> {
        self.retrying(|q| q.execute("cont", None).map(drop))
    }

    /// One round trip: QEMU emits STOP for a `stop` only when the guest ran.
    fn pause_if_running(&self) -> Result<bool> {
        let mut qmp = self.qmp();
        match qmp.execute_watching("stop", "STOP") {
            Ok((_, stopped)) => Ok(stopped),
            Err(e) if e.is_connection_lost() => {
                *qmp = self.reconnect(&e)?;
                // The stop may have landed before the connection broke: then the
                // guest is paused and nothing says by whom.
                if !qmp.status()?.1 {
                    return Err(Error::PauseUncertain(Box::new(e)));
                }
                Ok(qmp.execute_watching("stop", "STOP")?.1)
            }
            Err(e) => Err(e),
        }
    }

    fn is_paused(&self) -> Result<bool> {
        self.retrying(|q| Ok(!q.status()?.1))
    }

    fn vcpu_count(&self) -> Result<usize> {
        self.retrying(|q| Ok(q.execute("query-cpus-fast", None)?.as_array().map_or(0, Vec::len)))
    }

    fn vcpu_registers(&self, index: usize) -> Result<VcpuRegisters> {
        self.retrying(|q| parse_registers(&q.hmp("info registers", Some(index))?))
    }

    fn memory_map(&self) -> Result<MemoryMap> {
        self.retrying(|q| Ok(map_and_blocks(q, self.ram_name.as_deref())?.0))
    }
}
