//! Discovery: where the kernel is and how it runs, from guest-physical memory
//! alone, helped by vCPU registers when the hypervisor gives them.
//!
//! The steps, each recorded as [`Evidence`]:
//! 1. find the kallsyms tables ([`crate::kallsyms`]): in the kernel mapping of a
//!    given CR3, else after a 2 MiB-aligned page opening with a banner (the start
//!    of `.rodata`), else anywhere in RAM;
//! 2. tie kernel-virtual to guest-physical addresses (the tables' own symbol when
//!    the kernel lists it, else `_text` through CR3, else the 2 MiB-aligned start
//!    at which `linux_banner` reads back as a banner and `init_top_pgt` points at
//!    the kernel's own PDPT);
//! 3. the paging mode and kernel root `init_top_pgt` (CR4, else
//!    `__pgtable_l5_enabled`, else whichever mode translates `_text` back);
//! 4. the banner, release, build ID, direct-map base and the BTF blob's place.

mod image;
mod scan;

use std::fmt;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gpa, Gva, PhysMem};
use vmscope_x86::{PagingMode, Root};

pub(crate) use image::{Image, default_end, image_u64};

use crate::Result;
use crate::kallsyms::{Kallsyms, KallsymsLayout};

/// `__START_KERNEL_map`: where x86-64 maps the kernel image (and physical 0).
pub const START_KERNEL_MAP: Gva = Gva::new(0xffff_ffff_8000_0000);
const LARGE_PAGE: u64 = 2 << 20;

/// What the hypervisor can tell about a vCPU; every field is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hints {
    /// CR3 of any vCPU (kernel or user page tables: both map the kernel).
    pub cr3: Option<u64>,
    /// CR4 (bit 12 selects 5-level paging).
    pub cr4: Option<u64>,
    /// LSTAR, the syscall entry point (`None` when the hypervisor does not say;
    /// QEMU's monitor does not).
    pub lstar: Option<Gva>,
}

impl Hints {
    /// No hints: memory alone.
    pub fn none() -> Self {
        Hints::default()
    }

    /// CR3 and CR4 of a vCPU.
    pub fn from_registers(cr3: u64, cr4: u64) -> Self {
        Hints { cr3: Some(cr3), cr4: Some(cr4), lstar: None }
    }

    /// These hints plus LSTAR (ignored when 0).
    pub fn with_lstar(mut self, lstar: Gva) -> Self {
        self.lstar = (lstar.raw() != 0).then_some(lstar);
        self
    }
}

/// One fact discovery relied on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// The given CR3 maps kernel text; its tables were searched from there.
    Cr3KernelMapping {
        /// Guest-physical start of the lowest mapped kernel-text 2 MiB page.
        image_start: Gpa,
        /// The mode the walk used.
        mode: PagingMode,
    },
    /// A 2 MiB-aligned page opening with a banner (`.rodata`); searched from there.
    RodataBanner {
        /// The page.
        rodata: Gpa,
    },
    /// Every byte of RAM up to the tables was scanned.
    FullScan {
        /// Bytes of RAM scanned.
        bytes: u64,
    },
    /// kallsyms tables found and consistent.
    Kallsyms {
        /// Where the token table is.
        token_table: Gpa,
        /// Symbols.
        count: u32,
    },
    /// The tables' own symbol gave the virtual-to-physical relation.
    KallsymsSelfReference {
        /// The symbol.
        symbol: String,
    },
    /// `_text` translated through the given CR3.
    TextFromCr3 {
        /// Where it is.
        text_pa: Gpa,
    },
    /// `_text` placed where `linux_banner` and `init_top_pgt` check out.
    TextByBannerAndPageTables {
        /// Where it is.
        text_pa: Gpa,
    },
    /// LSTAR holds `entry_SYSCALL_64`, as kallsyms places it: the virtual KASLR
    /// offset is confirmed by the CPU itself.
    LstarIsEntrySyscall {
        /// The LSTAR value.
        lstar: Gva,
    },
    /// LSTAR does not hold `entry_SYSCALL_64`: the syscall entry was redirected
    /// (a hook, a rootkit) or the hint is stale.
    LstarMismatch {
        /// The LSTAR value.
        lstar: Gva,
        /// `entry_SYSCALL_64` per kallsyms.
        entry_syscall: Gva,
    },
    /// The paging mode came from CR4.
    PagingFromCr4 {
        /// The CR4 value.
        cr4: u64,
    },
    /// The paging mode came from a kernel variable.
    PagingFromKernelVariable {
        /// The variable.
        symbol: String,
        /// Its value.
        value: u64,
    },
    /// The paging mode is the one under which `init_top_pgt` maps `_text` back.
    PagingByTranslation,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Cr3KernelMapping { image_start, mode } => {
                write!(f, "CR3 maps kernel text from {image_start} ({mode})")
            }
            Evidence::RodataBanner { rodata } => {
                write!(f, ".rodata found by its banner at {rodata}")
            }
            Evidence::FullScan { bytes } => write!(f, "scanned {} MiB of RAM", bytes >> 20),
            Evidence::Kallsyms { token_table, count } => {
                write!(f, "kallsyms: {count} symbols, token table at {token_table}")
            }
            Evidence::KallsymsSelfReference { symbol } => {
                write!(f, "kallsyms lists `{symbol}` at the address found")
            }
            Evidence::TextFromCr3 { text_pa } => {
                write!(f, "_text translates to {text_pa} through CR3")
            }
            Evidence::TextByBannerAndPageTables { text_pa } => {
                write!(f, "_text at {text_pa}: linux_banner and init_top_pgt check out there")
            }
            Evidence::LstarIsEntrySyscall { lstar } => {
                write!(f, "LSTAR {lstar:#x} is entry_SYSCALL_64")
            }
            Evidence::LstarMismatch { lstar, entry_syscall } => {
                write!(f, "LSTAR {lstar:#x} is NOT entry_SYSCALL_64 ({entry_syscall:#x})")
            }
            Evidence::PagingFromCr4 { cr4 } => write!(f, "paging mode from CR4 {cr4:#x}"),
            Evidence::PagingFromKernelVariable { symbol, value } => {
                write!(f, "paging mode from {symbol} = {value}")
            }
            Evidence::PagingByTranslation => write!(f, "paging mode: the one that maps _text back"),
        }
    }
}

