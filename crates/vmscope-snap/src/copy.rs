//! Bulk copies out of guest RAM that knows where its data is ([`Backed`]): QEMU's RAM
//! files read by their `SEEK_DATA` extents, or QEMU's private RAM read through its
//! address space for the pages its pagemap says it holds. Either way, pages the guest
//! never touched are neither read nor allocated. Live copies read; halt-snap copies
//! during its pause out of a [`SharedMapping`] populated beforehand where one file
//! backs all of RAM, which runs at about memcpy speed where `pread` of a memfd (a
//! page-cache lookup and a `copy_to_user` per 4 KiB page) reaches a third to a half
//! of it.

use std::ops::Range;
use std::sync::Mutex;

use vmscope_hv::{Backed, SharedMapping};
use vmscope_mem::MemoryMap;

use crate::{Error, Result};

/// The ranges of `ram`'s backing that hold data (pages the guest or firmware touched),
/// sorted, page-granular, clipped to `limit`. Holes read as zero and are not listed.
pub(crate) fn data_extents(ram: &dyn Backed, limit: u64) -> Result<Vec<Range<u64>>> {
    let x = ram.data_extents()?;
    Ok(x.into_iter().filter(|r| r.start < limit).map(|r| r.start..r.end.min(limit)).collect())
}

/// Reads `buf.len()` bytes at backing offset `offset`.
pub(crate) fn read_at(ram: &dyn Backed, buf: &mut [u8], offset: u64) -> Result<()> {
    ram.read_backing(buf, offset)
        .map_err(|e| Error::io(format!("read of {} bytes at RAM offset {offset:#x}", buf.len()), e))
}

/// `ram`'s backing mapped, with the pages of `extents` (data extents, found just now)
/// entered in our page tables, so that a copy out of it takes no page faults. `None`
/// when no single file backs all of it, or it cannot be mapped: copies then read.
pub(crate) fn populated_mapping(ram: &dyn Backed, map: &MemoryMap, extents: &[Range<u64>]) -> Option<SharedMapping> {
    let mapping = SharedMapping::new(ram.whole_file()?, map.backing_size()).ok()?;
    for e in extents {
        mapping.populate(e.clone());
    }
    Some(mapping)
}

/// Copies `dst.len()` bytes at backing offset `offset` of `ram`, which hold data: out of
/// `mapping` where there is one, else by reading.
pub(crate) fn copy_data(ram: &dyn Backed, mapping: Option<&SharedMapping>, dst: &mut [u8], offset: u64) -> Result<()> {
    match mapping {
        Some(m) if m.copy(offset, dst) => Ok(()),
        _ => read_at(ram, dst, offset),
    }
}

/// Pieces of at most `max` bytes of `extents` (sorted, disjoint), each with its
/// slice of `dst` (indexed like the extents), for parallel copies.
pub(crate) fn carve<'a>(dst: &'a mut [u8], extents: &[Range<u64>], max: u64) -> Result<Vec<(u64, &'a mut [u8])>> {
    let mut out = Vec::new();
    let mut rest = dst;
    let mut base = 0u64;
    for e in extents {
        let mut at = e.start;
        while at < e.end {
            let n = (e.end - at).min(max);
            let skip = usize::try_from(at - base).map_err(|_| Error::Map("extent offset".into()))?;
            let len = n as usize;
            if rest.len() < skip + len {
                return Err(Error::Map(format!("extent {at:#x}+{n:#x} is outside the snapshot buffer")));
            }
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
            let (piece, tail) = tail.split_at_mut(len);
            out.push((at, piece));
            rest = tail;
            base = at + n;
            at += n;
        }
    }
    Ok(out)
}

/// Runs `f` over `items` on up to 4 threads (the guest is paused meanwhile, so its
/// vCPU threads leave the host's cores free), summing the results. Each thread takes
/// the next item when it is done with one, so a thread the host does not schedule
/// holds up only its current item.
pub(crate) fn parallel<T: Send>(items: Vec<T>, f: impl Fn(T) -> Result<u64> + Sync) -> Result<u64> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    if n == 1 || items.len() < 2 {
        return items.into_iter().map(&f).sum();
    }
    let queue = Mutex::new(items.into_iter());
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).next();
    let (f, next) = (&f, &next);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..n).map(|_| s.spawn(move || std::iter::from_fn(next).map(f).sum::<Result<u64>>())).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Map("a copy thread panicked".into())))).sum()
    })
}

/// Sorted, merged union of two sorted range lists.
pub(crate) fn merge_ranges(mut v: Vec<Range<u64>>) -> Vec<Range<u64>> {
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(v.len());
    for r in v {
        if r.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(l) if r.start <= l.end => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The parts of `extents` (backing offsets) that some region of `map` covers.
pub(crate) fn clip_to_map(extents: &[Range<u64>], map: &MemoryMap) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for r in map.regions() {
        let (rs, re) = (r.offset, r.offset + r.size);
        for e in extents {
            let (a, b) = (e.start.max(rs), e.end.min(re));
            if a < b {
                out.push(a..b);
            }
        }
    }
    merge_ranges(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use vmscope_mem::{FileMem, Gpa, PhysMem};

    #[test]
    fn extents_of_a_sparse_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(16 << 20).unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(&[1u8; 8192]).unwrap();
        let ram = FileMem::new(f, MemoryMap::flat(16 << 20));
        let ext = data_extents(&ram, u64::MAX).unwrap();
        // tmpfs is page-granular; other file systems may round to blocks.
        assert!(ext.iter().any(|e| e.contains(&(4 << 20))), "{ext:?}");
        assert!(ext.iter().map(|e| e.end - e.start).sum::<u64>() < (16 << 20), "{ext:?}");
        let mut b = [0u8; 4];
        ram.read(Gpa::new((4 << 20) + 8190), &mut b).unwrap();
        assert_eq!(b, [1, 1, 0, 0]);
    }

    #[test]
    fn carve_gives_disjoint_pieces() {
        let mut buf = vec![0u8; 100];
        let pieces = carve(&mut buf, &[10..25, 30..31, 90..100], 10).unwrap();
        let shape: Vec<_> = pieces.iter().map(|(o, s)| (*o, s.len())).collect();
        assert_eq!(shape, vec![(10, 10), (20, 5), (30, 1), (90, 10)]);
        for (o, s) in pieces {
            s.fill(o as u8);
        }
        assert_eq!((buf[19], buf[20], buf[29], buf[30], buf[99]), (10, 20, 0, 30, 90));
        assert!(carve(&mut buf, &[95..105], 10).is_err());
        assert_eq!(parallel((0..10u64).collect(), Ok).unwrap(), 45);
    }

    #[test]
    fn merge_and_clip() {
        assert_eq!(merge_ranges(vec![5..7, 0..2, 1..3, 7..9, 4..4]), vec![0..3, 5..9]);
        let map = MemoryMap::new(vec![vmscope_mem::Region::new(Gpa::new(0x1000), 0x1000, 0x2000, "r")]).unwrap();
        assert_eq!(clip_to_map(&[0..0x2800, 0x2f00..0x5000], &map), vec![0x2000..0x2800, 0x2f00..0x3000]);
    }
}
