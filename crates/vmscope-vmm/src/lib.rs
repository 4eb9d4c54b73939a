//! vmscope's built-in VMM: a minimal KVM virtual machine monitor on rust-vmm
//! (kvm-ioctls, kvm-bindings, vm-memory, linux-loader, vm-superio) that exists so
//! every introspection technique can be tested end to end, and so the lab can use what
//! QEMU does not expose: the KVM dirty log, exact pause points, fork snapshots.
//!
//! It boots an ELF kernel (a Linux vmlinux or the vmscope test kernel) or a bzImage
//! through the 64-bit boot protocol (or an ELF vmlinux through its PVH entry), with an initramfs and a command line, on 1..N
//! vCPUs (MP table; application processors wait for INIT/SIPI in KVM's in-kernel
//! LAPIC), with KVM's in-kernel irqchip and PIT. Guest RAM is a memfd mapped shared
//! (other processes map or pread it through `/proc/PID/fd/N`) or anonymous private
//! memory (a fork is a copy-on-write snapshot). ttyS0 and ttyS1 are 16550 UARTs
//! (ttyS0 to a file or stdout, ttyS1 to a unix socket); an i8042 reset, a triple
//! fault or a write to the debug-exit port 0x501 ends the VMM with a status.
//!
//! It is controlled through a unix socket speaking JSON lines; the protocol, with an
//! example session, is documented in [`vmscope_hv::builtin`], whose types both sides
//! share, and whose `BuiltinVmm` is the client implementing `Hypervisor` and
//! `DirtyLog`.
//!
//! ```no_run
//! use vmscope_vmm::{BootSpec, Machine, MachineConfig, memory::Backing, devices::serial::SerialOut};
//!
//! let m = Machine::start(MachineConfig {
//!     boot: BootSpec {
//!         kernel: "target/guest-images/testkernel/testkernel.elf".into(),
//!         initrd: None,
//!         cmdline: "tk.lists=8".into(),
//!         vcpus: 2,
//!         protocol: Default::default(),
//!     },
//!     ram_size: 2 << 30,
//!     backing: Backing::Memfd,
//!     serial0: SerialOut::Stdout,
//!     serial1: SerialOut::Sink,
//! })?;
//! m.pause()?;
//! println!("cr3 = {:#x}", m.vcpu_registers(0)?.cr3);
//! m.resume();
//! # Ok::<(), vmscope_vmm::Error>(())
//! ```
//!
//! [`testkernel`] reads the vmscope test kernel's manifest, lists and journal from any
//! `PhysMem`, so tests and the lab know the exact guest state to compare against.
//!
//! What it deliberately does not do: disks, network, PCI, ACPI, migration, or any
//! guest feature a test does not need. It is a test and lab instrument, not a
//! product VMM. Device models (`devices`) know nothing of KVM.

#![warn(missing_docs)]

pub mod boot;
pub mod child;
pub mod control;
pub mod devices;
mod error;
pub mod gdt;
pub mod layout;
pub mod machine;
pub mod memory;
pub mod mptable;
pub mod regs;
pub mod snapshot;
pub mod testkernel;
pub mod vcpu;

pub use boot::BootSpec;
pub use child::VmmChild;
pub use error::{Error, Result};
pub use machine::{Machine, MachineConfig};
