//! Which byte ranges of a RAM backing hold data: sorted ranges plus a page bitmap for
//! the question every read asks.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::{Error, Result};

pub(crate) const PAGE: u64 = 4096;

/// Ranges up to this long are scanned page by page (see [`Extents::scan_range`]).
const SHORT_RANGE: u64 = 64 * PAGE;

/// `SEEK_DATA` from `pos`: the next offset with data, `None` when there is none,
/// `Some(-1)` when the file system has no `SEEK_DATA` (it then counts as all data).
fn seek_data(file: &File, pos: i64) -> Result<Option<i64>> {
    // SAFETY: lseek on an fd we own; no memory is passed. It moves only this open
    // file's position, which no pread depends on.
    let data = unsafe { libc::lseek(file.as_raw_fd(), pos, libc::SEEK_DATA) };
    if data >= 0 {
        return Ok(Some(data));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        Some(libc::EINVAL) => Ok(Some(-1)),
        _ => Err(Error::io("SEEK_DATA on the RAM backing", e)),
    }
}

/// The populated extents of a backing: where it has pages. Reading a hole through
/// the hypervisor's address space (process_vm_readv, /proc/PID/mem, a mapping) would
/// make the kernel allocate a page the guest never touched; a technique asks here first
/// and reads zeros (or the file under a private mapping) instead.
#[derive(Debug, Clone, Default)]
pub struct Extents {
    /// Sorted, disjoint `(start, end)` byte ranges with data.
    ranges: Vec<(u64, u64)>,
    /// One bit per wholly populated 4 KiB page, for a constant-time answer to the
    /// question every read asks (empty: use `ranges`).
    pages: Vec<u64>,
}

impl Extents {
    /// Scans `file` with SEEK_DATA/SEEK_HOLE up to `size`.
    pub fn scan(file: &File, size: u64) -> Result<Self> {
        Ok(Self::from_ranges(Self::scan_range(file, 0, size)?.ranges, size))
    }

    /// Extents made of `ranges` (sorted, disjoint, within `0..size`), with the page
    /// bitmap built.
    pub fn from_ranges(ranges: Vec<(u64, u64)>, size: u64) -> Self {
        let mut pages = vec![0u64; size.div_ceil(PAGE * 64) as usize];
        for &(s, e) in &ranges {
            for p in s.div_ceil(PAGE)..e.min(size) / PAGE {
                pages[(p / 64) as usize] |= 1 << (p % 64);
            }
        }
        Self { ranges, pages }
    }

    /// Scans only `offset..offset+len`. A file system without `SEEK_DATA` reports
    /// the whole range as data.
    ///
    /// `SEEK_HOLE` costs the distance to the next hole, which in a well-populated
    /// file is the rest of the file (5 ms for a full 512 MiB memfd, measured): a
    /// short range — what a read that lands in a stale hole asks — is probed page by
    /// page with `SEEK_DATA` instead, which answers at once where the page has data.
    pub fn scan_range(file: &File, offset: u64, len: u64) -> Result<Self> {
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let end = i64::try_from(offset.saturating_add(len)).unwrap_or(i64::MAX);
        let short = len <= SHORT_RANGE;
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut pos = start;
        while pos < end {
            let Some(data) = seek_data(file, pos)? else { break };
            if data < 0 {
                ranges.push((start as u64, end as u64)); // no SEEK_DATA here
                break;
            }
            if data >= end {
                break;
            }
            let hole = if short {
                let mut at = (data - data % PAGE as i64).saturating_add(PAGE as i64);
                while at < end && seek_data(file, at)? == Some(at) {
                    at += PAGE as i64;
                }
                at
            } else {
                // SAFETY: lseek on an fd we own; no memory is passed. It moves only
                // this open file's position, which no pread depends on.
                let hole = unsafe { libc::lseek(file.as_raw_fd(), data, libc::SEEK_HOLE) };
                if hole < 0 {
                    return Err(Error::io("SEEK_HOLE on the RAM backing", std::io::Error::last_os_error()));
                }
                hole
            };
            match ranges.last_mut() {
                Some(last) if last.1 == data as u64 => last.1 = hole.min(end) as u64,
                _ => ranges.push((data as u64, hole.min(end) as u64)),
            }
            pos = hole.max(data + 1);
        }
        Ok(Self { ranges, pages: Vec::new() })
    }

