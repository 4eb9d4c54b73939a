//! The deeper views on a live guest of about 100 tasks (Debian 6.1 under QEMU, KASLR
//! on, booted once, running `vmscope-workload hold` and `spawn 42 1`), read through
//! a read-only mapping of QEMU's RAM memfd (the `live-map` technique):
//!
//! - `views/ps`: the process list, the baseline;
//! - `views/maps_files`: the memory map and the open files of every process;
//! - `views/kernel_log`: the whole kernel log;
//! - `views/sockets`: every socket of every network namespace, with its owners;
//! - `views/mounts`: every mount namespace's mounts.
//!
//! Each pass starts with cold translations (`Kernel::invalidate`), as a technique's
//! pass does. After criterion, the same passes are timed once more in a loop and
//! printed as passes per second and as a ratio to `ps` from the same run, which a
//! loaded machine changes less than the absolute figures.
//!
//! `cargo bench -p vmscope-linux --bench views`; needs `cargo xtask images`
//! (skipped with a note otherwise). The figures are in the crate README.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vmscope_hv::Hypervisor;
use vmscope_linux::{Hints, Kernel};
use vmscope_testbed::{Guest, GuestImages, boot, eventually};

/// Starts the workloads: about 43 more processes, one with files of every kind.
fn populate(g: &mut Guest) {
    g.sh("/sbin/vmscope-workload hold /tmp/hold </dev/null >/tmp/hold.out 2>&1 &");
    g.sh("/sbin/vmscope-workload spawn 42 1 </dev/null >/tmp/spawn.out 2>&1 &");
    let up = eventually(Duration::from_secs(60), || {
        let out = g.sh("cat /tmp/hold.out /tmp/spawn.out");
        out.contains("hold: up") && out.contains("spawn: up")
    });
    assert!(up, "the workloads did not start: {}", g.sh("cat /tmp/hold.out /tmp/spawn.out"));
}

/// Passes per second of `f`, timed for about `secs` seconds.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn views(c: &mut Criterion) {
    if let Err(e) = GuestImages::locate() {
        eprintln!("note: skipping the views benchmark: {e}");
        return;
    }
    let mut g = boot("6.1");
    populate(&mut g);
    let hv = g.vm.hv();
    let mem = vmscope_map::Mapped::open(g.ram_location()).expect("map the RAM");
    let regs = hv.vcpu_registers(0).expect("registers");
    let k = Kernel::attach(&mem, Hints::from_registers(regs.cr3, regs.cr4)).expect("attach");
    let (threads, _) = k.all_threads();
    let tasks: usize = threads.iter().map(|t| t.threads.len()).sum();
    let maps = k.memory_maps().expect("maps");
    let files = k.all_open_files().expect("files");
    let log = k.kernel_log().expect("log");
    eprintln!(
        "views: {tasks} tasks, {} processes, {} memory areas, {} open files, {} log records",
        threads.len(),
        maps.processes.iter().map(|p| p.vmas.len()).sum::<usize>(),
        files.processes.iter().map(|p| p.files.len()).sum::<usize>(),
        log.records.len()
    );

    let ps = || {
        k.invalidate();
        black_box(k.processes().processes.len());
    };
    let maps_files = || {
        k.invalidate();
        let m = k.memory_maps().expect("maps");
        let f = k.all_open_files().expect("files");
        black_box((m.processes.len(), f.processes.len()));
    };
    let kernel_log = || {
        k.invalidate();
        black_box(k.kernel_log().expect("log").records.len());
    };

    let sockets = || {
        k.invalidate();
        black_box(k.sockets().expect("sockets").sockets.len());
    };
    let mounts = || {
        k.invalidate();
        black_box(k.mounts(None).expect("mounts").map(|t| t.namespaces.len()));
    };

    let mut group = c.benchmark_group("views");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    group.bench_function("ps", |b| b.iter(ps));
    group.bench_function("maps_files", |b| b.iter(maps_files));
    group.bench_function("kernel_log", |b| b.iter(kernel_log));
    group.bench_function("sockets", |b| b.iter(sockets));
    group.bench_function("mounts", |b| b.iter(mounts));
    group.finish();

    let base = rate(2.0, ps);
    let mf = rate(2.0, maps_files);
    let lg = rate(2.0, kernel_log);
    let so = rate(2.0, sockets);
    let mo = rate(2.0, mounts);
    eprintln!(
        "views: ps {base:.0} passes/s; maps+files of every process {mf:.0} passes/s ({:.2} x ps); \
         kernel log {:.3} ms a pass ({:.2} x ps); sockets {so:.0} passes/s ({:.2} x ps); \
         mounts {mo:.0} passes/s ({:.2} x ps)",
        mf / base,
        1e3 / lg,
        lg / base,
        so / base,
        mo / base
    );
}

criterion_group!(benches, views);
criterion_main!(benches);
