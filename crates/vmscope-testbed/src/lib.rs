//! Test and lab support for vmscope: the guest images `cargo xtask images` builds
//! ([`GuestImages`]), QEMU guests started from them and always stopped ([`QemuVm`]),
//! and a booted guest with a connection to its agent ([`Guest`]) — the ground truth
//! every end-to-end test compares vmscope's view with; also the same guests as libvirt
//! domains ([`libvirt`]).
//!
//! ```no_run
//! let mut g = vmscope_testbed::boot("6.1"); // Debian 6.1, 1 GiB, 2 vCPUs, KASLR on
//! let uname = g.sh("uname -r");
//! println!("QEMU {} runs {uname}", g.vm.pid());
//! // QEMU is killed when `g` drops, and with the thread that started it.
//! ```
//!
//! What this crate deliberately does not do: introspect (tests do that through the
//! technique crates), or serve as a product launcher for QEMU: its guests are the
//! project's images with the flags the README gives, and they die with the test.

#![warn(missing_docs)]

mod error;
mod guest;
mod hugepages;
mod images;
pub mod libvirt;
pub mod peers;
mod pmemsave;
mod qemu;
pub mod workloads;

pub use error::{Error, Result};
pub use guest::{Guest, boot, boot_with, boot_with_workloads, eventually, find_banners};
pub use hugepages::HugePages;
pub use images::{GuestImages, GuestKernel, WORKLOADS_SERIAL};
pub use peers::PeerTools;
pub use pmemsave::qemu_pmemsave;
pub use qemu::{Accel, Disk, QemuConfig, QemuVm, RAM_ID, READY_MARKER, RamBacking, SCRATCH_SERIAL, process_alive};
