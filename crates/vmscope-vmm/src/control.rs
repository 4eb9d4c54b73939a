//! The control socket: JSON lines, one request one reply (protocol and example session
//! in [`vmscope_hv::builtin`]). Requests from all connections are carried out one at
//! a time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vmscope_hv::builtin::{Backing as BackingInfo, DirtyPages, MemoryMapInfo, PauseReply, Reply, Request, Status};

use crate::machine::{Machine, Wake};
use crate::memory::Backing;
use crate::snapshot::Snapshots;
use crate::vcpu::ExitReason;
use crate::{Error, Result};

/// Serves control requests for one machine.
#[derive(Debug)]
pub struct Controller {
    machine: Arc<Machine>,
    snapshots: Snapshots,
    serial: Mutex<()>,
}

impl Controller {
    /// A controller for `machine`.
    pub fn new(machine: Arc<Machine>) -> Arc<Self> {
        Arc::new(Self { machine, snapshots: Snapshots::default(), serial: Mutex::new(()) })
    }

    /// Carries out one request.
    pub fn handle(&self, req: &Request) -> Result<serde_json::Value> {
        self.carry_out(req).map(|(value, _wake_now)| value)
    }

    /// Carries out one request; a `resume` leaves the vCPUs parked until the returned
    /// [`Wake`] goes, so that the reply can be sent first ([`Machine::resume_later`]).
    fn carry_out(&self, req: &Request) -> Result<(serde_json::Value, Option<Wake<'_>>)> {
        let _one_at_a_time = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let m = &self.machine;
        let json = |v: &dyn erased::Ser| v.to_value();
        let value = match req {
            Request::Pause => m.pause().map(|was_running| json(&PauseReply { was_running })),
            Request::Resume => return Ok((serde_json::Value::Null, Some(m.resume_later()))),
            Request::Status => Ok(json(&self.status())),
            Request::MemoryMap => Ok(json(&self.memory_map())),
            Request::VcpuRegisters { vcpu } => Ok(json(&m.vcpu_registers(*vcpu)?)),
            Request::DirtyLogStart => m.dirty_log_start().map(|_| serde_json::Value::Null),
            Request::DirtyLogFetch => Ok(json(&DirtyPages { pfns: m.dirty_log_fetch()? })),
            Request::DirtyLogStop => m.dirty_log_stop().map(|_| serde_json::Value::Null),
            Request::Snapshot { path } => Ok(json(&self.snapshots.take(m, path.as_deref())?)),
            Request::SnapshotRelease { id } => self.snapshots.release(*id).map(|_| serde_json::Value::Null),
            Request::Quit => {
                m.ctl.set_exit(ExitReason::Quit);
                Ok(serde_json::Value::Null)
            }
        };
        value.map(|v| (v, None))
    }

    /// The `status` reply.
    pub fn status(&self) -> Status {
        let m = &self.machine;
        let st = m.ctl.lock();
        let state = if st.exit.is_some() {
            "exited"
        } else if st.pause_requested {
            "paused"
        } else {
            "running"
        };
        Status {
            state: state.into(),
            pid: std::process::id(),
            vcpus: m.vcpus,
            ram_size: m.ram.size,
            backing: backing_name(m.ram.backing).into(),
            exit: st.exit.as_ref().map(ExitReason::describe),
        }
    }

    /// The `memory-map` reply.
    pub fn memory_map(&self) -> MemoryMapInfo {
        use std::os::fd::AsRawFd;
        let m = &self.machine;
        let pid = std::process::id();
        let fd = m.ram.memfd.as_ref().map(|f| f.as_raw_fd());
        MemoryMapInfo {
            pid,
            regions: m.ram.map.regions().to_vec(),
            backing: BackingInfo {
                kind: backing_name(m.ram.backing).into(),
                fd,
                path: fd.map(|fd| format!("/proc/{pid}/fd/{fd}")),
                hva: m.ram.hva,
            },
        }
    }

    /// Drops every snapshot (children end).
    pub fn release_snapshots(&self) {
        self.snapshots.release_all();
    }

    /// Handles one connection until it closes.
    fn serve(&self, stream: UnixStream) {
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        prefer_short_waits();
        let mut writer = writer;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let (reply, wake) = match serde_json::from_str::<Request>(&line) {
                Ok(req) => match self.carry_out(&req) {
                    Ok((result, wake)) => (Reply { ok: true, result, error: None }, wake),
                    Err(e) => (Reply { ok: false, result: serde_json::Value::Null, error: Some(e.to_string()) }, None),
                },
                Err(e) => {
                    let error = Some(format!("bad request: {e}"));
                    (Reply { ok: false, result: serde_json::Value::Null, error }, None)
                }
            };
            let mut out = serde_json::to_string(&reply).unwrap_or_else(|_| r#"{"ok":false}"#.into());
            out.push('\n');
            let sent = writer.write_all(out.as_bytes());
            drop(wake);
            if sent.is_err() {
                break;
            }
        }
    }
}

/// Asks the scheduler for short slices for this thread (EEVDF's per-task slice,
/// `sched_attr.sched_runtime` of a SCHED_OTHER thread, Linux 6.12 and later; no
/// privilege needed; priority and nice stay as they are). A thread with a shorter
/// slice than the running task preempts it when it wakes; otherwise a woken control
/// thread waits for the running task's slice to end, which the scheduler checks only
/// on the next tick (4 ms at HZ=250), whenever busy vCPU threads (or anything else)
/// hold every core. This thread runs a few microseconds per request, so it takes
/// nothing from the guest. Older kernels ignore the request or refuse it; either way
/// the VMM works as before.
fn prefer_short_waits() {
    /// Linux's `struct sched_attr` (SCHED_ATTR_SIZE_VER1).
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
        sched_util_min: u32,
        sched_util_max: u32,
    }
    /// The shortest slice the kernel accepts.
    const SLICE_NS: u64 = 100_000;
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr { size, ..SchedAttr::default() };
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, a live,
    // properly aligned struct of that size; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut SchedAttr, size, 0) };
    if rc != 0 || attr.sched_policy != libc::SCHED_OTHER as u32 {
        return;
    }
    attr.size = size;
    attr.sched_runtime = SLICE_NS;
    // SAFETY: sched_setattr only reads `attr` (size bytes, set above); pid 0 is the
    // calling thread. The return value is ignored on purpose (see above).
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
}

fn backing_name(b: Backing) -> &'static str {
    match b {
        Backing::Memfd => "memfd",
        Backing::Private => "private",
    }
}

/// Serialising any reply type to a JSON value without naming it.
mod erased {
    pub trait Ser {
        fn to_value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// Binds a unix socket at `path` with mode 0600: the umask is tightened around bind,
/// so the socket is never reachable by others, not even briefly.
pub fn bind_private(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    // SAFETY: umask only changes this process's file-creation mask; restored below.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    bound.map_err(|e| Error::io(format!("binding {}", path.display()), e))
}

/// Binds `path` with mode 0600 ([`bind_private`]) and serves it on a background thread.
pub fn listen(path: &Path, ctl: Arc<Controller>) -> Result<PathBuf> {
    let listener = bind_private(path)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let ctl = ctl.clone();
                let _ = std::thread::Builder::new().name("control-conn".into()).spawn(move || ctl.serve(stream));
            }
        })
        .map_err(|e| Error::io("spawning the control thread", e))?;
    Ok(path.to_path_buf())
}
