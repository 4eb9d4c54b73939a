//! A small QMP client: greeting and capability negotiation, commands matched to their
//! replies by id, asynchronous events kept for the caller, typed errors, timeouts.
//!
//! Written here rather than taken from the `qapi` crate: that crate's generated types
//! track one QEMU schema and it has no read timeouts on its synchronous stream; we
//! need a handful of commands, deadlines on every read, and events kept in order.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::{Error, Result};

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `STOP`, `RESUME`, `SHUTDOWN`, ...
    pub name: String,
    /// The event's `data`, or `null`.
    pub data: Value,
    /// When QEMU emitted it (its `timestamp`, wall clock, microseconds).
    pub timestamp: Option<SystemTime>,
}

/// Events kept for the caller at most; older ones are dropped (a client that never
/// asks for events must not grow without bound over thousands of pauses).
const MAX_EVENTS: usize = 1024;

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    events: VecDeque<Event>,
    /// Events received since the connection opened (kept or dropped).
    received: u64,
    /// A line read in part when a deadline passed; completed by the next read.
    partial: Vec<u8>,
    /// Deadline for each command's reply.
    pub timeout: Duration,
    /// QEMU's version, from the greeting: (major, minor, micro).
    pub version: (u64, u64, u64),
}

impl Qmp {
    /// Connects to a QMP unix socket, retrying until `timeout` (QEMU may still be
    /// creating it), reads the greeting and leaves negotiation mode.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let path = path.as_ref();
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() >= timeout => {
                    return Err(Error::io(format!("connecting to QMP socket {}", path.display()), e));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        Self::greeted(stream, timeout)
    }

    /// As [`connect`](Self::connect), but tries the socket once: for a connection
    /// that broke, where a socket nobody listens on will not come back (QEMU died).
    pub fn connect_now(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .map_err(|e| Error::io(format!("connecting to QMP socket {}", path.display()), e))?;
        Self::greeted(stream, timeout)
    }

    /// Reads the greeting on `stream` and leaves negotiation mode.
    fn greeted(stream: UnixStream, timeout: Duration) -> Result<Self> {
        let writer = stream.try_clone().map_err(|e| Error::io("cloning the QMP socket", e))?;
        let mut q = Self {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            events: VecDeque::new(),
            received: 0,
            partial: Vec::new(),
            timeout,
            version: (0, 0, 0),
        };
        let greeting = q.read_message(Instant::now() + timeout, "the QMP greeting")?;
        let v = greeting
            .pointer("/QMP/version/qemu")
            .ok_or_else(|| Error::Protocol(format!("not a QMP greeting: {greeting}")))?;
        let num = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        q.version = (num("major"), num("minor"), num("micro"));
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.execute_with(command, arguments, self.timeout)
    }

