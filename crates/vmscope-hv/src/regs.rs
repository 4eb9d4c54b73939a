//! vCPU register state.

use serde::{Deserialize, Serialize};

/// The registers introspection uses: general purpose, control, and the MSRs that
/// locate the kernel (EFER, LSTAR, GS bases).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct VcpuRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// The syscall entry point (MSR 0xc0000082); 0 when the hypervisor does not say.
    pub lstar: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
}

impl VcpuRegisters {
    /// CR4.LA57: 5-level paging is on.
    pub fn la57(&self) -> bool {
        self.cr4 & (1 << 12) != 0
    }

    /// CR4.PCIDE: the low 12 bits of CR3 are a PCID, not flags.
    pub fn pcide(&self) -> bool {
        self.cr4 & (1 << 17) != 0
    }

    /// The physical address of the top-level page table (CR3 without PCID/flags).
    pub fn page_table_root(&self) -> u64 {
        self.cr3 & 0x000f_ffff_ffff_f000
    }
}
