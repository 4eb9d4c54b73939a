//! x86-64 translation on live guests: the kernel page-table root comes from the
//! vCPU's CR3 (QMP `info registers`), symbol addresses from the guest's own
//! /proc/kallsyms, and what vmscope reads at the translated addresses must equal
//! what the guest says: `linux_banner` is /proc/version, `init_uts_ns` holds
//! `uname -r` and `uname -n`. On 6.1 and 6.12, KASLR on, 4- and 5-level paging,
//! and with Linux page-table isolation forced on (the PTI root pair).

use vmscope_hv::Hypervisor;
use vmscope_mem::{Gva, PhysMem};
use vmscope_testbed::{Guest, boot, boot_with};
use vmscope_x86::{AddressSpace, Error, PagingMode, Tlb};

/// Addresses of `names`, in order, from the guest's /proc/kallsyms (one grep).
fn symbols(g: &mut Guest, names: &[&str]) -> Vec<u64> {
    let pattern: String = names.iter().map(|n| format!(" -e ' {n}$'")).collect();
    let out = g.sh(&format!("grep{pattern} /proc/kallsyms"));
    names
        .iter()
        .map(|n| {
            let line = out
                .lines()
                .find(|l| l.split_whitespace().nth(2) == Some(n))
                .unwrap_or_else(|| panic!("{n} not in /proc/kallsyms:\n{out}"));
            u64::from_str_radix(line.split(' ').next().unwrap_or(""), 16).expect("a kallsyms address")
        })
        .collect()
}

/// A NUL-terminated string at kernel virtual address `va`, translated page by page.
fn kernel_cstr(mem: &impl PhysMem, space: &AddressSpace, va: u64, max: usize) -> String {
    let mut out = Vec::new();
    while out.len() < max {
        let t = space.translate(mem, Gva::new(va + out.len() as u64)).unwrap_or_else(|e| panic!("{e}"));
        let n = (t.bytes_to_page_end() as usize).min(max - out.len());
        let mut buf = vec![0u8; n];
        mem.read(t.gpa, &mut buf).expect("read translated kernel memory");
        if let Some(nul) = buf.iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..nul]);
            return String::from_utf8_lossy(&out).into_owned();
        }
        out.extend_from_slice(&buf);
    }
    panic!("no NUL within {max} bytes at {va:#x}");
}

