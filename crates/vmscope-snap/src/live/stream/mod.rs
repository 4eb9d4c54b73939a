//! A reader of QEMU 7.2's migration stream (`migration/savevm.c`, `migration/ram.c`)
//! that keeps only guest RAM.
//!
//! ```text
//! be32 "QEVM" | be32 3
//! [0x07 CONFIGURATION: be32 len, machine name, subsections (0x05 len name be32 version fields)]
//! sections: 0x01 START / 0x04 FULL: be32 id, u8 len, idstr, be32 instance, be32 version, data
//!           0x02 PART / 0x03 END:   be32 id, data
//!           0x7e FOOTER: be32 id    0x08 COMMAND: be16 cmd, be16 len, data    0x00 EOF
//! "ram" data: be64 (offset | flags) records until EOS (0x10):
//!   MEM_SIZE 0x04: offset = total bytes; then per block: u8 len, idstr, be64 used_length
//!   ZERO 0x02: u8 fill   PAGE 0x08: 4096 bytes   (unless CONTINUE 0x20: u8 len, idstr first)
//! ```
//!
//! RAM sections come first (QEMU's background snapshot and plain pre-copy both send
//! device state after the last RAM section; the background snapshot sends no END
//! section, its RAM ends where the first FULL section begins); device sections, whose layout only
//! QEMU's vmstate descriptions know, are skipped to the end of the stream. The
//! reader is bounded: it allocates by the caller's memory map, not by anything the
//! stream says, and a malformed stream is an [`Error::Malformed`].

use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;

use vmscope_mem::MemoryMap;

use crate::buf::{AnonBuf, is_zero};
use crate::copy::merge_ranges;
use crate::snapshot::{DumpMeta, Snapshot};
use crate::{Error, Result};

const MAGIC: u32 = 0x5145_564d;
const VERSION: u32 = 3;
const PAGE: u64 = 4096;

const SEC_EOF: u8 = 0x00;
const SEC_START: u8 = 0x01;
const SEC_PART: u8 = 0x02;
const SEC_END: u8 = 0x03;
const SEC_FULL: u8 = 0x04;
const SUBSECTION: u8 = 0x05;
const VMDESCRIPTION: u8 = 0x06;
const CONFIGURATION: u8 = 0x07;
const COMMAND: u8 = 0x08;
const FOOTER: u8 = 0x7e;

const F_ZERO: u64 = 0x02;
const F_MEM_SIZE: u64 = 0x04;
const F_PAGE: u64 = 0x08;
const F_EOS: u64 = 0x10;
const F_CONTINUE: u64 = 0x20;
const F_XBZRLE: u64 = 0x40;
const F_HOOK: u64 = 0x80;
const F_COMPRESS: u64 = 0x100;

/// What the stream held besides the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// The machine type from the configuration section (`pc-q35-7.2`).
    pub machine: String,
    /// RAM blocks announced by the stream: (idstr, length).
    pub blocks: Vec<(String, u64)>,
    /// The block taken as guest RAM.
    pub ram_block: String,
    /// Pages sent in full (`RAM_SAVE_FLAG_PAGE`) for the RAM block.
    pub pages: u64,
    /// Pages sent as zero (`RAM_SAVE_FLAG_ZERO`) for the RAM block.
    pub zero_pages: u64,
    /// Bytes read from the stream.
    pub bytes: u64,
}

struct In<R> {
    r: R,
    pos: u64,
    peeked: Option<u8>,
}

