//! What recording the read set costs: the process list of a live 1 GiB guest
//! (Debian 6.1 under QEMU, about 100 tasks) read through vmscope's read-only mapping
//! of QEMU's RAM memfd (live-map), alone and through a [`ReadSet`]; and what a
//! double collect of that read set costs on top.
//!
//! - `ps/live-map`: the pass alone;
//! - `ps/live-map+readset`: the same pass recording every range and its bytes;
//! - `ps/double-collect`: re-reading the recorded ranges and comparing (how
//!   consistent-map does it);
//! - `ps/double-collect-pages`: re-reading whole pages of the set instead (how
//!   consistent-read does it, where each read is a system call).
//!
//! `cargo bench -p vmscope-consistency --bench readset`; needs `cargo xtask images`
//! (skipped with a note otherwise). The figures are in the crate README.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vmscope_consistency::ReadSet;
use vmscope_consistency::validate::{self, Recollect};
use vmscope_hv::{Hypervisor, RamLocation};
use vmscope_linux::{Hints, Kernel};
use vmscope_map::Mapped;
use vmscope_mem::PhysMem;
use vmscope_testbed::GuestImages;

fn readset(c: &mut Criterion) {
    let Some(images) = GuestImages::for_benchmark("read-set") else { return };
    drop(images);
    let mut guest = vmscope_testbed::boot_with("6.1", |c| c.memory_mib = 1024);
    // About 100 tasks, as the lab's idle guest has.
    guest.sh("i=0; while [ $i -lt 60 ]; do sh -c 'exec sleep 1000000' >/dev/null 2>&1 & i=$((i+1)); done");
    let vm = &guest.vm;
    let hv = vm.hv();
    let loc = RamLocation::qemu(vm.pid(), &hv.ram_layout().expect("RAM layout")).expect("RAM location");
    let mem = Mapped::open(loc).expect("map RAM");
    let regs = hv.vcpu_registers(0).expect("registers");
    let k = Kernel::attach(&mem, Hints::from_registers(regs.cr3, regs.cr4)).expect("attach");
    let tasks = k.processes().processes.len();
    eprintln!("readset bench: {tasks} processes");

    let mut g = c.benchmark_group("ps");
    g.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    g.bench_function("live-map", |b| b.iter(|| black_box(k.rebind(&mem as &dyn PhysMem).processes().processes.len())));
    g.bench_function("live-map+readset", |b| {
        b.iter(|| {
            let set = ReadSet::new(&mem as &dyn PhysMem);
            let n = k.rebind(&set).processes().processes.len();
            black_box((n, set.finish().bytes_read()))
        })
    });
    let set = ReadSet::new(&mem as &dyn PhysMem);
    k.rebind(&set).processes();
    let recorded = set.finish();
    for (name, how) in [("double-collect", Recollect::Ranges), ("double-collect-pages", Recollect::Pages)] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(validate::by_double_collect(&recorded, &mem, how).expect("re-read").torn_pages.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, readset);
criterion_main!(benches);
