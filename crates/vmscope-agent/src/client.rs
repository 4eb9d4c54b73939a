//! The host side: a connection to the agent's serial port, exposed by the hypervisor as
//! a unix socket (QEMU `-chardev socket`, the built-in VMM's ttyS1 socket).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::frame::{self, Decoder, Kind};
use crate::message::{from_payload, to_payload};
use crate::{
    DirEntry, Error, ExecRequest, ExecResult, LIST_DIR_SINCE, ModuleInfo, ProcessInfo, Request, Response, Result,
};

/// A connection to the guest agent. One request at a time.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    decoder: Decoder,
    next_id: u32,
    /// Deadline for an answer, unless a call says otherwise.
    pub timeout: Duration,
    release: String,
    /// The agent's protocol version, from its pong.
    protocol: u32,
}

impl Client {
    /// Connects to the agent's socket and waits until the agent answers a ping,
    /// retrying for up to `timeout` (the agent may still be starting, and the guest
    /// drops bytes sent before it opened the port).
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path.as_ref()) {
                Ok(s) => break s,
                Err(e) if start.elapsed() >= timeout => return Err(Error::Io(e)),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut c = Self {
            stream,
            decoder: Decoder::new(),
            next_id: 1,
            timeout: Duration::from_secs(30),
            release: String::new(),
            protocol: 0,
        };
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout { what: "the first ping".into(), secs: timeout.as_secs_f64() });
            }
            let nonce = u64::from(c.next_id) ^ 0x5eed_0000_0000;
            match c.call_with(&Request::Ping { nonce }, left.min(Duration::from_millis(500))) {
                Ok(Response::Pong { nonce: n, release, protocol }) if n == nonce => {
                    c.release = release;
                    c.protocol = protocol;
                    return Ok(c);
                }
                Ok(other) => return Err(Error::Protocol(format!("expected a pong, got {other:?}"))),
                Err(Error::Timeout { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The guest's `uname -r`, as the agent reported it.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The protocol version the agent speaks ([`crate::PROTOCOL_VERSION`] of its build).
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// Sends `req` and waits for its answer for at most [`Client::timeout`].
    pub fn call(&mut self, req: &Request) -> Result<Response> {
        self.call_with(req, self.timeout)
    }

    /// Sends `req` and waits for its answer for at most `timeout`. Answers to earlier,
    /// abandoned requests are skipped.
    pub fn call_with(&mut self, req: &Request, timeout: Duration) -> Result<Response> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.stream.write_all(&frame::encode(Kind::Request, id, &to_payload(req)))?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            while let Some(f) = self.decoder.next_frame() {
                if f.kind == Kind::Response && f.id == id {
                    return match from_payload::<Response>(&f.payload)? {
                        Response::Error(e) => Err(Error::Remote(e)),
                        r => Ok(r),
                    };
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { what: request_name(req).to_owned(), secs: timeout.as_secs_f64() });
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => self.decoder.feed(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Runs a program in the guest and returns how it ended, whatever the status.
    pub fn exec(&mut self, req: ExecRequest) -> Result<ExecResult> {
        // Leave the agent time to enforce its own timeout first.
        let wait = Duration::from_millis(u64::from(if req.timeout_ms == 0 { 60_000 } else { req.timeout_ms }))
            + Duration::from_secs(5);
        match self.call_with(&Request::Exec(req), wait.max(self.timeout))? {
            Response::Exec(r) => Ok(r),
            other => Err(unexpected("exec", &other)),
        }
    }

    /// Runs `line` with `/bin/sh -c`; returns its stdout if it exits with status 0.
    pub fn sh(&mut self, line: &str) -> Result<String> {
        let r =
            self.exec(ExecRequest { argv: vec!["/bin/sh".into(), "-c".into(), line.into()], ..Default::default() })?;
        if !r.success() {
            return Err(Error::Command {
                command: line.into(),
                status: r.status_text(),
                stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
            });
        }
        String::from_utf8(r.stdout).map_err(|e| Error::Protocol(format!("`{line}` wrote non-UTF-8: {e}")))
    }

    /// Reads a whole file of the guest (at most `max` bytes).
    pub fn read_file(&mut self, path: &str, max: u64) -> Result<Vec<u8>> {
        match self.call(&Request::ReadFile { path: path.into(), max })? {
            Response::File(b) => Ok(b),
            other => Err(unexpected("read-file", &other)),
        }
    }

    /// The guest's process list, from its /proc.
    pub fn processes(&mut self) -> Result<Vec<ProcessInfo>> {
        match self.call(&Request::Processes)? {
            Response::Processes(p) => Ok(p),
            other => Err(unexpected("processes", &other)),
        }
    }

    /// The entries of directory `path` of the guest, sorted by name, with each
    /// link's target and what it leads to (see [`DirEntry`]).
    pub fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        if self.protocol < LIST_DIR_SINCE {
            return Err(Error::Protocol(format!(
                "the guest's agent speaks protocol {} and cannot list directories (protocol {LIST_DIR_SINCE}); \
                 rebuild the guest image with `cargo xtask images`",
                self.protocol
            )));
        }
        match self.call(&Request::ListDir { path: path.into() })? {
            Response::Dir(d) => Ok(d),
            other => Err(unexpected("list-dir", &other)),
        }
    }

    /// The guest's module list, from its /proc/modules.
    pub fn modules(&mut self) -> Result<Vec<ModuleInfo>> {
        match self.call(&Request::Modules)? {
            Response::Modules(m) => Ok(m),
            other => Err(unexpected("modules", &other)),
        }
    }
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Ping { .. } => "ping",
        Request::Exec(_) => "exec",
        Request::ReadFile { .. } => "read-file",
        Request::Processes => "processes",
        Request::Modules => "modules",
        Request::ListDir { .. } => "list-dir",
    }
}

fn unexpected(what: &str, got: &Response) -> Error {
    let name = match got {
        Response::Pong { .. } => "pong",
        Response::Exec(_) => "exec result",
        Response::File(_) => "file",
        Response::Processes(_) => "process list",
        Response::Modules(_) => "module list",
        Response::Error(_) => "error",
        Response::Dir(_) => "directory",
    };
    Error::Protocol(format!("asked for {what}, got a {name}"))
}
