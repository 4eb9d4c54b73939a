//! The built-in VMM (`vmscope-vmm`): its control protocol and a client.
//!
//! The VMM listens on a unix socket (mode 0600). Each request is one JSON object on
//! one line; each reply is one JSON object on one line, `{"ok":true,"result":...}` or
//! `{"ok":false,"error":"..."}`. The request types below are the protocol; the VMM
//! crate uses them too, so both sides agree by construction. An example session
//! (`>` sent, `<` received):
//!
//! ```text
//! > {"cmd":"status"}
//! < {"ok":true,"result":{"state":"running","pid":4242,"vcpus":2,"ram_size":2147483648,"backing":"memfd","exit":null}}
//! > {"cmd":"pause"}
//! < {"ok":true,"result":{"was_running":true}}
//! > {"cmd":"vcpu-registers","vcpu":0}
//! < {"ok":true,"result":{"rax":0,...,"cr3":16777216,"cr4":160,"efer":3329,"lstar":0,...}}
//! > {"cmd":"memory-map"}
//! < {"ok":true,"result":{"pid":4242,"regions":[{"gpa":0,"size":2147483648,"offset":0,"name":"ram-below-4g"}],"backing":{"kind":"memfd","fd":9,"path":"/proc/4242/fd/9","hva":140230000000000}}}
//! > {"cmd":"dirty-log-start"}
//! < {"ok":true,"result":null}
//! > {"cmd":"dirty-log-fetch"}
//! < {"ok":true,"result":{"pfns":[258,259,16400]}}
//! > {"cmd":"snapshot"}
//! < {"ok":true,"result":{"id":1,"kind":"memfd-copy","pid":4242,"fd":12,"path":"/proc/4242/fd/12","hva":null,"regions":[...]}}
//! > {"cmd":"resume"}
//! < {"ok":true,"result":null}
//! > {"cmd":"quit"}
//! < {"ok":true,"result":null}
//! ```
//!
//! Commands: `pause`, `resume`, `status`, `memory-map`, `vcpu-registers {vcpu}`,
//! `dirty-log-start`, `dirty-log-fetch`, `dirty-log-stop`, `snapshot {path?}`,
//! `snapshot-release {id}`, `quit`. A snapshot of memfd RAM is a sparse copy into a new
//! memfd the VMM keeps open (read it through `path`) or into the file `path` names; a
//! snapshot of anonymous private RAM is a forked child of the VMM whose copy-on-write
//! memory holds the RAM at the `hva` of each region (read it with process_vm_readv or
//! /proc/PID/mem on `pid`), or, when `path` is given, a file the child writes. Release
//! a snapshot with `snapshot-release` (the child exits, the memfd is closed).
//!
//! The dirty log has one owner, the VMM: only it calls KVM_GET_DIRTY_LOG, and it ORs in
//! the pages the VMM itself wrote. So only one client should fetch at a time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use vmscope_mem::{Gpa, Hva, MemoryMap, Region};

use crate::{DirtyLog, Error, Hypervisor, RamLocation, Result, VcpuRegisters};

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Stop every vCPU; the reply comes once none runs.
    Pause,
    /// Let every vCPU run again.
    Resume,
    /// [`Status`].
    Status,
    /// [`MemoryMapInfo`].
    MemoryMap,
    /// [`VcpuRegisters`] of one vCPU (pauses it briefly if the VM runs).
    VcpuRegisters {
        /// 0-based vCPU index.
        vcpu: usize,
    },
    /// Start dirty-page logging on every RAM slot.
    DirtyLogStart,
    /// [`DirtyPages`] written since the start or the last fetch.
    DirtyLogFetch,
    /// Stop dirty-page logging.
    DirtyLogStop,
    /// Take a snapshot of guest RAM: [`SnapshotInfo`].
    Snapshot {
        /// Write the snapshot to this file (laid out by backing offset) instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// Drop a snapshot: close its memfd or end its child process.
    SnapshotRelease {
        /// The snapshot's id.
        id: u64,
    },
    /// End the VMM (reply first).
    Quit,
}