impl<R: Read> In<R> {
    fn bad(&self, why: impl Into<String>) -> Error {
        Error::Malformed {
            path: PathBuf::from("<migration stream>"),
            format: "migration stream",
            offset: self.pos,
            why: why.into(),
        }
    }
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut b = buf;
        if let (Some(p), Some(first)) = (self.peeked, b.first_mut()) {
            *first = p;
            self.peeked = None;
            self.pos += 1;
            b = &mut b[1..];
        }
        match self.r.read_exact(b) {
            Ok(()) => {
                self.pos += b.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.bad("the stream ends early")),
            Err(e) => Err(Error::io("reading the migration stream", e)),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.fill(&mut b)?;
        Ok(b[0])
    }
    fn peek(&mut self) -> Result<u8> {
        let b = self.u8()?;
        self.pos -= 1;
        self.peeked = Some(b);
        Ok(b)
    }
    fn be16(&mut self) -> Result<u16> {
        let mut b = [0u8; 2];
        self.fill(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }
    fn be32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }
    fn be64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut b = [0u8; 4096];
        while n > 0 {
            let k = n.min(b.len() as u64) as usize;
            self.fill(&mut b[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
    /// A u8-length-prefixed string.
    fn idstr(&mut self) -> Result<String> {
        let n = self.u8()? as usize;
        let mut b = vec![0u8; n];
        self.fill(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    /// Reads to the end, returning how many bytes were left.
    fn drain(&mut self) -> Result<u64> {
        let n = std::io::copy(&mut (&mut self.r), &mut std::io::sink())
            .map_err(|e| Error::io("draining the migration stream", e))?;
        self.pos += n + u64::from(self.peeked.take().is_some());
        Ok(n)
    }
}

/// The RAM section's state while parsing.
struct Ram {
    buf: AnonBuf,
    /// Pages of the RAM block that hold (non-zero) data.
    present: Vec<u64>,
    blocks: Vec<(String, u64)>,
    ram_block: Option<String>,
    /// The block the last page record named (for CONTINUE).
    current: Option<String>,
    want_name: Option<String>,
    pages: u64,
    zero_pages: u64,
}

impl Ram {
    fn mark(&mut self, page: u64, on: bool) {
        let (w, bit) = ((page / 64) as usize, page % 64);
        if let Some(x) = self.present.get_mut(w) {
            if on {
                *x |= 1 << bit;
            } else {
                *x &= !(1 << bit);
            }
        }
    }

    fn extents(&self) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        for (w, &x) in self.present.iter().enumerate() {
            if x == 0 {
                continue;
            }
            for bit in 0..64 {
                if x & (1 << bit) != 0 {
                    let a = (w as u64 * 64 + bit) * PAGE;
                    out.push(a..a + PAGE);
                }
            }
        }
        merge_ranges(out)
    }

    /// Parses RAM records up to and including EOS.
    fn section<R: Read>(&mut self, s: &mut In<R>) -> Result<()> {
        loop {
            let v = s.be64()?;
            let (flags, addr) = (v & (PAGE - 1), v & !(PAGE - 1));
            if flags & (F_ZERO | F_PAGE | F_COMPRESS | F_XBZRLE) != 0 && flags & F_CONTINUE == 0 {
                self.current = Some(s.idstr()?);
            }
            match flags & !F_CONTINUE {
                F_MEM_SIZE => self.mem_size(s, addr)?,
                F_ZERO => {
                    let fill = s.u8()?;
                    self.page(s, addr, Some(fill))?;
                }
                F_PAGE => self.page(s, addr, None)?,
                F_EOS => return Ok(()),
                f if f & (F_COMPRESS | F_XBZRLE | F_HOOK) != 0 => {
                    return Err(s.bad(format!("RAM flags {f:#x}: compression, XBZRLE and RDMA are not supported")));
                }
                f => return Err(s.bad(format!("unknown RAM flags {f:#x}"))),
            }
        }
    }

    fn mem_size<R: Read>(&mut self, s: &mut In<R>, total: u64) -> Result<()> {
        let mut left = total;
        while left > 0 {
            let id = s.idstr()?;
            let len = s.be64()?;
            left =
                left.checked_sub(len).ok_or_else(|| s.bad(format!("block {id} of {len:#x} bytes exceeds MEM_SIZE")))?;
            if len == 0 {
                return Err(s.bad(format!("block {id} is empty")));
            }
            if self.blocks.len() >= 4096 {
                return Err(s.bad("too many RAM blocks"));
            }
            self.blocks.push((id, len));
        }
        let pick = self
            .want_name
            .as_ref()
            .and_then(|w| self.blocks.iter().find(|(n, _)| n == w))
            .or_else(|| self.blocks.iter().max_by_key(|(_, l)| *l));
        self.ram_block = pick.map(|(n, _)| n.clone());
        Ok(())
    }

    fn page<R: Read>(&mut self, s: &mut In<R>, addr: u64, zero_fill: Option<u8>) -> Result<()> {
        let Some(cur) = self.current.as_deref() else {
            return Err(s.bad("page record before any block name"));
        };
        let Some(len) = self.blocks.iter().find(|(n, _)| n == cur).map(|(_, l)| *l) else {
            return Err(s.bad(format!("page of unknown block {cur:?}")));
        };
        if addr.checked_add(PAGE).is_none_or(|e| e > len.next_multiple_of(PAGE)) {
            return Err(s.bad(format!("page {addr:#x} is outside block {cur} ({len:#x} bytes)")));
        }
        let ours = self.ram_block.as_deref() == Some(cur);
        let dst = usize::try_from(addr).ok().and_then(|a| self.buf.as_mut_slice().get_mut(a..a + PAGE as usize));
        match (zero_fill, ours, dst) {
            (None, true, Some(d)) => {
                s.fill(d)?;
                self.pages += 1;
                self.mark(addr / PAGE, true);
            }
            (None, _, _) => s.skip(PAGE)?, // another block, or past the memory map
            (Some(fill), true, Some(d)) => {
                self.zero_pages += 1;
                if fill != 0 || !is_zero(d) {
                    d.fill(fill);
                }
                self.mark(addr / PAGE, fill != 0);
            }
            (Some(_), _, _) => {}
        }
        Ok(())
    }
}

/// Parses a migration stream into a snapshot of the RAM block that backs `map`
/// (the block named like `map`'s first region, else the largest block; its offsets
/// are `map`'s backing offsets). Device state is read and dropped.
pub fn parse_stream<R: Read>(reader: R, map: &MemoryMap) -> Result<(Snapshot, StreamInfo)> {
    let mut s = In { r: reader, pos: 0, peeked: None };
    let (magic, version) = (s.be32()?, s.be32()?);
    if magic != MAGIC {
        return Err(s.bad(format!("magic {magic:#010x} is not QEVM")));
    }
    if version != VERSION {
        return Err(s.bad(format!("stream version {version}, only {VERSION} is read")));
    }
    let pages = map.backing_size().div_ceil(PAGE);
    let mut ram = Ram {
        buf: AnonBuf::zeroed(map.backing_size())?,
        present: vec![0u64; pages.div_ceil(64) as usize],
        blocks: Vec::new(),
        ram_block: None,
        current: None,
        want_name: map.regions().first().map(|r| r.name.clone()),
        pages: 0,
        zero_pages: 0,
    };
    let mut info = StreamInfo::default();
    let mut ram_id: Option<u32> = None;
    let mut ram_done = false;
    loop {
        let t = match s.u8() {
            Ok(t) => t,
            Err(Error::Malformed { .. }) if ram_done => break, // the stream ended after RAM
            Err(e) => return Err(e),
        };
        match t {
            CONFIGURATION => info.machine = configuration(&mut s)?,
            SEC_START | SEC_FULL => {
                let id = s.be32()?;
                let name = s.idstr()?;
                let (_instance, _version) = (s.be32()?, s.be32()?);
                if name == "ram" && t == SEC_START {
                    ram_id = Some(id);
                    ram.section(&mut s)?;
                } else if ram_id.is_some() && (ram_done || t == SEC_FULL) {
                    // Device state (vmstate, not self-describing): RAM is complete.
                    // (A background snapshot sends no END section for RAM.)
                    ram_done = true;
                    s.drain()?;
                    break;
                } else {
                    return Err(s.bad(format!("iterable section {name:?} is not supported (only \"ram\")")));
                }
            }
            SEC_PART | SEC_END => {
                let id = s.be32()?;
                if Some(id) != ram_id {
                    return Err(s.bad(format!("section {id} continues, but only RAM ({ram_id:?}) is known")));
                }
                ram.section(&mut s)?;
                ram_done |= t == SEC_END;
            }
            FOOTER => {
                s.be32()?;
            }
            COMMAND => {
                let (_cmd, len) = (s.be16()?, s.be16()?);
                s.skip(u64::from(len))?;
            }
            SEC_EOF | VMDESCRIPTION => {
                s.drain()?;
                break;
            }
            other => return Err(s.bad(format!("unknown section type {other:#04x}"))),
        }
    }
    if !ram_done {
        return Err(s.bad("the stream has no complete RAM section"));
    }
    info.blocks = ram.blocks.clone();
    info.ram_block = ram.ram_block.clone().unwrap_or_default();
    info.pages = ram.pages;
    info.zero_pages = ram.zero_pages;
    info.bytes = s.pos;
    let extents = ram.extents();
    Ok((Snapshot::new(ram.buf, map.clone(), extents, DumpMeta::default()), info))
}

/// The configuration section: machine name and known subsections.
fn configuration<R: Read>(s: &mut In<R>) -> Result<String> {
    let len = s.be32()?;
    if len > 256 {
        return Err(s.bad(format!("machine name of {len} bytes")));
    }
    let mut name = vec![0u8; len as usize];
    s.fill(&mut name)?;
    while s.peek()? == SUBSECTION {
        s.u8()?;
        let sub = s.idstr()?;
        let _version = s.be32()?;
        match sub.as_str() {
            "configuration/target-page-bits" => {
                let bits = s.be32()?;
                if bits != 12 {
                    return Err(s.bad(format!("target page bits {bits}, only 4 KiB pages are read")));
                }
            }
            "configuration/capabilities" => {
                let n = s.be32()?;
                if n > 256 {
                    return Err(s.bad(format!("{n} capabilities")));
                }
                for _ in 0..n {
                    s.idstr()?;
                }
            }
            "configuration/uuid" => s.skip(16)?,
            other => return Err(s.bad(format!("unknown configuration subsection {other:?}"))),
        }
    }
    Ok(String::from_utf8_lossy(&name).into_owned())
}

#[cfg(test)]
mod tests;
