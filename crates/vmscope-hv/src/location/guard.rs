//! The hole guard: which parts of guest RAM the hypervisor holds, so that a read
//! through its address space (or a mapping of its file) never makes it allocate a page
//! the guest never touched.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::extents::{Extents, PAGE, union};
use super::pagemap::Pagemap;
use super::{Backing, RamLocation};
use crate::{Error, Result};

/// Where the bytes of one piece of a read come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceSource {
    /// The hypervisor holds these pages: read them through its address space (or a
    /// mapping of its RAM file).
    Resident,
    /// Pages the hypervisor never touched under a file mapping that is private or on
    /// hugetlbfs: they hold what the file holds; read it ([`HoleGuard::read_file`]),
    /// which allocates nothing.
    File,
    /// Pages nobody ever wrote: zeros, read from nowhere.
    Zero,
}

/// One piece of a read of the backing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Backing offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Where its bytes come from.
    pub source: PieceSource,
}

/// How a block tells the pages that exist.
#[derive(Debug)]
enum Residency {
    /// A shared file that knows its holes (`SEEK_DATA`): its data extents from
    /// `offset` on.
    FileData { file: File, offset: u64 },
    /// The pages present or swapped in the hypervisor process from `hva` on
    /// (`/proc/PID/pagemap`): private memory, hugetlbfs.
    Pagemap { hva: u64 },
}

/// The file under a block whose non-resident pages hold its contents.
#[derive(Debug)]
struct BlockFile {
    file: File,
    offset: u64,
    /// A private (copy-on-write) mapping: the file's data counts as the guest's RAM
    /// wherever the process has no copy of its own.
    private: bool,
    hugetlb: bool,
}

#[derive(Debug)]
struct Guarded {
    start: u64,
    len: u64,
    residency: Residency,
    file: Option<BlockFile>,
}

/// The resident extents of every RAM block of a [`RamLocation`], refreshed on demand.
/// A read that lands in what looks like a hole re-checks that piece (the guest may
/// have touched it since the last refresh) before it is answered with zeros or from
/// the file.
///
/// Residency is the backing file's data extents for a shared file that has them
/// (`SEEK_DATA`: memfd, tmpfs, ext4), and the hypervisor's `/proc/PID/pagemap`
/// otherwise (anonymous private RAM, `share=off` files, hugetlbfs, which reports every
/// byte as data).
#[derive(Debug)]
pub struct HoleGuard {
    blocks: Vec<Guarded>,
    pagemap: Option<Pagemap>,
    size: u64,
    extents: RwLock<Extents>,
    refreshed: Mutex<Instant>,
}

