//! Stopping the process without leaving a guest paused.
//!
//! A command-line tool that pauses a guest for a pass must not die between the pause
//! and the resume: a guest frozen by accident is worse than a slow answer. After
//! [`on_signals`], SIGINT, SIGTERM and SIGHUP end the process at once while no pass
//! holds a guest paused; while one does, the signal is noted, the pass is cut short
//! (its reads fail), the guest resumed, and the pass returns
//! [`Error::Interrupted`](crate::Error::Interrupted) for the caller to exit on.
//! SIGKILL cannot be caught: a guest paused at that moment stays paused.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use vmscope_mem::{Error as MemError, MemoryMap, PhysMem, ReadOp};

/// Whether no pass holds a guest paused right now (the signal handlers exit only then).
static FREE: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(true)));
/// The signal that asked the process to stop while a pass held a guest (0: none).
static REQUESTED: LazyLock<Arc<AtomicUsize>> = LazyLock::new(Arc::default);
/// Passes holding a guest paused; [`FREE`] is `HOLDING == 0`, updated under the lock.
static HOLDING: Mutex<usize> = Mutex::new(0);

/// Makes SIGINT, SIGTERM and SIGHUP wait for halted passes to resume their guest
/// (see the [module docs](self)). Call once, early in `main`.
pub fn on_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, FREE.clone())?;
        signal_hook::flag::register_usize(sig, REQUESTED.clone(), sig as usize)?;
    }
    Ok(())
}

/// For a program that runs pass after pass until told to stop (`vmscope watch`):
/// SIGINT, SIGTERM and SIGHUP never end the process, they are only noted, for it to
/// poll with [`requested`] between passes and end itself cleanly; a halted pass
/// under way is still cut short and its guest resumed. Call once, early in `main`,
/// instead of [`on_signals`].
pub fn on_signals_noted() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register_usize(sig, REQUESTED.clone(), sig as usize)?;
    }
    Ok(())
}

/// The signal that asked the process to stop, if one did (after [`on_signals`]: during
/// a halted pass).
pub fn requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        s => i32::try_from(s).ok(),
    }
}

/// Held for as long as a pass may hold a guest paused: taken before the pause is
/// sent, dropped after the resume returned, so a signal in between waits.
#[derive(Debug)]
pub(crate) struct Holding(());

impl Holding {
    pub(crate) fn new() -> Self {
        let mut n = HOLDING.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        FREE.store(false, Ordering::SeqCst);
        Holding(())
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut n = HOLDING.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        FREE.store(*n == 0, Ordering::SeqCst);
    }
}

/// Memory whose reads fail once a stop was requested, so that a halted pass ends
/// soon and its guest runs again.
#[derive(Debug)]
pub(crate) struct Stoppable<M>(pub(crate) M);

impl<M: PhysMem> PhysMem for Stoppable<M> {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        if requested().is_some() {
            let gpa = ops.first().map(|o| o.gpa).unwrap_or_default();
            return Err(MemError::Io { gpa, source: std::io::ErrorKind::Interrupted.into() });
        }
        self.0.read_batch(ops)
    }

    fn read_u64(&self, gpa: vmscope_mem::Gpa) -> vmscope_mem::Result<u64> {
        if requested().is_some() {
            return Err(MemError::Io { gpa, source: std::io::ErrorKind::Interrupted.into() });
        }
        self.0.read_u64(gpa)
    }

    fn memory_map(&self) -> &MemoryMap {
        self.0.memory_map()
    }
}
