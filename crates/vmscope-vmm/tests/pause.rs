//! Pausing freezes the mutator: its counters do not move while paused, and move again
//! after resume.

mod common;

use std::time::Duration;

use common::testkernel::Manifest;
use common::{Vm, eventually, live_memfd};
use vmscope_hv::Hypervisor;

#[test]
fn pause_freezes_the_mutator() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, mem) = live_memfd(&mut vm);
    let m = Manifest::wait(&mem, 2, Duration::from_secs(20));
    let running = m.ops(&mem);
    assert!(
        eventually(Duration::from_secs(10), || m.ops(&mem) > running),
        "the mutator runs"
    );

    c.pause().unwrap();
    assert!(c.is_paused().unwrap());
    let frozen = (m.ops(&mem), m.iterations(&mem, 0), m.iterations(&mem, 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (m.ops(&mem), m.iterations(&mem, 0), m.iterations(&mem, 1)),
        frozen,
        "counters moved while paused"
    );
    let r0 = c.vcpu_registers(0).unwrap();
    assert_eq!(
        c.vcpu_registers(0).unwrap(),
        r0,
        "registers of a paused vCPU are stable"
    );

    c.resume().unwrap();
    assert!(!c.is_paused().unwrap());
    let both_run = || m.iterations(&mem, 0) > frozen.1 && m.iterations(&mem, 1) > frozen.2;
    assert!(
        eventually(Duration::from_secs(10), both_run),
        "both cpus run again"
    );
}
