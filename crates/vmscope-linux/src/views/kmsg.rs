//! The kernel log: the lockless printk ring buffer of Linux 5.10+ (`*prb`), read
//! the way the kernel's own readers read it.
//!
//! A descriptor ring (`descs` and the parallel `infos` array, `1 << count_bits`
//! entries) indexes a text data ring (`1 << size_bits` bytes). Descriptors from
//! `tail_id` to `head_id` are the records that may still exist; each descriptor's
//! `state_var` holds its id in the low bits (a mismatch: the slot was reused) and
//! its state in the top two; only finalized records are shown, as by `dmesg`.
//! A record's text block starts with the id that owns it, and lies between the
//! logical positions `begin` and `next`, wrapped onto the ring (a block that would
//! cross the end starts again at 0).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::{Anomaly, Bytes, Fields, plausible, with_struct};
use crate::kernel::Ctx;
use crate::offsets::PrintkOffsets;

/// `DESC_FLAGS_SHIFT` on 64-bit: the state sits in the top two bits of
/// `state_var`, the id below.
const DESC_FLAGS_SHIFT: u32 = 62;
const DESC_ID_MASK: u64 = (1 << DESC_FLAGS_SHIFT) - 1;
/// A data-less record's logical positions have bit 0 set (`BLK_DATALESS`): both
/// `FAILED_LPOS` (the text was lost) or both `NO_LPOS` (an empty text).
const LPOS_DATALESS: u64 = 1;
const FAILED_LPOS: u64 = 0x1;
/// The largest rings read: 2^22 descriptors, 2^27 bytes of text (128 MiB; the
/// largest `CONFIG_LOG_BUF_SHIFT` is 25). A larger ring is an anomaly.
const MAX_COUNT_BITS: u32 = 22;
const MAX_SIZE_BITS: u32 = 27;
/// `caller_id`: the CPU number with this bit set, else the task id.
const CALLER_CPU: u32 = 0x8000_0000;

/// One record of the kernel log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Sequence number (`/dev/kmsg` shows it).
    pub seq: u64,
    /// Time stamp, ns since boot (local clock).
    pub ts_nsec: u64,
    /// Syslog facility (0 for the kernel, 1 for `/dev/kmsg` writers by default).
    pub facility: u8,
    /// Log level (0 emergency … 7 debug).
    pub level: u8,
    /// Record flags (`LOG_NEWLINE`, `LOG_CONT`).
    pub flags: u8,
    /// Who logged it: `T<task id>` or `C<cpu>` (outside task context).
    pub caller: String,
    /// The text, without a trailing newline; lines of a multi-line record
    /// separated by `\n`.
    pub text: String,
    /// `SUBSYSTEM=` of a device's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    /// `DEVICE=` of a device's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// The kernel log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLog {
    /// Records, oldest first.
    pub records: Vec<LogRecord>,
    /// Whether the kernel prints time stamps (`printk.time`).
    pub printk_time: bool,
    /// Address of the ring buffer in use.
    pub ringbuffer: Gva,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

/// What [`format_log`] puts before each line of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogFormat {
    /// `<PRI>` (facility × 8 + level), as `dmesg -r` shows it.
    pub priority: bool,
    /// `[SECONDS.MICROS]`: what the kernel prints with `printk.time` on.
    pub time: bool,
    /// `[CALLER]` (`T<task>`, `C<cpu>`), as kernels built with
    /// `CONFIG_PRINTK_CALLER` print it.
    pub caller: bool,
}

impl LogFormat {
    /// The format of `dmesg -r` (`syslog(2)`): priority, and the time when the
    /// kernel prints it.
    pub fn raw(time: bool) -> Self {
        LogFormat { priority: true, time, caller: false }
    }
}

