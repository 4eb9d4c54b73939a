//! QEMU's own dump: `dump-guest-memory` (ELF, paging=false) over QMP. QEMU pauses
//! the guest for the whole dump (seconds per GiB); read the file with
//! [`DumpFile`](crate::DumpFile).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use vmscope_hv::qemu::QmpHypervisor;

use crate::{Error, Result};

/// Asks QEMU to write an ELF dump of guest RAM to `path` (a path QEMU can create)
/// and waits until it is written, at most `timeout`. Returns how long it took (the
/// guest is paused by QEMU for that long).
pub fn qemu_dump_guest_memory(hv: &QmpHypervisor, path: &Path, timeout: Duration) -> Result<Duration> {
    let p = path.to_str().ok_or_else(|| Error::Map(format!("{} is not UTF-8", path.display())))?;
    let start = Instant::now();
    hv.qmp().execute_with(
        "dump-guest-memory",
        Some(json!({ "paging": false, "protocol": format!("file:{p}"), "format": "elf" })),
        timeout,
    )?;
    Ok(start.elapsed())
}
