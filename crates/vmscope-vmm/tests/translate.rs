//! Every mapping in the test kernel's manifest translates, with vmscope-x86 walking the
//! guest's page tables from the vCPU's CR3, exactly as the manifest says.

mod common;

use std::time::Duration;

use common::testkernel::wait_manifest;
use common::{Vm, live_memfd};
use vmscope_hv::Hypervisor;
use vmscope_mem::Gva;
use vmscope_x86::{AddressSpace, PageSize};

#[test]
fn manifest_mappings_translate_as_published() {
    let mut vm = Vm::testkernel(1, "memfd", "");
    let (c, mem) = live_memfd(&mut vm);
    let m = wait_manifest(&mem, 1, Duration::from_secs(20));
    let regs = c.vcpu_registers(0).unwrap();
    assert_eq!(regs.page_table_root(), m.cr3);
    let space = AddressSpace::from_cr3(regs.cr3, regs.cr4).with_nx_enabled(regs.efer & (1 << 11) != 0);
    let mut checked = 0;
    for map in &m.mappings {
        let size = match map.page_size {
            4096 => PageSize::Size4K,
            0x20_0000 => PageSize::Size2M,
            0x4000_0000 => PageSize::Size1G,
            other => panic!("{}: page size {other:#x}", map.name),
        };
        // Every page of small mappings; first, middle and last page of large ones.
        let pages = map.size / map.page_size;
        let picks: Vec<u64> = if pages <= 512 { (0..pages).collect() } else { vec![0, pages / 2, pages - 1] };
        for p in picks {
            let off = p * map.page_size + 0x123;
            let t = space.translate(&mem, Gva::new(map.va + off)).unwrap_or_else(|e| {
                panic!("{} {:#x}: {e}", map.name, map.va + off);
            });
            assert_eq!(t.gpa.raw(), map.pa + off, "{} at {:#x}", map.name, map.va + off);
            assert_eq!(t.page_size, size, "{} page size", map.name);
            assert_eq!(t.perms.writable, map.flags & 2 != 0, "{} writable", map.name);
            assert_eq!(t.perms.nx, map.flags & (1 << 63) != 0, "{} NX", map.name);
            assert_eq!(t.global, map.flags & (1 << 8) != 0, "{} global", map.name);
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} translations checked");
}
