//! The test kernel boots on 2 vCPUs, publishes its manifest and runs the mutator on
//! both; the control socket is private; a guest reset ends the VMM cleanly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::testkernel::wait_manifest;
use common::{Vm, live_memfd};
use vmscope_hv::Hypervisor;

#[test]
fn testkernel_boots_and_publishes_its_manifest() {
    let mut vm = Vm::testkernel(2, "memfd", "tk.lists=8");
    let (c, mem) = live_memfd(&mut vm);
    let m = wait_manifest(&mem, 2, Duration::from_secs(20));
    assert_eq!(m.version, 1);
    assert_eq!(m.nr_cpus, 2);
    assert_eq!(m.nr_lists, 8);
    assert_eq!(m.ram_end, 2 << 30);
    for size in [4096, 2 << 20, 1 << 30] {
        assert!(m.mappings.iter().any(|x| x.page_size == size), "no mapping with {size}-byte pages");
    }
    assert!(m.mappings.iter().any(|x| x.va == 0xffff_8880_0000_0000), "direct map at page_offset_base");
    assert!(m.mappings.iter().any(|x| x.va == 0xffff_ffff_8000_0000), "kernel map at __START_KERNEL_map");
    assert_eq!(m.symbol("init_top_pgt").unwrap() - 0xffff_8880_0000_0000, m.cr3);
    let d = m.dirty(&mem).unwrap().expect("a kernel with tk.dirty");
    assert_eq!((d.pages_per_s, d.written, d.pfn_of(0)), (0, 0, None), "without tk.dirty the page writer is off");
    assert!(vm.console_text().contains("vmscope testkernel: booting"));

    let st = c.status().unwrap();
    assert_eq!((st.state.as_str(), st.vcpus, st.pid), ("running", 2, vm.pid()));
    assert_eq!(c.vcpu_count().unwrap(), 2);
    let mode = std::fs::metadata(vm.control()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "control socket mode");

    // Both vCPUs run the test kernel's page tables in long mode.
    for cpu in 0..2 {
        let r = c.vcpu_registers(cpu).unwrap();
        assert_eq!(r.page_table_root(), m.cr3, "vCPU {cpu} CR3");
        assert_ne!(r.efer & (1 << 10), 0, "vCPU {cpu} EFER.LMA");
        assert!(r.rip >= 0xffff_ffff_8000_0000, "vCPU {cpu} runs kernel text: {:#x}", r.rip);
    }
    assert!(c.vcpu_registers(2).is_err());
}

#[test]
fn guest_reset_ends_the_vmm_with_status_zero() {
    let mut vm = Vm::testkernel(1, "memfd", "tk.exit_after=300");
    let st = vm.wait_exit(Duration::from_secs(30)).expect("the VMM ends after the guest resets");
    assert!(st.success(), "exit status {st}");
    assert!(vm.console_text().contains("300 ops done, resetting"));
    assert!(!vm.control().exists(), "the control socket is removed on exit");
}

#[test]
fn quit_ends_the_vmm() {
    let mut vm = Vm::testkernel(1, "private", "");
    let c = vm.client();
    c.quit().unwrap();
    let st = vm.wait_exit(Duration::from_secs(10)).expect("the VMM ends on quit");
    assert!(st.success(), "exit status {st}");
}

#[test]
fn a_guest_fault_ends_the_vmm_with_the_debug_exit_status() {
    let mut vm = Vm::testkernel(1, "memfd", "tk.fault=1");
    let st = vm.wait_exit(Duration::from_secs(30)).expect("the VMM ends after the fault");
    assert_eq!(st.code(), Some(99), "exit status {st}");
    assert!(vm.console_text().contains("tk: exception 14"), "console:\n{}", vm.console_text());
}
