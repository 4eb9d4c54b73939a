//! Where a QEMU process keeps guest RAM: the mapping of the memory backend in its
//! address space, and the file behind it.

use std::path::PathBuf;

use vmscope_mem::Hva;

use crate::{Error, Result};

/// The RAM backend as seen in `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamMapping {
    /// Where the backend is mapped in the QEMU process.
    pub hva: Hva,
    /// Length of the mapping.
    pub size: u64,
    /// Offset of the mapping in the backing file.
    pub file_offset: u64,
    /// The backing file as maps shows it (`/memfd:memory-backend-memfd (deleted)`, or
    /// a `mem-path` file).
    pub path: String,
    /// Whether it is a shared mapping (`share=on`); a private one cannot be read
    /// through the file.
    pub shared: bool,
    /// A path that opens the backing file from outside: `/proc/PID/map_files/A-B`.
    pub map_file: PathBuf,
}

/// Finds the guest RAM mapping of QEMU process `pid`: the largest mapping of a
/// `memory-backend-memfd` or, failing that, the largest shared file mapping.
pub fn ram_mapping(pid: u32) -> Result<RamMapping> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = std::fs::read_to_string(&maps_path).map_err(|e| Error::io(format!("reading {maps_path}"), e))?;
    let mut best: Option<(bool, RamMapping)> = None;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(off)) = (f.next(), f.next(), f.next()) else { continue };
        let path: String = f.skip(2).collect::<Vec<_>>().join(" ");
        if path.is_empty() || path.starts_with('[') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b), Ok(off)) =
            (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16), u64::from_str_radix(off, 16))
        else {
            continue;
        };
        let memfd = path.contains("memory-backend-memfd");
        let shared = perms.as_bytes().get(3) == Some(&b's');
        if !memfd && !shared {
            continue;
        }
        let m = RamMapping {
            hva: Hva::new(a),
            size: b - a,
            file_offset: off,
            path,
            shared,
            map_file: PathBuf::from(format!("/proc/{pid}/map_files/{range}")),
        };
        let better = match &best {
            None => true,
            Some((bm, bmap)) => (memfd, m.size) > (*bm, bmap.size),
        };
        if better {
            best = Some((memfd, m));
        }
    }
    best.map(|(_, m)| m).ok_or_else(|| {
        Error::Unsupported(format!(
            "QEMU process {pid} has no shared RAM backend mapping: start it with \
             -object memory-backend-memfd,id=ram,size=SIZE,share=on -machine memory-backend=ram"
        ))
    })
}
