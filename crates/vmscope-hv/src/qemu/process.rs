//! Where a QEMU process keeps guest RAM: the mappings of its RAM blocks in its
//! address space (`/proc/PID/maps`), and the files behind them.

use std::path::PathBuf;

use vmscope_mem::Hva;

use crate::location::{Backing, RamBlock};
use crate::{Error, Result};

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// `rw-p`, `r-xp`, `rw-s`, ...
    pub perms: String,
    /// Offset in the file mapped.
    pub offset: u64,
    /// The file's inode number (0 for anonymous memory).
    pub inode: u64,
    /// The file (`/memfd:memory-backend-memfd (deleted)`, a `mem-path` file), a
    /// pseudo-name (`[heap]`), or empty for anonymous memory.
    pub path: String,
}

impl Vma {
    /// A shared mapping (`MAP_SHARED`).
    pub fn is_shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }

    /// Readable and writable, not executable: what guest RAM is (QEMU's TCG code
    /// buffer is `rwx`).
    pub fn is_ram_like(&self) -> bool {
        self.perms.starts_with("rw-")
    }

    /// Anonymous memory: no file, no pseudo-name.
    pub fn is_anonymous(&self) -> bool {
        self.path.is_empty()
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it is empty (never, for a line of maps).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Parses `/proc/PID/maps` of `pid`.
pub fn read_maps(pid: u32) -> Result<Vec<Vma>> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps =
        std::fs::read_to_string(&maps_path).map_err(|e| Error::of_process(pid, format!("read {maps_path}"), e))?;
    Ok(parse_maps(&maps))
}

/// Parses the text of a maps file; lines it cannot read are skipped.
pub fn parse_maps(text: &str) -> Vec<Vma> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Ok(inode) = inode.parse() else { continue };
        let path = f.next().unwrap_or("").trim_start().to_owned();
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16), u64::from_str_radix(off, 16))
        else {
            continue;
        };
        if end > start {
            out.push(Vma { start, end, perms: perms.to_owned(), offset, inode, path });
        }
    }
    out
}

/// The RAM block `name` of `size` bytes at `hva` in QEMU `pid`, as its mappings say:
/// anonymous memory, or a file mapped shared or private. The mappings covering it must
/// be contiguous and alike (one backing); the page size is the file system's (hugetlbfs: its huge pages).
pub fn block_at(pid: u32, vmas: &[Vma], name: &str, offset: u64, hva: Hva, size: u64) -> Result<RamBlock> {
    let (start, end) =
        (hva.raw(), hva.raw().checked_add(size).ok_or_else(|| Error::Protocol(format!("RAM block {name} wraps")))?);
    let covering: Vec<&Vma> = vmas.iter().filter(|v| v.end > start && v.start < end).collect();
    let fail = |why: String| {
        Error::Protocol(format!(
            "RAM block {name} ({size:#x} bytes at {hva} in QEMU {pid}) is not one mapping in /proc/{pid}/maps: {why}"
        ))
    };
    let Some(first) = covering.first() else { return Err(fail("nothing is mapped there".into())) };
    if first.start > start || covering.last().is_none_or(|l| l.end < end) {
        return Err(fail("it is only partly mapped".into()));
    }
    for w in covering.windows(2) {
        let continues_file = w[0].is_anonymous() || w[1].offset == w[0].offset + w[0].len();
        if w[0].end != w[1].start || w[0].path != w[1].path || w[0].is_shared() != w[1].is_shared() || !continues_file {
            return Err(fail(format!("mappings at {:#x} and {:#x} differ", w[0].start, w[1].start)));
        }
    }
    if !first.perms.starts_with('r') {
        return Err(fail(format!("it is not readable ({})", first.perms)));
    }
    let backing = if first.is_anonymous() {
        Backing::Anonymous
    } else if first.path.starts_with('[') {
        return Err(fail(format!("it is {}", first.path)));
    } else {
        let map_file = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", first.start, first.end));
        Backing::File {
            path: find_fd(pid, &first.path, first.inode).unwrap_or(map_file),
            offset: first.offset + (start - first.start),
            shared: first.is_shared(),
        }
    };
    // A file's page size is its file system's (hugetlbfs: the huge page size), found
    // by one fstatfs; /proc/PID/smaps says it too, but reading it walks the page
    // tables of every mapping of QEMU (milliseconds for a GiB of RAM).
    let page_size = match &backing {
        Backing::Anonymous => 4096,
        Backing::File { path, .. } => match std::fs::File::open(path) {
            Ok(f) => crate::location::huge_page_size(&f).unwrap_or(4096),
            Err(_) => kernel_page_size(pid, first.start).unwrap_or(4096),
        },
    };
    Ok(RamBlock { name: name.to_owned(), offset, size, hva, page_size, backing })
}

