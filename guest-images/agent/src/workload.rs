//! `vmscope-workload`: guest processes whose state the tests know, started through
//! the same binary as the agent (`/sbin/vmscope-workload` links to it).
//!
//! `vmscope-workload threads N BURN_MS` runs N threads: the main thread spins for
//! BURN_MS of CPU time, then every thread sleeps forever. The others are named
//! `vmsw-1` … `vmsw-{N-1}` (their `comm`), so a test can tell them apart.

use std::time::Duration;

/// Runs the workload named by `args` (without the program name); returns only on
/// bad arguments, with what was wrong.
pub fn run(args: &[String]) -> String {
    let [kind, n, burn] = args else { return usage() };
    let (Ok(n), Ok(burn_ms)) = (n.parse::<u32>(), burn.parse::<u64>()) else { return usage() };
    if kind != "threads" || n == 0 {
        return usage();
    }
    for i in 1..n {
        let spawned = std::thread::Builder::new().name(format!("vmsw-{i}")).spawn(sleep_forever);
        if let Err(e) = spawned {
            return format!("cannot start thread {i}: {e}");
        }
    }
    burn_cpu(Duration::from_millis(burn_ms));
    sleep_forever()
}

fn usage() -> String {
    "usage: vmscope-workload threads N BURN_MS".into()
}

/// Spins until `d` of this thread's CPU time has passed.
fn burn_cpu(d: Duration) {
    let start = cpu_time();
    let mut x = 0u64;
    while cpu_time().saturating_sub(start) < d {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
}

fn cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
