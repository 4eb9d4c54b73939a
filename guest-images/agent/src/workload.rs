//! `vmscope-workload`: guest processes whose state the tests know, started through
//! the same binary as the agent (`/sbin/vmscope-workload` links to it).
//!
//! `vmscope-workload threads N BURN_MS` runs N threads: the main thread spins for
//! BURN_MS of CPU time, then every thread sleeps forever. The others are named
//! `vmsw-1` … `vmsw-{N-1}` (their `comm`), so a test can tell them apart.
//!
//! `vmscope-workload churn procs|threads|modules ...` changes the guest's task or
//! module list at a set rate (see [`crate::churn`]).
//!
//! `vmscope-workload spawn PROCS THREADS_PER_PROC` holds PROCS idle processes of
//! THREADS_PER_PROC tasks each (see [`crate::spawn`]).
//!
//! `vmscope-workload hold DIR` holds files, a pipe, an eventfd, unix, TCP and UDP sockets, a
//! memfd and mappings the tests know (see [`crate::hold`]); `vmscope-workload kmsg`
//! prints the kernel log as `/dev/kmsg` gives it, sequence numbers included.

use std::time::Duration;

/// Why a workload stopped early.
#[derive(Debug)]
pub enum Error {
    /// Bad arguments: the usage text.
    Usage(String),
    /// The workload started but an operation failed.
    Failed(String),
}

impl Error {
    /// The process exit status: 2 for bad arguments, 1 for a failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(s) | Error::Failed(s) => f.write_str(s),
        }
    }
}

pub const USAGE: &str = "usage: vmscope-workload threads N BURN_MS\n       \
     vmscope-workload churn procs RATE [SECONDS]\n       \
     vmscope-workload churn threads RATE [SECONDS]\n       \
     vmscope-workload churn modules RATE MODULE [SECONDS]\n       \
     vmscope-workload dirty MB_PER_S SIZE_MB [SECONDS]\n       \
     vmscope-workload spawn PROCS THREADS_PER_PROC\n       \
     vmscope-workload hold DIR\n       \
     vmscope-workload kmsg\n\
     RATE: operations per second, or `max`; SECONDS: run time (default: until killed)";

/// Runs the workload named by `args` (without the program name). `threads` never
/// returns but on bad arguments; `churn` returns when its time is up or it is
/// stopped by SIGTERM, SIGINT or SIGHUP.
pub fn run(args: &[String]) -> Result<(), Error> {
    match args.first().map(String::as_str) {
        Some("threads") => threads(&args[1..]),
        Some("churn") => crate::churn::run(&args[1..]),
        Some("dirty") => crate::dirty::run(&args[1..]),
        Some("spawn") => crate::spawn::run(&args[1..]),
        Some("hold") => crate::hold::run(&args[1..]),
        Some("kmsg") if args.len() == 1 => crate::hold::kmsg(),
        _ => Err(usage()),
    }
}

pub fn usage() -> Error {
    Error::Usage(USAGE.into())
}

fn threads(args: &[String]) -> Result<(), Error> {
    let [n, burn] = args else { return Err(usage()) };
    let (Ok(n), Ok(burn_ms)) = (n.parse::<u32>(), burn.parse::<u64>()) else { return Err(usage()) };
    if n == 0 {
        return Err(usage());
    }
    for i in 1..n {
        let spawned = std::thread::Builder::new().name(format!("vmsw-{i}")).spawn(sleep_forever);
        if let Err(e) = spawned {
            return Err(Error::Failed(format!("cannot start thread {i}: {e}")));
        }
    }
    burn_cpu(Duration::from_millis(burn_ms));
    sleep_forever()
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
