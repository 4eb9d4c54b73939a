//! Raw dumps: the byte at file offset X is guest-physical address X, as `pmemsave`
//! and most forensic tools expect. Gaps between RAM regions (the PCI hole, the
//! legacy VGA window) are zeros, and holes in the file.
//!
//! The memory map, VMCOREINFO and registers go to a sidecar `FILE.vmscope.json`:
//!
//! ```json
//! { "format": "vmscope-raw", "version": 1,
//!   "regions": [ { "gpa": 0, "size": 655360, "name": "ram" }, ... ],
//!   "vmcoreinfo": "OSRELEASE=6.1.0-...\n...", "vcpus": [ { "rax": 0, ... } ] }
//! ```
//!
//! Without a sidecar, a raw file reads as one region from GPA 0 to its end.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vmscope_hv::VcpuRegisters;
use vmscope_mem::{Gpa, MemoryMap, Region};

use super::{DumpSource, Parser, WriteStats};
use crate::snapshot::DumpMeta;
use crate::{Error, Result};

/// The sidecar's `format` value.
pub const SIDECAR_FORMAT: &str = "vmscope-raw";
/// Sidecars larger than this are refused.
const SIDECAR_MAX: u64 = 64 << 20;
/// More regions than this are refused.
const MAX_REGIONS: usize = 1 << 16;

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: String,
    version: u32,
    regions: Vec<SidecarRegion>,
    #[serde(default)]
    vmcoreinfo: Option<String>,
    #[serde(default)]
    vcpus: Vec<VcpuRegisters>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SidecarRegion {
    gpa: u64,
    size: u64,
    #[serde(default)]
    name: String,
}

/// The sidecar path of raw dump `path`: `path` + `.vmscope.json`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(".vmscope.json");
    PathBuf::from(s)
}

pub(crate) fn write(file: &File, path: &Path, src: &DumpSource<'_>, meta: &DumpMeta) -> Result<WriteStats> {
    let map = src.memory_map();
    let mut data = 0;
    for r in map.regions() {
        data += src.write_region(file, r.gpa.raw(), r.gpa, r.size)?;
    }
    let car = Sidecar {
        format: SIDECAR_FORMAT.into(),
        version: 1,
        regions: map
            .regions()
            .iter()
            .map(|r| SidecarRegion { gpa: r.gpa.raw(), size: r.size, name: r.name.clone() })
            .collect(),
        vmcoreinfo: meta.vmcoreinfo.clone(),
        vcpus: meta.vcpus.clone(),
    };
    let sp = sidecar_path(path);
    let json = serde_json::to_vec_pretty(&car).map_err(|e| Error::io("encoding the sidecar", e.into()))?;
    std::fs::write(&sp, json).map_err(|e| Error::io(format!("writing {}", sp.display()), e))?;
    Ok(WriteStats { file_bytes: map.end(), data_bytes: data })
}

/// The sidecar of `path`, if there is one.
pub(crate) fn read_sidecar(path: &Path) -> Result<Option<Vec<u8>>> {
    let sp = sidecar_path(path);
    match std::fs::metadata(&sp) {
        Err(_) => Ok(None),
        Ok(m) if m.len() > SIDECAR_MAX => Err(Error::Malformed {
            path: sp,
            format: "raw sidecar",
            offset: 0,
            why: format!("{} bytes is too large for a sidecar", m.len()),
        }),
        Ok(_) => std::fs::read(&sp).map(Some).map_err(|e| Error::io(format!("reading {}", sp.display()), e)),
    }
}

/// The memory map (and metadata) of a raw dump of `p.size` bytes.
pub(crate) fn parse(p: &Parser<'_>, sidecar: Option<&[u8]>) -> Result<(MemoryMap, DumpMeta)> {
    let Some(json) = sidecar else {
        if p.size == 0 {
            return Err(p.bad(0, "the file is empty"));
        }
        return Ok((MemoryMap::flat(p.size), DumpMeta::default()));
    };
    let car: Sidecar = serde_json::from_slice(json).map_err(|e| p.bad(0, format!("sidecar: {e}")))?;
    if car.format != SIDECAR_FORMAT || car.version != 1 {
        return Err(p.bad(0, format!("sidecar is {:?} version {}, not {SIDECAR_FORMAT} 1", car.format, car.version)));
    }
    if car.regions.len() > MAX_REGIONS {
        return Err(p.bad(0, format!("sidecar lists {} regions", car.regions.len())));
    }
    let mut regions = Vec::with_capacity(car.regions.len());
    for r in &car.regions {
        if r.size == 0 || !p.fits(r.gpa, r.size) {
            return Err(p.bad(
                r.gpa,
                format!("region {:#x}+{:#x} is empty or past the end of the file ({:#x})", r.gpa, r.size, p.size),
            ));
        }
        regions.push(Region::new(Gpa::new(r.gpa), r.size, r.gpa, r.name.clone()));
    }
    let map = MemoryMap::new(regions).map_err(|e| p.bad(0, format!("sidecar: {e}")))?;
    Ok((map, DumpMeta { vmcoreinfo: car.vmcoreinfo, vcpus: car.vcpus }))
}
