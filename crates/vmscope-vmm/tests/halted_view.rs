//! A halted view: with the VM paused, the lists read through the memfd equal the
//! journal's state at the pause point.

mod common;

use std::time::Duration;

use common::testkernel::{assert_lists_match_journal, wait_manifest};
use common::{Vm, live_memfd};
use vmscope_hv::Hypervisor;
use vmscope_testbed::eventually;

#[test]
fn halted_lists_equal_the_journal() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, mem) = live_memfd(&mut vm);
    let m = wait_manifest(&mem, 2, Duration::from_secs(20));
    let mut checked = 0;
    let mut last_ops = 0;
    for _ in 0..8 {
        assert!(eventually(Duration::from_secs(10), || m.ops(&mem).unwrap() > last_ops + 10), "the mutator runs");
        c.pause().unwrap();
        let ops = m.ops(&mem).unwrap();
        last_ops = ops;
        checked += assert_lists_match_journal(&m, &mem);
        c.resume().unwrap();
    }
    assert!(checked >= 8 * 6, "too many lists caught mid-update: {checked} checked");
}
