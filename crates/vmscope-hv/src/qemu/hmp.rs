//! Parsers for the human-monitor output QMP does not offer in structured form:
//! `info mtree -f` (the guest-physical memory map) and `info registers`.

use vmscope_mem::{Gpa, MemoryMap, Region};

use crate::{Error, Result, VcpuRegisters};

/// One `START-END (prio P, KIND): NAME [@OFFSET]` line of a flat view.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlatRange {
    start: u64,
    end: u64,
    kind: String,
    name: String,
    offset: u64,
}

/// The guest RAM map from `info mtree -f`: the ranges of the flat view of address
/// space "memory" that are backed by the RAM region `ram_name` (the memory-backend id,
/// or `pc.ram`), with their offsets in that region. With `ram_name` `None`, the RAM or
/// ROM region covering the most guest-physical space is taken.
///
/// Adjacent ranges that continue each other both in GPA and in offset are merged (q35
/// splits low RAM at the PAM windows into read-only and read-write pieces of the same
/// backend).
pub fn parse_mtree_flat(text: &str, ram_name: Option<&str>) -> Result<MemoryMap> {
    let name = match ram_name {
        Some(n) => n.to_owned(),
        None => largest_ram(&memory_flat_view(text)?)
            .ok_or_else(|| Error::Protocol("info mtree -f shows no RAM in AS \"memory\"".into()))?,
    };
    // As one block of unknown size: its offsets are the offsets in the region.
    Ok(parse_mtree_blocks(text, &[(name, u64::MAX)])?.0)
}

/// A RAM block as [`parse_mtree_blocks`] lays it out: its place in the backing space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpan {
    /// The block's name (memory-backend id, `pc.ram`).
    pub name: String,
    /// Its first byte in the backing space.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// The guest RAM map from `info mtree -f` over several RAM blocks: every range of the
/// flat view of address space "memory" backed by one of `blocks` (name, size: the
/// memory backends of `query-memdev`). The blocks are laid out one after another in
/// the backing space, in the order of the lowest guest-physical address each backs,
/// so that a single-block guest's offsets are the offsets in its block. Blocks no
/// range maps are left out.
pub fn parse_mtree_blocks(text: &str, blocks: &[(String, u64)]) -> Result<(MemoryMap, Vec<BlockSpan>)> {
    let ranges = memory_flat_view(text)?;
    let ram: Vec<&FlatRange> = ranges
        .iter()
        .filter(|r| (r.kind == "ram" || r.kind == "rom") && blocks.iter().any(|(n, _)| *n == r.name))
        .collect();
    let mut spans: Vec<BlockSpan> = Vec::new();
    for r in &ram {
        if spans.iter().any(|s| s.name == r.name) {
            continue;
        }
        let size = blocks.iter().find(|(n, _)| *n == r.name).map_or(0, |b| b.1);
        let offset = spans.last().map_or(Some(0), |s| s.offset.checked_add(s.size));
        let offset = offset.ok_or_else(|| Error::Protocol("RAM block sizes overflow".into()))?;
        spans.push(BlockSpan { name: r.name.clone(), offset, size });
    }
    let mut regions: Vec<Region> = Vec::new();
    for r in ram {
        let span = spans.iter().find(|s| s.name == r.name).expect("a span per name");
        let size = r.end - r.start + 1;
        if r.offset.checked_add(size).is_none_or(|e| e > span.size) {
            return Err(Error::Protocol(format!(
                "info mtree -f maps {:#x} bytes of {} at offset {:#x}, past its size {:#x}",
                size, r.name, r.offset, span.size
            )));
        }
        let offset = span.offset + r.offset;
        if let Some(last) = regions.last_mut()
            && last.name == r.name
            && last.end() == r.start
            && last.offset + last.size == offset
        {
            last.size += size;
            continue;
        }
        regions.push(Region::new(Gpa::new(r.start), size, offset, r.name.clone()));
    }
    if regions.is_empty() {
        let names: Vec<&str> = blocks.iter().map(|b| b.0.as_str()).collect();
        return Err(Error::Protocol(format!("info mtree -f maps no range of the RAM blocks {names:?}")));
    }
    Ok((MemoryMap::new(regions)?, spans))
}

/// The host-virtual address `gpa2hva` prints: `Host virtual address for 0x1000
/// (pc.ram) is 0x7f3063e01000`, with the name of the RAM block it lies in.
pub fn parse_gpa2hva(text: &str) -> Result<(String, u64)> {
    let t = text.trim();
    let name = t.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(n, _)| n.to_owned());
    let hva = t.rsplit(' ').next().and_then(|h| h.strip_prefix("0x")).and_then(|h| u64::from_str_radix(h, 16).ok());
    match (name, hva) {
        (Some(n), Some(h)) => Ok((n, h)),
        _ => Err(Error::Protocol(format!("gpa2hva said: {t}"))),
    }
}