fn translate_known_symbols(mut g: Guest, la57: bool, pti: bool) {
    let version = g.sh("cat /proc/version");
    let release = g.sh("uname -r").trim().to_owned();
    let nodename = g.sh("uname -n").trim().to_owned();
    let names = ["linux_banner", "init_uts_ns", "page_offset_base", "entry_SYSCALL_64", "_text"];
    let syms = symbols(&mut g, &names);
    let [banner, uts, page_offset_base, entry, text] = syms[..] else { unreachable!("five names, five addresses") };
    if g.vm.config().kaslr {
        assert_ne!(text, 0xffff_ffff_8100_0000, "KASLR should have moved the kernel");
    }

    let pti_on = if pti { g.sh("dmesg | grep 'page tables isolation'") } else { String::new() };
    let ram = g.ram();
    let hv = g.vm.hv();
    hv.pause().expect("pause");
    let regs = hv.vcpu_registers(0).expect("vCPU 0 registers over QMP");
    assert_eq!(regs.la57(), la57, "CR4.LA57 in {:#x}", regs.cr4);
    let space = AddressSpace::from_cr3(regs.cr3, regs.cr4);
    assert_eq!(space.mode(), if la57 { PagingMode::Level5 } else { PagingMode::Level4 });
    // Under PTI the vCPU may be on the user half of the pair; the kernel half is the
    // 8 KiB-aligned page below.
    let kernel = if pti { space.pti_kernel() } else { space };

    // linux_banner is /proc/version, in read-only, non-executable kernel memory.
    let t = kernel.translate(&ram, Gva::new(banner)).unwrap_or_else(|e| panic!("linux_banner: {e}"));
    assert_eq!(kernel_cstr(&ram, &kernel, banner, 1024), version);
    assert!(!t.perms.writable && !t.perms.user && t.perms.nx, "{t:?}");

    // init_uts_ns starts with struct new_utsname: sysname, nodename, release, each
    // 65 bytes.
    assert_eq!(kernel_cstr(&ram, &kernel, uts, 65), "Linux");
    assert_eq!(kernel_cstr(&ram, &kernel, uts + 65, 65), nodename);
    assert_eq!(kernel_cstr(&ram, &kernel, uts + 130, 65), release);

    // The direct map (at the randomised page_offset_base) maps the banner's frame too.
    let pob_gpa = kernel.translate(&ram, Gva::new(page_offset_base)).expect("page_offset_base").gpa;
    let pob = ram.read_u64(pob_gpa).expect("read page_offset_base");
    assert!(space.mode().is_canonical(Gva::new(pob)) && pob >= space.mode().upper_half_start().raw());
    let alias = kernel.translate(&ram, Gva::new(pob + t.gpa.raw())).expect("direct-map alias");
    assert_eq!(alias.gpa, t.gpa);

    // Batched and cached translation agree with the single walk.
    let gvas: Vec<Gva> = [banner, uts, uts + 130, page_offset_base, entry, pob + t.gpa.raw()].map(Gva::new).to_vec();
    let mut out = Vec::new();
    kernel.translate_batch(&ram, &gvas, &mut out);
    let mut tlb = Tlb::new(64);
    for (&gva, b) in gvas.iter().zip(&out) {
        let single = kernel.translate(&ram, gva).expect("single walk");
        assert_eq!(b.as_ref().ok(), Some(&single));
        assert_eq!(tlb.translate(&ram, &kernel, gva).ok(), Some(single));
        assert_eq!(tlb.translate(&ram, &kernel, gva).ok(), Some(single));
    }

    // The kernel half of the address space, walked whole: bounded, and the run that
    // holds the banner translates it as the walk does.
    let runs: Vec<_> = kernel.mappings(&ram).upper_half().collect();
    let run = runs
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .find(|r| r.contains(Gva::new(banner)))
        .expect("a mapped run holds linux_banner");
    assert_eq!(run.gpa.raw() + (banner - run.gva.raw()), t.gpa.raw());
    let mapped: u64 = runs.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.len).sum();
    assert!(mapped >= 512 << 20, "the kernel maps at least the 1 GiB guest's RAM: {mapped:#x}");

    if pti {
        assert!(pti_on.contains("enabled"), "PTI should be on: {pti_on}");
        // The user half maps the syscall entry (same frame) but not the banner.
        let user = kernel.pti_user();
        assert_eq!(user.root().gpa().raw(), kernel.root().gpa().raw() | 0x1000);
        let e = user.translate(&ram, Gva::new(banner)).expect_err("PTI hides the kernel from the user half");
        assert!(matches!(e, Error::NotPresent { .. }), "{e}");
        let k = kernel.translate(&ram, Gva::new(entry)).expect("entry_SYSCALL_64, kernel half");
        let u = user.translate(&ram, Gva::new(entry)).expect("entry_SYSCALL_64, user half");
        assert_eq!(u.gpa, k.gpa);
    }
    hv.resume().expect("resume");
}

#[test]
fn linux_6_1_kaslr() {
    translate_known_symbols(boot("6.1"), false, false);
}

#[test]
fn linux_6_12_kaslr() {
    translate_known_symbols(boot("6.12"), false, false);
}

#[test]
fn linux_6_1_la57() {
    translate_known_symbols(boot_with("6.1", |c| c.la57 = true), true, false);
}

#[test]
fn linux_6_12_la57() {
    translate_known_symbols(boot_with("6.12", |c| c.la57 = true), true, false);
}

#[test]
fn linux_6_1_pti_pair() {
    translate_known_symbols(boot_with("6.1", |c| c.append.push("pti=on".into())), false, true);
}
