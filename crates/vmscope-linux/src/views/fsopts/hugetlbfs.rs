//! hugetlbfs: `hugetlbfs_show_options` — owner and mode, `nr_inodes=`, the page
//! size, and the subpool's `size=`/`min_size=` in bytes.

use std::fmt::Write as _;

use vmscope_mem::{Gva, PhysMem};

use crate::kernel::Ctx;
use crate::offsets::HugetlbfsOffsets;
use crate::views::{Anomaly, Fields, count, plausible, with_struct};

/// hugetlbfs's default root mode.
const HUGETLBFS_DEFAULT_MODE: u16 = 0o755;
/// `PAGE_SHIFT` on x86-64: `hstate.order` counts base pages.
const PAGE_SHIFT: u32 = 12;
/// The largest `hstate.order` x86-64 has (1 GiB pages): a larger one is corrupt.
const MAX_ORDER: u32 = 18;

/// What `hugetlbfs_show_options` prints from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HugetlbfsSb {
    pub uid: u32,
    pub gid: u32,
    pub mode: u16,
    /// `-1`: no limit.
    pub max_inodes: i64,
    /// `hstate.order`.
    pub order: u32,
    /// The subpool's `max_hpages` and `min_hpages` (`-1`: none), if it has one.
    pub spool: Option<(i64, i64)>,
}

/// The options as `hugetlbfs_show_options` prints them.
pub(crate) fn hugetlbfs_text(h: &HugetlbfsSb) -> String {
    let mut o = String::new();
    if h.uid != 0 {
        let _ = write!(o, ",uid={}", h.uid);
    }
    if h.gid != 0 {
        let _ = write!(o, ",gid={}", h.gid);
    }
    if h.mode != HUGETLBFS_DEFAULT_MODE {
        let _ = write!(o, ",mode={:o}", h.mode);
    }
    if h.max_inodes != -1 {
        // `%lu` of a long.
        let _ = write!(o, ",nr_inodes={}", h.max_inodes as u64);
    }
    let shift = h.order + PAGE_SHIFT;
    let kib = (1u64 << shift) / 1024;
    let (size, unit) = if kib >= 1024 { (kib / 1024, 'M') } else { (kib, 'K') };
    let _ = write!(o, ",pagesize={size}{unit}");
    if let Some((max, min)) = h.spool {
        if max != -1 {
            let _ = write!(o, ",size={}", (max as u64).wrapping_shl(shift));
        }
        if min != -1 {
            let _ = write!(o, ",min_size={}", (min as u64).wrapping_shl(shift));
        }
    }
    o
}

impl<M: PhysMem> Ctx<'_, M> {
    /// hugetlbfs's options for the super block whose `s_fs_info` is `info`.
    pub(super) fn hugetlbfs_options(&self, ho: &HugetlbfsOffsets, info: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        let (mut h, hstate, spool) = with_struct(self.k, info, ho.size, "hugetlbfs_sb_info", an, |b| {
            let h = HugetlbfsSb {
                uid: b.u32(ho.uid)?,
                gid: b.u32(ho.gid)?,
                mode: b.uint(ho.mode, 2)? as u16,
                max_inodes: b.u64(ho.max_inodes)? as i64,
                ..HugetlbfsSb::default()
            };
            Some((h, b.ptr(ho.hstate)?, b.ptr(ho.spool)?))
        })??;
        if !plausible(self.k, hstate, 8) {
            an.push(Anomaly::BadPointer { what: "hugetlbfs_sb_info.hstate".into(), at: info, value: hstate });
            return None;
        }
        h.order = count(self.k, (hstate, ho.order), ("hstate", "order"), MAX_ORDER, an)?;
        if spool.raw() != 0 {
            if !plausible(self.k, spool, 8) {
                an.push(Anomaly::BadPointer { what: "hugetlbfs_sb_info.spool".into(), at: info, value: spool });
                return None;
            }
            let len = ho.max_hpages.max(ho.min_hpages) + 8;
            h.spool = Some(with_struct(self.k, spool, len, "hugepage_subpool", an, |b| {
                Some((b.u64(ho.max_hpages)? as i64, b.u64(ho.min_hpages)? as i64))
            })??);
        }
        Some(hugetlbfs_text(&h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugetlbfs_options_as_mountinfo_shows_them() {
        let h = HugetlbfsSb { mode: 0o755, max_inodes: -1, order: 9, ..HugetlbfsSb::default() };
        assert_eq!(hugetlbfs_text(&h), ",pagesize=2M");
        let h = HugetlbfsSb { uid: 3, mode: 0o1770, max_inodes: 10, spool: Some((2, 1)), ..h };
        assert_eq!(hugetlbfs_text(&h), ",uid=3,mode=1770,nr_inodes=10,pagesize=2M,size=4194304,min_size=2097152");
        let g = HugetlbfsSb { order: 18, spool: Some((-1, -1)), ..h };
        assert_eq!(hugetlbfs_text(&g), ",uid=3,mode=1770,nr_inodes=10,pagesize=1024M");
    }
}