/// The ranges of the flat view that serves `AS "memory"`.
fn memory_flat_view(text: &str) -> Result<Vec<FlatRange>> {
    let mut in_memory_view = false;
    let mut seen_ranges = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("FlatView #") {
            if in_memory_view && seen_ranges {
                break;
            }
            in_memory_view = false;
            seen_ranges = false;
            continue;
        }
        if t.starts_with("AS \"memory\"") {
            in_memory_view = true;
            continue;
        }
        if !in_memory_view {
            continue;
        }
        if let Some(r) = parse_range(t) {
            seen_ranges = true;
            out.push(r);
        }
    }
    if out.is_empty() {
        return Err(Error::Protocol("info mtree -f has no flat view for AS \"memory\"".into()));
    }
    Ok(out)
}

fn parse_range(t: &str) -> Option<FlatRange> {
    let (span, rest) = t.split_once(' ')?;
    let (a, b) = span.split_once('-')?;
    let start = u64::from_str_radix(a, 16).ok()?;
    let end = u64::from_str_radix(b, 16).ok()?;
    // "(prio 0, ram): ram @0000000000100000 KVM"
    let rest = rest.strip_prefix("(prio ")?;
    let (attrs, rest) = rest.split_once("): ")?;
    let kind = attrs.split(", ").nth(1)?.to_owned();
    let mut words = rest.split_whitespace();
    let name = words.next()?.to_owned();
    let offset =
        words.next().and_then(|w| w.strip_prefix('@')).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0);
    (end >= start).then_some(FlatRange { start, end, kind, name, offset })
}

fn largest_ram(ranges: &[FlatRange]) -> Option<String> {
    let mut sizes: Vec<(String, u64)> = Vec::new();
    for r in ranges.iter().filter(|r| r.kind == "ram") {
        match sizes.iter_mut().find(|(n, _)| *n == r.name) {
            Some((_, s)) => *s += r.end - r.start + 1,
            None => sizes.push((r.name.clone(), r.end - r.start + 1)),
        }
    }
    sizes.into_iter().max_by_key(|(_, s)| *s).map(|(n, _)| n)
}

