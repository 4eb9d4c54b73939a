//! Live snapshot by dirty-log pre-copy, the way a snapshot technique uses the built-in
//! VMM: copy all RAM while the guest runs, re-copy the pages the dirty log reports
//! until few remain, then pause, copy the last dirty pages and resume. The copy must
//! equal the journal's state at the final pause: a page missing from the dirty log
//! would leave a stale list or journal in the copy.

mod common;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::testkernel::{Manifest, assert_lists_match_journal, wait_manifest};
use common::{Vm, file_mem, live_memfd};
use vmscope_hv::Hypervisor;
use vmscope_mem::{MemoryMap, PhysMem};

fn copy_pages(src: &std::fs::File, dst: &std::fs::File, map: &MemoryMap, pfns: &[u64]) {
    let mut page = [0u8; 4096];
    for pfn in pfns {
        let (off, _) = map.lookup(vmscope_mem::Gpa::new(pfn << 12)).expect("dirty page is RAM");
        src.read_exact_at(&mut page, off).unwrap();
        dst.write_all_at(&page, off).unwrap();
    }
}

#[test]
fn dirty_log_precopy_gives_a_consistent_copy() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, live) = live_memfd(&mut vm);
    let m = wait_manifest(&live, 2, Duration::from_secs(20));
    let info = c.memory_map_info().unwrap();
    let map = MemoryMap::new(info.regions).unwrap();
    let src = std::fs::File::open(info.backing.path.unwrap()).unwrap();
    let copy_path = vm.dir().join("precopy.ram");
    let dst = std::fs::File::create(&copy_path).unwrap();
    dst.set_len(map.backing_size()).unwrap();

    let log = c.dirty_log().unwrap();
    log.start().unwrap();
    // Round 0, guest running: the low 64 MiB, which hold all the test kernel uses.
    let used: Vec<u64> = (0..(m.ram_end.min(64 << 20) >> 12)).collect();
    copy_pages(&src, &dst, &map, &used);
    let mut rounds = 0;
    loop {
        let dirty = log.fetch().unwrap();
        rounds += 1;
        if dirty.len() < 64 || rounds == 5 {
            copy_pages(&src, &dst, &map, &dirty);
            break;
        }
        copy_pages(&src, &dst, &map, &dirty);
    }
    c.pause().unwrap();
    let last = log.fetch().unwrap();
    copy_pages(&src, &dst, &map, &last);
    let ops_at_pause = m.ops(&live).unwrap();
    c.resume().unwrap();
    log.stop().unwrap();

    let copy = file_mem(&copy_path, map);
    let cm = Manifest::read(&copy).unwrap().expect("manifest in the copy");
    assert_eq!(cm.ops(&copy).unwrap(), ops_at_pause, "the copy is at the final pause point");
    let checked = assert_lists_match_journal(&cm, &copy);
    assert!(checked >= 6, "{checked} lists checked");
    assert!(copy.memory_map().ram_size() > 0);
}
