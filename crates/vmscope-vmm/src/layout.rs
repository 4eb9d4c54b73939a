//! Guest-physical layout of the boot structures, each constant with the boot-protocol
//! fact it encodes (Linux Documentation/arch/x86/boot.rst and zero-page.rst, the Intel
//! MultiProcessor Specification 1.4).

/// The GDT the VMM installs for the 64-bit entry: below the real-mode IVT end (0x500
/// is the first byte free after the BIOS data area), as Firecracker does.
pub const BOOT_GDT_START: u64 = 0x500;
/// Maximum number of GDT entries we write.
pub const BOOT_GDT_MAX: usize = 4;
/// An empty IDT right after the GDT: the kernel installs its own before enabling
/// interrupts; the boot protocol requires interrupts off on entry.
pub const BOOT_IDT_START: u64 = 0x520;

/// boot_params ("zero page"): the 64-bit boot protocol passes its address in %rsi.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// PVH boot protocol (xen/include/public/arch-x86/hvm/start_info.h): the
/// hvm_start_info structure, whose address the entry gets in %ebx.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (one entry: the initramfs), right after hvm_start_info.
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map (E820-typed entries), after the module list.
pub const PVH_MEMMAP_START: u64 = 0x6100;
/// hvm_start_info.magic.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// Initial stack pointer for the boot vCPU; the protocol only needs *a* stack below
/// the kernel, and 0x8ff0 is free low memory under the page tables.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;

/// Identity page tables for the 64-bit entry: "the range with setup_header.init_size
/// from the start address of the loaded kernel, the zero page and the command line
/// buffer get ident mapping". We map the first GiB with 2 MiB pages.
pub const PML4_START: u64 = 0x9000;
/// The page-directory-pointer table under [`PML4_START`].
pub const PDPTE_START: u64 = 0xa000;
/// The page directory under [`PDPTE_START`] (512 × 2 MiB).
pub const PDE_START: u64 = 0xb000;

/// Kernel command line (boot_params.hdr.cmd_line_ptr); anywhere below the kernel
/// that does not overlap the zero page.
pub const CMDLINE_START: u64 = 0x20000;
/// Room for the command line, including the NUL (Linux's COMMAND_LINE_SIZE is 2048).
pub const CMDLINE_MAX_SIZE: usize = 2048;

/// The Extended BIOS Data Area begins here in our e820 map; the MP floating pointer
/// lives in "the first kilobyte of the EBDA" (MP spec 4.1), and low RAM ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// The MP table (floating pointer + configuration table) at the start of the EBDA.
pub const MPTABLE_START: u64 = EBDA_START;

/// Where protected-mode kernels load and where high memory starts: 1 MiB, the
/// "HIMEM" boundary of the boot protocol.
pub const HIMEM_START: u64 = 0x10_0000;

/// boot_params.hdr.kernel_alignment for kernels we cannot ask (ELF vmlinux).
pub const KERNEL_ALIGNMENT: u32 = 0x0100_0000;
/// boot_params.hdr.boot_flag: the 0xAA55 signature.
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// boot_params.hdr.header: "HdrS".
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// boot_params.hdr.type_of_loader: 0xff, "undefined" boot loader.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
/// A bzImage's 64-bit entry point is `startup_64`, 0x200 into the protected-mode code.
pub const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// The highest address an initrd may end at without XLF_CAN_BE_LOADED_ABOVE_4G
/// (boot.rst: initrd_addr_max, default 0x37ffffff for old kernels; we stay below).
pub const INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// 32-bit PCI/MMIO hole: RAM stops at 3 GiB below 4 GiB and resumes at 4 GiB.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the MMIO hole.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The I/O APIC's MMIO base (MP table, and KVM's in-kernel IOAPIC default).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// The local APIC's MMIO base (MP table header field).
pub const APIC_ADDR: u32 = 0xfee0_0000;
/// KVM_SET_TSS_ADDR: three pages KVM needs for real-mode emulation, inside the gap.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// e820 entry types (zero-page.rst).
pub const E820_RAM: u32 = 1;
/// Reserved e820 range.
pub const E820_RESERVED: u32 = 2;

/// Legacy COM ports and their ISA IRQs: ttyS0 at 0x3f8 (IRQ 4), ttyS1 at 0x2f8 (IRQ 3).
pub const COM1_PORT: u16 = 0x3f8;
/// IRQ of COM1.
pub const COM1_IRQ: u32 = 4;
/// ttyS1.
pub const COM2_PORT: u16 = 0x2f8;
/// IRQ of COM2.
pub const COM2_IRQ: u32 = 3;
/// i8042 data and command/status ports; command 0xfe pulses the CPU reset line.
pub const I8042_DATA_PORT: u16 = 0x60;
/// i8042 command/status port.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// A QEMU-compatible `isa-debug-exit` port: a write of v ends the VMM with status v.
pub const DEBUG_EXIT_PORT: u16 = 0x501;
