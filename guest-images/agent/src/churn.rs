//! `vmscope-workload churn`: changes the guest kernel's task list or module list at a
//! set rate, for the consistency experiments (a view read while the guest runs is
//! torn more often the faster the lists it walks change).
//!
//! - `churn procs RATE [SECONDS]`: one op = fork a child, and once [`POOL`] children
//!   are alive, kill and reap the oldest. So the task list both grows and shrinks at
//!   RATE while holding a steady [`POOL`] live children (each blocked in `pause()`, so
//!   they cost no CPU), instead of flickering between zero and one.
//! - `churn threads RATE [SECONDS]`: the same with threads (`comm` `vmsw-churn`):
//!   spawn one, and once [`POOL`] are alive, stop and join the oldest.
//! - `churn modules RATE MODULE [SECONDS]`: one op = load MODULE (`init_module`)
//!   and unload it (`delete_module`), so the module list changes 2 × RATE times a
//!   second. Paced, the unload comes half a period after the load, so the module is
//!   listed about half the time. MODULE is a path, or a name in /lib/modules.
//!
//! RATE is ops per second or `max` (back to back). Pacing is by an absolute schedule
//! on CLOCK_MONOTONIC (op k is due at start + k / RATE), so time spent in an op does
//! not lower the rate. A backlog longer than [`MAX_BACKLOG_NS`] (the guest was
//! starved) is dropped rather than made up in a burst, and reported as `behind`.
//!
//! Every second a line on stderr tells the achieved rate; at the end a summary
//! `churn procs: N ops in S s = R/s`. Runs for SECONDS (a decimal), or until SIGTERM,
//! SIGINT or SIGHUP, then cleans up: children killed and reaped, threads joined, the
//! module unloaded. Children die with the parent even on SIGKILL (PR_SET_PDEATHSIG).

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::pace::{NS, install_stop_handlers, now_ns, sleep_until, stop_requested};
use crate::workload::{Error, usage};

/// Live children (procs) or threads (threads) kept while churning.
pub const POOL: usize = 8;
/// A backlog longer than this is dropped, not made up.
pub const MAX_BACKLOG_NS: u64 = 1_000_000_000;

/// Ops per second, or as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    PerSec(u64),
    Max,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::PerSec(r) => write!(f, "{r}/s"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// One kind of churn: a schedule step, the ops done, and what is alive now.
trait Churn {
    /// Schedule steps that make one op.
    fn steps_per_op(&self) -> u64 {
        1
    }
    fn step(&mut self) -> Result<(), String>;
    fn ops(&self) -> u64;
    /// What is alive now, for the per-second line.
    fn live(&self) -> String;
    /// Undoes what is still alive.
    fn finish(&mut self);
}

/// `churn KIND ...` (the arguments after `churn`).
pub fn run(args: &[String]) -> Result<(), Error> {
    let (kind, rest) = args.split_first().ok_or_else(usage)?;
    let rate = rest.first().map(|r| parse_rate(r)).ok_or_else(usage)??;
    let mut churn: Box<dyn Churn> = match kind.as_str() {
        "procs" => Box::new(Procs { pool: VecDeque::new(), forks: 0 }),
        "threads" => Box::new(Threads { pool: VecDeque::new(), spawned: 0 }),
        "modules" => Box::new(Modules::open(rest.get(1).ok_or_else(usage)?)?),
        _ => return Err(usage()),
    };
    let after = if kind == "modules" { 2 } else { 1 };
    let seconds = match &rest[after..] {
        [] => None,
        [s] => Some(parse_seconds(s)?),
        _ => return Err(usage()),
    };
    drive(kind, churn.as_mut(), rate, seconds)
}

fn parse_rate(s: &str) -> Result<Rate, Error> {
    if s == "max" {
        return Ok(Rate::Max);
    }
    match s.parse::<u64>() {
        Ok(r) if (1..=1_000_000).contains(&r) => Ok(Rate::PerSec(r)),
        _ => Err(usage()),
    }
}

fn parse_seconds(s: &str) -> Result<u64, Error> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x < 1e9 => Ok((x * NS as f64) as u64),
        _ => Err(usage()),
    }
}

/// Runs `c` at `rate` for `duration_ns` (or until stopped), reporting on stderr.
fn drive(name: &str, c: &mut dyn Churn, rate: Rate, duration_ns: Option<u64>) -> Result<(), Error> {
    install_stop_handlers();
    let steps_per_sec = match rate {
        Rate::PerSec(r) => Some(r * c.steps_per_op()),
        Rate::Max => None,
    };
    let start = now_ns();
    let end = duration_ns.map(|d| start + d);
    let (mut step, mut behind) = (0u64, 0u64);
    let (mut next_report, mut last_t, mut last_ops) = (start + NS, start, 0u64);
    let mut failure = None;
    loop {
        let now = now_ns();
        if stop_requested() || end.is_some_and(|e| now >= e) {
            break;
        }
        if now >= next_report {
            let ops = c.ops();
            let secs = (now - last_t) as f64 / NS as f64;
            let lag = if behind > 0 { format!(", {behind} steps behind") } else { String::new() };
            eprintln!(
                "churn {name}: t={}s {} ops = {:.1}/s (target {rate}), {}{lag}",
                (now - start) / NS,
                ops - last_ops,
                (ops - last_ops) as f64 / secs,
                c.live()
            );
            (last_t, last_ops) = (now, ops);
            while next_report <= now {
                next_report += NS;
            }
        }
        if let Some(r) = steps_per_sec {
            let due = start + (u128::from(step) * u128::from(NS) / u128::from(r)) as u64;
            if now < due {
                sleep_until(due.min(next_report).min(end.unwrap_or(u64::MAX)));
                continue;
            }
            if now - due > MAX_BACKLOG_NS {
                let on_time = (u128::from(now - start) * u128::from(r) / u128::from(NS)) as u64;
                behind += on_time - step;
                step = on_time;
            }
        }
        if let Err(e) = c.step() {
            failure = Some(e);
            break;
        }
        step += 1;
    }
    let elapsed = now_ns() - start;
    c.finish();
    let secs = elapsed as f64 / NS as f64;
    let ops = c.ops();
    eprintln!(
        "churn {name}: {ops} ops in {secs:.2} s = {:.1}/s (target {rate}, {behind} steps dropped)",
        ops as f64 / secs.max(1e-9)
    );
    failure.map_or(Ok(()), |e| Err(Error::Failed(format!("churn {name}: {e}"))))
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

struct Procs {
    pool: VecDeque<libc::pid_t>,
    forks: u64,
}

impl Procs {
    fn end_oldest(&mut self) -> Result<(), String> {
        let Some(pid) = self.pool.pop_front() else { return Ok(()) };
        // SAFETY: kill and waitpid on our own child, integer arguments and a valid
        // out-pointer.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return Err(os_error(&format!("waitpid {pid}")));
                }
            }
        }
        Ok(())
    }
}

