//! QEMU: the QMP client, the [`Hypervisor`](crate::Hypervisor) implementation over
//! it, the guest memory map from `info mtree`, and a launcher for test and lab guests.

mod cmdline;
mod hmp;
mod images;
mod launch;
mod process;
mod qmp;

pub use cmdline::QemuCommandLine;
pub use hmp::{parse_mtree_flat, parse_registers};
pub use images::{GuestImages, GuestKernel};
pub use launch::{Accel, QemuConfig, QemuVm, RAM_ID, READY_MARKER, process_alive};
pub use process::{RamMapping, ram_mapping};
pub use qmp::{Event, Qmp};

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use vmscope_mem::MemoryMap;

use crate::{Hypervisor, Result, VcpuRegisters};

/// QEMU controlled over one QMP connection.
#[derive(Debug)]
pub struct QmpHypervisor {
    qmp: Mutex<Qmp>,
    /// The RAM region name to map (`None`: the largest RAM region).
    ram_name: Option<String>,
}

impl QmpHypervisor {
    /// Connects to QEMU's QMP socket.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        Ok(Self { qmp: Mutex::new(Qmp::connect(path, timeout)?), ram_name: None })
    }

    /// Maps only the RAM region called `name` (a memory-backend id, or `pc.ram`).
    pub fn with_ram_name(mut self, name: impl Into<String>) -> Self {
        self.ram_name = Some(name.into());
        self
    }

    /// The QMP connection, for commands this type does not wrap.
    pub fn qmp(&self) -> MutexGuard<'_, Qmp> {
        // A panic while holding the lock leaves the connection usable: take it back.
        self.qmp.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Hypervisor for QmpHypervisor {
    fn pause(&self) -> Result<()> {
        self.qmp().execute("stop", None).map(drop)
    }

    fn resume(&self) -> Result<()> {
        self.qmp().execute("cont", None).map(drop)
    }

    fn is_paused(&self) -> Result<bool> {
        Ok(!self.qmp().status()?.1)
    }

    fn vcpu_count(&self) -> Result<usize> {
        let r = self.qmp().execute("query-cpus-fast", None)?;
        Ok(r.as_array().map_or(0, Vec::len))
    }

    fn vcpu_registers(&self, index: usize) -> Result<VcpuRegisters> {
        let text = self.qmp().hmp("info registers", Some(index))?;
        parse_registers(&text)
    }

    fn memory_map(&self) -> Result<MemoryMap> {
        let text = self.qmp().hmp("info mtree -f", None)?;
        parse_mtree_flat(&text, self.ram_name.as_deref())
    }
}
