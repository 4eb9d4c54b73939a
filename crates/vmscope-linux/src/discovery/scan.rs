//! Finding the kallsyms tables in guest-physical memory, cheapest evidence first:
//! the kernel mapping under a CR3 the hypervisor gave, the start of `.rodata` (a
//! 2 MiB-aligned page that begins with the banner), and last a scan of all RAM.

use vmscope_mem::{Gpa, Gva, PhysMem, ReadOp};
use vmscope_x86::{AddressSpace, PagingMode, Root};

use super::{Evidence, Hints, LARGE_PAGE, START_KERNEL_MAP};
use crate::kallsyms::{self, DIGITS, Kallsyms, MAX_BACK};
use crate::{Error, Result};

/// The windows read around a token-table candidate, (back, ahead): a small one
/// that holds the tables of kernels with up to ~250k symbols, then the largest
/// the tables can span (names, markers and seqs before the token table; offsets
/// and seqs after it from 6.4 on).
const WINDOWS: [(u64, u64); 2] = [(4 << 20, 4 << 20), (MAX_BACK as u64, 12 << 20)];
/// Scanning chunk.
const CHUNK: u64 = 8 << 20;
/// The most of the kernel image searched forward from where it starts.
const IMAGE_SPAN: u64 = 96 << 20;
const BANNER: &[u8] = b"Linux version ";

/// Reads `[start, start+len)` clipped to the RAM region holding `start`.
fn read_clipped<M: PhysMem + ?Sized>(mem: &M, start: Gpa, len: u64) -> Result<(Gpa, Vec<u8>)> {
    let map = mem.memory_map();
    let r = map.region_of(start).ok_or(Error::phys(start, vmscope_mem::Error::Unbacked { gpa: start }))?;
    let len = len.min(r.end() - start.raw());
    let mut buf = vec![0u8; len as usize];
    mem.read(start, &mut buf).map_err(|e| Error::phys(start, e))?;
    Ok((start, buf))
}

/// Tries to decode kallsyms around the token-table candidate at `anchor`.
fn around_anchor<M: PhysMem + ?Sized>(mem: &M, anchor: Gpa) -> Option<Kallsyms> {
    let region = mem.memory_map().region_of(anchor)?;
    for (back, ahead) in WINDOWS {
        let start = anchor.raw().saturating_sub(back).max(region.gpa.raw()) & !0xfff;
        let start = start.max(region.gpa.raw().next_multiple_of(8));
        let Ok((base, w)) = read_clipped(mem, Gpa::new(start), anchor.raw() - start + ahead) else {
            continue;
        };
        if let Ok(k) = kallsyms::decode_window(&w, base) {
            return Some(k);
        }
    }
    None
}

/// Searches `[start, start+len)` (one region) chunk by chunk for a token table
/// that decodes.
fn search_range<M: PhysMem + ?Sized>(mem: &M, start: Gpa, len: u64, tried: &mut Vec<u64>) -> Option<Kallsyms> {
    let mut at = start.raw();
    let end = start.raw().saturating_add(len);
    while at < end {
        let n = (end - at).min(CHUNK + DIGITS.len() as u64);
        let Ok((base, buf)) = read_clipped(mem, Gpa::new(at), n) else {
            return None;
        };
        for hit in memchr::memmem::find_iter(&buf, DIGITS) {
            let anchor = base.raw() + hit as u64;
            // A window around one anchor covers its neighbours too.
            if tried.iter().any(|&t| anchor.abs_diff(t) < 64 << 10) {
                continue;
            }
            tried.push(anchor);
            if let Some(k) = around_anchor(mem, Gpa::new(anchor)) {
                return Some(k);
            }
        }
        if buf.len() as u64 <= DIGITS.len() as u64 {
            break;
        }
        at = base.raw() + buf.len() as u64 - DIGITS.len() as u64;
    }
    None
}

