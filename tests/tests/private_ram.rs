//! Do no harm on RAM another process cannot see through a file: QEMU's plain `-m`
//! (anonymous private memory) and a hugetlbfs `mem-path`. A full pass of every reader
//! and a snapshot leave what QEMU holds as it was — its RSS, the pages its pagemap
//! says are present, its page tables, the free huge pages — while the readers agree
//! with each other and the snapshot copies only what QEMU holds. A naive read of the
//! same memory does change it, so the measurement can see harm.

use std::os::unix::fs::FileExt;

use vmscope_hv::{Backing, HoleGuard, Hypervisor, RamLocation};
use vmscope_map::Mapped;
use vmscope_mem::{Gpa, PhysMem};
use vmscope_read::{ProcMem, VmReadv, open_backing};
use vmscope_snap::live::precopy_snap;
use vmscope_snap::{SnapOptions, Source, halt_snap};
use vmscope_testbed::{HugePages, RamBacking, boot_with};

/// What QEMU holds of guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// Bytes its pagemap says are present (or swapped).
    resident: u64,
    /// Rss of its RAM mappings, KiB.
    rss_kib: u64,
    /// Its page tables (VmPTE), KiB.
    pte_kib: u64,
}

fn held(loc: &RamLocation) -> Held {
    let resident = HoleGuard::new(loc).unwrap().data_extents().unwrap().iter().map(|(s, e)| e - s).sum();
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", loc.pid)).unwrap();
    let mut rss_kib = 0;
    let mut inside = false;
    for l in smaps.lines() {
        let range = l.split_whitespace().next().and_then(|t| t.split_once('-'));
        if let Some((Ok(a), Ok(_))) = range.map(|(a, b)| (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))) {
            inside = loc.blocks.iter().any(|b| b.hva.raw() <= a && a < b.hva.raw() + b.size);
        } else if inside && let Some(v) = l.strip_prefix("Rss:") {
            rss_kib += v.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", loc.pid)).unwrap();
    let pte_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmPTE:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    Held { resident, rss_kib, pte_kib }
}

/// Reads all of guest RAM through each reader, 4 MiB at a time, and says where the
/// first differs from the first reader.
fn full_pass_agrees(readers: &[(&str, &dyn PhysMem)]) -> Vec<String> {
    let mut diffs = Vec::new();
    let (first, rest) = readers.split_first().unwrap();
    let mut want = vec![0u8; 4 << 20];
    let mut got = vec![0u8; 4 << 20];
    for r in first.1.memory_map().regions() {
        let mut at = 0;
        while at < r.size {
            let n = (r.size - at).min(want.len() as u64) as usize;
            let gpa = Gpa::new(r.gpa.raw() + at);
            first.1.read(gpa, &mut want[..n]).unwrap_or_else(|e| panic!("{} at {gpa}: {e}", first.0));
            for (name, mem) in rest {
                mem.read(gpa, &mut got[..n]).unwrap_or_else(|e| panic!("{name} at {gpa}: {e}"));
                if got[..n] != want[..n] {
                    diffs.push(format!("{name} differs from {} in {gpa}+{n:#x}", first.0));
                }
            }
            at += n as u64;
        }
    }
    diffs
}

/// A snapshot equals the live memory it copied (the guest is paused).
fn snapshot_equals(snap: &dyn PhysMem, live: &dyn PhysMem) -> bool {
    full_pass_agrees(&[("live", live), ("snapshot", snap)]).is_empty()
}

fn assert_unharmed(what: &str, before: Held, after: Held) {
    assert!(
        after.resident <= before.resident + (1 << 20) && after.rss_kib <= before.rss_kib + 1024,
        "{what}: QEMU holds more guest RAM: {before:?} -> {after:?}"
    );
    assert!(after.pte_kib <= before.pte_kib + 64, "{what}: QEMU's page tables grew: {before:?} -> {after:?}");
}

/// Two NUMA nodes, each its own memfd, on q35 with 3 GiB (node 1 split by the PCI
/// hole): every reader finds each block where it is — pread of two files, two
/// mappings side by side, and QEMU's address space — and they agree on every byte.
#[test]
fn ram_blocks_each_in_their_place() {
    let nodes = vec![("memfd".to_owned(), "share=on".to_owned()), ("memfd".to_owned(), "share=on".to_owned())];
    let g = boot_with("6.12", |c| {
        c.ram = RamBacking::Numa(nodes);
        c.memory_mib = 3072;
    });
    let hv = g.vm.hv();
    hv.pause().unwrap();
    let loc = g.ram_location();
    let names: Vec<_> = loc.blocks.iter().map(|b| (b.name.as_str(), b.offset, b.size)).collect();
    assert_eq!(names, [("ram0", 0, 3 << 29), ("ram1", 3 << 29, 3 << 29)]);
    assert_eq!(loc.map.regions().iter().filter(|r| r.name == "ram1").count(), 2, "{:?}", loc.map);
    let pread = open_backing(&loc).unwrap();
    let mapped = Mapped::open(loc.clone()).unwrap();
    let vmreadv = VmReadv::open(loc.clone()).unwrap();
    let procmem = ProcMem::open(loc.clone()).unwrap();
    let readers: [(&str, &dyn PhysMem); 4] =
        [("pread", &pread), ("mmap", &mapped), ("process_vm_readv", &vmreadv), ("/proc/PID/mem", &procmem)];
    let diffs = full_pass_agrees(&readers);
    assert!(diffs.is_empty(), "{diffs:#?}");
    // Each block's first page is the guest's page at that block's lowest GPA, by
    // QEMU's own gpa2hva: blocks are not swapped.
    for b in &loc.blocks {
        let r = loc.map.regions().iter().find(|r| r.name == b.name).unwrap();
        let mut want = vec![0u8; 4096];
        let mem = std::fs::File::open(format!("/proc/{}/mem", loc.pid)).unwrap();
        let hva = vmscope_hv::qemu::parse_gpa2hva(&hv.qmp().hmp(&format!("gpa2hva {:#x}", r.gpa.raw()), None).unwrap())
            .unwrap()
            .1;
        let mut got = vec![0u8; 4096];
        vmreadv.read(r.gpa, &mut got).unwrap();
        if HoleGuard::new(&loc).unwrap().is_populated(r.offset, 4096) {
            mem.read_exact_at(&mut want, hva).unwrap();
            assert_eq!(got, want, "block {} at {}", b.name, r.gpa);
        }
    }
    hv.resume().unwrap();
}

#[test]
fn plain_m_reads_and_snapshots_do_no_harm() {
    let mut g = boot_with("6.12", |c| {
        c.ram = RamBacking::Plain;
        c.memory_mib = 1024;
    });
    let hv = g.vm.hv();
    hv.pause().unwrap(); // the guest must not touch new pages between the measurements
    let loc = g.ram_location();
    assert_eq!(loc.blocks.len(), 1);
    assert_eq!((loc.blocks[0].name.as_str(), &loc.blocks[0].backing), ("pc.ram", &Backing::Anonymous));
    assert!(open_backing(&loc).is_err() && Mapped::open(loc.clone()).is_err(), "private RAM has no file to read");
    let before = held(&loc);
    eprintln!("before: {before:?}");
    assert!(before.resident < 700 << 20, "an idle guest leaves much of its RAM untouched: {before:?}");

    let vmreadv = VmReadv::open(loc.clone()).unwrap();
    let procmem = ProcMem::open(loc.clone()).unwrap();
    let diffs = full_pass_agrees(&[("process_vm_readv", &vmreadv), ("/proc/PID/mem", &procmem)]);
    assert!(diffs.is_empty(), "{diffs:#?}");
    assert_unharmed("a full pass of process_vm_readv and /proc/PID/mem", before, held(&loc));

    let opts = SnapOptions { registers: true, vmcoreinfo: false };
    let (snap, stats) = halt_snap(hv, Source::Backed(&vmreadv), opts).unwrap();
    assert!(hv.is_paused().unwrap(), "a guest paused before stays paused");
    assert!(snapshot_equals(&snap, &vmreadv), "halt-snap differs from the guest's RAM");
    // Only what QEMU holds is copied: not 1 GiB.
    assert!(stats.copied_bytes <= before.resident, "copied {} of {} held", stats.copied_bytes, before.resident);
    assert!(stats.copied_bytes > 32 << 20, "copied only {} bytes", stats.copied_bytes);
    drop(snap);
    let (snap, _) = precopy_snap(hv, &procmem, opts).unwrap();
    assert!(snapshot_equals(&snap, &procmem), "pre-copy live-snap differs from the guest's RAM");
    drop(snap);
    assert_unharmed("halt-snap and live-snap", before, held(&loc));

    // The measurement sees harm: a naive read of never-touched pages through
    // /proc/PID/mem maps them into QEMU (the zero page), page tables and all.
    let guard = HoleGuard::new(&loc).unwrap();
    let data = guard.data_extents().unwrap();
    let hole = data.windows(2).map(|w| (w[0].1, w[1].0)).max_by_key(|(a, b)| b - a).unwrap();
    let len = (hole.1 - hole.0).min(256 << 20);
    assert!(len >= 64 << 20, "a 1 GiB guest has a 64 MiB hole: {hole:x?}");
    let mem = std::fs::File::open(format!("/proc/{}/mem", loc.pid)).unwrap();
    let mut buf = vec![0u8; len as usize];
    mem.read_exact_at(&mut buf, loc.blocks[0].hva.raw() + hole.0).unwrap();
    let harmed = held(&loc);
    eprintln!("after a naive read of {} MiB: {harmed:?}", len >> 20);
    assert!(harmed.resident >= before.resident + len * 9 / 10, "the naive read went unseen: {before:?} -> {harmed:?}");
    hv.resume().unwrap();
    assert_eq!(g.sh("echo alive"), "alive\n");
}

#[test]
fn hugetlbfs_reads_and_snapshots_do_no_harm() {
    let huge = HugePages::reserve(300).unwrap_or_else(|e| panic!("{e}"));
    let props = format!("mem-path={},share=on", huge.path().display());
    let mut g = boot_with("6.1", |c| {
        c.ram = RamBacking::Backend { kind: "file".into(), props };
        c.memory_mib = 512;
    });
    let hv = g.vm.hv();
    hv.pause().unwrap();
    let loc = g.ram_location();
    assert!(loc.is_shared() && !loc.is_readable_by_file(), "{:?}", loc.blocks);
    assert_eq!(loc.blocks[0].page_size, 2 << 20);
    let err = open_backing(&loc).unwrap_err().to_string();
    assert!(err.contains("hugetlbfs"), "pread of a hugetlbfs file is refused: {err}");
    let (free, before) = (HugePages::free().unwrap(), held(&loc));
    eprintln!("{free} huge pages free; {before:?}");

    let mapped = Mapped::open(loc.clone()).unwrap();
    let vmreadv = VmReadv::open(loc.clone()).unwrap();
    let procmem = ProcMem::open(loc.clone()).unwrap();
    let diffs = full_pass_agrees(&[("mmap", &mapped), ("process_vm_readv", &vmreadv), ("/proc/PID/mem", &procmem)]);
    assert!(diffs.is_empty(), "{diffs:#?}");
    let (snap, stats) = halt_snap(hv, Source::Backed(&vmreadv), SnapOptions::default()).unwrap();
    assert!(snapshot_equals(&snap, &mapped), "halt-snap differs from the guest's RAM");
    assert!(stats.copied_bytes <= before.resident, "copied {} of {} held", stats.copied_bytes, before.resident);
    drop(snap);
    assert_eq!(HugePages::free().unwrap(), free, "reading allocated huge pages");
    assert_unharmed("every reader and a snapshot on hugetlbfs", before, held(&loc));

    // The measurement sees harm: a read of an untouched huge page through a mapping
    // of the file allocates it.
    let data = HoleGuard::new(&loc).unwrap().data_extents().unwrap();
    let hole = data.windows(2).find(|w| w[1].0 - w[0].1 >= 2 << 20).map(|w| w[0].1).expect("a free huge page");
    let Backing::File { path, .. } = &loc.blocks[0].backing else { unreachable!() };
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a fresh read-only shared mapping of a file we hold, read once below and
    // unmapped right after.
    let p = unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        libc::mmap(std::ptr::null_mut(), 2 << 20, libc::PROT_READ, libc::MAP_SHARED, fd, hole as libc::off_t)
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: inside the mapping just made.
    let _ = unsafe { std::ptr::read_volatile(p.cast::<u8>()) };
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(p, 2 << 20) };
    assert_eq!(HugePages::free().unwrap(), free - 1, "a naive read of a hole went unseen");
    hv.resume().unwrap();
    assert_eq!(g.sh("echo alive"), "alive\n");
}