/// Where the kernel is and how it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// `linux_banner`, e.g. `Linux version 6.1.0-50-cloud-amd64 (...) ...\n`.
    pub banner: String,
    /// The release (`uname -r`), the banner's third word.
    pub release: String,
    /// The GNU build ID of the vmlinux, in hex, from its notes in memory.
    pub build_id: Option<String>,
    /// Virtual address of `_text`.
    pub text_va: Gva,
    /// Guest-physical address of `_text`.
    pub text_pa: Gpa,
    /// Virtual KASLR offset: `_text` minus its default link address 0xffffffff81000000.
    pub kaslr_virtual_offset: i64,
    /// Physical KASLR offset: `_text`'s physical address minus the default 16 MiB.
    pub kaslr_physical_offset: i64,
    /// Linux's `phys_base`: physical minus (virtual minus `__START_KERNEL_map`) for
    /// the image.
    pub phys_base: u64,
    /// 4- or 5-level paging.
    pub paging: PagingMode,
    /// The kernel page-table root (`init_top_pgt`).
    pub kernel_root: Root,
    /// Base of the direct map of all RAM (`page_offset_base`).
    pub page_offset_base: Gva,
    /// Where the kallsyms tables are.
    pub kallsyms: KallsymsLayout,
    /// Where the BTF blob is, and its length.
    pub btf: Option<(Gpa, u64)>,
    /// What discovery relied on, in order.
    pub evidence: Vec<Evidence>,
}

/// Runs discovery. Returns what it found and the decoded kallsyms.
pub fn discover<M: PhysMem + ?Sized>(mem: &M, hints: &Hints) -> Result<(KernelInfo, Kallsyms)> {
    let mut evidence = Vec::new();
    let k = scan::find_kallsyms(mem, hints, &mut evidence)?;
    evidence.push(Evidence::Kallsyms { token_table: k.layout.token_table, count: k.layout.count });
    let (img, banner) = image::locate_image(mem, &k, hints, &mut evidence)?;
    let syms = &k.symbols;
    if let (Some(lstar), Some(entry)) = (hints.lstar, syms.addr("entry_SYSCALL_64")) {
        evidence.push(if lstar == entry {
            Evidence::LstarIsEntrySyscall { lstar }
        } else {
            Evidence::LstarMismatch { lstar, entry_syscall: entry }
        });
    }
    let (paging, kernel_root) = image::paging(mem, syms, &img, hints, &mut evidence)?;
    let text_pa = img.text_va.raw().wrapping_sub(img.delta);
    let default_direct_map = match paging {
        PagingMode::Level4 => 0xffff_8880_0000_0000,
        PagingMode::Level5 => 0xff11_0000_0000_0000,
    };
    let page_offset_base = Gva::new(image_u64(mem, syms, &img, "page_offset_base").unwrap_or(default_direct_map));
    let info = KernelInfo {
        release: banner.split_whitespace().nth(2).unwrap_or_default().to_owned(),
        banner,
        build_id: image::build_id(mem, syms, &img).map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
        text_va: img.text_va,
        text_pa: Gpa::new(text_pa),
        kaslr_virtual_offset: img.text_va.raw().wrapping_sub(image::DEFAULT_TEXT_VA.raw()) as i64,
        kaslr_physical_offset: text_pa.wrapping_sub(image::DEFAULT_TEXT_PA) as i64,
        phys_base: text_pa.wrapping_sub(img.text_va.raw().wrapping_sub(START_KERNEL_MAP.raw())),
        paging,
        kernel_root,
        page_offset_base,
        kallsyms: k.layout,
        btf: image::btf_location(syms, &img),
        evidence,
    };
    Ok((info, k))
}

impl KernelInfo {
    pub(crate) fn image(&self, syms: &crate::SymbolTable) -> Image {
        Image {
            text_va: self.text_va,
            end_va: syms.addr("_end").unwrap_or_else(|| default_end(self.text_va)),
            delta: self.text_va.raw().wrapping_sub(self.text_pa.raw()),
        }
    }
}
