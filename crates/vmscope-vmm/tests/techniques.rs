//! The access techniques on the built-in VMM: live-read (process_vm_readv,
//! /proc/PID/mem, pread of the memfd), live-map (mmap of the memfd) and their halted
//! forms. Every reader finds the test kernel's manifest; inside one halted pass every
//! reader sees the same lists, and they equal the journal.

mod common;

use std::time::Duration;

use common::Vm;
use common::testkernel::{Manifest, assert_lists_match_journal, wait_manifest};
use vmscope_hv::{Halted, Hypervisor};
use vmscope_map::Mapped;
use vmscope_mem::PhysMem;
use vmscope_read::{ProcMem, VmReadv, open_backing};
use vmscope_testbed::eventually;

#[test]
fn every_technique_reads_the_test_kernel() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let c = vm.client();
    let loc = c.ram_location().unwrap();
    assert_eq!(loc.pid, vm.pid());
    let readers: Vec<(&str, Box<dyn PhysMem>)> = vec![
        ("pread", Box::new(open_backing(&loc).unwrap())),
        ("process_vm_readv", Box::new(VmReadv::open(loc.clone()).unwrap())),
        ("/proc/PID/mem", Box::new(ProcMem::open(loc.clone()).unwrap())),
        ("mmap", Box::new(Mapped::open(loc.clone()).unwrap())),
    ];
    let m = wait_manifest(&readers[0].1, 2, Duration::from_secs(20));
    for (name, r) in &readers {
        let mine = Manifest::read(r).unwrap().unwrap_or_else(|| panic!("{name}: no manifest"));
        assert_eq!((mine.cr3, mine.lists_va), (m.cr3, m.lists_va), "{name}: manifest");
    }
    let halted = Halted::new(&readers, &c);
    for round in 0..3 {
        halted
            .pass(|rs| {
                let reference = m.lists(&rs[0].1).unwrap();
                for (name, r) in rs.iter() {
                    assert_eq!(m.lists(r).unwrap(), reference, "round {round}: {name} disagrees with pread");
                    assert!(assert_lists_match_journal(&m, r) >= 6, "round {round}: {name}");
                }
            })
            .unwrap();
        let ops = m.ops(&readers[0].1).unwrap();
        assert!(
            eventually(Duration::from_secs(10), || m.ops(&readers[0].1).unwrap() > ops),
            "the guest runs between passes"
        );
    }
    assert!(!c.is_paused().unwrap(), "a pass resumes the guest");
}

#[test]
fn process_vm_readv_reads_private_ram() {
    let mut vm = Vm::testkernel(1, "private", "");
    let c = vm.client();
    let loc = c.ram_location().unwrap();
    assert!(!loc.is_shared(), "private RAM has no backing file");
    let mem = VmReadv::open(loc).unwrap();
    let m = wait_manifest(&mem, 1, Duration::from_secs(20));
    let halted = Halted::new(&mem, &c);
    let checked = halted.pass(|r| assert_lists_match_journal(&m, r)).unwrap();
    assert!(checked >= 7, "{checked} lists checked");
}
