//! VMCOREINFO: the text a kernel publishes for dump readers (drgn, crash,
//! makedumpfile) — its release, page size, the addresses of a few symbols, the
//! KASLR offset. A kernel built with `CONFIG_CRASH_CORE` keeps it as an ELF note in
//! a buffer `vmcoreinfo_note` points at (what QEMU's `-device vmcoreinfo` is told
//! about); [`read_note`] reads that note through kallsyms. For a kernel without
//! one, [`build`] writes the lines readers need from what attaching found.

use std::fmt::Write;

use vmscope_mem::PhysMem;

use crate::{Error, Kernel, Result};

/// `VMCOREINFO_BYTES`: the kernel's text is at most a page.
const MAX_TEXT: u32 = 4096;
/// Elf64_Nhdr (12 bytes) and the name `VMCOREINFO\0` padded to 12.
const HEADER: usize = 24;

/// The kernel's own VMCOREINFO text, read from the note `vmcoreinfo_note` points
/// at. `Ok(None)` when the kernel has no such symbol or the pointer is still null.
pub fn read_note<M: PhysMem>(k: &Kernel<M>) -> Result<Option<String>> {
    let Some(sym) = k.symbols().addr("vmcoreinfo_note") else { return Ok(None) };
    let kmem = k.kernel_mem();
    let note = kmem.read_ptr(sym)?;
    if note.raw() == 0 {
        return Ok(None);
    }
    let head = kmem.read_vec(note, HEADER)?;
    let descsz = parse_header(&head).ok_or_else(|| Error::Layout {
        what: "vmcoreinfo_note".into(),
        why: format!("no VMCOREINFO note header at {note}"),
    })?;
    let desc_at =
        note.checked_add(HEADER as u64).ok_or(Error::AddressOverflow { base: note, offset: HEADER as u64 })?;
    let desc = kmem.read_vec(desc_at, descsz as usize)?;
    Ok(parse_text(&desc))
}

/// The descriptor size of a `VMCOREINFO` note header, if `head` is one.
fn parse_header(head: &[u8]) -> Option<u32> {
    let u32_at = |o: usize| head.get(o..o + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes);
    let (namesz, descsz, ty) = (u32_at(0)?, u32_at(4)?, u32_at(8)?);
    (namesz == 11 && ty == 0 && head.get(12..23)? == b"VMCOREINFO\0" && descsz <= MAX_TEXT).then_some(descsz)
}

/// The text of a descriptor, up to its first NUL, if it reads as VMCOREINFO.
fn parse_text(desc: &[u8]) -> Option<String> {
    let end = desc.iter().position(|&c| c == 0).unwrap_or(desc.len());
    let t = std::str::from_utf8(&desc[..end]).ok()?;
    t.starts_with("OSRELEASE=").then(|| t.to_owned())
}

/// Symbols whose addresses dump readers look up in VMCOREINFO: page tables and
/// `init_uts_ns` (drgn, crash), `_stext`, and the kallsyms tables (drgn reads the
/// kernel's symbols through them when it has no vmlinux).
pub const SYMBOLS: &[&str] = &[
    "init_uts_ns",
    "init_top_pgt",
    "_stext",
    "init_task",
    "node_online_map",
    "vmap_area_list",
    "prb",
    "kallsyms_names",
    "kallsyms_num_syms",
    "kallsyms_token_table",
    "kallsyms_token_index",
    "kallsyms_offsets",
    "kallsyms_relative_base",
];

/// VMCOREINFO text as the kernel's own `crash_save_vmcoreinfo_init` words it, with
/// what vmscope knows: OSRELEASE, BUILD-ID, PAGESIZE, `SYMBOL(swapper_pg_dir)`, the
/// [`SYMBOLS`] the kernel has, `OFFSET(uts_namespace.name)`, `NUMBER(phys_base)`, `KERNELOFFSET` and
/// `NUMBER(pgtable_l5_enabled)`.
pub fn build<M: PhysMem>(k: &Kernel<M>) -> String {
    let info = k.info();
    let mut t = format!("OSRELEASE={}\n", info.release);
    if let Some(id) = &info.build_id {
        let _ = writeln!(t, "BUILD-ID={id}");
    }
    t.push_str("PAGESIZE=4096\n");
    // On x86-64 `swapper_pg_dir` is a macro for `init_top_pgt`, which kallsyms has.
    if let Some(a) = k.symbols().addr("swapper_pg_dir").or_else(|| k.symbols().addr("init_top_pgt")) {
        let _ = writeln!(t, "SYMBOL(swapper_pg_dir)={:x}", a.raw());
    }
    for name in SYMBOLS {
        if let Some(a) = k.symbols().addr(name) {
            let _ = writeln!(t, "SYMBOL({name})={:x}", a.raw());
        }
    }
    if let Some(off) = k.profile().ok().and_then(|p| p.offset_of("uts_namespace", "name").ok()) {
        let _ = writeln!(t, "OFFSET(uts_namespace.name)={off}");
    }
    // The kernel prints phys_base with %ld and the offset with %lx.
    let _ = writeln!(t, "NUMBER(phys_base)={}", info.phys_base as i64);
    let _ = writeln!(t, "KERNELOFFSET={:x}", info.kaslr_virtual_offset);
    let l5 = info.paging == vmscope_x86::PagingMode::Level5;
    let _ = writeln!(t, "NUMBER(pgtable_l5_enabled)={}", u8::from(l5));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(text: &[u8], namesz: u32) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&namesz.to_le_bytes());
        n.extend_from_slice(&(text.len() as u32).to_le_bytes());
        n.extend_from_slice(&0u32.to_le_bytes());
        n.extend_from_slice(b"VMCOREINFO\0\0");
        n.extend_from_slice(text);
        n
    }

    #[test]
    fn reads_a_note_and_refuses_others() {
        let n = note(b"OSRELEASE=6.1.0\nPAGESIZE=4096\n\0", 11);
        let size = parse_header(&n).unwrap();
        assert_eq!(parse_text(&n[HEADER..HEADER + size as usize]).as_deref(), Some("OSRELEASE=6.1.0\nPAGESIZE=4096\n"));
        assert_eq!(parse_header(&note(b"x", 12)), None);
        assert_eq!(parse_header(&n[..20]), None);
        let mut big = n.clone();
        big[4..8].copy_from_slice(&(MAX_TEXT + 1).to_le_bytes());
        assert_eq!(parse_header(&big), None, "a descriptor larger than a page is refused");
        assert_eq!(parse_text(b"PAGESIZE=4096\n"), None);
        assert_eq!(parse_text(&[b'O', 0xff]), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Some(n) = parse_header(&b) {
                proptest::prop_assert!(n <= MAX_TEXT);
            }
            let _ = parse_text(&b);
        }
    }
}
