//! Tying the kernel's virtual addresses (from kallsyms) to guest-physical ones, and
//! what follows from that: the paging mode, the kernel page-table root, the banner.

use vmscope_mem::{Gpa, Gva, PhysMem};
use vmscope_x86::{AddressSpace, PagingMode, Root, pte};

use super::{Evidence, Hints, LARGE_PAGE, START_KERNEL_MAP};
use crate::kallsyms::Kallsyms;
use crate::symbols::SymbolTable;
use crate::{Error, Result};

/// The kernel image: `pa = va - delta` for every address in `[text, end)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Image {
    pub text_va: Gva,
    pub end_va: Gva,
    /// Virtual minus physical, modulo 2^64 (as the kernel's `__pa` computes it).
    pub delta: u64,
}

impl Image {
    pub fn pa(&self, va: Gva) -> Option<Gpa> {
        (va >= self.text_va && va < self.end_va).then(|| Gpa::new(va.raw().wrapping_sub(self.delta)))
    }
}

/// Whether the bytes at `gpa` are a `Linux version ...\n` banner.
pub(crate) fn read_banner<M: PhysMem + ?Sized>(mem: &M, gpa: Gpa) -> Option<String> {
    let s = mem.read_cstr(gpa, 1024).ok()?;
    let text = std::str::from_utf8(&s).ok()?;
    (text.starts_with("Linux version ") && text.ends_with('\n') && text.len() > 20).then(|| text.to_owned())
}

/// The physical address of the kernel's top-level page table entry 511 target
/// ("level3_kernel_pgt" under 4-level paging, "level4_kernel_pgt" under 5-level).
fn top_entry_ok<M: PhysMem + ?Sized>(mem: &M, syms: &SymbolTable, image: &Image) -> bool {
    let Some(top) = syms.addr("init_top_pgt") else {
        return false;
    };
    let Some(top_pa) = image.pa(top) else {
        return false;
    };
    let Some(Ok(e511)) = top_pa.checked_add(511 * 8).map(|pa| mem.read_u64(pa)) else {
        return false;
    };
    let target = e511 & pte::ADDR_MASK;
    ["level3_kernel_pgt", "level4_kernel_pgt"]
        .iter()
        .filter_map(|n| syms.addr(n).and_then(|va| image.pa(va)))
        .any(|pa| pa.raw() == target && e511 & pte::PRESENT != 0)
}

/// Finds `delta` (kernel virtual minus physical) for the image whose kallsyms `k`
/// decoded, and checks it: `linux_banner` must read as a banner there and, when the
/// kernel has them, `init_top_pgt` entry 511 must point at the kernel PDPT/P4D.
pub(super) fn locate_image<M: PhysMem + ?Sized>(
    mem: &M,
    k: &Kallsyms,
    hints: &Hints,
    evidence: &mut Vec<Evidence>,
) -> Result<(Image, String)> {
    let syms = &k.symbols;
    let text = syms.require("_text")?;
    let end = syms.addr("_end").unwrap_or_else(|| default_end(text));
    let banner_va = syms.require("linux_banner")?;
    let check = |delta: u64| -> Option<(Image, String)> {
        let image = Image { text_va: text, end_va: end, delta };
        let banner = read_banner(mem, image.pa(banner_va)?)?;
        let pgt_known = syms.addr("init_top_pgt").is_some() && syms.addr("level3_kernel_pgt").is_some();
        (!pgt_known || top_entry_ok(mem, syms, &image)).then_some((image, banner))
    };

    // 1. The tables list themselves (kernels from 6.4 on).
    if let Some(va) = syms.addr("kallsyms_token_table") {
        let delta = va.raw().wrapping_sub(k.layout.token_table.raw());
        if let Some(found) = check(delta) {
            evidence.push(Evidence::KallsymsSelfReference { symbol: "kallsyms_token_table".into() });
            return Ok(found);
        }
    }
    // 2. The CR3 the hypervisor gave maps `_text`.
    if let Some(cr3) = hints.cr3 {
        let mode = hints.cr4.map(PagingMode::from_cr4).unwrap_or_default();
        let space = AddressSpace::new(Root::from_cr3(cr3).pti_kernel(), mode);
        if let Ok(t) = space.translate(mem, text)
            && let Some(found) = check(text.raw().wrapping_sub(t.gpa.raw()))
        {
            evidence.push(Evidence::TextFromCr3 { text_pa: t.gpa });
            return Ok(found);
        }
    }
    // 3. The image starts 2 MiB-aligned at or below the tables, within its own
    //    size: try each such start.
    let tables = k.layout.token_table.raw();
    let span = end.offset_from(text).unwrap_or(0).min(1 << 30);
    let lowest = tables.saturating_sub(span) & !(LARGE_PAGE - 1);
    let mut pa = tables & !(LARGE_PAGE - 1);
    loop {
        if let Some(found) = check(text.raw().wrapping_sub(pa)) {
            evidence.push(Evidence::TextByBannerAndPageTables { text_pa: Gpa::new(pa) });
            return Ok(found);
        }
        if pa < lowest + LARGE_PAGE {
            break;
        }
        pa -= LARGE_PAGE;
    }
    Err(Error::KernelNotFound(format!(
        "kallsyms found at {} but no 2 MiB-aligned kernel start below it has linux_banner at the offset kallsyms gives",
        k.layout.token_table
    )))
}