/// The child: blocks until killed, and dies with the parent.
fn child(parent: libc::pid_t) -> ! {
    // SAFETY: only async-signal-safe calls between fork and _exit: sigaction-backed
    // signal(), prctl, getppid, pause, _exit.
    unsafe {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(0); // the parent died before PDEATHSIG was armed
        }
        loop {
            libc::pause();
        }
    }
}

impl Churn for Procs {
    fn step(&mut self) -> Result<(), String> {
        // SAFETY: getpid has no arguments; fork in a process with one thread (procs
        // mode starts none), and the child calls only async-signal-safe functions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: as above.
        let pid = unsafe { libc::fork() };
        match pid {
            p if p < 0 => return Err(os_error("fork")),
            0 => child(parent),
            p => self.pool.push_back(p),
        }
        self.forks += 1;
        if self.pool.len() > POOL { self.end_oldest() } else { Ok(()) }
    }

    fn ops(&self) -> u64 {
        self.forks
    }

    fn live(&self) -> String {
        format!("{} children live", self.pool.len())
    }

    fn finish(&mut self) {
        while !self.pool.is_empty() {
            let _ = self.end_oldest();
        }
    }
}

struct Threads {
    /// Dropping a thread's sender ends it.
    pool: VecDeque<(mpsc::Sender<()>, JoinHandle<()>)>,
    spawned: u64,
}

impl Threads {
    fn end_oldest(&mut self) {
        if let Some((tx, handle)) = self.pool.pop_front() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Churn for Threads {
    fn step(&mut self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("vmsw-churn".into())
            .stack_size(64 << 10)
            .spawn(move || while rx.recv().is_ok() {})
            .map_err(|e| format!("spawning a thread: {e}"))?;
        self.pool.push_back((tx, handle));
        self.spawned += 1;
        if self.pool.len() > POOL {
            self.end_oldest();
        }
        Ok(())
    }

    fn ops(&self) -> u64 {
        self.spawned
    }

    fn live(&self) -> String {
        format!("{} threads live", self.pool.len())
    }

    fn finish(&mut self) {
        while !self.pool.is_empty() {
            self.end_oldest();
        }
    }
}

struct Modules {
    path: String,
    image: Vec<u8>,
    /// The module's name, as /proc/modules and delete_module know it.
    name: CString,
    loaded: bool,
    cycles: u64,
}

impl Modules {
    fn open(arg: &str) -> Result<Modules, Error> {
        let path = if arg.contains('/') { arg.to_owned() } else { format!("/lib/modules/{arg}.ko") };
        let image = std::fs::read(&path).map_err(|e| Error::Failed(format!("{path}: {e}")))?;
        // The kernel names a module after its file: crc-itu-t.ko is crc_itu_t.
        let file = path.rsplit('/').next().unwrap_or(&path);
        let stem = file.split(".ko").next().unwrap_or(file).replace('-', "_");
        let name = CString::new(stem).map_err(|_| Error::Failed(format!("{path}: a NUL in the name")))?;
        Ok(Modules { path, image, name, loaded: false, cycles: 0 })
    }
}

impl Churn for Modules {
    fn steps_per_op(&self) -> u64 {
        2
    }

    fn step(&mut self) -> Result<(), String> {
        if self.loaded {
            // SAFETY: a NUL-terminated name that outlives the call; O_NONBLOCK fails
            // instead of waiting when the module is in use.
            if unsafe { libc::syscall(libc::SYS_delete_module, self.name.as_ptr(), libc::O_NONBLOCK) } != 0 {
                return Err(os_error(&format!("unloading {:?}", self.name)));
            }
            self.loaded = false;
            self.cycles += 1;
        } else {
            // SAFETY: the image buffer and its length, and an empty NUL-terminated
            // parameter string, all valid for the call; the kernel copies them.
            let r =
                unsafe { libc::syscall(libc::SYS_init_module, self.image.as_ptr(), self.image.len(), c"".as_ptr()) };
            if r != 0 {
                return Err(os_error(&format!("loading {}", self.path)));
            }
            self.loaded = true;
        }
        Ok(())
    }

    fn ops(&self) -> u64 {
        self.cycles
    }

    fn live(&self) -> String {
        format!("{:?} {}", self.name, if self.loaded { "loaded" } else { "unloaded" })
    }

    fn finish(&mut self) {
        if self.loaded {
            let _ = self.step();
        }
    }
}
