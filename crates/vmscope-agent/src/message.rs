//! What travels inside frames.

use serde::{Deserialize, Serialize};

/// Bumped whenever [`Request`] or [`Response`] change incompatibly.
pub const PROTOCOL_VERSION: u32 = 2;

/// The first protocol with [`Request::ListDir`].
pub const LIST_DIR_SINCE: u32 = 2;

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Are you there? Answered by [`Response::Pong`].
    Ping {
        /// Echoed back, so a stale pong is told apart.
        nonce: u64,
    },
    /// Run a program; answered by [`Response::Exec`].
    Exec(ExecRequest),
    /// Read a file (e.g. `/proc/kallsyms`); answered by [`Response::File`].
    ReadFile {
        /// Absolute path in the guest.
        path: String,
        /// Read at most this many bytes.
        max: u64,
    },
    /// The process list from /proc (the agent technique).
    Processes,
    /// The module list from /proc/modules (the agent technique).
    Modules,
    /// The entries of a directory, each symbolic link's target and what the
    /// entry leads to (e.g. `/proc/PID/fd`); answered by [`Response::Dir`].
    /// Since protocol 2.
    ListDir {
        /// Absolute path in the guest.
        path: String,
    },
}

/// One entry of a directory the guest listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// Where it points, if it is a symbolic link (`readlink`): `socket:[INODE]`,
    /// `/dev/null`, `net:[4026531840]`.
    pub link: Option<String>,
    /// `st_mode` of what it leads to (`stat`, links followed), if that worked.
    pub mode: Option<u32>,
    /// `st_ino` of what it leads to.
    pub ino: Option<u64>,
}

/// A program to run in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments; `["/bin/sh", "-c", "..."]` for a shell line.
    pub argv: Vec<String>,
    /// Bytes fed to its stdin (then closed).
    pub stdin: Vec<u8>,
    /// Run with this user id (and its group id, if `gid` is not given).
    pub uid: Option<u32>,
    /// Run with this group id.
    pub gid: Option<u32>,
    /// Kill it after this many milliseconds (0: the agent's default, 60 s).
    pub timeout_ms: u32,
}

/// How a program ended and what it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal number, if a signal ended it.
    pub signal: Option<i32>,
    /// Whether the agent killed it at the timeout.
    pub timed_out: bool,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

impl ExecResult {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `exit 3`, `signal 9`, `timed out`.
    pub fn status_text(&self) -> String {
        match (self.code, self.signal, self.timed_out) {
            (_, _, true) => "timed out".into(),
            (Some(c), _, _) => format!("exit {c}"),
            (_, Some(s), _) => format!("signal {s}"),
            _ => "unknown status".into(),
        }
    }
}

/// One task as the guest's /proc describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Thread-group id (what `ps` calls PID).
    pub pid: i32,
    /// Parent's PID.
    pub ppid: i32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// `comm`, at most 15 bytes.
    pub comm: String,
    /// State letter (R, S, D, Z, T, I, ...).
    pub state: char,
    /// Number of threads.
    pub threads: u32,
    /// Command line, arguments joined by spaces; empty for kernel threads.
    pub cmdline: String,
}

/// One loaded module as /proc/modules shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// Module name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Reference count.
    pub refcount: i64,
    /// `Live`, `Loading`, `Unloading`.
    pub state: String,
}

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The request's nonce.
        nonce: u64,
        /// [`PROTOCOL_VERSION`] of the agent.
        protocol: u32,
        /// The guest's `uname -r`.
        release: String,
    },
    /// Answer to [`Request::Exec`].
    Exec(ExecResult),
    /// Answer to [`Request::ReadFile`].
    File(Vec<u8>),
    /// Answer to [`Request::Processes`].
    Processes(Vec<ProcessInfo>),
    /// Answer to [`Request::Modules`].
    Modules(Vec<ModuleInfo>),
    /// The request failed.
    Error(String),
    /// Answer to [`Request::ListDir`]: the entries sorted by name.
    Dir(Vec<DirEntry>),
}

/// Encodes a message for a frame payload.
pub fn to_payload<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_allocvec(msg).expect("postcard serialises these plain types into a Vec")
}

/// Decodes a frame payload.
pub fn from_payload<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> crate::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| crate::Error::Protocol(format!("undecodable payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let r = Request::Exec(ExecRequest { argv: vec!["ls".into()], uid: Some(1001), ..Default::default() });
        assert_eq!(from_payload::<Request>(&to_payload(&r)).unwrap(), r);
        let d = Response::Dir(vec![DirEntry {
            name: "3".into(),
            link: Some("socket:[42]".into()),
            mode: Some(0o140777),
            ino: Some(42),
        }]);
        assert_eq!(from_payload::<Response>(&to_payload(&d)).unwrap(), d);
    }

    /// Protocol 1's messages keep their encoding: a new client still talks to an old
    /// agent until it asks for something new.
    #[test]
    fn protocol_1_encodings_unchanged() {
        assert_eq!(to_payload(&Request::Processes), [3]);
        assert_eq!(to_payload(&Request::Modules), [4]);
        assert_eq!(to_payload(&Response::Error("x".into())), [5, 1, b'x']);
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = from_payload::<Request>(&bytes);
            let _ = from_payload::<Response>(&bytes);
        }
    }
}