    /// Every byte of `offset..offset+len` is populated.
    #[inline]
    pub fn all_data(&self, offset: u64, len: u64) -> bool {
        let (first, last) = (offset / PAGE, (offset + len.max(1) - 1) / PAGE);
        if last - first < 16 && ((last / 64) as usize) < self.pages.len() {
            return (first..=last).all(|p| self.pages[(p / 64) as usize] & (1 << (p % 64)) != 0);
        }
        let i = self.ranges.partition_point(|&(_, e)| e <= offset);
        self.ranges.get(i).is_some_and(|&(s, e)| s <= offset && offset + len <= e)
    }

    /// Splits `offset..offset+len` into `(start, len, populated)` pieces.
    pub fn split(&self, offset: u64, len: u64) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        let end = offset + len;
        let mut cur = offset;
        let mut i = self.ranges.partition_point(|&(_, e)| e <= cur);
        while cur < end {
            match self.ranges.get(i) {
                Some(&(s, e)) if s <= cur => {
                    let stop = e.min(end);
                    out.push((cur, stop - cur, true));
                    cur = stop;
                    i += 1;
                }
                Some(&(s, _)) => {
                    let stop = s.min(end);
                    out.push((cur, stop - cur, false));
                    cur = stop;
                }
                None => {
                    out.push((cur, end - cur, false));
                    cur = end;
                }
            }
        }
        out
    }

    /// The populated ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Total populated bytes.
    pub fn data_bytes(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| e - s).sum()
    }
}

/// Sorted, merged union of range lists.
pub(crate) fn union(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        if s >= e {
            continue;
        }
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn extents_of_a_sparse_file() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 0x10000).unwrap();
        f.write_all_at(&[1u8; 4096], 0x40000).unwrap();
        let x = Extents::scan(&f, 1 << 20).unwrap();
        // tmpfs and ext4 report data at page or block granularity.
        assert!(x.all_data(0x10000, 4096));
        assert!(x.all_data(0x40000, 4096));
        assert!(!x.all_data(0x80000, 4096));
        let parts = x.split(0xf000, 0x3000);
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), 0x3000);
        assert!(parts.iter().any(|p| p.2) && parts.iter().any(|p| !p.2));
    }

    #[test]
    fn short_and_long_scans_agree() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        for page in [3u64, 4, 5, 9, 40, 41, 200, 255] {
            f.write_all_at(&[1u8; 4096], page * PAGE).unwrap();
        }
        let whole = Extents::scan_range(&f, 0, 1 << 20).unwrap();
        for (off, len) in [(0, 16 * PAGE), (4 * PAGE + 100, 2 * PAGE), (8 * PAGE, 40 * PAGE), (250 * PAGE, 6 * PAGE)] {
            let short = Extents::scan_range(&f, off, len).unwrap();
            let want: Vec<(u64, u64)> = whole
                .ranges()
                .iter()
                .filter_map(|&(s, e)| {
                    let (s, e) = (s.max(off), e.min(off + len));
                    (s < e).then_some((s, e))
                })
                .collect();
            assert_eq!(short.ranges(), want, "{off:#x}+{len:#x}");
        }
    }

    #[test]
    fn union_merges() {
        assert_eq!(union(vec![(5, 7), (0, 2), (1, 3), (7, 9), (4, 4)]), vec![(0, 3), (5, 9)]);
        let x = Extents::from_ranges(vec![(0x1000, 0x3000)], 0x10000);
        assert!(x.all_data(0x1000, 0x2000) && !x.all_data(0x0, 0x1001));
        assert_eq!(x.data_bytes(), 0x2000);
    }
}
