//! vmscope-linux discovery on real guests: from guest RAM alone, and again with
//! vCPU 0's CR3/CR4, the kernel is found where the guest itself says it is —
//! `_text` in its /proc/kallsyms and /proc/iomem, its banner in /proc/version, its
//! build ID in /sys/kernel/notes, `init_top_pgt`, the paging mode — with KASLR on
//! and off, under 4- and 5-level paging.

use vmscope_hv::Hypervisor;
use vmscope_linux::{Evidence, Hints, Kernel, elf};
use vmscope_testbed::{Guest, boot_with};
use vmscope_x86::PagingMode;

fn kallsyms_addr(g: &mut Guest, name: &str) -> u64 {
    let line = g.sh(&format!("grep -m1 ' {name}$' /proc/kallsyms"));
    u64::from_str_radix(line.split(' ').next().unwrap_or(""), 16).unwrap_or_else(|_| panic!("{name}: {line:?}"))
}

fn check(mut g: Guest, kaslr: bool, la57: bool) {
    let text = kallsyms_addr(&mut g, "_text");
    let top = kallsyms_addr(&mut g, "init_top_pgt");
    let code = g.sh("grep -m1 'Kernel code' /proc/iomem");
    let text_pa = u64::from_str_radix(code.trim().split('-').next().unwrap_or(""), 16).expect("iomem start");
    let version = g.sh("cat /proc/version");
    let release = g.sh("uname -r");
    let notes = g.agent.read_file("/sys/kernel/notes", 1 << 16).expect("/sys/kernel/notes");
    let build_id: String =
        elf::gnu_build_id(&notes).expect("a build ID note").iter().map(|b| format!("{b:02x}")).collect();
    let regs = g.vm.hv().vcpu_registers(0).expect("registers");
    assert_eq!(regs.la57(), la57);

    for hints in [Hints::none(), Hints::from_registers(regs.cr3, regs.cr4)] {
        let kernel = Kernel::attach(g.ram(), hints).unwrap_or_else(|e| panic!("attach with {hints:?}: {e}"));
        let info = kernel.info();
        let ctx = format!("hints {hints:?}, evidence {:#?}", info.evidence);
        assert_eq!(info.text_va.raw(), text, "{ctx}");
        assert_eq!(info.text_pa.raw(), text_pa, "{ctx}");
        assert_eq!(info.banner, version, "{ctx}");
        assert_eq!(info.release, release.trim(), "{ctx}");
        assert_eq!(info.build_id.as_deref(), Some(build_id.as_str()), "{ctx}");
        assert_eq!(info.paging, if la57 { PagingMode::Level5 } else { PagingMode::Level4 }, "{ctx}");
        assert_eq!(info.kernel_root.gpa().raw(), top - text + text_pa, "init_top_pgt; {ctx}");
        assert_eq!(info.kaslr_virtual_offset == 0, !kaslr, "{ctx}");
        assert_eq!(info.kaslr_physical_offset == 0, !kaslr, "{ctx}");
        assert_eq!(info.kaslr_virtual_offset, text as i64 - 0xffff_ffff_8100_0000_u64 as i64, "{ctx}");
        match hints.cr3 {
            None => assert!(
                !info
                    .evidence
                    .iter()
                    .any(|e| matches!(e, Evidence::Cr3KernelMapping { .. } | Evidence::PagingFromCr4 { .. })),
                "{ctx}"
            ),
            Some(_) => {
                assert!(matches!(info.evidence[0], Evidence::Cr3KernelMapping { .. }), "{ctx}");
                assert!(info.evidence.iter().any(|e| matches!(e, Evidence::PagingFromCr4 { .. })), "{ctx}");
            }
        }
        // The kernel root translates the kernel: the banner reads back through it.
        let mut buf = vec![0u8; version.len()];
        let banner = kernel.symbols().require("linux_banner").unwrap();
        kernel.kernel_mem().read(banner, &mut buf).unwrap();
        assert_eq!(buf, version.as_bytes());
    }
}

#[test]
fn linux_6_1_kaslr() {
    check(boot_with("6.1", |c| c.kaslr = true), true, false);
}

#[test]
fn linux_6_1_nokaslr() {
    check(boot_with("6.1", |c| c.kaslr = false), false, false);
}

#[test]
fn linux_6_12_kaslr() {
    check(boot_with("6.12", |c| c.kaslr = true), true, false);
}

#[test]
fn linux_6_12_nokaslr() {
    check(boot_with("6.12", |c| c.kaslr = false), false, false);
}

#[test]
fn linux_6_12_five_level_kaslr() {
    check(
        boot_with("6.12", |c| {
            c.kaslr = true;
            c.la57 = true;
        }),
        true,
        true,
    );
}