/// With a CR3: the guest-physical start of the 2 MiB page holding LSTAR's target,
/// or else of the lowest mapped 2 MiB page of the kernel text mapping
/// (`__START_KERNEL_map` + 0..1 GiB), under each mode CR4 allows.
fn image_start_from_cr3<M: PhysMem + ?Sized>(mem: &M, hints: &Hints) -> Option<(Gpa, PagingMode)> {
    let cr3 = hints.cr3?;
    let modes = match hints.cr4 {
        Some(cr4) => vec![PagingMode::from_cr4(cr4)],
        None => vec![PagingMode::Level4, PagingMode::Level5],
    };
    // LSTAR points into kernel text: one translation finds it. Otherwise probe
    // every 2 MiB of the kernel text mapping in one batch.
    let vas: Vec<Gva> = match hints.lstar {
        Some(l) => vec![l],
        None => (0..512u64).map(|i| Gva::new(START_KERNEL_MAP.raw() + i * LARGE_PAGE)).collect(),
    };
    for mode in modes {
        // Under PTI, CR3 may be the user half; its kernel half maps the kernel.
        let space = AddressSpace::new(Root::from_cr3(cr3).pti_kernel(), mode);
        let mut out = Vec::new();
        space.translate_batch(mem, &vas, &mut out);
        if let Some(t) = out.iter().flatten().next() {
            return Some((t.gpa.page_base(LARGE_PAGE), mode));
        }
    }
    None
}

/// Every 2 MiB-aligned page of RAM whose first 4 KiB hold a kernel banner: the
/// start of `.rodata`, which x86-64 aligns to 2 MiB and which opens with a copy of
/// the banner. One batched read of 4 KiB per 2 MiB of RAM.
fn banner_pages<M: PhysMem + ?Sized>(mem: &M) -> Vec<Gpa> {
    let mut pages = Vec::new();
    for r in mem.memory_map().regions() {
        let mut p = r.gpa.raw().next_multiple_of(LARGE_PAGE);
        while p + 0x1000 <= r.end() {
            pages.push(Gpa::new(p));
            p += LARGE_PAGE;
        }
    }
    let mut bufs = vec![[0u8; 0x1000]; pages.len()];
    let mut ops: Vec<ReadOp<'_>> = pages.iter().zip(bufs.iter_mut()).map(|(&g, b)| ReadOp::new(g, b)).collect();
    let mut results = Vec::new();
    mem.read_each(&mut ops, &mut results);
    drop(ops);
    pages
        .into_iter()
        .zip(bufs.iter())
        .zip(results)
        .filter(|((_, b), r)| r.is_ok() && memchr::memmem::find(&b[..], BANNER).is_some())
        .map(|((g, _), _)| g)
        .collect()
}

/// Finds and decodes kallsyms, recording the evidence that led there.
pub(super) fn find_kallsyms<M: PhysMem + ?Sized>(
    mem: &M,
    hints: &Hints,
    evidence: &mut Vec<Evidence>,
) -> Result<Kallsyms> {
    let mut tried = Vec::new();
    if let Some((start, mode)) = image_start_from_cr3(mem, hints)
        && let Some(k) = search_range(mem, start, IMAGE_SPAN, &mut tried)
    {
        evidence.push(Evidence::Cr3KernelMapping { image_start: start, mode });
        return Ok(k);
    }
    for page in banner_pages(mem) {
        if let Some(k) = search_range(mem, page, IMAGE_SPAN, &mut tried) {
            evidence.push(Evidence::RodataBanner { rodata: page });
            return Ok(k);
        }
    }
    let mut scanned = 0;
    for r in mem.memory_map().regions().to_vec() {
        scanned += r.size;
        if let Some(k) = search_range(mem, r.gpa, r.size, &mut tried) {
            evidence.push(Evidence::FullScan { bytes: scanned });
            return Ok(k);
        }
    }
    Err(Error::KernelNotFound(format!(
        "no kallsyms tables in {} bytes of RAM ({} token-table candidates tried){}",
        scanned,
        tried.len(),
        if hints.cr3.is_some() { "; the CR3 given maps no kernel image" } else { "" }
    )))
}
