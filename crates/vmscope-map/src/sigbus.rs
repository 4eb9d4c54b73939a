//! SIGBUS from a mapping whose file was truncated, turned into a read error.
//!
//! A shared mapping of a file raises SIGBUS on a read past the file's end. QEMU's
//! memfd started with `seal=off` can be truncated by anyone holding it, at any moment
//! — also between [`Vitals::check`](vmscope_hv::Vitals::check) and a read — and an
//! introspector must not die of it. While a [`Guarded`] range is registered, a SIGBUS
//! inside it maps a zero page over the faulting page (read-only, private), marks the
//! range faulted and returns: the load is retried, reads zeros, and the reader turns
//! the mark into an error. A SIGBUS anywhere else goes to the handler that was there
//! before (Rust's own, or the default action, which ends the process as it would
//! have).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Ranges guarded at once, at most (a process maps a few guests; a mapping beyond
/// these is read unguarded, with its per-pass size check only).
const SLOTS: usize = 16;

struct Slot {
    start: AtomicUsize,
    /// 0: free.
    len: AtomicUsize,
    page: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the array below only
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    page: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};
static RANGES: [Slot; SLOTS] = [FREE; SLOTS];
/// Slots being claimed or in use (a slot is claimed by swapping its bit in).
static CLAIMED: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
/// The SIGBUS action before ours, for faults outside every guarded range.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// A registered range of our address space (a mapping of guest RAM): SIGBUS inside
/// it is survived and noted. Unregistered on drop.
#[derive(Debug)]
pub(crate) struct Guarded {
    slot: Option<usize>,
}

impl Guarded {
    /// Guards `start..start+len`, whose mapping has pages of `page` bytes (the unit
    /// a zero page is mapped over a fault in). `None` when every slot is taken, or the
    /// handler cannot be installed: the range is read unguarded.
    pub(crate) fn new(start: usize, len: usize, page: usize) -> Self {
        if !install() {
            return Self { slot: None };
        }
        let slot = (0..SLOTS).find(|&i| CLAIMED.fetch_or(1 << i, Ordering::AcqRel) & (1 << i) == 0);
        if let Some(i) = slot {
            let s = &RANGES[i];
            s.faulted.store(false, Ordering::Release);
            s.start.store(start, Ordering::Release);
            s.page.store(page, Ordering::Release);
            s.len.store(len, Ordering::Release);
        }
        Self { slot }
    }

    /// Whether a read in the range ever raised SIGBUS (the file was truncated under
    /// the mapping: the zeros read there are not guest memory).
    pub(crate) fn faulted(&self) -> bool {
        self.slot.is_some_and(|i| RANGES[i].faulted.load(Ordering::Acquire))
    }

    /// Unregisters the range (before it is unmapped, so that a mapping placed there
    /// later is not taken for it).
    pub(crate) fn release(&mut self) {
        if let Some(i) = self.slot.take() {
            RANGES[i].len.store(0, Ordering::Release);
            CLAIMED.fetch_and(!(1 << i), Ordering::AcqRel);
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.release();
    }
}

/// Installs the handler once; whether it is in place.
fn install() -> bool {
    static OK: AtomicBool = AtomicBool::new(false);
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid value to fill; sigemptyset and
        // sigaction get pointers to it and to `old`, which live across the calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                return;
            }
            let _ = PREVIOUS.set(old);
            if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) == 0 {
                OK.store(true, Ordering::Release);
            }
        }
    });
    OK.load(Ordering::Acquire)
}

/// The handler: only atomics, mmap(2) and sigaction(2) (system calls that touch no
/// lock of ours or of libc's allocator).
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler; si_addr
    // is the faulting address for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &RANGES {
        let len = s.len.load(Ordering::Acquire);
        let start = s.start.load(Ordering::Acquire);
        if len == 0 || addr < start || addr - start >= len {
            continue;
        }
        let page = s.page.load(Ordering::Acquire).max(4096);
        let at = start + (addr - start) / page * page;
        // SAFETY: `at..at+page` lies inside a registered mapping of ours that is
        // read-only and referenced by nothing in Rust (reads copy out of it); a
        // private anonymous read-only mapping replaces that piece, so the faulting
        // load reads zeros when it is retried.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            s.faulted.store(true, Ordering::Release);
            return;
        }
    }
    // Not ours: the handler before ours, or the default action (the load is retried
    // and the process ends with SIGBUS, as it would have without us).
    // Set before this handler was installed; a load, no lock.
    match PREVIOUS.get().copied() {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: an SA_SIGINFO handler installed before ours, called with what
                // the kernel gave us.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a plain handler installed before ours.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // SAFETY: a zeroed sigaction with SIG_DFL (0) restores the default action.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            }
        }
    }
}
