//! Snapshots equal the journal's state at the snapshot point: a memfd copy, a file, a
//! fork of anonymous RAM (read through /proc/CHILD/mem) and a file written by a fork.

mod common;

use std::path::Path;
use std::time::Duration;

use common::testkernel::{Manifest, assert_lists_match_journal, wait_manifest};
use common::{Vm, file_mem, live_memfd, proc_mem};
use vmscope_mem::{MemoryMap, PhysMem};
use vmscope_testbed::eventually;

/// The snapshot is self-consistent and frozen while the guest runs on.
fn check_snapshot(snap: &impl PhysMem, live_ops: impl Fn() -> u64) {
    let m = Manifest::read(snap).unwrap().expect("the snapshot holds the manifest");
    let ops = m.ops(snap).unwrap();
    assert!(assert_lists_match_journal(&m, snap) >= 6, "lists checked in the snapshot");
    assert!(eventually(Duration::from_secs(10), || live_ops() > ops + 20), "the guest runs on after the snapshot");
    assert_eq!(m.ops(snap).unwrap(), ops, "the snapshot changed");
}

#[test]
fn memfd_copy_and_file_snapshots() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, live) = live_memfd(&mut vm);
    let m = wait_manifest(&live, 2, Duration::from_secs(20));
    let live_ops = || m.ops(&live).unwrap();

    let s = c.snapshot(None).unwrap();
    assert_eq!(s.kind, "memfd-copy");
    let map = MemoryMap::new(s.regions.clone()).unwrap();
    let snap = file_mem(Path::new(s.path.as_deref().unwrap()), map.clone());
    check_snapshot(&snap, live_ops);
    c.snapshot_release(s.id).unwrap();
    assert!(c.snapshot_release(s.id).is_err(), "released twice");

    let file = vm.dir().join("ram.snap");
    let s = c.snapshot(Some(&file)).unwrap();
    assert_eq!(s.kind, "file");
    check_snapshot(&file_mem(&file, map), live_ops);
}

#[test]
fn fork_snapshots_of_private_ram() {
    let mut vm = Vm::testkernel(1, "private", "");
    let c = vm.client();
    let info = c.memory_map_info().unwrap();
    assert_eq!(info.backing.kind, "private");
    let map = MemoryMap::new(info.regions).unwrap();
    let live = proc_mem(vm.pid(), info.backing.hva, map.clone());
    let m = wait_manifest(&live, 1, Duration::from_secs(20));
    let live_ops = || m.ops(&live).unwrap();

    let s = c.snapshot(None).unwrap();
    assert_eq!(s.kind, "fork");
    assert_ne!(s.pid, vm.pid());
    let snap = proc_mem(s.pid, s.hva.unwrap(), map.clone());
    check_snapshot(&snap, live_ops);
    c.snapshot_release(s.id).unwrap();
    assert!(!Path::new(&format!("/proc/{}/mem", s.pid)).exists(), "the snapshot child ended");

    let file = vm.dir().join("ram.snap");
    let s = c.snapshot(Some(&file)).unwrap();
    assert_eq!(s.kind, "file");
    check_snapshot(&file_mem(&file, map), live_ops);
}

/// A dump of a paused guest carries each vCPU's registers as the VMM reports them
/// (NT_PRSTATUS and QEMU CPU-state notes), and leaves the guest paused.
#[test]
fn elf_dumps_carry_the_vcpu_registers() {
    use vmscope_hv::Hypervisor;
    let mut vm = Vm::testkernel(2, "memfd", "");
    let c = vm.client();
    let (_, live) = live_memfd(&mut vm);
    wait_manifest(&live, 2, Duration::from_secs(20));
    c.pause().unwrap();
    let truth: Vec<_> = (0..2).map(|i| c.vcpu_registers(i).unwrap()).collect();
    assert!(truth.iter().all(|r| r.rip != 0 && r.cr3 != 0), "{truth:?}");

    let target = vmscope_technique::Target::Builtin { control: vm.control(), agent: None };
    let guest = target.open().unwrap();
    let access = guest.access(Some(vmscope_technique::Technique::HaltSnap), &Default::default()).unwrap();
    let (snap, _) = access.snapshot(vmscope_snap::SnapOptions::default()).unwrap();
    let path = vm.dir().join("guest.elf");
    snap.write(&path, vmscope_snap::Format::Elf).unwrap();
    let dump = vmscope_snap::DumpFile::open(&path).unwrap();
    let regs = |r: &vmscope_hv::VcpuRegisters| [r.rip, r.rsp, r.rflags, r.rax, r.r15, r.cr0, r.cr3, r.cr4];
    let got: Vec<_> = dump.meta().vcpus.iter().map(regs).collect();
    assert_eq!(got, truth.iter().map(regs).collect::<Vec<_>>());
    assert!(c.is_paused().unwrap(), "the dump left the paused guest paused");
}
