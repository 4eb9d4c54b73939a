//! A process's memory map: `mm_struct.mm_mt` (a maple tree, Linux 6.1+) of
//! `vm_area_struct`s.

use serde::{Deserialize, Serialize};

use super::array_len;
use crate::types::TypeRef;
use crate::{Error, Profile, Result};

/// One kind of maple tree node (`struct maple_range_64` or `maple_arange_64`),
/// as offsets from the start of `struct maple_node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapleNodeLayout {
    /// `pivot[0]`.
    pub pivots: u64,
    /// Entries of `pivot`.
    pub pivot_count: u64,
    /// `slot[0]`.
    pub slots: u64,
    /// Entries of `slot`.
    pub slot_count: u64,
    /// `meta.end`: the last slot in use, when the last pivot does not say.
    pub meta_end: u64,
}

/// `struct maple_node` and the values of `enum maple_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapleOffsets {
    /// Bytes of `struct maple_node` (also its alignment: the low bits of an
    /// encoded node pointer hold its type).
    pub node_size: u64,
    /// `parent` (every node kind starts with it).
    pub parent: u64,
    /// Leaves and internal nodes of trees without gap tracking.
    pub range64: MapleNodeLayout,
    /// Internal nodes of allocation trees (`MT_FLAGS_ALLOC_RANGE`, as `mm_mt`).
    pub arange64: MapleNodeLayout,
    /// The `enum maple_type` value of `maple_leaf_64`.
    pub leaf64_type: u64,
    /// ... of `maple_range_64`.
    pub range64_type: u64,
    /// ... of `maple_arange_64`.
    pub arange64_type: u64,
}

/// `struct vm_area_struct` and what a memory map line needs beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MapsOffsets {
    /// `mm_struct.mm_mt.ma_root`.
    pub mm_root: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    /// `mm_struct.context.flags` (x86: whether the vsyscall page is mapped).
    pub context_flags: Option<u64>,
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_mm: u64,
    pub vm_flags: u64,
    pub vm_pgoff: u64,
    pub vm_file: u64,
    pub vm_ops: u64,
    pub vm_private_data: u64,
    /// `vm_operations_struct.name`.
    pub ops_name: u64,
    /// `vm_special_mapping.name`.
    pub special_name: u64,
    /// The value of `NONE` in x86's `vsyscall_mode` enum (`EMULATE`, `XONLY`,
    /// `NONE`): no vsyscall page in any process.
    pub vsyscall_none: Option<i64>,
    pub maple: MapleOffsets,
}

impl MapsOffsets {
    /// Bytes of `vm_area_struct` that hold every field read.
    pub fn vma_span(&self) -> u64 {
        [self.vm_start, self.vm_end, self.vm_mm, self.vm_flags, self.vm_pgoff, self.vm_file, self.vm_ops]
            .into_iter()
            .chain([self.vm_private_data])
            .max()
            .unwrap_or(0)
            + 8
    }

    /// Bytes of `mm_struct` that hold every field the memory map reads.
    pub fn mm_span(&self) -> u64 {
        [self.mm_root, self.start_brk, self.brk, self.start_stack, self.context_flags.unwrap_or(0)]
            .into_iter()
            .max()
            .unwrap_or(0)
            + 8
    }

    pub(crate) fn resolve(p: &Profile) -> Result<MapsOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        Ok(MapsOffsets {
            mm_root: off("mm_struct", "mm_mt.ma_root")?,
            start_brk: off("mm_struct", "start_brk")?,
            brk: off("mm_struct", "brk")?,
            start_stack: off("mm_struct", "start_stack")?,
            context_flags: off("mm_struct", "context.flags").ok(),
            vm_start: off("vm_area_struct", "vm_start")?,
            vm_end: off("vm_area_struct", "vm_end")?,
            vm_mm: off("vm_area_struct", "vm_mm")?,
            vm_flags: off("vm_area_struct", "vm_flags")?,
            vm_pgoff: off("vm_area_struct", "vm_pgoff")?,
            vm_file: off("vm_area_struct", "vm_file")?,
            vm_ops: off("vm_area_struct", "vm_ops")?,
            vm_private_data: off("vm_area_struct", "vm_private_data")?,
            ops_name: off("vm_operations_struct", "name")?,
            special_name: off("vm_special_mapping", "name")?,
            vsyscall_none: p
                .types()
                .enum_containing("XONLY")
                .and_then(|e| p.enum_def(&e))
                .and_then(|e| e.values.into_iter().find(|(n, _)| n == "NONE").map(|(_, v)| v)),
            maple: MapleOffsets::resolve(p)?,
        })
    }
}

impl MapleOffsets {
    fn layout(p: &Profile, member: &str, ty: &str) -> Result<MapleNodeLayout> {
        let base = p.offset_of("maple_node", member)?;
        let pivot = p.field(ty, "pivot")?;
        let slot = p.field(ty, "slot")?;
        let count = |f: &TypeRef, what: &str| {
            array_len(f).filter(|&n| n > 0).ok_or_else(|| Error::layout(format!("{ty}.{what}"), "not an array"))
        };
        Ok(MapleNodeLayout {
            pivots: base + pivot.offset,
            pivot_count: count(&pivot.ty, "pivot")?,
            slots: base + slot.offset,
            slot_count: count(&slot.ty, "slot")?,
            meta_end: base + p.offset_of(ty, "meta.end")?,
        })
    }

    fn resolve(p: &Profile) -> Result<MapleOffsets> {
        let ty = |name: &str| super::enum_u64(p, name);
        let node_size = p.struct_size("maple_node")?;
        if !node_size.is_power_of_two() {
            return Err(Error::layout("maple_node", format!("size {node_size} is not a power of two")));
        }
        Ok(MapleOffsets {
            node_size,
            parent: p.offset_of("maple_range_64", "parent")? + p.offset_of("maple_node", "mr64")?,
            range64: Self::layout(p, "mr64", "maple_range_64")?,
            arange64: Self::layout(p, "ma64", "maple_arange_64")?,
            leaf64_type: ty("maple_leaf_64")?,
            range64_type: ty("maple_range_64")?,
            arange64_type: ty("maple_arange_64")?,
        })
    }
}
