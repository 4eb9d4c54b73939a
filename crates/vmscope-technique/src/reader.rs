//! How the syscall and mapping techniques read guest RAM, and the options that choose.

use std::time::Duration;

use vmscope_hv::{Backed, RamLocation};
use vmscope_map::Mapped;
use vmscope_mem::{CacheStats, FileMem, PageCache, PhysMem};
use vmscope_read::{ProcMem, VmReadv};

use crate::Result;

/// How the syscall techniques (live-read, halt-read) read guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMethod {
    /// `pread` of the RAM backing file (QEMU's memfd through /proc/PID/fd): no page
    /// of QEMU's address space is touched, so it is the cheapest.
    Pread,
    /// `process_vm_readv` of the hypervisor process, batched into iovecs.
    VmReadv,
    /// `pread` of /proc/PID/mem.
    ProcMem,
}

impl ReadMethod {
    /// Every method, in report order.
    pub const ALL: [ReadMethod; 3] = [ReadMethod::Pread, ReadMethod::VmReadv, ReadMethod::ProcMem];

    /// The fastest method `loc` allows: pread where shared files hold all of guest
    /// RAM, else process_vm_readv (private RAM, hugetlbfs).
    pub fn for_location(loc: &RamLocation) -> Self {
        if loc.is_readable_by_file() { ReadMethod::Pread } else { ReadMethod::VmReadv }
    }

    /// Pages a miss fetches in one call: the aligned block around the page asked
    /// for. A call into QEMU's address space (process_vm_readv, /proc/PID/mem) costs
    /// several times a pread of the memfd — the mmap lock, pinning each page — and
    /// kernel objects of one kind sit together in slabs, so fetching a page's
    /// neighbours with it saves the calls they would cost. Measured on a process list
    /// (`cargo bench -p vmscope-technique --bench live_read`): 4 pages cut the CPU per
    /// pass of process_vm_readv by about a fifth; 8 gain nothing more, 16 lose.
    pub fn readahead(self) -> usize {
        match self {
            ReadMethod::Pread => 1,
            ReadMethod::VmReadv | ReadMethod::ProcMem => 4,
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ReadMethod::Pread => "pread",
            ReadMethod::VmReadv => "process_vm_readv",
            ReadMethod::ProcMem => "proc-mem",
        }
    }
}

impl std::fmt::Display for ReadMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ReadMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ReadMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown read method `{s}`; choose pread, process_vm_readv or proc-mem"))
    }
}

/// How a technique is opened. `Options::default()` is what the `vmscope` command uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How live-read and halt-read read; `None`: the fastest the RAM allows
    /// ([`ReadMethod::for_location`]).
    pub read_method: Option<ReadMethod>,
    /// Pages a syscall reader keeps within one pass (at least 1). The cache is emptied
    /// when a pass starts: system calls are the cost of these techniques, and a walk
    /// reads many fields of one page.
    pub pass_cache_pages: usize,
    /// How often the extents of the RAM file (which pages exist) are re-read, at most:
    /// a read that lands in an apparent hole re-checks that piece anyway.
    pub hole_refresh: Duration,
    /// How long to wait for the guest agent to answer its greeting.
    pub agent_timeout: Duration,
    /// Live tries of a consistent technique before it reads once halted (at least 1).
    pub consistent_tries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            read_method: None,
            pass_cache_pages: 4096, // 16 MiB
            hole_refresh: Duration::from_millis(500),
            agent_timeout: Duration::from_secs(10),
            consistent_tries: 3,
        }
    }
}

/// A reader of guest RAM for the syscall and mapping techniques.
#[derive(Debug)]
pub(crate) enum Reader {
    /// pread of the backing file.
    Pread(PageCache<FileMem>),
    /// process_vm_readv.
    VmReadv(PageCache<VmReadv>),
    /// /proc/PID/mem.
    ProcMem(PageCache<ProcMem>),
    /// mmap.
    Map(Mapped),
}

impl Reader {
    pub(crate) fn syscall(loc: &RamLocation, method: ReadMethod, cache_pages: usize) -> Result<Self> {
        Ok(match method {
            ReadMethod::Pread => Reader::Pread(PageCache::new(vmscope_read::open_backing(loc)?, cache_pages)),
            ReadMethod::VmReadv => Reader::VmReadv(
                PageCache::new(VmReadv::open(loc.clone())?, cache_pages).with_readahead(method.readahead()),
            ),
            ReadMethod::ProcMem => Reader::ProcMem(
                PageCache::new(ProcMem::open(loc.clone())?, cache_pages).with_readahead(method.readahead()),
            ),
        })
    }

    pub(crate) fn map(loc: &RamLocation) -> Result<Self> {
        Ok(Reader::Map(Mapped::open(loc.clone())?))
    }

    /// What a snapshot copies from: the RAM files by pread where they hold all of
    /// guest RAM and know their holes, else QEMU's address space read by `method`
    /// (process_vm_readv unless /proc/PID/mem is asked for), for the pages it holds.
    pub(crate) fn backed(loc: &RamLocation, method: ReadMethod) -> Result<Box<dyn Backed>> {
        Ok(match method {
            ReadMethod::Pread if loc.is_readable_by_file() => Box::new(vmscope_read::open_backing(loc)?),
            ReadMethod::ProcMem => Box::new(ProcMem::open(loc.clone())?),
            _ => Box::new(VmReadv::open(loc.clone())?),
        })
    }

    pub(crate) fn mem(&self) -> &dyn PhysMem {
        match self {
            Reader::Pread(r) => r,
            Reader::VmReadv(r) => r,
            Reader::ProcMem(r) => r,
            Reader::Map(m) => m,
        }
    }

    /// The reader without its page cache: for a second collect, which must reach
    /// guest memory and reads whole runs of pages at once.
    pub(crate) fn uncached(&self) -> &dyn PhysMem {
        match self {
            Reader::Pread(r) => r.inner(),
            Reader::VmReadv(r) => r.inner(),
            Reader::ProcMem(r) => r.inner(),
            Reader::Map(m) => m,
        }
    }

    /// How a second collect reads: a mapping pays per byte, a syscall per call.
    pub(crate) fn recollect(&self) -> vmscope_consistency::validate::Recollect {
        use vmscope_consistency::validate::Recollect;
        match self {
            Reader::Map(_) => Recollect::Ranges,
            _ => Recollect::Pages,
        }
    }

    /// Starts a pass: forgets cached pages, and re-reads which backing pages exist
    /// if the last look is older than `hole_refresh`.
    pub(crate) fn begin_pass(&self, hole_refresh: Duration) -> Result<()> {
        match self {
            Reader::Pread(r) => {
                r.invalidate();
            }
            Reader::VmReadv(r) => {
                r.invalidate();
                r.inner().holes().refresh_if_older(hole_refresh)?
            }
            Reader::ProcMem(r) => {
                r.invalidate();
                r.inner().holes().refresh_if_older(hole_refresh)?
            }
            Reader::Map(m) => m.holes().refresh_if_older(hole_refresh)?,
        }
        Ok(())
    }

    /// Page-cache counters (the pages fetched from the hypervisor are the misses).
    pub(crate) fn cache_stats(&self) -> Option<CacheStats> {
        match self {
            Reader::Pread(c) => Some(c.stats()),
            Reader::VmReadv(c) => Some(c.stats()),
            Reader::ProcMem(c) => Some(c.stats()),
            Reader::Map(_) => None,
        }
    }
}
