//! A `vmscope watch` running in the background, its stdout lines read as they come.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `vmscope --qemu PID --qmp QMP ARGS... watch --json --stats WATCH_ARGS...`, killed on
/// drop if still running.
pub struct Watching {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Watching {
    /// Starts a watch of QEMU `pid` through QMP socket `qmp`, with `args` before
    /// `watch` (technique, read method) and `watch_args` after it.
    pub fn start(pid: u32, qmp: &Path, cache: &Path, args: &[&str], watch_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .arg("--qemu")
            .arg(pid.to_string())
            .arg("--qmp")
            .arg(qmp)
            .args(args)
            .args(["watch", "--json", "--stats"])
            .args(watch_args)
            .env("XDG_CACHE_HOME", cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Watching { child, lines, seen: Vec::new() }
    }

    /// Waits up to `timeout` for a JSON line that `want` accepts; panics with what was
    /// seen otherwise (or when the watch ends first).
    pub fn wait_for(&mut self, what: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        if let Some(v) = self.seen.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| want(v)) {
            return v;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(&l)
                        && want(&v)
                    {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {timeout:?}; watch printed:\n{}", self.seen())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let (st, err) = self.finish(Duration::from_secs(5));
                    panic!("watch ended ({st:?}) before {what}; it printed:\n{}\nstderr: {err}", self.seen())
                }
            }
        }
    }

    /// Waits until passes run: the first `--stats` line.
    pub fn wait_running(&mut self) {
        self.wait_for("a stats line", Duration::from_secs(60), |v| v.get("stats").is_some());
    }

    /// Sends `signal` to the watch.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) of a child we spawned and have not reaped; no memory.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits up to `timeout` for the watch to end by itself: its exit status and
    /// stderr (the rest of stdout joins `seen`). Panics if it does not end.
    pub fn finish(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("watch did not end within {timeout:?}; it printed:\n{}", self.seen());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status, err)
    }

    /// The summary line, once the watch ended.
    pub fn summary(&self) -> Value {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v.get("summary").cloned())
            .unwrap_or_else(|| panic!("no summary line in:\n{}", self.seen()))
    }

    fn seen(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