    /// As [`execute`](Self::execute), with its own deadline.
    pub fn execute_with(&mut self, command: &str, arguments: Option<Value>, timeout: Duration) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(|e| Error::io(format!("sending QMP command {command}"), e))?;
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.read_message(deadline, command)?;
            if m.get("id").and_then(Value::as_u64) != Some(id) {
                continue; // a reply to an abandoned command
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                return Err(Error::Command { command: command.into(), class: s("class"), desc: s("desc") });
            }
            return Err(Error::Protocol(format!("reply to {command} has neither return nor error: {m}")));
        }
    }

    /// Runs `command` (without arguments) and says whether QEMU emitted `event` because
    /// of it: an event that arrives before the reply and is stamped no earlier than
    /// the moment the command was sent. (An event another client caused before may
    /// still be on its way to this connection; its stamp is older.) QEMU emits
    /// STOP for a `stop` only if the guest was running.
    pub fn execute_watching(&mut self, command: &str, event: &str) -> Result<(Value, bool)> {
        // QEMU stamps events in whole microseconds.
        let sent = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(SystemTime::UNIX_EPOCH, |d| SystemTime::UNIX_EPOCH + Duration::from_micros(d.as_micros() as u64));
        let before = self.received;
        let reply = self.execute(command, None)?;
        let new = usize::try_from(self.received - before).unwrap_or(usize::MAX);
        let seen =
            self.events.iter().rev().take(new).any(|e| e.name == event && e.timestamp.is_some_and(|t| t >= sent));
        Ok((reply, seen))
    }

    /// A human monitor command (`info mtree -f`, `info registers`), on `cpu` if given.
    pub fn hmp(&mut self, command_line: &str, cpu: Option<usize>) -> Result<String> {
        super::Monitor::hmp(self, command_line, cpu)
    }

    /// `query-status`: (`running`, `paused`, ...; whether vCPUs run).
    pub fn status(&mut self) -> Result<(String, bool)> {
        let r = self.execute("query-status", None)?;
        let status = r.get("status").and_then(Value::as_str).unwrap_or("").to_owned();
        let running = r.get("running").and_then(Value::as_bool).unwrap_or(false);
        Ok((status, running))
    }

    /// Events received so far, oldest first, removed from the queue.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Waits for the event `name` (one already queued counts), for at most `timeout`.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e.name == name) {
                return Ok(self.events.remove(i).expect("index from position"));
            }
            let m = self.read_message(deadline, &format!("event {name}"))?;
            // Replies to abandoned commands are dropped; events were queued by read_message.
            let _ = m;
        }
    }

    /// Reads one message that is not an event; events are queued on the way.
    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { what: format!("QMP {what}"), secs: 0.0 });
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| Error::io("setting the QMP read timeout", e))?;
            match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => {
                    return Err(Error::Disconnected(format!("QEMU closed the QMP socket while waiting for {what}")));
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(Error::Timeout { what: format!("QMP {what}"), secs: left.as_secs_f64() });
                }
                Err(e) => return Err(Error::io(format!("reading QMP ({what})"), e)),
            }
            if self.partial.last() != Some(&b'\n') {
                continue; // the rest of the line is still coming
            }
            let line = std::mem::take(&mut self.partial);
            let v: Value = serde_json::from_slice(&line).map_err(|e| {
                Error::Protocol(format!("QMP sent invalid JSON ({e}): {}", String::from_utf8_lossy(&line).trim()))
            })?;
            if let Some(name) = v.get("event").and_then(Value::as_str) {
                if self.events.len() >= MAX_EVENTS {
                    self.events.pop_front();
                }
                let timestamp = v.get("timestamp").and_then(|t| {
                    let secs = t.get("seconds")?.as_u64()?;
                    let micros = t.get("microseconds")?.as_u64()?;
                    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs) + Duration::from_micros(micros))
                });
                let data = v.get("data").cloned().unwrap_or(Value::Null);
                self.events.push_back(Event { name: name.into(), data, timestamp });
                self.received += 1;
                continue;
            }
            return Ok(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A QMP peer that greets, accepts capabilities, then answers each `stop` with
    /// the given event lines before its reply.
    fn fake_qemu(sock: &Path, answers: Vec<Vec<String>>) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(sock).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            writeln!(w, r#"{{"QMP":{{"version":{{"qemu":{{"major":7,"minor":2,"micro":0}}}},"capabilities":[]}}}}"#)
                .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            writeln!(w, r#"{{"return":{{}},"id":1}}"#).unwrap();
            for (i, events) in answers.into_iter().enumerate() {
                line.clear();
                r.read_line(&mut line).unwrap();
                for e in events {
                    writeln!(w, "{e}").unwrap();
                }
                writeln!(w, r#"{{"return":{{}},"id":{}}}"#, i + 2).unwrap();
            }
        })
    }

    fn stop_event(at: SystemTime) -> String {
        let d = at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        format!(r#"{{"timestamp":{{"seconds":{},"microseconds":{}}},"event":"STOP"}}"#, d.as_secs(), d.subsec_micros())
    }

    #[test]
    fn only_a_stop_event_caused_by_the_command_counts() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let long_ago = SystemTime::now() - Duration::from_secs(60);
        let soon = SystemTime::now() + Duration::from_secs(60);
        let server = fake_qemu(
            &sock,
            vec![
                vec![stop_event(soon)],     // this stop paused the guest
                vec![],                     // paused already: no event
                vec![stop_event(long_ago)], // another client's stop, still on its way
            ],
        );
        let mut q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        assert!(q.execute_watching("stop", "STOP").unwrap().1);
        assert!(!q.execute_watching("stop", "STOP").unwrap().1);
        assert!(!q.execute_watching("stop", "STOP").unwrap().1);
        assert_eq!(q.take_events().len(), 2, "events are kept for the caller");
        server.join().unwrap();
    }
}
