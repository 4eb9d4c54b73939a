//! From attach to the first process list on a live 1 GiB guest (Debian 6.1 under
//! QEMU, KASLR on, booted once), read with `pread` on QEMU's RAM memfd:
//!
//! - `attach_ps/cold`: memory alone, nothing cached — discovery, kallsyms, BTF
//!   parse, offsets by name, then the process list;
//! - `attach_ps/cached`: the same with a warm [`ProfileCache`] (offsets reused
//!   after the banner and build ID read from memory match);
//! - `attach_ps/cached_cr3`: cached, and with vCPU 0's CR3/CR4 as hints;
//! - `ps`: the process list alone on an attached kernel.
//!
//! `cargo bench -p vmscope-linux --bench attach`; needs `cargo xtask images`
//! (skipped with a note otherwise). The figures are in the crate README.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vmscope_hv::{Hypervisor, RamLocation};
use vmscope_linux::{AttachOptions, Hints, Kernel, ProfileCache};
use vmscope_testbed::{GuestImages, QemuVm};

fn attach(c: &mut Criterion) {
    let Some(images) = GuestImages::for_benchmark("attach") else { return };
    let kernel = images.kernel("6.1").expect("a 6.1 guest image");
    let mut cfg = kernel.qemu_config();
    cfg.memory_mib = 1024;
    cfg.kaslr = true;
    let vm = QemuVm::launch(cfg).expect("boot the guest");
    let hv = vm.hv();
    let layout = hv.ram_layout().expect("RAM layout");
    let mem =
        vmscope_read::open_backing(&RamLocation::qemu(vm.pid(), &layout).expect("RAM location")).expect("open RAM");
    let regs = hv.vcpu_registers(0).expect("registers");
    let hints = Hints::from_registers(regs.cr3, regs.cr4);
    let cache = ProfileCache::in_memory();
    // Fill the cache once, as a first attach to this build would.
    Kernel::attach_with(&mem, AttachOptions { cache: Some(&cache), ..AttachOptions::default() }).expect("attach");

    let mut g = c.benchmark_group("attach_ps");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    g.bench_function("cold", |b| {
        b.iter(|| {
            let k = Kernel::attach(&mem, Hints::none()).expect("attach");
            black_box(k.processes().processes.len())
        })
    });
    g.bench_function("cached", |b| {
        b.iter(|| {
            let k = Kernel::attach_with(&mem, AttachOptions { cache: Some(&cache), ..AttachOptions::default() })
                .expect("attach");
            assert!(k.offsets_from_cache());
            black_box(k.processes().processes.len())
        })
    });
    g.bench_function("cached_cr3", |b| {
        b.iter(|| {
            let k = Kernel::attach_with(&mem, AttachOptions { hints, cache: Some(&cache), ..AttachOptions::default() })
                .expect("attach");
            black_box(k.processes().processes.len())
        })
    });
    g.finish();

    let k = Kernel::attach(&mem, hints).expect("attach");
    c.bench_function("ps", |b| {
        b.iter(|| {
            k.invalidate();
            black_box(k.processes().processes.len())
        })
    });
    drop(vm);
}

criterion_group!(benches, attach);
criterion_main!(benches);
