//! halt-snap and dump files against a real guest: with the guest paused, a halt-snap
//! and dump files in every format (and QEMU's own `dump-guest-memory`) must read
//! exactly like the guest's RAM as QEMU itself reads it (`pmemsave`), and carry the
//! guest's VMCOREINFO and registers.

use std::time::Duration;

use vmscope_hv::Hypervisor;
use vmscope_mem::{Gpa, PhysMem};
use vmscope_snap::{DumpFile, Format, SnapOptions, Source, halt_snap, qemu_dump_guest_memory};
use vmscope_testbed::{Guest, boot, qemu_pmemsave};

/// Every byte of every region of `truth`'s map reads the same from `copy`.
fn same_ram(what: &str, truth: &dyn PhysMem, copy: &dyn PhysMem) {
    const CHUNK: u64 = 4 << 20;
    let (mut a, mut b) = (vec![0u8; CHUNK as usize], vec![0u8; CHUNK as usize]);
    for r in truth.memory_map().regions() {
        let mut at = 0;
        while at < r.size {
            let n = (r.size - at).min(CHUNK) as usize;
            let gpa = Gpa::new(r.gpa.raw() + at);
            truth.read(gpa, &mut a[..n]).unwrap();
            copy.read(gpa, &mut b[..n]).unwrap_or_else(|e| panic!("{what}: reading {gpa}: {e}"));
            if a[..n] != b[..n] {
                let i = a[..n].iter().zip(&b[..n]).position(|(x, y)| x != y).unwrap_or(0);
                panic!("{what}: differs from QEMU's read of RAM at {:#x}", gpa.raw() + i as u64);
            }
            at += n as u64;
        }
    }
}

/// 2,000 pseudo-random 64-byte reads spread over `truth`'s map agree.
fn same_samples(what: &str, truth: &dyn PhysMem, copy: &dyn PhysMem) {
    let regions = truth.memory_map().regions().to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = &regions[(x % regions.len() as u64) as usize];
        let gpa = Gpa::new(r.gpa.raw() + (x >> 8) % (r.size - 64));
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        truth.read(gpa, &mut a).unwrap();
        copy.read(gpa, &mut b).unwrap_or_else(|e| panic!("{what}: reading {gpa}: {e}"));
        assert_eq!(a, b, "{what}: differs from QEMU's read of RAM at {gpa}");
    }
}

fn dumps_read_like_the_paused_guest(mut g: Guest) {
    let release = g.sh("uname -r").trim().to_owned();
    let marker = format!("VMSCOPE-DUMP-MARKER-{}", std::process::id());
    g.sh(&format!("echo {marker} > /tmp/marker"));
    let hv = g.vm.hv();
    let live = g.ram();
    let ram = g.ram();

    hv.pause().unwrap();
    let (snap, stats) = halt_snap(hv, Source::Backed(&ram), SnapOptions::default()).unwrap();
    assert!(hv.is_paused().unwrap(), "a paused guest stays paused");
    eprintln!("halt-snap (already paused): {stats:?}");
    assert!(memchr::memmem::find(snap.backing(), marker.as_bytes()).is_some(), "marker not in the snapshot");
    // The truth: QEMU's own read of the paused guest's RAM.
    let truth = qemu_pmemsave(hv, live.memory_map(), g.vm.dir());
    same_ram("halt-snap", &truth, &snap);
    assert_eq!(snap.meta().vmcoreinfo_value("OSRELEASE"), Some(release.as_str()), "VMCOREINFO found in RAM");
    let regs0 = hv.vcpu_registers(0).unwrap();
    assert_eq!(snap.meta().vcpus.len(), hv.vcpu_count().unwrap());
    assert_eq!(snap.meta().vcpus[0].cr3, regs0.cr3);

    // The generic path (any PhysMem) copies the same.
    let (generic, _) = halt_snap(hv, Source::Mem(&live), SnapOptions { registers: false, vmcoreinfo: false }).unwrap();
    same_samples("halt-snap through PhysMem", &truth, &generic);
    drop(generic);

    for f in [Format::Raw, Format::Elf, Format::Lime] {
        let path = g.vm.dir().join(format!("dump.{}", f.name()));
        let st = snap.write(&path, f).unwrap();
        let on_disk = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).unwrap();
        eprintln!("{f:?}: {st:?}, {on_disk} bytes on disk");
        let d = DumpFile::open(&path).unwrap();
        assert_eq!(d.format(), f);
        same_samples(f.name(), &truth, &d);
        same_ram(f.name(), &truth, &d);
        if f != Format::Lime {
            assert_eq!(d.meta().vmcoreinfo_value("OSRELEASE"), Some(release.as_str()));
            assert_eq!(d.meta().vcpus[0].cr3, regs0.cr3);
        }
        std::fs::remove_file(&path).unwrap();
    }

    // QEMU's own dump reads with the same reader and agrees.
    let qpath = g.vm.dir().join("qemu.elf");
    let took = qemu_dump_guest_memory(hv, &qpath, Duration::from_secs(120)).unwrap();
    eprintln!("QEMU dump-guest-memory: {took:?}");
    let q = DumpFile::open(&qpath).unwrap();
    assert_eq!(q.format(), Format::Elf);
    same_samples("QEMU dump-guest-memory", &truth, &q);
    same_ram("QEMU dump-guest-memory", &truth, &q);
    assert_eq!(q.meta().vmcoreinfo_value("OSRELEASE"), Some(release.as_str()), "QEMU's VMCOREINFO note");
    assert_eq!(q.meta().vmcoreinfo, snap.meta().vmcoreinfo, "the note vmscope found is the one QEMU dumps");
    assert_eq!(q.meta().vcpus.len(), hv.vcpu_count().unwrap());
    assert_eq!(q.meta().vcpus[0].cr3, regs0.cr3);
    assert_eq!(q.meta().vcpus[0].rip, regs0.rip);
    std::fs::remove_file(&qpath).unwrap();
    hv.resume().unwrap();
    assert_eq!(g.sh("cat /tmp/marker").trim(), marker);
}

#[test]
fn linux_6_1_dumps() {
    dumps_read_like_the_paused_guest(boot("6.1"));
}

#[test]
fn linux_6_12_dumps() {
    dumps_read_like_the_paused_guest(boot("6.12"));
}
