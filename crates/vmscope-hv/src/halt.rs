//! Halting techniques: the guest is paused once per pass, not per read, and left
//! running or paused exactly as it was found.

use crate::{Error, Hypervisor, Result};

/// The guest held paused for as long as this guard lives — if it ran when the guard
/// was taken. A guest someone else paused (frozen for forensics, say) stays paused:
/// the guard neither pauses nor resumes it. A guest the guard paused runs again when
/// the guard ends: by [`release`](Self::release), which reports a failed resume, or
/// on drop, which covers errors and panics in between.
///
/// ```no_run
/// # fn demo(hv: &impl vmscope_hv::Hypervisor) -> vmscope_hv::Result<()> {
/// let pause = vmscope_hv::PauseGuard::new(hv)?;
/// // ... read a consistent view ...
/// pause.release()?; // resumes only if this guard paused the guest
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PauseGuard<'h, H: Hypervisor + ?Sized> {
    hv: &'h H,
    paused_here: bool,
    since: std::time::Instant,
}

impl<'h, H: Hypervisor + ?Sized> PauseGuard<'h, H> {
    /// Pauses the guest unless it is paused already
    /// ([`Hypervisor::pause_if_running`]).
    pub fn new(hv: &'h H) -> Result<Self> {
        let since = std::time::Instant::now();
        let paused_here = hv.pause_if_running()?;
        Ok(Self { hv, paused_here, since })
    }

    /// When the guard was taken (just before the pause command was sent): the start
    /// of the guest-visible downtime.
    pub fn since(&self) -> std::time::Instant {
        self.since
    }

    /// Whether this guard paused the guest (and so will resume it).
    pub fn paused_here(&self) -> bool {
        self.paused_here
    }

    /// Ends the pause: resumes the guest if this guard paused it.
    pub fn release(mut self) -> Result<()> {
        if std::mem::replace(&mut self.paused_here, false) {
            self.hv.resume().map_err(|e| Error::StillPaused(Box::new(e)))?;
        }
        Ok(())
    }
}

impl<H: Hypervisor + ?Sized> Drop for PauseGuard<'_, H> {
    fn drop(&mut self) {
        if self.paused_here {
            let _ = self.hv.resume();
        }
    }
}

/// Any memory, read with the guest paused for the length of a pass (see
/// [`PauseGuard`] for what "paused" means for a guest that was paused already).
///
/// ```no_run
/// # fn demo(mem: impl vmscope_mem::PhysMem, hv: &impl vmscope_hv::Hypervisor) -> vmscope_hv::Result<()> {
/// let halted = vmscope_hv::Halted::new(mem, hv);
/// let first = halted.pass(|m| m.read_u64(vmscope_mem::Gpa::new(0x1000)))?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Halted<'h, M, H: ?Sized> {
    mem: M,
    hv: &'h H,
}

impl<'h, M, H: Hypervisor + ?Sized> Halted<'h, M, H> {
    /// Wraps `mem`; `hv` pauses and resumes the guest it belongs to.
    pub fn new(mem: M, hv: &'h H) -> Self {
        Self { mem, hv }
    }

    /// Runs `f` with the guest paused, then restores the state the guest was found
    /// in — also when `f` fails or panics.
    pub fn pass<R>(&self, f: impl FnOnce(&M) -> R) -> Result<R> {
        let pause = PauseGuard::new(self.hv)?;
        let r = f(&self.mem);
        pause.release()?;
        Ok(r)
    }

    /// The memory, for reads outside a pass (the guest runs).
    pub fn inner(&self) -> &M {
        &self.mem
    }

    /// The hypervisor.
    pub fn hypervisor(&self) -> &'h H {
        self.hv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use vmscope_mem::MemoryMap;

    /// Records the commands it gets; `fail_resume` makes resumes fail.
    #[derive(Debug, Default)]
    struct Recorder {
        paused: Cell<bool>,
        log: RefCell<Vec<&'static str>>,
        fail_pause: Cell<bool>,
        fail_resume: Cell<bool>,
    }

    impl Hypervisor for Recorder {
        fn pause(&self) -> Result<()> {
            self.log.borrow_mut().push("pause");
            self.paused.set(true);
            if self.fail_pause.get() { Err(Error::Protocol("connection lost".into())) } else { Ok(()) }
        }
        fn resume(&self) -> Result<()> {
            self.log.borrow_mut().push("resume");
            if self.fail_resume.get() {
                return Err(Error::Protocol("connection lost".into()));
            }
            self.paused.set(false);
            Ok(())
        }
        fn is_paused(&self) -> Result<bool> {
            Ok(self.paused.get())
        }
        fn vcpu_count(&self) -> Result<usize> {
            Ok(1)
        }
        fn vcpu_registers(&self, _: usize) -> Result<crate::VcpuRegisters> {
            Ok(Default::default())
        }
        fn memory_map(&self) -> Result<MemoryMap> {
            Ok(MemoryMap::flat(0))
        }
    }

    #[test]
    fn a_running_guest_runs_again_after_the_pass() {
        let hv = Recorder::default();
        let h = Halted::new((), &hv);
        assert!(h.pass(|_| hv.paused.get()).unwrap(), "paused during the pass");
        assert!(!hv.paused.get());
        assert_eq!(*hv.log.borrow(), ["pause", "resume"]);
    }

    #[test]
    fn a_paused_guest_stays_paused() {
        let hv = Recorder::default();
        hv.paused.set(true);
        Halted::new((), &hv).pass(|_| ()).unwrap();
        assert!(hv.paused.get());
        assert!(hv.log.borrow().is_empty(), "neither paused nor resumed: {:?}", hv.log.borrow());
    }

    #[test]
    fn a_panic_in_the_pass_resumes() {
        let hv = Recorder::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Halted::new((), &hv).pass(|_| panic!("walker bug"))
        }));
        assert!(r.is_err());
        assert!(!hv.paused.get());
    }

    #[test]
    fn a_failed_pause_leaves_the_guest_running() {
        let hv = Recorder::default();
        hv.fail_pause.set(true);
        assert!(PauseGuard::new(&hv).is_err());
        assert!(!hv.paused.get(), "a stop that may have landed is undone");
    }

    #[test]
    fn a_failed_resume_says_the_guest_is_still_paused() {
        let hv = Recorder::default();
        hv.fail_resume.set(true);
        let e = Halted::new((), &hv).pass(|_| ()).unwrap_err();
        assert!(e.to_string().contains("still paused"), "{e}");
    }
}