/// Registers from `info registers` of one vCPU. LSTAR and the GS bases beyond
/// `GS=` are not shown by QEMU's monitor and stay 0 (KERNEL_GS_BASE, LSTAR).
pub fn parse_registers(text: &str) -> Result<VcpuRegisters> {
    let mut r = VcpuRegisters::default();
    let mut found = 0;
    for tok in text.split_whitespace() {
        let Some((k, v)) = tok.split_once('=') else { continue };
        let Ok(v) = u64::from_str_radix(v, 16) else { continue };
        let slot = match k {
            "RAX" => &mut r.rax,
            "RBX" => &mut r.rbx,
            "RCX" => &mut r.rcx,
            "RDX" => &mut r.rdx,
            "RSI" => &mut r.rsi,
            "RDI" => &mut r.rdi,
            "RBP" => &mut r.rbp,
            "RSP" => &mut r.rsp,
            "R8" => &mut r.r8,
            "R9" => &mut r.r9,
            "R10" => &mut r.r10,
            "R11" => &mut r.r11,
            "R12" => &mut r.r12,
            "R13" => &mut r.r13,
            "R14" => &mut r.r14,
            "R15" => &mut r.r15,
            "RIP" => &mut r.rip,
            "RFL" => &mut r.rflags,
            "CR0" => &mut r.cr0,
            "CR2" => &mut r.cr2,
            "CR3" => &mut r.cr3,
            "CR4" => &mut r.cr4,
            "EFER" => &mut r.efer,
            _ => continue,
        };
        *slot = v;
        found += 1;
    }
    // "R8 =..." splits into "R8" and "=...": pick those up too.
    let words: Vec<&str> = text.split_whitespace().collect();
    for w in words.windows(2) {
        if let (k @ ("R8" | "R9"), Some(v)) = (w[0], w[1].strip_prefix('='))
            && let Ok(v) = u64::from_str_radix(v, 16)
        {
            *(if k == "R8" { &mut r.r8 } else { &mut r.r9 }) = v;
            found += 1;
        }
    }
    // "GS =0000 ffff89ad7ea00000 ..." : the base is the second field.
    for line in text.lines() {
        let l = line.trim_start();
        for (seg, slot) in [("FS =", &mut r.fs_base), ("GS =", &mut r.gs_base)] {
            if let Some(rest) = l.strip_prefix(seg)
                && let Some(base) = rest.split_whitespace().nth(1)
                && let Ok(v) = u64::from_str_radix(base, 16)
            {
                *slot = v;
            }
        }
    }
    if found < 20 || r.cr0 == 0 && r.cr3 == 0 {
        return Err(Error::Protocol(format!(
            "info registers: unexpected output: {}",
            text.lines().next().unwrap_or("")
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTREE_4G: &str = "\
FlatView #0
 AS \"I/O\", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan

FlatView #1
 AS \"memory\", root: system
 AS \"cpu-memory-0\", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): ram
  00000000000c0000-00000000000cafff (prio 0, rom): ram @00000000000c0000
  00000000000cb000-00000000000cdfff (prio 0, ram): ram @00000000000cb000
  0000000000100000-000000007fffffff (prio 0, ram): ram @0000000000100000
  00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram
  00000000feda0000-00000000feda0fff (prio 0, i/o): pcie-mmcfg-mmio
  0000000100000000-000000017fffffff (prio 0, ram): ram @0000000080000000

FlatView #2
 AS \"cpu-smm-0\", root: memory
 Root memory region: memory
  0000000000000000-00000000000bffff (prio 0, ram): ram
";

    #[test]
    fn q35_4g_map() {
        let m = parse_mtree_flat(MTREE_4G, None).unwrap();
        let r: Vec<_> = m.regions().iter().map(|r| (r.gpa.raw(), r.size, r.offset)).collect();
        assert_eq!(
            r,
            vec![
                (0, 0xa0000, 0),
                (0xc0000, 0xe000, 0xc0000),
                (0x100000, 0x7ff0_0000, 0x100000),
                (0x1_0000_0000, 0x8000_0000, 0x8000_0000)
            ]
        );
        assert!(parse_mtree_flat(MTREE_4G, Some("nope")).is_err());
    }

    /// Two NUMA nodes, each its own backend, on a pc machine with 4 GiB (the
    /// PCI hole splits node 1).
    const MTREE_NUMA: &str = "FlatView #0
 AS \"memory\", root: system
 AS \"cpu-memory-0\", root: system
 Root memory region: system
  0000000000000000-00000000000c2fff (prio 0, ram): m0
  00000000000c3000-00000000000e7fff (prio 0, rom): m0 @00000000000c3000
  00000000000e8000-000000003fffffff (prio 0, ram): m0 @00000000000e8000
  0000000040000000-00000000bfffffff (prio 0, ram): m1
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000013fffffff (prio 0, ram): m1 @0000000080000000
";

    #[test]
    fn numa_blocks_one_after_another() {
        let blocks = [("m1".to_owned(), 3 << 30), ("m0".to_owned(), 1 << 30)];
        let (m, spans) = parse_mtree_blocks(MTREE_NUMA, &blocks).unwrap();
        let names: Vec<_> = spans.iter().map(|s| (s.name.as_str(), s.offset, s.size)).collect();
        assert_eq!(names, [("m0", 0, 1 << 30), ("m1", 1 << 30, 3 << 30)]);
        let r: Vec<_> = m.regions().iter().map(|r| (r.gpa.raw(), r.size, r.offset)).collect();
        assert_eq!(r, [(0, 0x4000_0000, 0), (0x4000_0000, 0x8000_0000, 0x4000_0000), (1 << 32, 1 << 30, 0xc000_0000)]);
        // A range past its block's size is QEMU's bug or a lie: refused.
        assert!(parse_mtree_blocks(MTREE_NUMA, &[("m0".to_owned(), 1 << 20)]).is_err());
        assert!(parse_mtree_blocks(MTREE_NUMA, &[("nope".to_owned(), 1 << 30)]).is_err());
        let (n, h) = parse_gpa2hva("Host virtual address for 0x1000 (pc.ram) is 0x7f3063e01000\r\n").unwrap();
        assert_eq!((n.as_str(), h), ("pc.ram", 0x7f30_63e0_1000));
        assert!(parse_gpa2hva("Memory at address 0x1000 is not RAM").is_err());
    }

    #[test]
    fn registers() {
        let text = "CPU#0\nRAX=000000000001ad40 RBX=0000000000000000 RCX=0000000000000001 RDX=4000000000000000\n\
RSI=0000000000000087 RDI=00000000000025c4 RBP=ffffffffa5e1aa40 RSP=ffffffffa5e03e90\n\
R8 =0000000000000005 R9 =00000000314dca89 R10=0000000000000000 R11=0000000000000001\n\
R12=0000000000000000 R13=0000000000000000 R14=0000000000000000 R15=0000000000014790\n\
RIP=ffffffffa4e0dfeb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n\
GS =0000 ffff89ad7ea00000 00000000 00000000\n\
CR0=80050033 CR2=00000000005794a9 CR3=000000000208e000 CR4=000006b0\nEFER=0000000000000d01\n";
        let r = parse_registers(text).unwrap();
        assert_eq!(r.cr3, 0x208e000);
        assert_eq!(r.r8, 5);
        assert_eq!(r.rip, 0xffffffffa4e0dfeb);
        assert_eq!(r.gs_base, 0xffff89ad7ea00000);
        assert_eq!(r.efer, 0xd01);
        assert!(!r.la57());
        assert!(parse_registers("garbage").is_err());
    }
}