/// One control reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The command's result (`null` for commands that return nothing).
    #[serde(default)]
    pub result: serde_json::Value,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reply to `pause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseReply {
    /// Whether the guest ran before this request (and so was paused by it).
    pub was_running: bool,
}

/// Reply to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `running`, `paused` or `exited`.
    pub state: String,
    /// The VMM's process id.
    pub pid: u32,
    /// Number of vCPUs.
    pub vcpus: usize,
    /// Bytes of guest RAM.
    pub ram_size: u64,
    /// `memfd` or `private`.
    pub backing: String,
    /// Why the guest stopped, once it has (`reset`, `shutdown`, `error: ...`).
    pub exit: Option<String>,
}

/// How the RAM is backed and where to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backing {
    /// `memfd` (shared, readable by others) or `private` (anonymous).
    pub kind: String,
    /// The memfd's descriptor number in the VMM (memfd only).
    pub fd: Option<i32>,
    /// A path another process opens to read or map the memfd (memfd only).
    pub path: Option<String>,
    /// Host-virtual address of backing offset 0 in the VMM process.
    pub hva: u64,
}

/// Reply to `memory-map`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryMapInfo {
    /// The VMM's process id.
    pub pid: u32,
    /// RAM regions; `offset` is the offset in the backing (memfd or from `hva`).
    pub regions: Vec<Region>,
    /// The RAM backing.
    pub backing: Backing,
}

/// Reply to `dirty-log-fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirtyPages {
    /// Sorted guest page-frame numbers (GPA >> 12).
    pub pfns: Vec<u64>,
}

/// Reply to `snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Pass to `snapshot-release`.
    pub id: u64,
    /// `memfd-copy`, `file` or `fork`.
    pub kind: String,
    /// The process holding the snapshot (the VMM for `memfd-copy`, the child for `fork`).
    pub pid: u32,
    /// The memfd's descriptor in `pid` (`memfd-copy`).
    pub fd: Option<i32>,
    /// A file to read (`memfd-copy`: /proc/PID/fd/N; `file`: the file).
    pub path: Option<String>,
    /// Host-virtual address of backing offset 0 in `pid` (`fork`).
    pub hva: Option<u64>,
    /// RAM regions and their offsets in the snapshot.
    pub regions: Vec<Region>,
    /// Microseconds the guest was paused for the snapshot.
    pub pause_us: u64,
}

/// A client of a running `vmscope-vmm`'s control socket.
#[derive(Debug)]
pub struct BuiltinVmm {
    path: PathBuf,
    conn: Mutex<(BufReader<UnixStream>, UnixStream)>,
}

impl BuiltinVmm {
    /// Connects to the control socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let stream =
            UnixStream::connect(&path).map_err(|e| Error::io(format!("connecting to {}", path.display()), e))?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| Error::io("setting a read timeout", e))?;
        let writer = stream.try_clone().map_err(|e| Error::io("cloning the socket", e))?;
        Ok(Self { path, conn: Mutex::new((BufReader::new(stream), writer)) })
    }

    /// Sends one request and returns its result, or the VMM's error.
    pub fn request(&self, req: &Request) -> Result<serde_json::Value> {
        let mut line = serde_json::to_string(req).map_err(|e| Error::Protocol(e.to_string()))?;
        line.push('\n');
        let what = || format!("control socket {}", self.path.display());
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let (reader, writer) = &mut *guard;
        writer.write_all(line.as_bytes()).map_err(|e| Error::io(what(), e))?;
        let mut answer = String::new();
        let n = reader.read_line(&mut answer).map_err(|e| Error::io(what(), e))?;
        if n == 0 {
            return Err(Error::Protocol(format!("{}: the VMM closed the connection", what())));
        }
        let reply: Reply =
            serde_json::from_str(&answer).map_err(|e| Error::Protocol(format!("bad reply {answer:?}: {e}")))?;
        if reply.ok {
            Ok(reply.result)
        } else {
            let command = serde_json::to_value(req)
                .ok()
                .and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_owned))
                .unwrap_or_default();
            Err(Error::Command { command, class: "VmmError".into(), desc: reply.error.unwrap_or_default() })
        }
    }

    /// Sends a request and decodes its result as `T`.
    pub fn call<T: DeserializeOwned>(&self, req: &Request) -> Result<T> {
        let v = self.request(req)?;
        serde_json::from_value(v).map_err(|e| Error::Protocol(format!("{req:?}: {e}")))
    }

    /// `status`.
    pub fn status(&self) -> Result<Status> {
        self.call(&Request::Status)
    }

    /// `memory-map` with the backing details.
    pub fn memory_map_info(&self) -> Result<MemoryMapInfo> {
        self.call(&Request::MemoryMap)
    }

    /// Where the guest RAM lives in the VMM process, for the technique crates
    /// (process_vm_readv, /proc/PID/mem, pread or mmap of the memfd).
    pub fn ram_location(&self) -> Result<RamLocation> {
        let info = self.memory_map_info()?;
        let map = MemoryMap::new(info.regions)?;
        Ok(RamLocation::single(info.pid, map, Hva::new(info.backing.hva), info.backing.path.map(PathBuf::from)))
    }

    /// `snapshot`, into a file when `path` is given.
    pub fn snapshot(&self, path: Option<&Path>) -> Result<SnapshotInfo> {
        let path = path.map(|p| p.to_string_lossy().into_owned());
        self.call(&Request::Snapshot { path })
    }

    /// `snapshot-release`.
    pub fn snapshot_release(&self, id: u64) -> Result<()> {
        self.request(&Request::SnapshotRelease { id }).map(drop)
    }

    /// `quit`: the VMM ends after replying.
    pub fn quit(&self) -> Result<()> {
        self.request(&Request::Quit).map(drop)
    }
}

