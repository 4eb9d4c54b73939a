//! Do no harm: halt-snap and vmscope's pre-copy live-snap leave QEMU's RAM
//! allocation (the memfd's allocated pages, the Rss of QEMU's RAM mapping) as it
//! was. QEMU 7.2's own background snapshot does not: before write-protecting RAM it
//! reads a byte of every page, which allocates every page of a shared memfd — this
//! test pins that down too, so the README's warning stays true.

use std::os::unix::fs::MetadataExt;

use vmscope_hv::Hypervisor;
use vmscope_mem::PhysMem;
use vmscope_snap::live::{precopy_snap, qemu_background_snap};
use vmscope_snap::{SnapOptions, Source, halt_snap};
use vmscope_testbed::{Guest, boot};

/// (bytes allocated to QEMU's RAM memfd, Rss of QEMU's RAM mapping in bytes).
fn usage(g: &Guest) -> (u64, u64) {
    let pid = g.vm.pid();
    let m = vmscope_hv::qemu::ram_mapping(pid).unwrap();
    let allocated = std::fs::metadata(&m.map_file).unwrap().blocks() * 512;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let head = format!("{:x}-", m.hva.raw());
    let rss_kib: u64 = smaps
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the Rss of the RAM mapping");
    (allocated, rss_kib * 1024)
}

#[test]
fn snapshots_do_no_harm() {
    let g = boot("6.12");
    let hv = g.vm.hv();
    let ram = g.ram();
    let map = ram.memory_map().clone();
    // Paused, the guest cannot grow its own memory between the measurements.
    hv.pause().unwrap();
    let start = usage(&g);
    eprintln!("start: {start:?}");
    assert!(start.0 < map.ram_size() / 2, "an idle guest should leave most of its RAM untouched: {start:?}");
    const TOLERANCE: u64 = 1 << 20;

    let (snap, _) = halt_snap(hv, Source::Backed(&ram), SnapOptions::default()).unwrap();
    drop(snap);
    let after_halt = usage(&g);
    assert!(
        after_halt.0 <= start.0 + TOLERANCE && after_halt.1 <= start.1 + TOLERANCE,
        "halt-snap: {start:?} -> {after_halt:?}"
    );

    let (snap, _) = precopy_snap(hv, &ram, SnapOptions::default()).unwrap();
    drop(snap);
    let after_precopy = usage(&g);
    assert!(
        after_precopy.0 <= start.0 + TOLERANCE && after_precopy.1 <= start.1 + TOLERANCE,
        "pre-copy live-snap: {start:?} -> {after_precopy:?}"
    );

    // QEMU's background snapshot would resume a paused guest: vmscope refuses, and the
    // guest stays paused.
    let opts = SnapOptions { registers: false, vmcoreinfo: false };
    assert!(qemu_background_snap(hv, opts).is_err(), "a background snapshot of a paused guest");
    assert!(hv.is_paused().unwrap(), "the refused background snapshot left the guest paused");
    // On a running guest it populates every page of the memfd (QEMU's own reads, not
    // the guest's: an idle guest touches a few MiB in this time).
    hv.resume().unwrap();
    let (snap, _, _) = qemu_background_snap(hv, opts).unwrap();
    drop(snap);
    let after_qemu = usage(&g);
    eprintln!("after QEMU's background snapshot: {after_qemu:?}");
    assert!(
        after_qemu.0 > map.ram_size() * 9 / 10,
        "QEMU 7.2's background snapshot used to allocate all of a memfd's RAM; now {start:?} -> {after_qemu:?}: update the README"
    );
}
