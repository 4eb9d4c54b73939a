//! A technique opened on a guest: introspection passes on guest memory as the
//! technique sees it.

use std::cell::{Cell, RefCell, RefMut};
use std::time::Duration;

use vmscope_agent::Client;
use vmscope_consistency::ReadSet;
use vmscope_consistency::validate::{Method, Verdict};
use vmscope_hv::{Backed, DirtyLog, Halted, Hypervisor, Vitals};
use vmscope_mem::{CacheStats, PhysMem};
use vmscope_snap::{DumpFile, SnapOptions, SnapStats, Snapshot, Source};

use crate::consistent::{self, Consistency, Observed};
use crate::reader::{Options, Reader};
use crate::stop::{self, Holding, Stoppable};
use crate::{Error, Result, Technique};

/// An opened technique (from [`Guest::access`](crate::Guest::access)).
#[derive(Debug)]
pub struct Access<'g> {
    technique: Option<Technique>,
    how: How<'g>,
    hole_refresh: Duration,
    tries: u32,
    /// Whether this access started the hypervisor's dirty log (and stops it on drop).
    dirty_started: Cell<bool>,
    /// A live guest's: checked after every pass.
    vitals: Option<Vitals>,
}

#[derive(Debug)]
pub(crate) enum How<'g> {
    /// The guest answers for itself.
    Agent(RefCell<Client>),
    /// Reads while the guest runs (the hypervisor, where there is one, only for its
    /// dirty log).
    Live { reader: Reader, hv: Option<&'g dyn Hypervisor> },
    /// Reads while the guest runs, validated, tried again, else halted.
    Consistent { reader: Reader, hv: Option<&'g dyn Hypervisor> },
    /// Reads with the guest paused per pass.
    Halt(Halted<'g, Reader, dyn Hypervisor + 'g>),
    /// A snapshot per pass: halt-snap (pause, copy, resume) or live-snap (vmscope's
    /// pre-copy: copy running, pause, re-copy what changed).
    Snap {
        hv: &'g dyn Hypervisor,
        /// Guest RAM, read for its data extents only (pread of the RAM files, or
        /// QEMU's address space for the pages it holds).
        ram: Box<dyn Backed>,
    },
    /// A dump file, read as it is.
    Dump(&'g DumpFile),
}

impl<'g> Access<'g> {
    pub(crate) fn new(technique: Option<Technique>, how: How<'g>, opts: &Options, vitals: Option<Vitals>) -> Self {
        Self {
            technique,
            how,
            hole_refresh: opts.hole_refresh,
            tries: opts.consistent_tries,
            dirty_started: Cell::new(false),
            vitals,
        }
    }

    /// Runs a pass, then checks that the live guest is still whole: its hypervisor
    /// process runs and its RAM files have their length. A view read from the memory
    /// of a guest that went away before or during the pass (a mapping of its memfd
    /// outlives QEMU) is not returned as its state, and a pass that failed because the
    /// guest went (QMP's socket closed as QEMU died, a read past a truncated file)
    /// fails with that.
    fn vital<R>(&self, pass: impl FnOnce() -> Result<R>) -> Result<R> {
        // A pass that pauses first checks before, too: talking to a QEMU that has
        // died means waiting for a reconnection to its socket to fail.
        if let (Some(v), How::Halt(_) | How::Snap { .. }) = (&self.vitals, &self.how) {
            v.check()?;
        }
        let r = pass();
        if let Some(v) = &self.vitals {
            // A failure may be the process exiting: its sockets close a moment
            // before it has exited.
            v.check_within(if r.is_ok() { Duration::ZERO } else { Duration::from_millis(200) })?;
        }
        r
    }

    /// The technique (`None` for a dump).
    pub fn technique(&self) -> Option<Technique> {
        self.technique
    }

    /// Runs `f` on guest memory as this technique sees it for one pass: the live
    /// memory, the memory with the guest paused, a fresh snapshot, or — for the
    /// consistent techniques — a live view validated as not torn (`f` may then run
    /// more than once). A technique that pauses the guest leaves it as it found it —
    /// running or paused — also when `f` fails or panics; if the process is asked to
    /// stop meanwhile (see [`stop`]), the pass is cut short and
    /// [`Error::Interrupted`] returned. A live guest whose hypervisor process exited,
    /// or whose RAM file was truncated, by the end of the pass fails it
    /// ([`vmscope_hv::Error::ProcessGone`], [`vmscope_hv::Error::BackingTruncated`]).
    pub fn pass<R>(&self, f: impl FnMut(&dyn PhysMem) -> R) -> Result<R> {
        self.vital(|| self.pass_unchecked(f))
    }

    fn pass_unchecked<R>(&self, mut f: impl FnMut(&dyn PhysMem) -> R) -> Result<R> {
        match &self.how {
            How::Live { reader, .. } => {
                reader.begin_pass(self.hole_refresh)?;
                Ok(f(reader.mem()))
            }
            How::Consistent { .. } => Ok(self.observed_unchecked(f)?.value),
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
            How::Agent(_) => Err(self.agent_reads_no_memory()),
        }
    }

    /// Runs one pass as [`pass`](Self::pass) does and says how consistent its view
    /// is: the pass's read set is recorded and, for a live technique, checked against
    /// the guest's writes inside its window — by the hypervisor's dirty log where it
    /// offers one (started on first use, stopped when this `Access` drops), else by a
    /// double collect. A live technique's view may come back torn; a consistent
    /// technique's never does. Halted and snapshot views are consistent by
    /// construction. A guest gone fails the pass as in [`pass`](Self::pass).
    pub fn observed_pass<R>(&self, f: impl FnMut(&dyn PhysMem) -> R) -> Result<Observed<R>> {
        self.vital(|| self.observed_unchecked(f))
    }

    fn observed_unchecked<R>(&self, mut f: impl FnMut(&dyn PhysMem) -> R) -> Result<Observed<R>> {
        let observed = match &self.how {
            How::Live { reader, hv } => {
                let (value, verdict) = consistent::live(reader, self.dirty_log(*hv)?, self.hole_refresh, &mut f)?;
                Observed { value, consistency: Consistency::once(verdict) }
            }
            How::Consistent { reader, hv } => {
                let dirty = self.dirty_log(*hv)?;
                consistent::validated(reader, *hv, dirty, (self.tries, self.hole_refresh), &mut f)?
            }
            How::Halt(h) => {
                let (value, verdict) = consistent::halted(h.inner(), h.hypervisor(), self.hole_refresh, &mut f)?;
                interrupted()?;
                Observed { value, consistency: Consistency::once(verdict) }
            }
            How::Snap { .. } => {
                let (snap, _) = self.snapshot(SnapOptions { registers: false, vmcoreinfo: false })?;
                recorded_untorn(&snap, Method::Snapshot, &mut f)
            }
            How::Dump(d) => recorded_untorn(*d, Method::Snapshot, &mut f),
            How::Agent(_) => return Err(self.agent_reads_no_memory()),
        };
        Ok(observed)
    }

    /// The hypervisor's dirty log, started on first use, if it offers one.
    fn dirty_log(&self, hv: Option<&'g dyn Hypervisor>) -> Result<Option<&'g dyn DirtyLog>> {
        let Some(log) = hv.and_then(|h| h.dirty_log()) else { return Ok(None) };
        if !self.dirty_started.get() {
            log.start()?;
            self.dirty_started.set(true);
        }
        Ok(Some(log))
    }

    fn agent_reads_no_memory(&self) -> Error {
        Error::NotApplicable { technique: Technique::Agent, why: "asks the guest agent; it does not read guest memory" }
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
            vmscope_snap::live::precopy_snap(*hv, &**ram, opts)
        } else {
            vmscope_snap::halt_snap(*hv, Source::Backed(&**ram), opts)
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
            How::Live { reader, .. } | How::Consistent { reader, .. } => reader.cache_stats(),
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

impl Drop for Access<'_> {
    fn drop(&mut self) {
        if self.dirty_started.get() {
            let hv = match &self.how {
                How::Live { hv, .. } | How::Consistent { hv, .. } => *hv,
                _ => None,
            };
            if let Some(log) = hv.and_then(|h| h.dirty_log()) {
                let _ = log.stop();
            }
        }
    }
}

/// A pass over memory that cannot change under it, with its read set recorded.
fn recorded_untorn<R>(mem: &dyn PhysMem, method: Method, f: &mut impl FnMut(&dyn PhysMem) -> R) -> Observed<R> {
    let set = ReadSet::new(mem);
    let value = f(&set);
    Observed { value, consistency: Consistency::once(Verdict::untorn(method, &set.finish())) }
}

/// [`Error::Interrupted`] if a stop was requested during the pass just ended.
fn interrupted() -> Result<()> {
    match stop::requested() {
        Some(signal) => Err(Error::Interrupted { signal }),
        None => Ok(()),
    }
}
