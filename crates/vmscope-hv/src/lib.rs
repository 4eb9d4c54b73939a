//! Control of the hypervisor that runs the introspected guest.
//!
//! [`Hypervisor`] is what the halt and snapshot techniques and the consistency work
//! need from a hypervisor: pause and resume, vCPU registers, the guest memory map, and
//! dirty-page tracking where the hypervisor offers it. It is implemented for QEMU over
//! QMP ([`qemu`]), for a QEMU that libvirt runs, through libvirt ([`libvirt`]), and
//! for vmscope's built-in VMM over its control socket.
//!
//! Beside control, the pieces the memory techniques share for reading guest RAM without
//! harm: where it lives ([`RamLocation`]), which pages of its backing hold data
//! ([`Extents`], [`HoleGuard`]), and a read-only shared mapping of that backing with
//! race-free copies ([`SharedMapping`]).
//!
//! What this crate deliberately does not do: read guest memory as a technique (that is
//! each technique's crate) or interpret it.

#![warn(missing_docs)]

pub mod builtin;
mod error;
mod halt;
pub mod libvirt;
mod location;
pub mod qemu;
mod regs;
mod shared;

pub use error::{Error, Result};
pub use halt::{Halted, PauseGuard};
pub use location::{Backed, Backing, Extents, HoleGuard, Piece, PieceSource, RamBlock, RamLocation, Vitals};
pub use regs::VcpuRegisters;
pub use shared::{SharedMapping, copy_from_shared};

use vmscope_mem::MemoryMap;

/// What introspection needs from a hypervisor. Methods take `&self`; implementations
/// serialise access to their control channel themselves.
pub trait Hypervisor: std::fmt::Debug {
    /// Stops every vCPU. Returns once the guest no longer runs.
    fn pause(&self) -> Result<()>;

    /// Lets every vCPU run again.
    fn resume(&self) -> Result<()>;

    /// Pauses the guest if it runs, and says whether this call paused it (`false`:
    /// it was paused already). [`PauseGuard`] builds on this. The provided version
    /// asks first and then pauses (two round trips; if the pause fails, the guest
    /// that ran is resumed, since the stop may have landed); hypervisors that can
    /// say in one round trip override it.
    fn pause_if_running(&self) -> Result<bool> {
        if self.is_paused()? {
            return Ok(false);
        }
        if let Err(e) = self.pause() {
            let _ = self.resume();
            return Err(e);
        }
        Ok(true)
    }

    /// Whether the guest is paused.
    fn is_paused(&self) -> Result<bool>;

    /// Number of vCPUs.
    fn vcpu_count(&self) -> Result<usize>;

    /// Registers of vCPU `index` (0-based). The hypervisor may pause the vCPU briefly
    /// to read them.
    fn vcpu_registers(&self, index: usize) -> Result<VcpuRegisters>;

    /// Guest RAM: GPA ranges and their offsets in the RAM backing.
    fn memory_map(&self) -> Result<MemoryMap>;

    /// Dirty-page tracking, if this hypervisor offers it.
    fn dirty_log(&self) -> Option<&dyn DirtyLog> {
        None
    }
}

/// Dirty-page tracking: which guest pages were written since the last fetch.
pub trait DirtyLog {
    /// Starts tracking; pages written from now on are reported by [`fetch`](Self::fetch).
    fn start(&self) -> Result<()>;

    /// The pages written since `start` or the previous fetch, as sorted page-frame
    /// numbers (GPA >> 12). Clears the log.
    fn fetch(&self) -> Result<Vec<u64>>;

    /// Stops tracking.
    fn stop(&self) -> Result<()>;
}
