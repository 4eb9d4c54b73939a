//! x86-64 address translation for introspection: 4- and 5-level paging, 4 KiB,
//! 2 MiB and 1 GiB pages, read from guest memory through any
//! [`PhysMem`](vmscope_mem::PhysMem).
//!
//! The walk is data ([`LEVELS`]: shift, whether a level maps pages, its reserved
//! bits) read by one loop, shared by [`AddressSpace::translate`],
//! [`AddressSpace::translate_batch`] (one `read_batch` per level for many
//! addresses) and [`AddressSpace::mappings`] (every mapped range, merged into runs).
//! [`Tlb`] caches translations by (root, page) with epoch invalidation.
//!
//! ```
//! use vmscope_mem::{Gpa, Gva};
//! use vmscope_x86::{fixture::PageTableBuilder, pte, AddressSpace, Error, Level, PageSize, PagingMode, Root};
//!
//! // Page tables in synthetic memory; with a live guest, `mem` is a technique's
//! // PhysMem and the space comes from the vCPU: AddressSpace::from_cr3(cr3, cr4).
//! let mut b = PageTableBuilder::new(PagingMode::Level4);
//! b.map(Gva::new(0xffff_ffff_8100_0000), Gpa::new(0x100_0000), PageSize::Size2M, 0).unwrap();
//! let (mem, space) = b.finish();
//!
//! let t = space.translate(&mem, Gva::new(0xffff_ffff_8100_0123)).unwrap();
//! assert_eq!((t.gpa, t.page_size), (Gpa::new(0x100_0123), PageSize::Size2M));
//! assert!(!t.perms.writable && !t.perms.user);
//!
//! let missing = space.translate(&mem, Gva::new(0xffff_ffff_8000_0000));
//! assert!(matches!(missing, Err(Error::NotPresent { level: Level::Pd, .. })));
//!
//! let runs: Vec<_> = space.mappings(&mem).collect::<Result<_, _>>().unwrap();
//! assert_eq!(runs.len(), 1);
//! assert_eq!(runs[0].len, 2 << 20);
//! ```
//!
//! Every walk is bounded on any memory: a translation reads at most one entry per
//! level; a mapping walk detects tables that point back at their own path and stops
//! after a configurable number of tables. Guest data never causes a panic.
//!
//! What this crate deliberately does not do: read or write the memory behind a
//! translation (callers read the [`Translation::gpa`] through their `PhysMem`), know
//! where a kernel keeps its page tables (that is `vmscope-linux`), emulate access
//! checks (CR0.WP, SMEP/SMAP, protection keys), set accessed/dirty bits as a CPU
//! would, handle 32-bit or PAE paging, EPT, or invalidate caches on its own: when
//! the guest may have run, call [`Tlb::invalidate`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod error;
pub mod fixture;
mod iter;
mod mode;
pub mod pte;
mod space;
mod tlb;

pub use error::{Error, Result};
pub use iter::{DEFAULT_MAX_TABLES, Mapping, Mappings};
pub use mode::{LEVELS, Level, LevelDef, PagingMode, Root};
pub use pte::{PageSize, Perms, Translation};
pub use space::AddressSpace;
pub use tlb::{Tlb, TlbStats};
