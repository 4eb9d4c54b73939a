//! A technique opened on a guest: introspection passes on guest memory as the
//! technique sees it.

use std::cell::{RefCell, RefMut};
use std::time::Duration;

use vmscope_agent::Client;
use vmscope_hv::{Halted, Hypervisor};
use vmscope_mem::{CacheStats, FileMem, PhysMem};
use vmscope_snap::{DumpFile, SnapOptions, SnapStats, Snapshot, Source};

use crate::reader::{Options, Reader};
use crate::stop::{self, Holding, Stoppable};
use crate::{Error, Result, Technique};

/// An opened technique (from [`Guest::access`](crate::Guest::access)).
#[derive(Debug)]
pub struct Access<'g> {
    technique: Option<Technique>,
    how: How<'g>,
    hole_refresh: Duration,
}

#[derive(Debug)]
pub(crate) enum How<'g> {
    /// The guest answers for itself.
    Agent(RefCell<Client>),
    /// Reads while the guest runs.
    Live(Reader),
    /// Reads with the guest paused per pass.
    Halt(Halted<'g, Reader, dyn Hypervisor + 'g>),
    /// A snapshot per pass: halt-snap (pause, copy, resume) or live-snap (vmscope's
    /// pre-copy: copy running, pause, re-copy what changed).
    Snap {
        hv: &'g dyn Hypervisor,
        /// The RAM backing, read with pread of its data extents.
        ram: FileMem,
    },
    /// A dump file, read as it is.
    Dump(&'g DumpFile),
}

impl<'g> Access<'g> {
    pub(crate) fn new(technique: Option<Technique>, how: How<'g>, opts: &Options) -> Self {
        Self { technique, how, hole_refresh: opts.hole_refresh }
    }

    /// The technique (`None` for a dump).
    pub fn technique(&self) -> Option<Technique> {
        self.technique
    }

    /// Runs `f` on guest memory as this technique sees it for one pass: the live
    /// memory, the memory with the guest paused, or a fresh snapshot. A technique
    /// that pauses the guest leaves it as it found it — running or paused — also
    /// when `f` fails or panics; if the process is asked to stop meanwhile (see
    /// [`stop`]), the pass is cut short and [`Error::Interrupted`] returned.
    pub fn pass<R>(&self, f: impl FnOnce(&dyn PhysMem) -> R) -> Result<R> {
        match &self.how {
            How::Agent(_) => Err(Error::NotApplicable {
                technique: Technique::Agent,
                why: "asks the guest agent; it does not read guest memory",
            }),
            How::Live(r) => {
                r.begin_pass(self.hole_refresh)?;
                Ok(f(r.mem()))
            }
            How::Halt(h) => {
                let holding = Holding::new();
                let r = h.pass(|r| -> Result<R> {
                    r.begin_pass(self.hole_refresh)?;
                    Ok(f(&Stoppable(r.mem())))
                });
                drop(holding);
                let r = r??;
                interrupted()?;
                Ok(r)
            }
            How::Snap { .. } => {
                let (snap, _) = self.snapshot(SnapOptions { registers: false, vmcoreinfo: false })?;
                Ok(f(&snap))
            }
            How::Dump(d) => Ok(f(*d)),
        }
    }

    /// Takes one snapshot (snapshot techniques only) with `opts`: registers and
    /// VMCOREINFO for a dump file, neither for a pass.
    pub fn snapshot(&self, opts: SnapOptions) -> Result<(Snapshot, SnapStats)> {
        let How::Snap { hv, ram } = &self.how else {
            return Err(Error::NotApplicable {
                technique: self.technique.unwrap_or(Technique::HaltSnap),
                why: "takes no snapshots; choose halt-snap or live-snap",
            });
        };
        let holding = Holding::new();
        let taken = if self.technique == Some(Technique::LiveSnap) {
            vmscope_snap::live::precopy_snap(*hv, ram, opts)
        } else {
            vmscope_snap::halt_snap(*hv, Source::File(ram), opts)
        };
        drop(holding);
        let taken = taken?;
        interrupted()?;
        Ok(taken)
    }

    /// Page-cache counters of a syscall reader (the pages fetched from the hypervisor
    /// are its misses).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        match &self.how {
            How::Live(r) => r.cache_stats(),
            How::Halt(h) => h.inner().cache_stats(),
            _ => None,
        }
    }

    /// The agent client, for the agent technique.
    pub fn agent(&self) -> Option<RefMut<'_, Client>> {
        match &self.how {
            How::Agent(c) => Some(c.borrow_mut()),
            _ => None,
        }
    }
}

/// [`Error::Interrupted`] if a stop was requested during the pass just ended.
fn interrupted() -> Result<()> {
    match stop::requested() {
        Some(signal) => Err(Error::Interrupted { signal }),
        None => Ok(()),
    }
}