/// Records as the kernel formats them for `syslog(2)` (what `dmesg` reads): each
/// line of each record prefixed as `format` says, then a space when a time or a
/// caller was printed. With [`LogFormat::raw`] it is `dmesg -r`, byte for byte.
pub fn format_log(records: &[LogRecord], format: LogFormat) -> String {
    let mut out = String::with_capacity(records.len() * 80);
    let mut prefix = String::with_capacity(48);
    for r in records {
        prefix.clear();
        if format.priority {
            let _ = write!(prefix, "<{}>", (u32::from(r.facility) << 3) | u32::from(r.level));
        }
        if format.time {
            let _ = write!(prefix, "[{:5}.{:06}]", r.ts_nsec / 1_000_000_000, r.ts_nsec % 1_000_000_000 / 1000);
        }
        if format.caller {
            let _ = write!(prefix, "[{:>6}]", r.caller);
        }
        if format.time || format.caller {
            prefix.push(' ');
        }
        for line in r.text.split('\n') {
            out.push_str(&prefix);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn bits(b: &Bytes<'_>, bit: u64, width: u32) -> Option<u8> {
    let byte = b.uint(bit / 8, 1)?;
    Some(((byte >> (bit % 8)) & ((1u64 << width.min(8)) - 1)) as u8)
}

fn cstr(b: &Bytes<'_>, field: Option<(u64, u64)>) -> Option<String> {
    let (off, len) = field?;
    let s = b.cstr(off, len)?.unwrap_or_else(|all| all);
    (!s.is_empty()).then_some(s)
}

/// One of the descriptor ring's arrays: where, bytes per entry, entries.
#[derive(Clone, Copy)]
struct RingArray {
    base: Gva,
    size: u64,
    count: u64,
    what: &'static str,
}

/// The ring buffer's header fields.
struct Ring {
    count_bits: u32,
    descs: Gva,
    infos: Gva,
    head: u64,
    tail: u64,
    size_bits: u32,
    data: Gva,
}

impl<M: PhysMem> Ctx<'_, M> {
    fn ring(&self, po: &PrintkOffsets, rb: Gva, an: &mut Vec<Anomaly>) -> Option<Ring> {
        let ring = with_struct(self.k, rb, po.rb_size, "printk_ringbuffer", an, |b| {
            Some(Ring {
                count_bits: b.u32(po.count_bits)?,
                descs: b.ptr(po.descs)?,
                infos: b.ptr(po.infos)?,
                head: b.u64(po.head_id)? & DESC_ID_MASK,
                tail: b.u64(po.tail_id)? & DESC_ID_MASK,
                size_bits: b.u32(po.size_bits)?,
                data: b.ptr(po.data)?,
            })
        })??;
        let bad = |field: &str, value: String, an: &mut Vec<Anomaly>| {
            an.push(Anomaly::InvalidField { what: "printk_ringbuffer".into(), addr: rb, field: field.into(), value });
        };
        if ring.count_bits > MAX_COUNT_BITS {
            bad("desc_ring.count_bits", ring.count_bits.to_string(), an);
            return None;
        }
        if ring.size_bits > MAX_SIZE_BITS {
            bad("text_data_ring.size_bits", ring.size_bits.to_string(), an);
            return None;
        }
        for (what, p) in
            [("desc_ring.descs", ring.descs), ("desc_ring.infos", ring.infos), ("text_data_ring.data", ring.data)]
        {
            if !plausible(self.k, p, 8) {
                an.push(Anomaly::BadPointer { what: what.into(), at: rb, value: p });
                return None;
            }
        }
        Some(ring)
    }

    /// Reads entries `first..first + n` (indices, wrapping) of the ring `r`: one
    /// or two reads.
    fn ring_slice(&self, r: RingArray, first: u64, n: u64, an: &mut Vec<Anomaly>) -> Option<Vec<u8>> {
        let RingArray { base, size, count, what } = r;
        let first_run = n.min(count - first);
        let mut out = vec![0u8; (n * size) as usize];
        let (a, b) = out.split_at_mut((first_run * size) as usize);
        let start = base.checked_add(first * size)?;
        let read = self.k.read(start, a).and_then(|()| if b.is_empty() { Ok(()) } else { self.k.read(base, b) });
        match read {
            Ok(()) => Some(out),
            Err(e) => {
                an.push(Anomaly::Unreadable { what: what.into(), addr: start, error: e.to_string() });
                None
            }
        }
    }

    /// The kernel log. (The caller checked that the offsets and `prb` are there.)
    pub(crate) fn kernel_log(&self) -> KernelLog {
        let mut log = KernelLog::default();
        let (Some(po), Some(prb)) = (self.o.printk.as_ref(), self.addrs.known.prb) else { return log };
        let an = &mut log.anomalies;
        log.printk_time = self.addrs.known.printk_time.is_none_or(|at| self.k.read_vec(at, 1).is_ok_and(|b| b[0] != 0));
        let rb = match self.k.read_ptr(prb) {
            Ok(p) if plausible(self.k, p, 8) => p,
            Ok(p) => {
                an.push(Anomaly::BadPointer { what: "prb".into(), at: prb, value: p });
                return log;
            }
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "prb".into(), addr: prb, error: e.to_string() });
                return log;
            }
        };
        log.ringbuffer = rb;
        let Some(ring) = self.ring(po, rb, an) else { return log };
        let count = 1u64 << ring.count_bits;
        let size = 1u64 << ring.size_bits;
        let mut n = (ring.head.wrapping_sub(ring.tail) & DESC_ID_MASK) + 1;
        if n > count {
            an.push(Anomaly::InvalidField {
                what: "printk_ringbuffer".into(),
                addr: rb,
                field: "desc_ring.tail_id..head_id".into(),
                value: format!("{} descriptors, the ring has {count}", n),
            });
            n = count;
        }
        let first_id = ring.head.wrapping_sub(n - 1) & DESC_ID_MASK;
        let first = first_id & (count - 1);
        let descs = RingArray { base: ring.descs, size: po.desc_size, count, what: "prb descriptors" };
        let infos = RingArray { base: ring.infos, size: po.info_size, count, what: "prb infos" };
        let Some(descs) = self.ring_slice(descs, first, n, an) else {
            return log;
        };
        let Some(infos) = self.ring_slice(infos, first, n, an) else {
            return log;
        };
        let text = match self.k.read_vec(ring.data, size as usize) {
            Ok(t) => t,
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "prb text data".into(), addr: ring.data, error: e.to_string() });
                return log;
            }
        };
        let (descs, text) = (Bytes(&descs), Bytes(&text));
        for i in 0..n {
            if self.meter.exhausted(self.k) {
                break;
            }
            let id = first_id.wrapping_add(i) & DESC_ID_MASK;
            let d = i * po.desc_size;
            let (Some(sv), Some(begin), Some(next)) =
                (descs.u64(d + po.state_var), descs.u64(d + po.lpos_begin), descs.u64(d + po.lpos_next))
            else {
                break;
            };
            // Another id: the slot was reused since (or is being). A state other than
            // finalized: not yet (or no longer) readable.
            if sv & DESC_ID_MASK != id || sv >> DESC_FLAGS_SHIFT != po.finalized {
                continue;
            }
            let info_bytes = &infos[(i * po.info_size) as usize..((i + 1) * po.info_size) as usize];
            let info = Bytes(info_bytes);
            let (Some(seq), Some(ts_nsec), Some(text_len)) =
                (info.u64(po.seq), info.u64(po.ts_nsec), info.uint(po.text_len, 2))
            else {
                continue;
            };
            if begin == FAILED_LPOS && next == FAILED_LPOS {
                continue; // lost: dmesg skips it too
            }
            let body = if begin & LPOS_DATALESS != 0 || text_len == 0 {
                Some(String::new())
            } else {
                self.record_text(&text, size, ring.size_bits, id, begin, next, text_len)
            };
            let Some(body) = body else {
                an.push(Anomaly::InvalidField {
                    what: "prb_desc".into(),
                    addr: ring.descs.checked_add(((first + i) & (count - 1)) * po.desc_size).unwrap_or(ring.descs),
                    field: "text_blk_lpos".into(),
                    value: format!("{begin:#x}..{next:#x} for {text_len} bytes of record {seq}"),
                });
                continue;
            };
            let caller_id = info.u32(po.caller_id).unwrap_or(0);
            log.records.push(LogRecord {
                seq,
                ts_nsec,
                facility: info.uint(po.facility, 1).unwrap_or(0) as u8,
                level: bits(&info, po.level_bit, po.level_bits).unwrap_or(0),
                flags: bits(&info, po.flags_bit, po.flags_bits).unwrap_or(0),
                caller: if caller_id & CALLER_CPU != 0 {
                    format!("C{}", caller_id & !CALLER_CPU)
                } else {
                    format!("T{caller_id}")
                },
                text: body,
                subsystem: cstr(&info, po.subsystem),
                device: cstr(&info, po.device),
            });
        }
        log
    }

    /// The text of record `id` in the data ring (`get_data`), checked: aligned
    /// positions, the block owned by `id`, room for `text_len` bytes.
    #[allow(clippy::too_many_arguments)]
    fn record_text(
        &self,
        text: &Bytes<'_>,
        size: u64,
        size_bits: u32,
        id: u64,
        begin: u64,
        next: u64,
        text_len: u64,
    ) -> Option<String> {
        let wraps = |lpos: u64| lpos >> size_bits;
        let index = |lpos: u64| lpos & (size - 1);
        let (start, len) = if wraps(begin) == wraps(next) && begin < next {
            (index(begin), next.checked_sub(begin)?)
        } else if wraps(begin.wrapping_add(size)) == wraps(next) {
            (0, index(next))
        } else {
            return None;
        };
        if !begin.is_multiple_of(8) || !next.is_multiple_of(8) || len < 8 || len - 8 < text_len {
            return None;
        }
        if text.u64(start)? & DESC_ID_MASK != id & DESC_ID_MASK {
            return None;
        }
        let from = usize::try_from(start + 8).ok()?;
        let bytes = text.0.get(from..from.checked_add(usize::try_from(text_len).ok()?)?)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::Limits;
    use crate::views::fixture::Fx;
    use crate::views::fixture::deep::{COMMITTED, RecordSpec};

    fn records() -> Vec<RecordSpec> {
        vec![
            RecordSpec::new("Linux version 0.0.0-fixture"),
            RecordSpec {
                level: 5,
                facility: 1,
                caller: 321,
                ..RecordSpec::new("vmscope-marker: hello from user space")
            },
            RecordSpec::new(""),
            RecordSpec { caller: 0x8000_0001, ..RecordSpec::new("two\nlines") },
            // This one's text reaches the end of the text ring: stored at its start.
            RecordSpec::new("a record long enough that its block wraps round to the start of the ring"),
            RecordSpec::new("after the wrap"),
            RecordSpec { state: COMMITTED, ..RecordSpec::new("still being written") },
        ]
    }

    #[test]
    fn the_log_as_dmesg_shows_it() {
        let mut fx = Fx::new();
        fx.log(&records());
        let (k, addrs) = fx.finish();
        let log = fx.ctx(&k, &addrs, Limits::default()).kernel_log();
        assert!(log.anomalies.is_empty(), "{:?}", log.anomalies);
        assert!(log.printk_time);
        let seqs: Vec<u64> = log.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [100, 101, 102, 103, 104, 105], "the committed record is not shown yet");
        assert_eq!(log.records[1].caller, "T321");
        assert_eq!(log.records[3].caller, "C1");
        let want = "<6>[    1.623456] Linux version 0.0.0-fixture\n\
                    <13>[    3.123456] vmscope-marker: hello from user space\n\
                    <6>[    4.623456] \n\
                    <6>[    6.123456] two\n\
                    <6>[    6.123456] lines\n\
                    <6>[    7.623456] a record long enough that its block wraps round to the start of the ring\n\
                    <6>[    9.123456] after the wrap\n";
        assert_eq!(format_log(&log.records, LogFormat::raw(true)), want);
        let with_caller = format_log(&log.records[3..4], LogFormat { caller: true, ..LogFormat::raw(true) });
        assert_eq!(with_caller, "<6>[    6.123456][    C1] two\n<6>[    6.123456][    C1] lines\n");
        assert_eq!(format_log(&log.records[..1], LogFormat::raw(false)), "<6>Linux version 0.0.0-fixture\n");
        let plain = LogFormat { time: true, ..LogFormat::default() };
        assert_eq!(format_log(&log.records[..1], plain), "[    1.623456] Linux version 0.0.0-fixture\n");
    }

    #[test]
    fn a_block_owned_by_another_record_is_an_anomaly() {
        let mut fx = Fx::new();
        fx.log(&records());
        let rb = fx.r64(fx.deep.prb);
        let data = fx.r64(rb + 56);
        fx.w64(data + 400, 99); // the first record's block now claims id 99
        let (k, addrs) = fx.finish();
        let log = fx.ctx(&k, &addrs, Limits::default()).kernel_log();
        assert!(
            matches!(log.anomalies.as_slice(), [Anomaly::InvalidField { field, .. }] if field == "text_blk_lpos"),
            "{:?}",
            log.anomalies
        );
        assert_eq!(log.records.len(), 5);
    }

    #[test]
    fn an_impossible_ring_is_an_anomaly() {
        let mut fx = Fx::new();
        fx.log(&records());
        let rb = fx.r64(fx.deep.prb);
        fx.w32(rb, 40); // count_bits
        let (k, addrs) = fx.finish();
        let log = fx.ctx(&k, &addrs, Limits::default()).kernel_log();
        assert!(log.records.is_empty());
        assert!(
            matches!(log.anomalies.as_slice(), [Anomaly::InvalidField { field, .. }] if field == "desc_ring.count_bits")
        );
    }
}
