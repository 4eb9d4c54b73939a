//! Snapshot techniques for virtual machine introspection, and dump files.
//!
//! - **halt-snap** ([`halt_snap`]): pause the guest, copy all of its RAM, resume;
//!   introspect the copy. From guest RAM that knows where its data is
//!   ([`Backed`](vmscope_hv::Backed): QEMU's RAM memfd, its data extents copied out of
//!   a read-only mapping whose pages were entered in our page tables before the pause,
//!   or QEMU's private RAM read through its address space for the pages its pagemap
//!   says it holds) or through any [`PhysMem`](vmscope_mem::PhysMem).
//! - **live-snap** ([`live`]): copy while the guest runs, with a short pause —
//!   either QEMU's own background-snapshot migration, parsed from its stream
//!   ([`live::qemu_background_snap`]), or vmscope's pre-copy that re-reads and
//!   compares during a short pause ([`live::precopy_snap`]).
//! - **dump files** ([`formats`]): raw (with a JSON sidecar for the memory map), ELF
//!   core in the layout of QEMU's `dump-guest-memory` with a VMCOREINFO note, and
//!   LiME; written from any [`PhysMem`](vmscope_mem::PhysMem) and read back as one ([`DumpFile`]),
//!   including QEMU's own ELF dumps.
//!
//! ```
//! use vmscope_mem::{Gpa, MemoryMap, PhysMem, SliceMem};
//! use vmscope_snap::{DumpFile, DumpMeta, Format, write_dump};
//!
//! let mut ram = vec![0u8; 0x10000];
//! ram[0x2000..0x2005].copy_from_slice(b"guest");
//! let guest = SliceMem::new(ram, MemoryMap::flat(0x10000));
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("guest.lime");
//! write_dump(&path, Format::Lime, &guest, &DumpMeta::default())?;
//! let dump = DumpFile::open(&path)?;
//! let mut b = [0u8; 5];
//! dump.read(Gpa::new(0x2000), &mut b)?;
//! assert_eq!(&b, b"guest");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On a live QEMU (see the crate README for the measurements):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use vmscope_hv::RamLocation;
//! use vmscope_snap::{Format, SnapOptions, Source, halt_snap};
//! # let (pid, hv): (u32, vmscope_hv::qemu::QmpHypervisor) = todo!();
//! let loc = RamLocation::qemu(pid, &hv.ram_layout()?)?;
//! let ram = loc.open_files()?; // a shared memfd; private RAM: vmscope_read::VmReadv
//! let (snap, stats) = halt_snap(&hv, Source::Backed(&ram), SnapOptions::default())?;
//! println!("paused {:?}", stats.downtime);
//! snap.write("guest.elf".as_ref(), Format::Elf)?;
//! # Ok(()) }
//! ```
//!
//! What this crate deliberately does not do: interpret guest memory (that is
//! `vmscope-x86`/`vmscope-linux`), read kdump-compressed or paging=true QEMU dumps,
//! or write guest memory. Snapshots never make QEMU allocate guest pages: they read
//! the data extents of guest RAM only (a RAM file's, through `pread` or a mapping of
//! exactly those pages, or the pages QEMU holds), and an 8 GiB guest that uses 300 MiB
//! costs about 300 MiB. QEMU's background snapshot is
//! the exception — QEMU itself reads every page of shared RAM before it starts (see
//! [`live`]).

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::single_range_in_vec_init))]

mod buf;
mod copy;
mod error;
pub mod formats;
mod halt;
pub mod live;
mod qemu_dump;
mod snapshot;

pub use error::{Error, Result};
pub use formats::{DumpFile, Format, WriteStats, write_dump};
pub use halt::{SnapOptions, SnapStats, Source, halt_snap};
pub use qemu_dump::qemu_dump_guest_memory;
pub use snapshot::{DumpMeta, Snapshot, vmcoreinfo_value};