/// The `KernelPageSize` of the mapping starting at `start`, from `/proc/PID/smaps`.
fn kernel_page_size(pid: u32, start: u64) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let head = format!("{start:x}-");
    let is_header = |l: &str| {
        let range = l.split_whitespace().next().and_then(|t| t.split_once('-'));
        range.is_some_and(|(a, b)| u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok())
    };
    let kib: u64 = smaps
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| !is_header(l))
        .find_map(|l| l.strip_prefix("KernelPageSize:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// The `/proc/PID/fd/N` open on the file `target` with inode `inode` (every memfd of
/// QEMU has the same name; the inode tells them apart).
fn find_fd(pid: u32, target: &str, inode: u64) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    dir.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
        std::fs::read_link(p).is_ok_and(|l| l.to_string_lossy() == target)
            && std::fs::metadata(p).is_ok_and(|m| m.ino() == inode)
    })
}

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

/// The largest mapping of a `memory-backend-memfd` in QEMU process `pid` or, failing
/// that, its largest shared file mapping: where a single-memfd guest's RAM is (tests
/// measure its RSS here).
pub fn ram_mapping(pid: u32) -> Result<RamMapping> {
    let mut best: Option<(bool, RamMapping)> = None;
    for v in read_maps(pid)? {
        if v.is_anonymous() || v.path.starts_with('[') {
            continue;
        }
        let memfd = v.path.contains("memory-backend-memfd");
        if !memfd && !v.is_shared() {
            continue;
        }
        let m = RamMapping {
            hva: Hva::new(v.start),
            size: v.len(),
            file_offset: v.offset,
            shared: v.is_shared(),
            map_file: PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end)),
            path: v.path,
        };
        if best.as_ref().is_none_or(|(bm, b)| (memfd, m.size) > (*bm, b.size)) {
            best = Some((memfd, m));
        }
    }
    best.map(|(_, m)| m).ok_or_else(|| Error::Unsupported(format!("QEMU process {pid} has no shared RAM file mapping")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
564c7f0cb000-564c7fe01000 rw-p 00000000 00:00 0                          [heap]
7f3063e00000-7f30a3e00000 rw-p 00000000 00:00 0 
7f30ac000000-7f30ebfff000 rwxp 00000000 00:00 0 
7f6e07dff000-7f6e47dff000 rw-p 00000000 fe:00 10027249                   /tmp/aq/files/m1
7f6e47dff000-7f6ec7dff000 rw-p 40000000 fe:00 10027249                   /tmp/aq/files/m1
7f7000000000-7f7040000000 rw-s 00000000 00:01 2049                       /memfd:memory-backend-memfd (deleted)
";

    #[test]
    fn blocks_from_maps() {
        let vmas = parse_maps(MAPS);
        assert_eq!(vmas.len(), 6);
        assert!(vmas[1].is_anonymous() && vmas[1].is_ram_like() && !vmas[2].is_ram_like());
        assert_eq!(vmas[5].path, "/memfd:memory-backend-memfd (deleted)");
        let me = u32::MAX; // no such process: no fd, no smaps
        let anon = block_at(me, &vmas, "pc.ram", 0, Hva::new(0x7f30_63e0_0000), 1 << 30).unwrap();
        assert_eq!(anon.backing, Backing::Anonymous);
        // A file mapped in two pieces that continue each other, from inside the first.
        let f = block_at(me, &vmas, "m1", 0, Hva::new(0x7f6e_07e0_0000), 0x1000_0000).unwrap();
        let Backing::File { offset, shared, .. } = f.backing else { panic!("{f:?}") };
        assert_eq!((offset, shared), (0x1000, false));
        assert!(block_at(me, &vmas, "m1", 0, Hva::new(0x7f6e_07df_f000), 3 << 30).is_ok());
        let memfd = block_at(me, &vmas, "ram", 0, Hva::new(0x7f70_0000_0000), 1 << 30).unwrap();
        assert!(memfd.is_shared());
        // Past the end, across unlike mappings, or on nothing: refused.
        assert!(block_at(me, &vmas, "x", 0, Hva::new(0x7f30_63e0_0000), 2 << 30).is_err());
        assert!(block_at(me, &vmas, "x", 0, Hva::new(0x7f30_a000_0000), 0x8000_0000).is_err());
        assert!(block_at(me, &vmas, "x", 0, Hva::new(0x1000), 0x1000).is_err());
        assert!(block_at(me, &vmas, "x", 0, Hva::new(0x564c_7f0c_b000), 0x1000).is_err(), "the heap");
    }
}
