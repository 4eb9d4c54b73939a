//! A halted view: with the VM paused, the lists read through the memfd equal the
//! journal's state at the pause point.

mod common;

use std::time::Duration;

use common::testkernel::{Manifest, assert_lists_match_journal};
use common::{Vm, eventually, live_memfd};
use vmscope_hv::Hypervisor;

#[test]
fn halted_lists_equal_the_journal() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, mem) = live_memfd(&mut vm);
    let m = Manifest::wait(&mem, 2, Duration::from_secs(20));
    let mut checked = 0;
    let mut last_ops = 0;
    for _ in 0..8 {
        assert!(
            eventually(Duration::from_secs(10), || m.ops(&mem) > last_ops + 10),
            "the mutator runs"
        );
        c.pause().unwrap();
        let ops = m.ops(&mem);
        last_ops = ops;
        checked += assert_lists_match_journal(&m, &mem);
        c.resume().unwrap();
    }
    assert!(
        checked >= 8 * 6,
        "too many lists caught mid-update: {checked} checked"
    );
}
