//! A pause you can rely on: many pause + resume cycles through the control socket,
//! each of which really stops both vCPUs (their loop counters, read from guest RAM,
//! stand still while paused) and lets them run again.
//!
//! How long the cycles take (median, p99) is measured and reported by the lab
//! (`vmscope-lab --experiment pause --hypervisor builtin`), not asserted here: on a
//! shared 2-core host the tail is the scheduler's.

mod common;

use std::time::{Duration, Instant};

use common::testkernel::wait_manifest;
use common::{Vm, live_memfd};
use vmscope_hv::Hypervisor;

const CYCLES: usize = 300;

#[test]
fn every_pause_stops_every_vcpu() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, mem) = live_memfd(&mut vm);
    let m = wait_manifest(&mem, 2, Duration::from_secs(20));
    let counters = || (0..2).map(|cpu| m.iterations(&mem, cpu).expect("reading a counter")).collect::<Vec<u64>>();

    let mut took = Vec::with_capacity(CYCLES);
    let mut ran = 0;
    let mut last = counters();
    for i in 0..CYCLES {
        let t0 = Instant::now();
        assert!(c.pause_if_running().unwrap(), "cycle {i}: the guest was running, so this pause stopped it");
        let paused = t0.elapsed();
        let frozen = counters();
        std::thread::sleep(Duration::from_micros(200));
        assert_eq!(counters(), frozen, "cycle {i}: a vCPU ran while the VM was paused");
        if frozen != last {
            ran += 1;
        }
        last = frozen;
        let t1 = Instant::now();
        c.resume().unwrap();
        took.push(paused + t1.elapsed());
        // Let the guest run, so that the next pause has busy vCPUs to stop.
        std::thread::sleep(Duration::from_micros(500));
    }
    assert!(ran > CYCLES / 2, "the guest ran between most cycles ({ran} of {CYCLES})");

    took.sort();
    let median = took[CYCLES / 2];
    let p99 = took[CYCLES * 99 / 100];
    eprintln!("pause + resume over {CYCLES} cycles: median {median:?}, p99 {p99:?}, max {:?}", took[CYCLES - 1]);
}
