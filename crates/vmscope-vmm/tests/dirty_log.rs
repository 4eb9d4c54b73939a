//! The dirty log reports every page the mutator wrote: between two pauses, each page
//! whose content changed is in the fetched set.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::testkernel::{Manifest, wait_manifest};
use common::{Vm, live_memfd};
use vmscope_hv::Hypervisor;
use vmscope_mem::{Gpa, PhysMem};
use vmscope_testbed::eventually;

/// Every page the mutator may write: its data, the journal, nodes, per-cpu area.
fn watched_pages(m: &Manifest) -> BTreeSet<u64> {
    let mut pages = BTreeSet::new();
    let mut add = |va: u64, len: u64| {
        for off in (0..len).step_by(4096) {
            pages.insert(m.pa(va + off).unwrap().raw() >> 12);
        }
        pages.insert(m.pa(va + len - 1).unwrap().raw() >> 12);
    };
    add(m.lists_va, u64::from(m.nr_lists) * 64);
    add(m.journal_va, m.journal_entries * 32);
    add(m.nodes_va, u64::from(m.nr_lists) * m.nodes_per_list * m.node_size);
    add(m.percpu_va, 16 * 64);
    add(m.ops_va, 8);
    pages
}

fn snapshot_pages(mem: &impl PhysMem, pages: &BTreeSet<u64>) -> Vec<Vec<u8>> {
    pages
        .iter()
        .map(|pfn| {
            let mut b = vec![0u8; 4096];
            mem.read(Gpa::new(pfn << 12), &mut b).unwrap();
            b
        })
        .collect()
}

#[test]
fn dirty_log_reports_the_pages_the_mutator_wrote() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (c, mem) = live_memfd(&mut vm);
    let m = wait_manifest(&mem, 2, Duration::from_secs(20));
    let log = c.dirty_log().expect("the built-in VMM has a dirty log");
    log.start().unwrap();
    let pages = watched_pages(&m);

    for round in 0..3 {
        c.pause().unwrap();
        let _ = log.fetch().unwrap(); // clear: from here on, only new writes
        let before = snapshot_pages(&mem, &pages);
        let ops = m.ops(&mem).unwrap();
        c.resume().unwrap();
        assert!(eventually(Duration::from_secs(10), || m.ops(&mem).unwrap() > ops + 50), "the mutator runs");
        c.pause().unwrap();
        let dirty: BTreeSet<u64> = log.fetch().unwrap().into_iter().collect();
        let after = snapshot_pages(&mem, &pages);
        c.resume().unwrap();

        let changed: Vec<u64> =
            pages.iter().zip(before.iter().zip(&after)).filter(|(_, (b, a))| b != a).map(|(p, _)| *p).collect();
        assert!(!changed.is_empty(), "round {round}: the mutator changed nothing");
        for pfn in &changed {
            assert!(dirty.contains(pfn), "round {round}: page {pfn:#x} changed but is not in the dirty log");
        }
        assert!(dirty.contains(&(m.pa(m.ops_va).unwrap().raw() >> 12)), "round {round}: the op counter's page");
    }
    log.stop().unwrap();
    assert!(log.fetch().is_err(), "fetch without logging is an error");
}
