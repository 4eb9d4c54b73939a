//! The lockless printk ring buffer (Linux 5.10+): `struct printk_ringbuffer`, its
//! descriptor ring (`prb_desc`, `printk_info`) and its text data ring.

use serde::{Deserialize, Serialize};

use crate::{Profile, Result};

/// Offsets of the printk ring buffer's structures, and `enum desc_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PrintkOffsets {
    /// In `struct printk_ringbuffer`: `desc_ring.count_bits`, `.descs`, `.infos`,
    /// `.head_id`, `.tail_id`; `text_data_ring.size_bits`, `.data`.
    pub count_bits: u64,
    pub descs: u64,
    pub infos: u64,
    pub head_id: u64,
    pub tail_id: u64,
    pub size_bits: u64,
    pub data: u64,
    /// Bytes of the ring buffer struct.
    pub rb_size: u64,
    /// `struct prb_desc`: size, `state_var`, `text_blk_lpos.begin`, `.next`.
    pub desc_size: u64,
    pub state_var: u64,
    pub lpos_begin: u64,
    pub lpos_next: u64,
    /// `struct printk_info`: size, `seq`, `ts_nsec`, `text_len` (`u16`),
    /// `facility` (`u8`), `caller_id` (`u32`).
    pub info_size: u64,
    pub seq: u64,
    pub ts_nsec: u64,
    pub text_len: u64,
    pub facility: u64,
    pub caller_id: u64,
    /// The `flags` and `level` bitfields: bit offset from the start of the info,
    /// and width.
    pub flags_bit: u64,
    pub flags_bits: u32,
    pub level_bit: u64,
    pub level_bits: u32,
    /// `dev_info.subsystem` and `dev_info.device` (arrays) and their lengths.
    pub subsystem: Option<(u64, u64)>,
    pub device: Option<(u64, u64)>,
    /// `desc_finalized`: the state of a record readers see.
    pub finalized: u64,
}

impl PrintkOffsets {
    pub(crate) fn resolve(p: &Profile) -> Result<PrintkOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        let bits = |f: &str| -> Result<(u64, u32)> {
            let fi = p.field("printk_info", f)?;
            Ok((fi.bit_offset, fi.bit_size.unwrap_or(8)))
        };
        let array = |f: &str| -> Option<(u64, u64)> {
            let fi = p.field("printk_info", f).ok()?;
            Some((fi.offset, super::array_len(&fi.ty)?))
        };
        let (flags_bit, flags_bits) = bits("flags")?;
        let (level_bit, level_bits) = bits("level")?;
        Ok(PrintkOffsets {
            count_bits: off("printk_ringbuffer", "desc_ring.count_bits")?,
            descs: off("printk_ringbuffer", "desc_ring.descs")?,
            infos: off("printk_ringbuffer", "desc_ring.infos")?,
            head_id: off("printk_ringbuffer", "desc_ring.head_id")?,
            tail_id: off("printk_ringbuffer", "desc_ring.tail_id")?,
            size_bits: off("printk_ringbuffer", "text_data_ring.size_bits")?,
            data: off("printk_ringbuffer", "text_data_ring.data")?,
            rb_size: p.struct_size("printk_ringbuffer")?,
            desc_size: p.struct_size("prb_desc")?,
            state_var: off("prb_desc", "state_var")?,
            lpos_begin: off("prb_desc", "text_blk_lpos.begin")?,
            lpos_next: off("prb_desc", "text_blk_lpos.next")?,
            info_size: p.struct_size("printk_info")?,
            seq: off("printk_info", "seq")?,
            ts_nsec: off("printk_info", "ts_nsec")?,
            text_len: off("printk_info", "text_len")?,
            facility: off("printk_info", "facility")?,
            caller_id: off("printk_info", "caller_id")?,
            flags_bit,
            flags_bits,
            level_bit,
            level_bits,
            subsystem: array("dev_info.subsystem"),
            device: array("dev_info.device"),
            finalized: super::enum_u64(p, "desc_finalized")?,
        })
    }
}
