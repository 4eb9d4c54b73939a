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
//! Caching, metrics and fault injection are decorators that wrap any [`PhysMem`]:
//! [`PageCache`], [`Metered`], [`FaultyMem`]; stack them in any order.
//!
//! What this crate deliberately does not do: translate virtual addresses (that is
//! `vmscope-x86`), know anything about a hypervisor, or allocate per read. A read of an
//! address no region backs is an [`Error`], never a panic.

#![warn(missing_docs)]

mod addr;
mod cache;
mod error;
mod fault;
mod map;
mod metrics;
mod phys;
mod slice;

pub use addr::{Gpa, Gva, Hva, PAGE_SIZE};
pub use cache::{CacheStats, PageCache};
pub use error::{Error, Result};
pub use fault::FaultyMem;
pub use map::{Chunks, MemoryMap, Region};
pub use metrics::{MemStats, Metered};
pub use phys::{PhysMem, ReadOp};
pub use slice::SliceMem;
