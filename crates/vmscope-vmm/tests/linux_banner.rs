//! The Debian 6.1 kernel's ELF vmlinux, entered through the 64-bit boot protocol or
//! its PVH entry,
//! prints its `Linux version` banner on ttyS0. (Early boot works even where KVM runs
//! the guest through its instruction emulator; a full boot needs hardware
//! virtualization, see linux_full_boot.rs.)

mod common;

use std::time::Duration;

use common::{Vm, kernel};

fn banner(extra: &[&str]) {
    let vmlinux = kernel("6.1").vmlinux;
    let mut args = extra.to_vec();
    args.extend(["--memory", "512M", "--cmdline", "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr panic=-1"]);
    let mut vm = Vm::start(&vmlinux, &args);
    let ok = vm.wait_console("Linux version 6.1", Duration::from_secs(60));
    assert!(ok, "no banner on ttyS0; console so far:\n{}", vm.console_text());
}

#[test]
fn debian_vmlinux_prints_its_banner() {
    banner(&[]);
}

#[test]
fn debian_vmlinux_prints_its_banner_through_pvh() {
    banner(&["--boot", "pvh"]);
}
