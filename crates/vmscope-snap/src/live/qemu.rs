//! Driving QEMU's background snapshot over QMP and reading its stream.

use std::ffi::CString;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmscope_hv::Hypervisor;
use vmscope_hv::qemu::QmpHypervisor;

use super::stream::{StreamInfo, parse_stream};
use crate::halt::{SnapOptions, SnapStats, read_registers};
use crate::snapshot::Snapshot;
use crate::{Error, Result};

/// How long a background snapshot may take before it is cancelled.
const DEADLINE: Duration = Duration::from_secs(300);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Takes a live snapshot with QEMU's background-snapshot migration and returns the
/// guest RAM as of the moment QEMU paused the guest. Registers (if asked) are read
/// after the snapshot, with the guest running: they suit locating the kernel's page
/// tables, not a consistent user-space view.
///
/// QEMU resumes a guest that was paused (QEMU 7.2 `bg_migration_vm_start_bh`), so a
/// paused guest is refused: a guest someone froze must stay frozen (use
/// [`halt_snap`](crate::halt_snap)). See the [module docs](super) for the harm this
/// does to memfd-backed RAM.
pub fn qemu_background_snap(hv: &QmpHypervisor, opts: SnapOptions) -> Result<(Snapshot, SnapStats, StreamInfo)> {
    let start = Instant::now();
    if hv.is_paused()? {
        return Err(Error::Migration(
            "the guest is paused, and QEMU's background snapshot would resume it: take a halt-snap instead".into(),
        ));
    }
    let map = hv.memory_map()?;
    let dir = std::env::temp_dir().join(format!(
        "vmscope-snap-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let fifo = dir.join("stream");
    let result = (|| {
        mkfifo(&fifo)?;
        let reader_fifo = fifo.clone();
        let reader_map = map.clone();
        let reader = std::thread::spawn(move || -> Result<(Snapshot, StreamInfo)> {
            let f = File::open(&reader_fifo).map_err(|e| Error::io(format!("opening {}", reader_fifo.display()), e))?;
            parse_stream(BufReader::with_capacity(1 << 20, f), &reader_map)
        });
        let migrated = migrate(hv, &fifo);
        if migrated.is_err() {
            unblock_reader(&fifo);
        }
        let parsed = reader.join().map_err(|_| Error::Migration("the stream reader panicked".into()))?;
        let (timing, (mut snap, info)) = (migrated?, parsed?);
        if opts.registers {
            snap.meta_mut().vcpus = read_registers(hv)?;
        }
        let cost = SnapStats {
            technique: "live-snap/qemu",
            downtime: timing.downtime,
            qemu_downtime: timing.qemu_downtime,
            stream_bytes: info.bytes,
            ..SnapStats::default()
        };
        let (snap, stats) = snap.finish(opts, start, cost);
        Ok((snap, stats, info))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// How long a background snapshot paused the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationTiming {
    /// How long the guest was stopped: QEMU's own figure where it reports one, else
    /// the gap between the STOP and RESUME events as seen over QMP.
    pub downtime: Duration,
    /// The `downtime` QEMU reports in `query-migrate`.
    pub qemu_downtime: Option<Duration>,
    /// From the `migrate` command until QEMU reported completion.
    pub total: Duration,
}

/// Saves QEMU's background-snapshot migration stream to `path` (`exec:cat > path`),
/// to be read later with [`parse_stream`] and the guest's memory map.
pub fn qemu_background_save(hv: &QmpHypervisor, path: &Path) -> Result<MigrationTiming> {
    migrate(hv, path)
}

/// Runs the migration to completion; restores the capability afterwards.
fn migrate(hv: &QmpHypervisor, target: &Path) -> Result<MigrationTiming> {
    let caps = |on: bool| json!({ "capabilities": [ { "capability": "background-snapshot", "state": on } ] });
    hv.qmp().execute("migrate-set-capabilities", Some(caps(true)))?;
    let r = run_migration(hv, target);
    let reset = hv.qmp().execute("migrate-set-capabilities", Some(caps(false)));
    let t = r?;
    reset?;
    Ok(t)
}

fn run_migration(hv: &QmpHypervisor, target: &Path) -> Result<MigrationTiming> {
    let path = target
        .to_str()
        .filter(|p| !p.contains('\''))
        .ok_or_else(|| Error::Migration(format!("unusable path {} (UTF-8 without quotes needed)", target.display())))?;
    hv.qmp().take_events();
    hv.qmp().execute("migrate", Some(json!({ "uri": format!("exec:cat > '{path}'") })))?;
    let begun = Instant::now();
    let (mut stop_at, mut resume_at) = (None, None);
    loop {
        let (status, reply) = {
            let mut q = hv.qmp();
            let r = q.execute("query-migrate", None)?;
            let now = Instant::now();
            for e in q.take_events() {
                match e.name.as_str() {
                    "STOP" => stop_at = stop_at.or(Some(now)),
                    "RESUME" => resume_at = resume_at.or(Some(now)),
                    _ => {}
                }
            }
            (r.get("status").and_then(Value::as_str).unwrap_or("").to_owned(), r)
        };
        match status.as_str() {
            "completed" => {
                let qemu_downtime = reply.get("downtime").and_then(Value::as_u64).map(Duration::from_millis);
                // QEMU's main loop (and so QMP) is blocked while the guest is
                // stopped: STOP and RESUME usually arrive together, so QEMU's own
                // figure is the measure; the event gap is a fallback.
                let seen = match (stop_at, resume_at) {
                    (Some(a), Some(b)) if b >= a => b - a,
                    _ => Duration::ZERO,
                };
                let downtime = qemu_downtime.unwrap_or(seen);
                return Ok(MigrationTiming { downtime, qemu_downtime, total: begun.elapsed() });
            }
            "failed" | "cancelled" => {
                let why = reply.get("error-desc").and_then(Value::as_str).unwrap_or("no reason given");
                return Err(Error::Migration(format!("QEMU's migration {status}: {why}")));
            }
            _ if begun.elapsed() > DEADLINE => {
                let _ = hv.qmp().execute("migrate_cancel", None);
                return Err(Error::Migration(format!("not done after {} s; cancelled", DEADLINE.as_secs())));
            }
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn mkfifo(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Migration("FIFO path has a NUL".into()))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(Error::io(format!("mkfifo {}", path.display()), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Lets a reader blocked in opening the FIFO go on (to EOF) when QEMU never opened it.
fn unblock_reader(fifo: &Path) {
    let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo);
}
