//! Running a program for the host: stdin fed, stdout and stderr collected until it
//! exits (not until its pipes close: a command may leave a daemon holding them).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmscope_agent::{ExecRequest, ExecResult};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Output beyond this is dropped (the frame limit is 64 MiB).
const MAX_OUTPUT: usize = 48 << 20;

pub fn run(req: &ExecRequest) -> io::Result<ExecResult> {
    let (prog, args) = req.argv.split_first().ok_or_else(|| io::Error::other("empty argv"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(gid) = req.gid.or(req.uid) {
        cmd.gid(gid);
    }
    if let Some(uid) = req.uid {
        cmd.uid(uid);
    }
    let mut child = cmd.spawn()?;
    {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        // A program that does not read its stdin must not block us: ignore EPIPE.
        let _ = stdin.write_all(&req.stdin);
    }
    let mut out = child.stdout.take().expect("stdout was piped");
    let mut err = child.stderr.take().expect("stderr was piped");
    set_nonblocking(out.as_raw_fd())?;
    set_nonblocking(err.as_raw_fd())?;
    let timeout = if req.timeout_ms == 0 { DEFAULT_TIMEOUT } else { Duration::from_millis(req.timeout_ms.into()) };
    let deadline = Instant::now() + timeout;
    let mut result = ExecResult::default();
    let status = loop {
        poll2(out.as_raw_fd(), err.as_raw_fd(), 10);
        drain(&mut out, &mut result.stdout);
        drain(&mut err, &mut result.stderr);
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            result.timed_out = true;
            break child.wait()?;
        }
    };
    // Everything written before the exit is in the pipes now.
    drain(&mut out, &mut result.stdout);
    drain(&mut err, &mut result.stderr);
    result.code = status.code();
    result.signal = status.signal();
    Ok(result)
}

fn drain(r: &mut impl Read, into: &mut Vec<u8>) {
    let mut buf = [0u8; 16 << 10];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(into.len());
        into.extend_from_slice(&buf[..n.min(room)]);
    }
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn poll2(a: i32, b: i32, ms: i32) {
    let mut fds = [
        libc::pollfd { fd: a, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: two valid pollfds, count 2.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
}

/// Collects children that outlived the commands that started them.
pub fn reap_orphans() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}
