//! QEMU: the QMP client, the [`Hypervisor`] implementation over
//! it, the guest memory map from `info mtree`, and what a running QEMU's command line
//! and address space say about its sockets and RAM.

mod cmdline;
mod hmp;
mod process;
mod qmp;

pub use cmdline::QemuCommandLine;
pub use hmp::{parse_mtree_flat, parse_registers};
pub use process::{RamMapping, ram_mapping};
pub use qmp::{Event, Qmp};

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use vmscope_mem::MemoryMap;

use crate::{Error, Hypervisor, Result, VcpuRegisters};

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

    /// A new connection after `lost` broke the old one.
    fn reconnect(&self, lost: &Error) -> Result<Qmp> {
        Qmp::connect(&self.path, self.timeout).map_err(|again| {
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
        self.retrying(|q| parse_mtree_flat(&q.hmp("info mtree -f", None)?, self.ram_name.as_deref()))
    }
}
