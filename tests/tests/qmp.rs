//! QMP against a real QEMU: pause and resume with events, registers of every vCPU,
//! typed errors, and the guest memory map checked against the guest's /proc/iomem.

use std::time::Duration;

use vmscope_agent::Request;
use vmscope_hv::{Error, Hypervisor};
use vmscope_testbed::boot;

#[test]
fn pause_resume_events_and_errors() {
    let mut g = boot("6.12");
    let hv = g.vm.hv();
    assert!(!hv.is_paused().unwrap());
    hv.pause().unwrap();
    hv.qmp().wait_event("STOP", Duration::from_secs(5)).expect("a STOP event");
    assert!(hv.is_paused().unwrap());
    assert_eq!(hv.qmp().status().unwrap().0, "paused");
    // A paused guest does not answer.
    assert!(g.agent.call_with(&Request::Ping { nonce: 1 }, Duration::from_millis(300)).is_err());
    hv.resume().unwrap();
    hv.qmp().wait_event("RESUME", Duration::from_secs(5)).expect("a RESUME event");
    assert_eq!(g.agent.sh("echo back").unwrap(), "back\n");

    match hv.qmp().execute("no-such-command", None) {
        Err(Error::Command { class, .. }) => assert_eq!(class, "CommandNotFound"),
        other => panic!("expected a CommandNotFound error, got {other:?}"),
    }
    let (major, ..) = hv.qmp().version;
    assert!(major >= 7);
}

#[test]
fn registers_of_every_vcpu() {
    let g = vmscope_testbed::boot_with("6.1", |c| c.vcpus = 3);
    let hv = g.vm.hv();
    assert_eq!(hv.vcpu_count().unwrap(), 3);
    for i in 0..3 {
        let r = hv.vcpu_registers(i).unwrap();
        assert!(r.cr0 & (1 << 31) != 0, "vCPU {i}: paging off? cr0={:#x}", r.cr0);
        assert!(r.efer & (1 << 10) != 0, "vCPU {i}: not in long mode, efer={:#x}", r.efer);
        assert!(r.page_table_root() != 0);
        assert!(r.gs_base >> 47 == 0x1ffff, "vCPU {i}: gs_base {:#x} is not a kernel address", r.gs_base);
    }
}

#[test]
fn memory_map_covers_the_guests_ram() {
    let mut g = vmscope_testbed::boot_with("6.1", |c| c.memory_mib = 512);
    let map = g.vm.hv().memory_map().unwrap();
    assert_eq!(map.backing_size(), 512 << 20, "{map:?}");
    let iomem = g.sh("grep 'System RAM' /proc/iomem");
    let mut guest_ram = 0;
    for line in iomem.lines() {
        let (a, b) = line.trim().split(' ').next().unwrap().split_once('-').unwrap();
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        assert!(map.is_backed(vmscope_mem::Gpa::new(a), b - a + 1), "{line} not in {map:?}");
        guest_ram += b - a + 1;
    }
    // The firmware keeps a little for itself; the rest the guest uses.
    assert!(guest_ram > (500 << 20), "guest sees only {guest_ram} bytes of RAM");
}