impl Hypervisor for BuiltinVmm {
    fn pause(&self) -> Result<()> {
        self.request(&Request::Pause).map(drop)
    }

    fn resume(&self) -> Result<()> {
        self.request(&Request::Resume).map(drop)
    }

    /// One round trip: the VMM says whether the guest ran.
    fn pause_if_running(&self) -> Result<bool> {
        Ok(self.call::<PauseReply>(&Request::Pause)?.was_running)
    }

    fn is_paused(&self) -> Result<bool> {
        Ok(self.status()?.state == "paused")
    }

    fn vcpu_count(&self) -> Result<usize> {
        Ok(self.status()?.vcpus)
    }

    fn vcpu_registers(&self, index: usize) -> Result<VcpuRegisters> {
        self.call(&Request::VcpuRegisters { vcpu: index })
    }

    fn memory_map(&self) -> Result<MemoryMap> {
        Ok(MemoryMap::new(self.memory_map_info()?.regions)?)
    }

    fn dirty_log(&self) -> Option<&dyn DirtyLog> {
        Some(self)
    }
}

impl DirtyLog for BuiltinVmm {
    fn start(&self) -> Result<()> {
        self.request(&Request::DirtyLogStart).map(drop)
    }

    fn fetch(&self) -> Result<Vec<u64>> {
        Ok(self.call::<DirtyPages>(&Request::DirtyLogFetch)?.pfns)
    }

    fn stop(&self) -> Result<()> {
        self.request(&Request::DirtyLogStop).map(drop)
    }
}

/// The GPA of a page-frame number from [`DirtyLog::fetch`].
pub fn pfn_to_gpa(pfn: u64) -> Gpa {
    Gpa::new(pfn << 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_in_kebab_case() {
        let s = serde_json::to_string(&Request::VcpuRegisters { vcpu: 1 }).unwrap();
        assert_eq!(s, r#"{"cmd":"vcpu-registers","vcpu":1}"#);
        let s = serde_json::to_string(&Request::DirtyLogFetch).unwrap();
        assert_eq!(s, r#"{"cmd":"dirty-log-fetch"}"#);
        let r: Request = serde_json::from_str(r#"{"cmd":"snapshot"}"#).unwrap();
        assert_eq!(r, Request::Snapshot { path: None });
    }

    #[test]
    fn client_talks_json_lines() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            for reply in [
                r#"{"ok":true,"result":{"state":"paused","pid":1,"vcpus":2,"ram_size":4096,"backing":"memfd","exit":null}}"#,
                r#"{"ok":false,"error":"dirty logging is not on"}"#,
            ] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                assert!(line.ends_with('\n'));
                writeln!(w, "{reply}").unwrap();
            }
        });
        let c = BuiltinVmm::connect(&sock).unwrap();
        assert!(c.is_paused().unwrap());
        assert!(matches!(c.fetch(), Err(Error::Command { .. })));
        server.join().unwrap();
    }
}
