//! Pausing freezes the mutator: its counters do not move while paused, and move again
//! after resume.

mod common;

use std::time::Duration;

use common::testkernel::wait_manifest;
use common::{Vm, live_memfd};
use vmscope_hv::Hypervisor;
use vmscope_testbed::eventually;

#[test]
fn pause_freezes_the_mutator() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, mem) = live_memfd(&mut vm);
    let m = wait_manifest(&mem, 2, Duration::from_secs(20));
    let running = m.ops(&mem).unwrap();
    assert!(eventually(Duration::from_secs(10), || m.ops(&mem).unwrap() > running), "the mutator runs");

    c.pause().unwrap();
    assert!(c.is_paused().unwrap());
    let frozen = (m.ops(&mem).unwrap(), m.iterations(&mem, 0).unwrap(), m.iterations(&mem, 1).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (m.ops(&mem).unwrap(), m.iterations(&mem, 0).unwrap(), m.iterations(&mem, 1).unwrap()),
        frozen,
        "counters moved while paused"
    );
    let r0 = c.vcpu_registers(0).unwrap();
    assert_eq!(c.vcpu_registers(0).unwrap(), r0, "registers of a paused vCPU are stable");

    c.resume().unwrap();
    assert!(!c.is_paused().unwrap());
    let both_run = || m.iterations(&mem, 0).unwrap() > frozen.1 && m.iterations(&mem, 1).unwrap() > frozen.2;
    assert!(eventually(Duration::from_secs(10), both_run), "both cpus run again");
}
