//! Loading a guest: kernel (ELF vmlinux or test kernel, or bzImage), initramfs,
//! command line, boot_params ("zero page") with the e820 map, and the MP table.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{Address, Bytes, GuestAddress};

use crate::layout::*;
use crate::memory::GuestRam;
use crate::{Error, Result, mptable};

/// How the boot vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BootProtocol {
    /// Linux x86-64 boot protocol: long mode, identity-mapped, %rsi = boot_params.
    /// Works for ELF kernels and bzImages.
    #[default]
    Linux64,
    /// PVH: 32-bit protected mode, paging off, %ebx = hvm_start_info; needs an ELF
    /// kernel with the XEN_ELFNOTE_PHYS32_ENTRY note (Linux with CONFIG_PVH).
    Pvh,
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEntry {
    /// The entry point (guest-physical).
    pub rip: u64,
    /// The protocol it expects.
    pub protocol: BootProtocol,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// An ELF kernel (vmlinux, the test kernel) or a bzImage.
    pub kernel: PathBuf,
    /// An initramfs to load high in low memory.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// Number of vCPUs the MP table describes.
    pub vcpus: u8,
    /// The entry protocol.
    pub protocol: BootProtocol,
}

/// Loads everything into guest memory and returns the entry point.
pub fn load(ram: &GuestRam, spec: &BootSpec) -> Result<BootEntry> {
    let mut kernel = open(&spec.kernel, "kernel")?;
    let mut magic = [0u8; 4];
    kernel.read_exact(&mut magic).map_err(|e| Error::io(format!("reading {}", spec.kernel.display()), e))?;
    let himem = Some(GuestAddress(HIMEM_START));
    let (entry, setup_header) = if magic == *b"\x7fELF" {
        // The 64-bit boot protocol's entry is the ELF entry, a physical address for
        // vmlinux (startup_64) and for the test kernel; PVH's is in an ELF note.
        let r = Elf::load(&ram.mem, None, &mut kernel, himem)
            .map_err(|e| Error::Load { what: "kernel (ELF)", msg: e.to_string() })?;
        if spec.protocol == BootProtocol::Pvh {
            let PvhBootCapability::PvhEntryPresent(pvh) = r.pvh_boot_cap else {
                return Err(Error::Load {
                    what: "kernel (ELF)",
                    msg: "no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)".into(),
                });
            };
            load_pvh(ram, spec)?;
            return Ok(BootEntry { rip: pvh.raw_value(), protocol: BootProtocol::Pvh });
        }
        (r.kernel_load.raw_value(), None)
    } else {
        if spec.protocol == BootProtocol::Pvh {
            return Err(Error::Load { what: "kernel (bzImage)", msg: "PVH needs an ELF kernel".into() });
        }
        let r = BzImage::load(&ram.mem, None, &mut kernel, himem)
            .map_err(|e| Error::Load { what: "kernel (bzImage)", msg: e.to_string() })?;
        (r.kernel_load.raw_value() + BZIMAGE_64BIT_ENTRY_OFFSET, r.setup_header)
    };

    let mut params = boot_params::default();
    if let Some(h) = setup_header {
        params.hdr = h;
    } else {
        params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        params.hdr.header = KERNEL_HDR_MAGIC;
        params.hdr.kernel_alignment = KERNEL_ALIGNMENT;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;

    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = write_cmdline(ram, &spec.cmdline)?;

    if let Some(initrd) = &spec.initrd {
        let (addr, size) = load_initrd(ram, initrd)?;
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let e820 = e820_map(ram);
    for (i, (addr, size, type_)) in e820.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry { addr: *addr, size: *size, r#type: *type_ };
    }
    params.e820_entries = e820.len() as u8;
    ram.mem.write_obj(params, GuestAddress(ZERO_PAGE_START)).map_err(|e| Error::guest(ZERO_PAGE_START, e))?;

    write_mptable_and_tables(ram, spec, BootProtocol::Linux64)?;
    Ok(BootEntry { rip: entry, protocol: BootProtocol::Linux64 })
}

fn write_mptable_and_tables(ram: &GuestRam, spec: &BootSpec, protocol: BootProtocol) -> Result<()> {
    let mp = mptable::build(MPTABLE_START, spec.vcpus);
    ram.mem.write_slice(&mp, GuestAddress(MPTABLE_START)).map_err(|e| Error::guest(MPTABLE_START, e))?;
    crate::regs::write_boot_tables(&ram.mem, protocol)
}

fn write_cmdline(ram: &GuestRam, cmdline: &str) -> Result<u32> {
    let bytes = cmdline.as_bytes();
    if bytes.len() >= CMDLINE_MAX_SIZE || bytes.contains(&0) {
        return Err(Error::Load {
            what: "command line",
            msg: format!("longer than {} bytes or has a NUL", CMDLINE_MAX_SIZE - 1),
        });
    }
    let mut buf = bytes.to_vec();
    buf.push(0);
    ram.mem.write_slice(&buf, GuestAddress(CMDLINE_START)).map_err(|e| Error::guest(CMDLINE_START, e))?;
    Ok(buf.len() as u32)
}

/// PVH: hvm_start_info with the command line, the initramfs as module 0, and the
/// memory map.
fn load_pvh(ram: &GuestRam, spec: &BootSpec) -> Result<()> {
    write_cmdline(ram, &spec.cmdline)?;
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: PVH_MEMMAP_START,
        ..Default::default()
    };
    if let Some(initrd) = &spec.initrd {
        let (addr, size) = load_initrd(ram, initrd)?;
        let module = hvm_modlist_entry { paddr: addr, size, ..Default::default() };
        ram.mem.write_obj(module, GuestAddress(PVH_MODLIST_START)).map_err(|e| Error::guest(PVH_MODLIST_START, e))?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_START;
    }
    let e820 = e820_map(ram);
    for (i, (addr, size, type_)) in e820.iter().enumerate() {
        let at = PVH_MEMMAP_START + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        let e = hvm_memmap_table_entry { addr: *addr, size: *size, type_: *type_, reserved: 0 };
        ram.mem.write_obj(e, GuestAddress(at)).map_err(|e| Error::guest(at, e))?;
    }
    info.memmap_entries = e820.len() as u32;
    ram.mem.write_obj(info, GuestAddress(PVH_INFO_START)).map_err(|e| Error::guest(PVH_INFO_START, e))?;
    write_mptable_and_tables(ram, spec, BootProtocol::Pvh)
}

fn open(path: &Path, what: &'static str) -> Result<File> {
    File::open(path).map_err(|e| Error::Load { what, msg: format!("{}: {e}", path.display()) })
}

/// The initrd goes at the top of low RAM, page aligned, below the boot protocol's
/// initrd_addr_max.
fn load_initrd(ram: &GuestRam, path: &Path) -> Result<(u64, u64)> {
    let mut f = open(path, "initramfs")?;
    let size = f.metadata().map_err(|e| Error::io(format!("stat {}", path.display()), e))?.len();
    let top = ram.map.regions()[0].end().min(INITRD_ADDR_MAX + 1);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= HIMEM_START + (16 << 20))
        .ok_or_else(|| Error::Load { what: "initramfs", msg: format!("{size} bytes do not fit in low RAM") })?;
    ram.mem
        .read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| Error::Load { what: "initramfs", msg: e.to_string() })?;
    Ok((addr, size))
}

/// RAM below the EBDA, the EBDA reserved, RAM from 1 MiB to the hole, RAM above 4 GiB.
pub fn e820_map(ram: &GuestRam) -> Vec<(u64, u64, u32)> {
    let mut v = vec![(0, EBDA_START, E820_RAM), (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED)];
    for r in ram.map.regions() {
        let start = r.gpa.raw().max(HIMEM_START);
        if r.end() > start {
            v.push((start, r.end() - start, E820_RAM));
        }
    }
    v
}
