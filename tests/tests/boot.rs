//! The lab bench end to end: each kernel boots under QEMU, its RAM is read from
//! outside, and the kernel banner found there equals the guest's own /proc/version.

use vmscope_hv::Hypervisor;
use vmscope_mem::PhysMem;
use vmscope_testbed::{Guest, boot_with, find_banners};

/// Finds `linux_banner` twice: by scanning all of RAM for banner-shaped strings, and
/// at the physical address the guest itself gives (its /proc/iomem "Kernel code" start
/// plus the symbol's offset from `_text` in its /proc/kallsyms). Both must equal the
/// guest's /proc/version.
fn banner_matches_proc_version(mut g: Guest) {
    // Scan first, so the agent's own copy of /proc/version is not yet in RAM.
    let ram = g.ram();
    let banners = find_banners(&ram);
    let proc_version = g.sh("cat /proc/version");
    assert!(
        proc_version.starts_with("Linux version ") && proc_version.contains(&g.kernel.release),
        "unexpected /proc/version: {proc_version:?}"
    );
    assert!(banners.contains(&proc_version), "/proc/version is not in RAM; banners found: {banners:#?}");

    let sym = |g: &mut Guest, name: &str| {
        let line = g.sh(&format!("grep -m1 ' {name}$' /proc/kallsyms"));
        u64::from_str_radix(line.split(' ').next().unwrap_or(""), 16).expect("a kallsyms address")
    };
    let (text, banner) = (sym(&mut g, "_text"), sym(&mut g, "linux_banner"));
    let code = g.sh("grep -m1 'Kernel code' /proc/iomem");
    let code_start = u64::from_str_radix(code.trim().split('-').next().unwrap_or(""), 16).expect("iomem start");
    let mut buf = vec![0u8; proc_version.len() + 1];
    ram.read(vmscope_mem::Gpa::new(code_start + (banner - text)), &mut buf).expect("read linux_banner");
    assert_eq!(
        String::from_utf8_lossy(&buf),
        format!("{proc_version}\0"),
        "linux_banner at the guest-given address differs from /proc/version"
    );
}

#[test]
fn linux_6_1_banner() {
    banner_matches_proc_version(boot_with("6.1", |c| c.kaslr = false));
}

#[test]
fn linux_6_12_banner() {
    banner_matches_proc_version(boot_with("6.12", |c| c.kaslr = false));
}

#[test]
fn kaslr_moves_the_kernel() {
    let mut g = boot_with("6.1", |c| c.kaslr = true);
    let cmdline = g.sh("cat /proc/cmdline");
    assert!(!cmdline.contains("nokaslr"), "{cmdline}");
    // With KASLR the text no longer starts at the link address.
    let stext = g.sh("grep ' _stext$' /proc/kallsyms");
    assert!(!stext.starts_with("ffffffff81000000"), "KASLR did not move _stext: {stext}");
    banner_matches_proc_version(g);
}

#[test]
fn four_gib_across_the_pci_hole() {
    let mut g = boot_with("6.12", |c| c.memory_mib = 4096);
    let map = g.vm.hv().memory_map().expect("memory map");
    // All of the backend is mapped, but perhaps the legacy VGA window.
    assert_eq!(map.backing_size(), 4 << 30, "map: {map:?}");
    assert!(map.ram_size() >= (4 << 30) - (128 << 10), "map: {map:?}");
    assert!(map.end() > 1 << 32, "no RAM above 4 GiB: {map:?}");
    // Every System RAM range the guest knows lies in our map.
    let iomem = g.sh("grep 'System RAM' /proc/iomem");
    for line in iomem.lines() {
        let span = line.trim().split(' ').next().expect("a range");
        let (a, b) = span.split_once('-').expect("start-end");
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        assert!(map.is_backed(vmscope_mem::Gpa::new(a), b - a + 1), "guest RAM {span} not in {map:?}");
    }
    banner_matches_proc_version(g);
}

#[test]
fn five_level_paging() {
    let mut g = boot_with("6.12", |c| c.la57 = true);
    let regs = g.vm.hv().vcpu_registers(0).expect("registers");
    assert!(regs.la57(), "CR4.LA57 is clear: cr4={:#x}", regs.cr4);
    let flags = g.sh("grep -m1 '^flags' /proc/cpuinfo");
    assert!(flags.split_whitespace().any(|f| f == "la57"), "guest CPU lacks la57: {flags}");
    banner_matches_proc_version(g);
}
