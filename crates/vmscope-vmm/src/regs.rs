//! vCPU register state: the 64-bit boot entry (Linux boot protocol, "64-bit boot
//! protocol" in boot.rst), CPUID and LAPIC set-up, and reading registers back for
//! introspection.

use kvm_bindings::{CpuId, Msrs, kvm_fpu, kvm_msr_entry, kvm_regs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmscope_hv::VcpuRegisters;

use crate::boot::{BootEntry, BootProtocol};
use crate::gdt::{boot_gdt, kvm_segment_from_gdt, pvh_gdt};
use crate::layout::*;
use crate::{Error, Result};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const MSR_EFER: u32 = 0xc000_0080;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_IA32_MISC_ENABLE_FAST_STRING: u64 = 1;

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

fn gdt_for(protocol: BootProtocol) -> [u64; 4] {
    match protocol {
        BootProtocol::Linux64 => boot_gdt(),
        BootProtocol::Pvh => pvh_gdt(),
    }
}

/// Writes the boot GDT, IDT and (for the 64-bit entry) identity page tables into
/// guest memory.
pub fn write_boot_tables(mem: &GuestMemoryMmap, protocol: BootProtocol) -> Result<()> {
    for (i, entry) in gdt_for(protocol).iter().enumerate() {
        let addr = GuestAddress(BOOT_GDT_START + (i * 8) as u64);
        mem.write_obj(*entry, addr).map_err(|e| Error::guest(addr.raw_value(), e))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START)).map_err(|e| Error::guest(BOOT_IDT_START, e))?;
    if protocol == BootProtocol::Pvh {
        return Ok(()); // PVH enters with paging off
    }
    mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START)).map_err(|e| Error::guest(PML4_START, e))?;
    mem.write_obj(PDE_START | 0x03, GuestAddress(PDPTE_START)).map_err(|e| Error::guest(PDPTE_START, e))?;
    for i in 0..512u64 {
        let addr = GuestAddress(PDE_START + i * 8);
        // Present, writable, 2 MiB page: identity map of the first GiB.
        mem.write_obj((i << 21) | 0x83, addr).map_err(|e| Error::guest(addr.raw_value(), e))?;
    }
    Ok(())
}

/// Puts the boot vCPU at `entry`: in 64-bit mode with %rsi = the zero page (Linux
/// 64-bit boot protocol), or in 32-bit protected mode without paging with %ebx =
/// hvm_start_info (PVH).
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: BootEntry) -> Result<()> {
    let gdt = gdt_for(entry.protocol);
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let code = kvm_segment_from_gdt(gdt[1], 1);
    let data = kvm_segment_from_gdt(gdt[2], 2);
    let tss = kvm_segment_from_gdt(gdt[3], 3);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    let mut regs = kvm_regs { rflags: 0x2, rip: entry.rip, ..Default::default() };
    match entry.protocol {
        BootProtocol::Linux64 => {
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_START;
        }
        BootProtocol::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rbx = PVH_INFO_START;
        }
    }
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
    Ok(())
}

/// FPU, MSR and LAPIC state every vCPU starts with (as a PC after reset would).
pub fn setup_common(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))?;
    let entries: Vec<kvm_msr_entry> = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MSR_IA32_MISC_ENABLE_FAST_STRING),
    ]
    .iter()
    .map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() })
    .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| Error::Setup("too many MSRs".into()))?;
    vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;

    // LINT0 = ExtINT (the PIC), LINT1 = NMI, as the MP table's local interrupts say.
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    set_lvt(&mut lapic.regs, 0x350, 0x7); // APIC_LVT0, delivery mode ExtINT
    set_lvt(&mut lapic.regs, 0x360, 0x4); // APIC_LVT1, delivery mode NMI
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))?;
    Ok(())
}

fn set_lvt(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut b = [0u8; 4];
    for (i, v) in b.iter_mut().enumerate() {
        *v = regs[offset + i] as u8;
    }
    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
    for (i, x) in v.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *x as std::os::raw::c_char;
    }
}

/// The host's supported CPUID, with this vCPU's APIC id and the vCPU count filled in.
pub fn vcpu_cpuid(base: &CpuId, index: u8, count: u8) -> CpuId {
    let mut cpuid = base.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // EBX[31:24] initial APIC id, EBX[23:16] logical processors.
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(count) << 16);
                e.edx |= 1 << 28; // HTT: the count field is valid
            }
            0xb | 0x1f => e.edx = u32::from(index), // x2APIC id
            _ => {}
        }
    }
    cpuid
}

/// Reads what introspection needs from a (stopped) vCPU.
pub fn read_registers(vcpu: &VcpuFd) -> Result<VcpuRegisters> {
    let r = vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    let s = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let wanted = [MSR_EFER, MSR_LSTAR, MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE];
    let entries: Vec<kvm_msr_entry> =
        wanted.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
    let mut msrs = Msrs::from_entries(&entries).map_err(|_| Error::Setup("too many MSRs".into()))?;
    let n = vcpu.get_msrs(&mut msrs).map_err(kvm("KVM_GET_MSRS"))?;
    let msr = |index: u32| msrs.as_slice()[..n].iter().find(|e| e.index == index).map_or(0, |e| e.data);
    Ok(VcpuRegisters {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        efer: s.efer.max(msr(MSR_EFER)),
        lstar: msr(MSR_LSTAR),
        fs_base: s.fs.base,
        gs_base: s.gs.base,
        kernel_gs_base: msr(MSR_KERNEL_GS_BASE),
    })
}
