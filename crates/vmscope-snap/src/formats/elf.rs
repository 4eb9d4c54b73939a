//! ELF core dumps in the layout of QEMU 7.2's `dump-guest-memory` (paging=false):
//!
//! ```text
//! Elf64_Ehdr | Shdr[0] (null; sh_info = phnum when >= PN_XNUM) | Shdr[1] .shstrtab
//! | Phdr PT_NOTE | Phdr PT_LOAD per RAM region (p_paddr = p_vaddr = GPA)
//! | notes: NT_PRSTATUS "CORE" per vCPU, "QEMU" CPU state per vCPU, "VMCOREINFO"
//! | memory (vmscope aligns each segment to 4 KiB; QEMU packs them) | .shstrtab
//! ```
//!
//! The reader takes any little-endian ELF64 core: every PT_LOAD with file data
//! becomes a region; notes give VMCOREINFO and vCPU registers (QEMU's CPU-state note
//! carries CR0-CR4; `NT_PRSTATUS` only the general registers).

use std::fs::File;
use std::os::unix::fs::FileExt;

use vmscope_hv::VcpuRegisters;
use vmscope_mem::{Gpa, MemoryMap, Region};

use super::{DumpSource, Parser, WriteStats, le_u16, le_u32, le_u64};
use crate::snapshot::{DumpMeta, parse_vmcoreinfo_text};
use crate::{Error, Result};

const EHDR: u64 = 64;
const SHDR: u64 = 64;
const PHDR: u64 = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PN_XNUM: u64 = 0xffff;
const NT_PRSTATUS: u32 = 1;
const PRSTATUS_SIZE: usize = 336;
const PRSTATUS_REGS: usize = 112;
const QEMU_CPUSTATE_SIZE: usize = 440;
const STRTAB: &[u8] = b"\0.shstrtab\0";
/// More program headers than this are refused.
const MAX_PHDRS: u64 = 1 << 20;
/// Note segments larger than this are refused.
const MAX_NOTES: u64 = 64 << 20;

fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// One ELF note: header, name (NUL-terminated, padded to 4), descriptor (padded).
fn note(out: &mut Vec<u8>, name: &str, ty: u32, desc: &[u8]) {
    out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn prstatus(index: usize, r: &VcpuRegisters) -> Vec<u8> {
    let mut d = vec![0u8; PRSTATUS_SIZE];
    put32(&mut d, 32, index as u32 + 1);
    let regs = [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx, r.rsi, r.rdi, 0,
        r.rip, 0, r.rflags, r.rsp, 0, r.fs_base, r.gs_base,
    ];
    for (i, v) in regs.iter().enumerate() {
        put64(&mut d, PRSTATUS_REGS + 8 * i, *v);
    }
    d
}

/// QEMU's `QEMUCPUState` (version 1): segment selectors and limits are not known
/// here and stay zero; FS/GS bases, CR0-CR4 and KERNEL_GS_BASE are filled in.
fn qemu_cpustate(r: &VcpuRegisters) -> Vec<u8> {
    let mut d = vec![0u8; QEMU_CPUSTATE_SIZE];
    put32(&mut d, 0, 1);
    put32(&mut d, 4, QEMU_CPUSTATE_SIZE as u32);
    let gp =
        [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15];
    for (i, v) in gp.iter().enumerate() {
        put64(&mut d, 8 + 8 * i, *v);
    }
    put64(&mut d, 136, r.rip);
    put64(&mut d, 144, r.rflags);
    put64(&mut d, 240, r.fs_base);
    put64(&mut d, 264, r.gs_base);
    for (i, v) in [r.cr0, 0, r.cr2, r.cr3, r.cr4].iter().enumerate() {
        put64(&mut d, 392 + 8 * i, *v);
    }
    put64(&mut d, 432, r.kernel_gs_base);
    d
}

fn regs_from_qemu_note(d: &[u8]) -> VcpuRegisters {
    let g = |i: usize| le_u64(d, 8 + 8 * i);
    VcpuRegisters {
        rax: g(0),
        rbx: g(1),
        rcx: g(2),
        rdx: g(3),
        rsi: g(4),
        rdi: g(5),
        rsp: g(6),
        rbp: g(7),
        r8: g(8),
        r9: g(9),
        r10: g(10),
        r11: g(11),
        r12: g(12),
        r13: g(13),
        r14: g(14),
        r15: g(15),
        rip: le_u64(d, 136),
        rflags: le_u64(d, 144),
        fs_base: le_u64(d, 240),
        gs_base: le_u64(d, 264),
        cr0: le_u64(d, 392),
        cr2: le_u64(d, 408),
        cr3: le_u64(d, 416),
        cr4: le_u64(d, 424),
        kernel_gs_base: if le_u32(d, 4) as usize >= QEMU_CPUSTATE_SIZE { le_u64(d, 432) } else { 0 },
        ..VcpuRegisters::default()
    }
}

fn regs_from_prstatus(d: &[u8]) -> VcpuRegisters {
    let g = |i: usize| le_u64(d, PRSTATUS_REGS + 8 * i);
    VcpuRegisters {
        r15: g(0),
        r14: g(1),
        r13: g(2),
        r12: g(3),
        rbp: g(4),
        rbx: g(5),
        r11: g(6),
        r10: g(7),
        r9: g(8),
        r8: g(9),
        rax: g(10),
        rcx: g(11),
        rdx: g(12),
        rsi: g(13),
        rdi: g(14),
        rip: g(16),
        rflags: g(18),
        rsp: g(19),
        fs_base: g(21),
        gs_base: g(22),
        ..VcpuRegisters::default()
    }
}

/// The note segment for `meta`.
pub(crate) fn notes(meta: &DumpMeta) -> Vec<u8> {
    let mut n = Vec::new();
    for (i, r) in meta.vcpus.iter().enumerate() {
        note(&mut n, "CORE", NT_PRSTATUS, &prstatus(i, r));
    }
    for r in &meta.vcpus {
        note(&mut n, "QEMU", 0, &qemu_cpustate(r));
    }
    if let Some(v) = &meta.vmcoreinfo {
        note(&mut n, "VMCOREINFO", 0, v.as_bytes());
    }
    n
}

pub(crate) fn write(file: &File, src: &DumpSource<'_>, meta: &DumpMeta) -> Result<WriteStats> {
    let regions = src.memory_map().regions();
    let phnum = regions.len() as u64 + 1;
    let phoff = EHDR + 2 * SHDR;
    let note_off = phoff + PHDR * phnum;
    let notes = notes(meta);
    let mut mem_off = (note_off + notes.len() as u64).next_multiple_of(4096);

    let mut head = vec![0u8; note_off as usize];
    head[..4].copy_from_slice(b"\x7fELF");
    head[4] = 2; // ELFCLASS64
    head[5] = 1; // little-endian
    head[6] = 1; // EV_CURRENT
    put16(&mut head, 16, 4); // ET_CORE
    put16(&mut head, 18, 62); // EM_X86_64
    put32(&mut head, 20, 1);
    put64(&mut head, 32, phoff);
    put64(&mut head, 40, EHDR);
    put16(&mut head, 52, EHDR as u16);
    put16(&mut head, 54, PHDR as u16);
    put16(&mut head, 56, phnum.min(PN_XNUM) as u16);
    put16(&mut head, 58, SHDR as u16);
    put16(&mut head, 60, 2);
    put16(&mut head, 62, 1);
    if phnum >= PN_XNUM {
        put32(&mut head, (EHDR + 44) as usize, phnum as u32);
    }
    let ph = |i: u64| (phoff + PHDR * i) as usize;
    put32(&mut head, ph(0), PT_NOTE);
    put64(&mut head, ph(0) + 8, note_off);
    put64(&mut head, ph(0) + 32, notes.len() as u64);
    put64(&mut head, ph(0) + 40, notes.len() as u64);
    let mut loads = Vec::with_capacity(regions.len());
    for (i, r) in regions.iter().enumerate() {
        let o = ph(i as u64 + 1);
        put32(&mut head, o, PT_LOAD);
        put64(&mut head, o + 8, mem_off);
        put64(&mut head, o + 16, r.gpa.raw());
        put64(&mut head, o + 24, r.gpa.raw());
        put64(&mut head, o + 32, r.size);
        put64(&mut head, o + 40, r.size);
        loads.push((mem_off, r.gpa, r.size));
        mem_off = (mem_off + r.size).next_multiple_of(4096);
    }
    let strtab_off = mem_off;
    let s1 = (EHDR + SHDR) as usize;
    put32(&mut head, s1, 1);
    put32(&mut head, s1 + 4, 3); // SHT_STRTAB
    put64(&mut head, s1 + 24, strtab_off);
    put64(&mut head, s1 + 32, STRTAB.len() as u64);

    let w = |b: &[u8], off: u64| {
        file.write_all_at(b, off).map_err(|e| Error::io(format!("writing the ELF dump at {off:#x}"), e))
    };
    w(&head, 0)?;
    w(&notes, note_off)?;
    let mut data = 0;
    for (off, gpa, size) in loads {
        data += src.write_region(file, off, gpa, size)?;
    }
    w(STRTAB, strtab_off)?;
    Ok(WriteStats { file_bytes: strtab_off + STRTAB.len() as u64, data_bytes: data })
}

pub(crate) fn parse(p: &Parser<'_>) -> Result<(MemoryMap, DumpMeta)> {
    let eh = p.bytes(0, EHDR as usize)?;
    if eh[4] != 2 || eh[5] != 1 {
        return Err(p.bad(4, "only little-endian ELF64 cores are read"));
    }
    let phoff = le_u64(&eh, 32);
    let shoff = le_u64(&eh, 40);
    let phentsize = u64::from(le_u16(&eh, 54));
    let mut phnum = u64::from(le_u16(&eh, 56));
    if phentsize != PHDR {
        return Err(p.bad(54, format!("e_phentsize {phentsize}, expected {PHDR}")));
    }
    if phnum == PN_XNUM {
        let sh0 = p.bytes(shoff, SHDR as usize)?;
        phnum = u64::from(le_u32(&sh0, 44));
    }
    if phnum > MAX_PHDRS || !p.fits(phoff, phnum * PHDR) {
        return Err(p.bad(phoff, format!("{phnum} program headers do not fit in the file")));
    }
    let phdrs = p.bytes(phoff, (phnum * PHDR) as usize)?;
    let mut regions = Vec::new();
    let mut meta = DumpMeta::default();
    let (mut qemu_cpus, mut core_cpus) = (Vec::new(), Vec::new());
    for (i, ph) in phdrs.chunks_exact(PHDR as usize).enumerate() {
        let (ty, off, paddr, filesz) = (le_u32(ph, 0), le_u64(ph, 8), le_u64(ph, 24), le_u64(ph, 32));
        let at = phoff + i as u64 * PHDR;
        match ty {
            PT_LOAD if filesz > 0 => {
                if !p.fits(off, filesz) {
                    return Err(
                        p.bad(at, format!("PT_LOAD {i}: {filesz:#x} bytes at {off:#x} run past the end of the file"))
                    );
                }
                if paddr.checked_add(filesz).is_none() {
                    return Err(p.bad(at, format!("PT_LOAD {i}: p_paddr {paddr:#x} + {filesz:#x} wraps")));
                }
                regions.push(Region::new(Gpa::new(paddr), filesz, off, format!("load{i}")));
            }
            PT_NOTE if filesz > 0 => {
                if filesz > MAX_NOTES {
                    return Err(p.bad(at, format!("PT_NOTE of {filesz} bytes")));
                }
                let n = p.bytes(off, filesz as usize)?;
                for (name, ty, desc) in parse_notes(&n) {
                    match (name, ty) {
                        (b"VMCOREINFO", _) => {
                            meta.vmcoreinfo = meta.vmcoreinfo.take().or_else(|| parse_vmcoreinfo_text(desc))
                        }
                        (b"QEMU", 0) if desc.len() >= 432 => qemu_cpus.push(regs_from_qemu_note(desc)),
                        (b"CORE", NT_PRSTATUS) if desc.len() >= PRSTATUS_SIZE - 8 => {
                            core_cpus.push(regs_from_prstatus(desc))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if regions.is_empty() {
        return Err(p.bad(phoff, "no PT_LOAD segment with data"));
    }
    meta.vcpus = if qemu_cpus.is_empty() { core_cpus } else { qemu_cpus };
    let map = MemoryMap::new(regions).map_err(|e| p.bad(phoff, e.to_string()))?;
    Ok((map, meta))
}

/// The notes of a note segment as (name without NUL, type, descriptor); stops at
/// the first note that does not fit.
pub(crate) fn parse_notes(n: &[u8]) -> Vec<(&[u8], u32, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 12 <= n.len() {
        let (namesz, descsz, ty) = (le_u32(n, off) as usize, le_u32(n, off + 4) as usize, le_u32(n, off + 8));
        let name_at = off + 12;
        let Some(desc_at) = namesz.checked_next_multiple_of(4).and_then(|x| x.checked_add(name_at)) else {
            break;
        };
        let Some(next) = descsz.checked_next_multiple_of(4).and_then(|x| x.checked_add(desc_at)) else {
            break;
        };
        let (Some(name), Some(desc)) = (n.get(name_at..name_at + namesz), n.get(desc_at..desc_at + descsz)) else {
            break;
        };
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        out.push((name, ty, desc));
        off = next;
    }
    out
}
