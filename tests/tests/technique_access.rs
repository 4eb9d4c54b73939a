//! The access techniques on a real QEMU guest: every reader returns the bytes QEMU
//! itself reads (`pmemsave`) while the guest is paused, and none of them makes QEMU
//! allocate memory the guest never touched.

use vmscope_hv::{Halted, Hypervisor};
use vmscope_map::Mapped;
use vmscope_mem::{Gpa, PhysMem};
use vmscope_read::{ProcMem, VmReadv, open_backing};
use vmscope_testbed::{Guest, boot_with, qemu_pmemsave};

/// Sampled GPAs over all of RAM: page starts, page-crossing reads, region ends.
fn samples(mem: &dyn PhysMem) -> Vec<(Gpa, usize)> {
    let mut out = Vec::new();
    for r in mem.memory_map().regions() {
        let mut at = 0;
        while at < r.size {
            let len = (r.size - at).min(8192) as usize;
            out.push((Gpa::new(r.gpa.raw() + at), len));
            at += 7 * 4096 + 4090; // odd stride: unaligned starts that cross pages
        }
    }
    out
}

#[test]
fn every_reader_agrees_while_halted() {
    let g = boot_with("6.1", |c| c.memory_mib = 512);
    let loc = g.ram_location();
    let readers: Vec<(&str, Box<dyn PhysMem>)> = vec![
        ("pread", Box::new(open_backing(&loc).unwrap())),
        ("process_vm_readv", Box::new(VmReadv::open(loc.clone()).unwrap())),
        ("/proc/PID/mem", Box::new(ProcMem::open(loc.clone()).unwrap())),
        ("mmap", Box::new(Mapped::open(loc.clone()).unwrap())),
    ];
    let hv = g.vm.hv();
    let halted = Halted::new(&readers, hv);
    let diffs = halted
        .pass(|readers| {
            assert!(hv.is_paused().unwrap());
            // QEMU's own read of the paused guest, then every reader against it.
            let dir = tempfile::tempdir().unwrap();
            let truth = qemu_pmemsave(hv, readers[0].1.memory_map(), dir.path());
            let mut diffs = Vec::new();
            for (gpa, len) in samples(&truth) {
                let mut want = vec![0u8; len];
                truth.read(gpa, &mut want).unwrap();
                for (name, r) in readers.iter() {
                    let mut got = vec![0u8; len];
                    r.read(gpa, &mut got).unwrap_or_else(|e| panic!("{name} at {gpa}: {e}"));
                    if got != want {
                        diffs.push(format!("{name} differs from QEMU's read at {gpa}+{len}"));
                    }
                }
            }
            diffs
        })
        .unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
    assert!(!hv.is_paused().unwrap(), "the pass did not resume the guest");
    // Unbacked addresses are errors, not zeros, in every reader.
    for (name, r) in &readers {
        let mut b = [0u8; 8];
        assert!(r.read(Gpa::new(1 << 40), &mut b).is_err(), "{name} read an unbacked GPA");
    }
}

/// The Rss of QEMU's RAM mapping, from /proc/PID/smaps.
fn ram_rss_kib(g: &Guest) -> u64 {
    let m = vmscope_hv::qemu::ram_mapping(g.vm.pid()).unwrap();
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", g.vm.pid())).unwrap();
    let head = format!("{:x}-", m.hva.raw());
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
    lines.next().expect("the RAM mapping in smaps");
    lines
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("an Rss line")
}

#[test]
fn full_reads_do_no_harm() {
    let mut g = boot_with("6.12", |c| c.memory_mib = 1024);
    g.vm.hv().pause().unwrap(); // the guest must not grow its own RSS meanwhile
    let loc = g.ram_location();
    let before = ram_rss_kib(&g);
    assert!(before < 900 << 10, "the guest already touched nearly all its RAM ({before} KiB)");
    let readers: Vec<(&str, Box<dyn PhysMem>)> = vec![
        ("pread", Box::new(open_backing(&loc).unwrap())),
        ("process_vm_readv", Box::new(VmReadv::open(loc.clone()).unwrap())),
        ("/proc/PID/mem", Box::new(ProcMem::open(loc.clone()).unwrap())),
        ("mmap", Box::new(Mapped::open(loc.clone()).unwrap())),
    ];
    for (name, r) in &readers {
        let mut buf = vec![0u8; 4 << 20];
        for region in r.memory_map().regions() {
            let mut at = 0;
            while at < region.size {
                let n = (region.size - at).min(buf.len() as u64) as usize;
                r.read(Gpa::new(region.gpa.raw() + at), &mut buf[..n]).unwrap();
                at += n as u64;
            }
        }
        let after = ram_rss_kib(&g);
        // QEMU's RSS may move by a few pages of its own; not by the guest's holes.
        assert!(after <= before + 1024, "{name}: QEMU's RAM RSS grew from {before} to {after} KiB");
    }
    // The measurement sees harm when there is some: 64 MiB of holes read naively
    // through /proc/PID/mem, without the hole guard, do grow QEMU's RSS.
    let holes = vmscope_hv::Extents::scan(&loc.open_file().unwrap(), loc.backing_size()).unwrap();
    let hole_start = holes.ranges().windows(2).map(|w| (w[0].1, w[1].0)).find(|(a, b)| b - a >= 64 << 20);
    let (a, _) = hole_start.expect("a 64 MiB hole in a 1 GiB guest");
    let mem = std::fs::File::open(format!("/proc/{}/mem", g.vm.pid())).unwrap();
    let mut buf = vec![0u8; 64 << 20];
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut buf, loc.blocks[0].hva.raw() + a).unwrap();
    let harmed = ram_rss_kib(&g);
    assert!(harmed >= before + (60 << 10), "a naive read of holes went unseen: {before} -> {harmed} KiB");
    g.vm.hv().resume().unwrap();
    assert_eq!(g.sh("echo alive"), "alive\n");
}
