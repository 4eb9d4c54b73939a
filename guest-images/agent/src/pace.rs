//! What the paced workloads (`churn`, `dirty`) share: a CLOCK_MONOTONIC clock, sleeps
//! to an absolute time (so a rate holds however long each step takes), and a stop
//! flag that SIGTERM, SIGINT and SIGHUP raise.

use std::sync::atomic::{AtomicBool, Ordering};

/// Nanoseconds in a second.
pub const NS: u64 = 1_000_000_000;

static STOP: AtomicBool = AtomicBool::new(false);

/// Whether a stop signal has arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGTERM, SIGINT and SIGHUP end the run (with cleanup and summary). No SA_RESTART,
/// so a sleep in progress ends at once.
pub fn install_stop_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid empty one; the handler only stores to
        // an atomic, which is async-signal-safe; the pointers are valid for the call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS + ts.tv_nsec as u64
}

/// Sleeps until CLOCK_MONOTONIC reaches `t_ns`, or a signal arrives.
pub fn sleep_until(t_ns: u64) {
    let ts = libc::timespec { tv_sec: (t_ns / NS) as libc::time_t, tv_nsec: (t_ns % NS) as libc::c_long };
    // SAFETY: a valid absolute timespec; no remainder is asked for.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
}
