//! The syscall-read techniques of the study: guest RAM read out of the hypervisor
//! process while the guest runs (`live-read`), or, wrapped in
//! [`vmscope_hv::Halted`], with the guest paused per pass (`halt-read`).
//!
//! Three ways, each a [`PhysMem`](vmscope_mem::PhysMem):
//! - [`VmReadv`]: `process_vm_readv(2)`, a whole batch in as few calls as IOV_MAX allows;
//! - [`ProcMem`]: `pread(2)` on `/proc/PID/mem`;
//! - [`open_backing`]: `pread(2)` on the RAM files themselves (QEMU's memfd through
//!   `/proc/PID/fd/N`, one per RAM block), served by [`vmscope_mem::FileMem`].
//!
//! ```no_run
//! use vmscope_hv::{RamLocation, qemu::QmpHypervisor};
//! use vmscope_mem::{Gpa, PhysMem};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hv = QmpHypervisor::connect("qmp.sock", std::time::Duration::from_secs(5))?;
//! let loc = RamLocation::qemu(1234, &hv.ram_layout()?)?;
//! let mem = vmscope_read::VmReadv::open(loc)?;
//! let word = mem.read_u64(Gpa::new(0x1000))?;
//! # Ok(()) }
//! ```
//!
//! Doing no harm: reading a page of a shared memfd through the hypervisor's address
//! space makes the host kernel allocate it if the guest never touched it; on private
//! RAM it maps the zero page (and page tables) into QEMU. [`VmReadv`] and [`ProcMem`]
//! therefore consult [`vmscope_hv::HoleGuard`] — the backing file's populated extents
//! (SEEK_DATA), or QEMU's pagemap for private RAM and hugetlbfs — and return zeros for
//! what QEMU does not hold (the file's bytes under a private file mapping) without
//! touching it; `pread` of the file needs no such care.
//!
//! What this crate deliberately does not do: pause the guest (that is
//! [`vmscope_hv::Halted`]) or write guest memory (every descriptor is read-only).

#![warn(missing_docs)]

mod error;
mod pread;
mod procmem;
mod remote;
mod vmreadv;

pub use error::{Error, Result};
pub use pread::open_backing;
pub use procmem::ProcMem;
pub use vmreadv::VmReadv;
