//! Guest memory as vmscope sees it: address newtypes, a guest-physical memory map,
//! and the [`PhysMem`] trait that every access technique implements.
//!
//! ```
//! use vmscope_mem::{Gpa, MemoryMap, PhysMem, Region, SliceMem};
//!
//! let ram = vec![0u8; 0x4000];
//! let map = MemoryMap::new(vec![Region::new(Gpa::new(0x1000), 0x4000, 0, "ram")]).unwrap();
//! let mem = SliceMem::new(&ram, map);
//! assert_eq!(mem.read_u64(Gpa::new(0x1008)).unwrap(), 0);
//! assert!(mem.read_u64(Gpa::new(0x0)).is_err()); // below the only region: unbacked
//! ```
//!
//! [`PhysMem`] has two required methods: [`read_batch`](PhysMem::read_batch) (all or
//! nothing; see its documentation for the exact contract) and
//! [`memory_map`](PhysMem::memory_map). Everything else is provided:
//! [`read_each`](PhysMem::read_each) (per-op outcomes, one batch when all succeed),
//! `read`, `read_u64` (overridable: page walkers call it once per level),
//! `read_u64s`, `read_u32`, `read_pod`, `read_cstr` (bounded).
//!
//! Caching, metrics and fault injection are decorators that wrap any [`PhysMem`]:
//! [`PageCache`] (bounded, CLOCK eviction, O(1) invalidation by epoch, plus
//! [`invalidate_range`](PageCache::invalidate_range) for dirty pages), [`Metered`]
//! (atomic counters of batches, reads, bytes, errors) and [`FaultyMem`] (fail reads
//! overlapping chosen GPA ranges, or every Nth read); stack them in any order:
//!
//! ```
//! use vmscope_mem::{FaultyMem, Gpa, MemoryMap, Metered, PageCache, PhysMem, SliceMem};
//!
//! let ram = SliceMem::new(vec![0u8; 0x10000], MemoryMap::flat(0x10000));
//! let mem = Metered::new(PageCache::new(FaultyMem::new(ram), 64));
//! mem.inner().inner().poison(Gpa::new(0x8000), 8);
//! assert!(mem.read_u64(Gpa::new(0x8000)).is_err());
//! assert!(mem.read_u64(Gpa::new(0x100)).is_ok());
//! mem.inner().invalidate(); // the guest ran
//! assert_eq!(mem.stats().reads, 2);
//! ```
//!
//! What this crate deliberately does not do: translate virtual addresses (that is
//! `vmscope-x86`), know anything about a hypervisor, or allocate per read. A read of an
//! address no region backs is an [`Error`], never a panic.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod cache;
mod error;
mod fault;
mod file;
mod map;
mod metrics;
mod phys;
mod slice;

pub use addr::{Gpa, Gva, Hva, PAGE_SIZE};
pub use cache::{CacheStats, PageCache};
pub use error::{Error, Result};
pub use fault::FaultyMem;
pub use file::{FileMem, FileSegment, read_mapped};
pub use map::{Chunks, MemoryMap, Region};
pub use metrics::{MemStats, Metered};
pub use phys::{PhysMem, ReadOp};
pub use slice::SliceMem;