/// The paging mode and kernel root: `init_top_pgt`, under the mode CR4 says, or
/// `__pgtable_l5_enabled` says, or the one under which `_text` translates to where
/// the image is.
pub(super) fn paging<M: PhysMem + ?Sized>(
    mem: &M,
    syms: &SymbolTable,
    image: &Image,
    hints: &Hints,
    evidence: &mut Vec<Evidence>,
) -> Result<(PagingMode, Root)> {
    let top = syms.require("init_top_pgt")?;
    let root = Root::new(image.pa(top).ok_or_else(|| Error::layout("init_top_pgt", "outside the kernel image"))?);
    let text = image.text_va;
    let works = |mode: PagingMode| {
        AddressSpace::new(root, mode).translate(mem, text).is_ok_and(|t| Some(t.gpa) == image.pa(image.text_va))
    };
    if let Some(cr4) = hints.cr4 {
        let mode = PagingMode::from_cr4(cr4);
        if works(mode) {
            evidence.push(Evidence::PagingFromCr4 { cr4 });
            return Ok((mode, root));
        }
    }
    if let Some(pa) = syms.addr("__pgtable_l5_enabled").and_then(|va| image.pa(va))
        && let Ok(v) = mem.read_u32(pa)
    {
        let mode = if v != 0 { PagingMode::Level5 } else { PagingMode::Level4 };
        if works(mode) {
            evidence.push(Evidence::PagingFromKernelVariable {
                symbol: "__pgtable_l5_enabled".into(),
                value: u64::from(v),
            });
            return Ok((mode, root));
        }
    }
    for mode in [PagingMode::Level4, PagingMode::Level5] {
        if works(mode) {
            evidence.push(Evidence::PagingByTranslation);
            return Ok((mode, root));
        }
    }
    Err(Error::KernelNotFound(format!("init_top_pgt at {} maps _text under neither 4- nor 5-level paging", root.gpa())))
}

/// Reads a kernel variable of the image as a `u64`.
pub(crate) fn image_u64<M: PhysMem + ?Sized>(mem: &M, syms: &SymbolTable, image: &Image, name: &str) -> Option<u64> {
    mem.read_u64(image.pa(syms.addr(name)?)?).ok()
}

/// The GNU build ID from the ELF notes between `__start_notes` and `__stop_notes`.
pub(super) fn build_id<M: PhysMem + ?Sized>(mem: &M, syms: &SymbolTable, image: &Image) -> Option<Vec<u8>> {
    let (start, stop) = (syms.addr("__start_notes")?, syms.addr("__stop_notes")?);
    let len = stop.offset_from(start)?;
    if len == 0 || len > 1 << 16 {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    mem.read(image.pa(start)?, &mut buf).ok()?;
    crate::elf::gnu_build_id(&buf)
}

/// Where the BTF blob is: `__start_BTF` and its length.
pub(super) fn btf_location(syms: &SymbolTable, image: &Image) -> Option<(Gpa, u64)> {
    let (start, stop) = (syms.addr("__start_BTF")?, syms.addr("__stop_BTF")?);
    let len = stop.offset_from(start)?;
    (len > 24 && len < 64 << 20).then_some((image.pa(start)?, len))
}

/// Where the image ends when kallsyms has no `_end`: 1 GiB after `_text`, the most
/// the kernel text mapping holds (or the top of the address space).
pub(crate) fn default_end(text: Gva) -> Gva {
    text.checked_add(1 << 30).unwrap_or(Gva::new(u64::MAX))
}

/// The link-time address of `_text` on x86-64 (`__START_KERNEL`) with the default
/// `CONFIG_PHYSICAL_START` of 16 MiB, from which KASLR offsets are counted.
pub(crate) const DEFAULT_TEXT_VA: Gva = Gva::new(START_KERNEL_MAP.raw() + DEFAULT_TEXT_PA);
/// The physical load address without KASLR (`CONFIG_PHYSICAL_START` default).
pub(crate) const DEFAULT_TEXT_PA: u64 = 0x100_0000;