impl HoleGuard {
    /// The guard of `loc`'s blocks; opens their files and QEMU's pagemap as needed.
    pub fn new(loc: &RamLocation) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut pagemap = None;
        for b in &loc.blocks {
            let (residency, file) = match &b.backing {
                Backing::Anonymous => (Residency::Pagemap { hva: b.hva.raw() }, None),
                Backing::File { shared, offset, .. } => {
                    let file = b.open_file(loc.pid)?;
                    let hugetlb = is_hugetlbfs(&file);
                    if *shared && !hugetlb {
                        (Residency::FileData { file, offset: *offset }, None)
                    } else {
                        let f = BlockFile { file, offset: *offset, private: !shared, hugetlb };
                        (Residency::Pagemap { hva: b.hva.raw() }, Some(f))
                    }
                }
            };
            if matches!(residency, Residency::Pagemap { .. }) && pagemap.is_none() {
                pagemap = Some(Pagemap::open(loc.pid)?);
            }
            blocks.push(Guarded { start: b.offset, len: b.size, residency, file });
        }
        let g = Self {
            blocks,
            pagemap,
            size: loc.backing_size(),
            extents: RwLock::new(Extents::default()),
            refreshed: Mutex::new(Instant::now()),
        };
        g.refresh()?;
        Ok(g)
    }

    /// Re-reads the extents (one SEEK_DATA/SEEK_HOLE pair per extent, or one pagemap
    /// read per 256 MiB).
    pub fn refresh(&self) -> Result<()> {
        let mut all = Vec::new();
        for b in &self.blocks {
            all.extend(self.resident(b, 0, b.len)?.into_iter().map(|(s, e)| (b.start + s, b.start + e)));
        }
        *self.extents.write().unwrap_or_else(|p| p.into_inner()) = Extents::from_ranges(all, self.size);
        *self.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    /// Refreshes if the extents are older than `max_age`. Staleness costs only a
    /// re-check when a read lands in what looks like a hole (the guest touched a new
    /// page); a page the hypervisor gave back since is read as data (and so
    /// re-allocated) until the next refresh, which bounds that harm in time.
    pub fn refresh_if_older(&self, max_age: Duration) -> Result<()> {
        let age = self.refreshed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if age >= max_age { self.refresh() } else { Ok(()) }
    }

    /// Whether every byte of `offset..offset+len` is known to be resident (the fast
    /// path of every read); when not, [`split`](Self::split) says where each part
    /// comes from.
    #[inline]
    pub fn is_populated(&self, offset: u64, len: u64) -> bool {
        self.extents.read().unwrap_or_else(|p| p.into_inner()).all_data(offset, len)
    }

    /// Splits a backing range into pieces by where their bytes come from. Pieces
    /// that look non-resident are checked again now, so a page the guest just
    /// touched is read where it is; if that check fails (the process is gone), so
    /// does the read — a guess could be wrong data or harm.
    pub fn split(&self, offset: u64, len: u64) -> Result<Vec<Piece>> {
        let x = self.extents.read().unwrap_or_else(|p| p.into_inner());
        if x.all_data(offset, len) {
            return Ok(vec![Piece { offset, len, source: PieceSource::Resident }]);
        }
        let stale = x.split(offset, len);
        drop(x);
        let mut out = Vec::new();
        for (o, l, data) in stale {
            if data {
                out.push(Piece { offset: o, len: l, source: PieceSource::Resident });
                continue;
            }
            // Look again at just this range, block by block.
            let mut at = o;
            while at < o + l {
                let Some(b) = self.block_at(at) else {
                    out.push(Piece { offset: at, len: o + l - at, source: PieceSource::Zero });
                    break;
                };
                let end = (o + l).min(b.start + b.len);
                let hole = if b.file.is_some() { PieceSource::File } else { PieceSource::Zero };
                let fresh: Vec<_> =
                    self.resident(b, at - b.start, end - at)?.into_iter().map(|(s, e)| (at + s, at + e)).collect();
                for (po, pl, d) in Extents::from_ranges(fresh, 0).split(at, end - at) {
                    let source = if d { PieceSource::Resident } else { hole };
                    out.push(Piece { offset: po, len: pl, source });
                }
                at = end;
            }
        }
        Ok(out)
    }

    /// The backing offset of the first byte known to be resident, if any.
    pub fn first_resident(&self) -> Option<u64> {
        self.extents.read().unwrap_or_else(|p| p.into_inner()).ranges().first().map(|r| r.0)
    }

    /// Reads a [`PieceSource::File`] piece from the file under its block.
    pub fn read_file(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let b = self.block_at(offset).filter(|b| offset + buf.len() as u64 <= b.start + b.len);
        let Some((b, f)) = b.and_then(|b| Some((b, b.file.as_ref()?))) else {
            return Err(std::io::Error::other(format!("backing offset {offset:#x} has no file under it")));
        };
        let at = f.offset.checked_add(offset - b.start).ok_or_else(|| std::io::Error::other("file offset"))?;
        // Past the end of a file shorter than its mapping: the process would fault.
        f.file.read_exact_at(buf, at)
    }

    /// The backing ranges that hold data now, sorted and merged: the resident pages,
    /// and for a private file mapping the file's data too. What a snapshot copies.
    pub fn data_extents(&self) -> Result<Vec<(u64, u64)>> {
        let mut all = Vec::new();
        for b in &self.blocks {
            let mut r = self.resident(b, 0, b.len)?;
            if let Some(f) = b.file.as_ref().filter(|f| f.private) {
                r.extend(file_data(f, b.len)?);
            }
            all.extend(r.into_iter().map(|(s, e)| (b.start + s, b.start + e)));
        }
        Ok(union(all))
    }

    fn block_at(&self, offset: u64) -> Option<&Guarded> {
        let i = self.blocks.partition_point(|b| b.start + b.len <= offset);
        self.blocks.get(i).filter(|b| b.start <= offset)
    }

    /// The resident ranges of `rel..rel+len` of block `b`, relative to `rel`.
    fn resident(&self, b: &Guarded, rel: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        match &b.residency {
            Residency::FileData { file, offset } => {
                let x = Extents::scan_range(file, offset + rel, len)?;
                Ok(x.ranges().iter().map(|&(s, e)| (s - offset - rel, e - offset - rel)).collect())
            }
            Residency::Pagemap { hva } => {
                let pm = self.pagemap.as_ref().expect("opened for every pagemap block");
                // Whole pages: the piece may start inside one.
                let lead = (hva + rel) % PAGE;
                let r = pm.resident(hva + rel - lead, len + lead)?;
                Ok(r.into_iter()
                    .filter_map(|(s, e)| {
                        let (s, e) = (s.max(lead) - lead, e.saturating_sub(lead).min(len));
                        (s < e).then_some((s, e))
                    })
                    .collect())
            }
        }
    }
}

/// The data extents of the file under a private mapping, relative to the block.
/// hugetlbfs has no `SEEK_DATA`: a file without a single page counts as all holes,
/// one with pages as all data.
fn file_data(f: &BlockFile, len: u64) -> Result<Vec<(u64, u64)>> {
    if f.hugetlb {
        let blocks = f.file.metadata().map_err(|e| Error::io("stat of the RAM file", e))?.blocks();
        return Ok(if blocks == 0 { Vec::new() } else { vec![(0, len)] });
    }
    let x = Extents::scan_range(&f.file, f.offset, len)?;
    Ok(x.ranges().iter().map(|&(s, e)| (s - f.offset, e - f.offset)).collect())
}

/// Whether `file` lives on hugetlbfs.
pub(crate) fn is_hugetlbfs(file: &File) -> bool {
    huge_page_size(file).is_some()
}

/// The huge page size of a file on hugetlbfs (its file system's block size); `None`
/// for any other file.
pub(crate) fn huge_page_size(file: &File) -> Option<u64> {
    const HUGETLBFS_MAGIC: libc::__fsword_t = 0x9584_58f6;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes one statfs into the buffer we pass, which is large
    // enough; the result is read only when the call succeeded.
    let ok = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) } == 0;
    // SAFETY: initialised by the successful call (or zeroed).
    let st = unsafe { st.assume_init() };
    (ok && st.f_type == HUGETLBFS_MAGIC).then(|| u64::try_from(st.f_bsize).unwrap_or(0)).filter(|&b| b >= 4096)
}
