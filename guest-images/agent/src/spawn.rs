//! `vmscope-workload spawn PROCS THREADS_PER_PROC`: grows the guest's task list to a
//! known size and holds it, for the scale experiment (pass time against the number of
//! tasks a pass walks).
//!
//! Forks PROCS children; each starts THREADS_PER_PROC − 1 more threads (comm
//! `vmsw-spawn`), so it is THREADS_PER_PROC tasks, and every task then blocks in
//! `pause()` (no CPU). Once every child said its threads are up (one byte each on a
//! pipe), the parent prints one line on stdout,
//! `spawn: up procs=P threads_per_proc=T tasks=N` (N = P × T + 1, the parent
//! included), and waits until it is killed. Children die with the parent, even on
//! SIGKILL (PR_SET_PDEATHSIG), so killing the one pid the shell printed undoes all.
//! On a failure (fork or thread creation refused, e.g. at `kernel.threads-max`) it
//! prints `spawn: failed ...` on stderr and exits 1, which takes the children with it.

use crate::workload::{Error, usage};

/// Stack of each extra thread: it only calls `pause()`.
const THREAD_STACK: usize = 64 << 10;
/// How long the children have to report, in ms.
const READY_TIMEOUT_MS: i32 = 600_000;
const UP: u8 = b'+';
const FAILED: u8 = b'!';

/// `spawn PROCS THREADS_PER_PROC` (the arguments after `spawn`).
pub fn run(args: &[String]) -> Result<(), Error> {
    let [procs, per] = args else { return Err(usage()) };
    let (Ok(procs), Ok(per)) = (procs.parse::<u32>(), per.parse::<u32>()) else { return Err(usage()) };
    if procs == 0 || per == 0 || per > 1024 {
        return Err(usage());
    }
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into a valid two-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(failed("pipe"));
    }
    let [rd, wr] = fds;
    // SAFETY: getpid has no arguments.
    let parent = unsafe { libc::getpid() };
    for i in 0..procs {
        // SAFETY: this process has one thread (spawn starts none in the parent), so the
        // child may allocate and start threads after fork.
        match unsafe { libc::fork() } {
            p if p < 0 => return Err(failed(&format!("fork {} of {procs}", i + 1))),
            0 => child(parent, wr, per),
            _ => {}
        }
    }
    // SAFETY: closing our copy of the write end; the children hold theirs.
    unsafe { libc::close(wr) };
    let (mut up, mut buf) = (0u32, [0u8; 4096]);
    while up < procs {
        let mut pfd = libc::pollfd { fd: rd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, READY_TIMEOUT_MS) } <= 0 {
            return Err(Error::Failed(format!(
                "spawn: failed: {up} of {procs} processes up after {READY_TIMEOUT_MS} ms"
            )));
        }
        // SAFETY: reading into a buffer of the length passed.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return Err(Error::Failed(format!("spawn: failed: children gone with {up} of {procs} up")));
        }
        let got = &buf[..n as usize];
        if got.contains(&FAILED) {
            return Err(Error::Failed(format!(
                "spawn: failed: a child could not start its {} threads (kernel.threads-max {}?)",
                per - 1,
                std::fs::read_to_string("/proc/sys/kernel/threads-max").unwrap_or_default().trim()
            )));
        }
        up += got.iter().filter(|&&b| b == UP).count() as u32;
    }
    println!("spawn: up procs={procs} threads_per_proc={per} tasks={}", u64::from(procs) * u64::from(per) + 1);
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        // SAFETY: pause has no arguments; it returns only on a handled signal.
        unsafe { libc::pause() };
    }
}

fn failed(what: &str) -> Error {
    Error::Failed(format!("spawn: failed: {what}: {}", std::io::Error::last_os_error()))
}

/// A child: dies with the parent, starts `per − 1` threads, reports on `wr`, idles.
fn child(parent: libc::pid_t, wr: libc::c_int, per: u32) -> ! {
    // SAFETY: prctl and getppid take integers only.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(0); // the parent died before PDEATHSIG was armed
        }
    }
    let mut status = UP;
    for _ in 1..per {
        let spawned = std::thread::Builder::new().name("vmsw-spawn".into()).stack_size(THREAD_STACK).spawn(|| {
            loop {
                // SAFETY: pause has no arguments.
                unsafe { libc::pause() };
            }
        });
        if spawned.is_err() {
            status = FAILED;
            break;
        }
    }
    // SAFETY: writing one byte from a valid buffer to the pipe's write end.
    unsafe { libc::write(wr, (&raw const status).cast(), 1) };
    if status == FAILED {
        // SAFETY: _exit ends the process (and its threads) at once.
        unsafe { libc::_exit(1) };
    }
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}
