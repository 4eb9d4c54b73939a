//! The snapshot measurements of the crate README (ignored by default; run with
//! `cargo test --release -p vmscope-e2e --test snap_measure -- --ignored --nocapture`).
//! An idle 1 GiB guest first; then again after QEMU's background snapshot has
//! allocated all of the memfd, which is the worst case (all 1 GiB backed).

use std::time::Duration;

use vmscope_snap::live::{precopy_snap, qemu_background_snap};
use vmscope_snap::{SnapOptions, SnapStats, Source, halt_snap, qemu_dump_guest_memory};
use vmscope_testbed::boot;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(label: &str, runs: &[SnapStats]) {
    let mut down: Vec<f64> = runs.iter().map(|s| ms(s.downtime)).collect();
    let mut total: Vec<f64> = runs.iter().map(|s| ms(s.total)).collect();
    down.sort_by(f64::total_cmp);
    total.sort_by(f64::total_cmp);
    let copied = runs.last().map_or(0, |s| s.copied_bytes) >> 20;
    eprintln!(
        "| {label} | {copied} MiB | {:.1} ({:.1}-{:.1}) | {:.0} ({:.0}-{:.0}) |",
        down[down.len() / 2],
        down[0],
        down[down.len() - 1],
        total[total.len() / 2],
        total[0],
        total[total.len() - 1]
    );
}

#[test]
#[ignore]
fn measure_snapshots() {
    let g = boot("6.1");
    let hv = g.vm.hv();
    let ram = g.ram();
    let opts = SnapOptions::default();
    let live = g.ram();
    eprintln!("| technique | copied | guest paused, ms: median (min-max) | total, ms |");
    for phase in ["idle guest", "all RAM backed"] {
        let halt: Vec<_> = (0..5).map(|_| halt_snap(hv, Source::Backed(&ram), opts).unwrap().1).collect();
        report(&format!("halt-snap, memfd pread ({phase})"), &halt);
        let bare = SnapOptions { registers: false, vmcoreinfo: false };
        let halt: Vec<_> = (0..5).map(|_| halt_snap(hv, Source::Backed(&ram), bare).unwrap().1).collect();
        report(&format!("halt-snap, memfd pread, no registers ({phase})"), &halt);
        let generic: Vec<_> = (0..3).map(|_| halt_snap(hv, Source::Mem(&live), opts).unwrap().1).collect();
        report(&format!("halt-snap, any PhysMem ({phase})"), &generic);
        let pre: Vec<_> = (0..5).map(|_| precopy_snap(hv, &ram, opts).unwrap().1).collect();
        report(&format!("live-snap, pre-copy ({phase})"), &pre);
        let q: Vec<_> = (0..3).map(|_| qemu_background_snap(hv, opts).unwrap().1).collect();
        report(&format!("live-snap, QEMU background snapshot ({phase})"), &q);
    }
    let path = g.vm.dir().join("q.elf");
    let took = qemu_dump_guest_memory(hv, &path, Duration::from_secs(120)).unwrap();
    eprintln!("| QEMU dump-guest-memory (elf, paging=false) | 1024 MiB | {:.0} | {:.0} |", ms(took), ms(took));
}
