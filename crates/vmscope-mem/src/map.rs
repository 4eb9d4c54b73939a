//! Guest-physical memory maps: which GPA ranges are RAM, and where each lives in the
//! backing store (a memfd, a file, a snapshot).

use serde::{Deserialize, Serialize};

use crate::{Error, Gpa, Result};

/// One contiguous range of guest RAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// First guest-physical address.
    pub gpa: Gpa,
    /// Length in bytes (non-zero).
    pub size: u64,
    /// Offset of `gpa` in the backing store.
    pub offset: u64,
    /// A name for humans (`ram-below-4g`, `pc.ram`, `slot0`, ...).
    pub name: String,
}

impl Region {
    /// A region of `size` bytes at `gpa`, stored at `offset` in the backing.
    pub fn new(gpa: Gpa, size: u64, offset: u64, name: impl Into<String>) -> Self {
        Self { gpa, size, offset, name: name.into() }
    }

    /// One past the last guest-physical address.
    #[inline]
    pub fn end(&self) -> u64 {
        self.gpa.raw() + self.size
    }

    /// Whether `gpa` lies in this region.
    #[inline]
    pub fn contains(&self, gpa: Gpa) -> bool {
        gpa.raw() >= self.gpa.raw() && gpa.raw() < self.end()
    }
}

/// A sorted set of non-overlapping RAM regions; everything else is a hole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryMap {
    regions: Vec<Region>,
}

impl MemoryMap {
    /// Builds a map, sorting the regions; rejects empty, wrapping or overlapping ones.
    pub fn new(mut regions: Vec<Region>) -> Result<Self> {
        regions.sort_by_key(|r| r.gpa);
        for r in &regions {
            if r.size == 0 {
                return Err(Error::BadMap(format!("region {} at {} is empty", r.name, r.gpa)));
            }
            if r.gpa.raw().checked_add(r.size).is_none() || r.offset.checked_add(r.size).is_none() {
                return Err(Error::BadMap(format!("region {} at {} wraps", r.name, r.gpa)));
            }
        }
        for w in regions.windows(2) {
            if w[0].end() > w[1].gpa.raw() {
                return Err(Error::BadMap(format!(
                    "regions {} ({}..{:#x}) and {} (at {}) overlap",
                    w[0].name,
                    w[0].gpa,
                    w[0].end(),
                    w[1].name,
                    w[1].gpa
                )));
            }
        }
        Ok(Self { regions })
    }

    /// One region from GPA 0 of `size` bytes at backing offset 0.
    pub fn flat(size: u64) -> Self {
        Self { regions: vec![Region::new(Gpa::new(0), size, 0, "ram")] }
    }

    /// The regions, sorted by address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Total bytes of RAM.
    pub fn ram_size(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }

    /// One past the highest backed guest-physical address (0 if empty).
    pub fn end(&self) -> u64 {
        self.regions.last().map_or(0, Region::end)
    }

    /// The size the backing store needs: the highest `offset + size`.
    pub fn backing_size(&self) -> u64 {
        self.regions.iter().map(|r| r.offset + r.size).max().unwrap_or(0)
    }

    /// The region holding `gpa`.
    #[inline]
    pub fn region_of(&self, gpa: Gpa) -> Option<&Region> {
        let idx = self.regions.partition_point(|r| r.gpa <= gpa);
        let r = self.regions.get(idx.checked_sub(1)?)?;
        r.contains(gpa).then_some(r)
    }

    /// The backing offset of `gpa` and how many bytes stay contiguous from there.
    #[inline]
    pub fn lookup(&self, gpa: Gpa) -> Option<(u64, u64)> {
        let r = self.region_of(gpa)?;
        let delta = gpa.raw() - r.gpa.raw();
        Some((r.offset + delta, r.size - delta))
    }

    /// Whether `len` bytes from `gpa` are all backed (possibly across regions).
    pub fn is_backed(&self, gpa: Gpa, len: u64) -> bool {
        self.chunks(gpa, len).all(|c| c.is_ok())
    }

    /// Splits the read of `len` bytes at `gpa` into pieces that each lie in one
    /// region: `Ok((gpa, backing offset, len))`, or `Err(gpa)` at the first hole,
    /// after which iteration stops.
    pub fn chunks(&self, gpa: Gpa, len: u64) -> Chunks<'_> {
        Chunks { map: self, next: gpa.raw(), left: len, failed: false }
    }
}

/// Iterator returned by [`MemoryMap::chunks`].
#[derive(Debug)]
pub struct Chunks<'a> {
    map: &'a MemoryMap,
    next: u64,
    left: u64,
    failed: bool,
}

impl Iterator for Chunks<'_> {
    type Item = std::result::Result<(Gpa, u64, u64), Gpa>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        let gpa = Gpa::new(self.next);
        match self.map.lookup(gpa) {
            Some((off, avail)) => {
                let n = avail.min(self.left);
                self.left -= n;
                match self.next.checked_add(n) {
                    Some(v) => self.next = v,
                    None => self.left = 0,
                }
                Some(Ok((gpa, off, n)))
            }
            None => {
                self.failed = true;
                Some(Err(gpa))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q35_4g() -> MemoryMap {
        MemoryMap::new(vec![
            Region::new(Gpa::new(0x1_0000_0000), 0x8000_0000, 0x8000_0000, "ram-above-4g"),
            Region::new(Gpa::new(0), 0x8000_0000, 0, "ram-below-4g"),
        ])
        .unwrap()
    }

    #[test]
    fn lookup_across_the_pci_hole() {
        let m = q35_4g();
        assert_eq!(m.lookup(Gpa::new(0x1000)), Some((0x1000, 0x8000_0000 - 0x1000)));
        assert_eq!(m.lookup(Gpa::new(0x9000_0000)), None);
        assert_eq!(m.lookup(Gpa::new(0x1_0000_0010)), Some((0x8000_0010, 0x7fff_fff0)));
        assert_eq!(m.ram_size(), 0x1_0000_0000);
        assert_eq!(m.backing_size(), 0x1_0000_0000);
        assert!(!m.is_backed(Gpa::new(0x7fff_fff0), 0x20));
        assert!(m.is_backed(Gpa::new(0x7fff_fff0), 0x10));
    }

    #[test]
    fn chunks_split_and_stop_at_holes() {
        let m = MemoryMap::new(vec![
            Region::new(Gpa::new(0), 0x1000, 0x5000, "a"),
            Region::new(Gpa::new(0x1000), 0x1000, 0x0, "b"),
        ])
        .unwrap();
        let c: Vec<_> = m.chunks(Gpa::new(0xff0), 0x20).collect();
        assert_eq!(c, vec![Ok((Gpa::new(0xff0), 0x5ff0, 0x10)), Ok((Gpa::new(0x1000), 0, 0x10))]);
        let c: Vec<_> = m.chunks(Gpa::new(0x1ff0), 0x20).collect();
        assert_eq!(c, vec![Ok((Gpa::new(0x1ff0), 0xff0, 0x10)), Err(Gpa::new(0x2000))]);
    }

    #[test]
    fn rejects_overlap_and_empty() {
        assert!(
            MemoryMap::new(vec![
                Region::new(Gpa::new(0), 0x2000, 0, "a"),
                Region::new(Gpa::new(0x1000), 0x1000, 0, "b"),
            ])
            .is_err()
        );
        assert!(MemoryMap::new(vec![Region::new(Gpa::new(0), 0, 0, "a")]).is_err());
    }
}
