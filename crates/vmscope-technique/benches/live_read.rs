//! live-read on private RAM against live-read on a shared memfd: the process list of
//! two live 1 GiB guests (Debian 6.1 under QEMU, booted once, idle), one with a
//! memfd backend read by `pread` (the fastest syscall reader), one with plain `-m`
//! (anonymous private RAM) read by `process_vm_readv` — the only way into it — and
//! the other pairs for context. Each pass starts with an empty page cache, as every
//! live-read pass does.
//!
//! Besides criterion's figures, the same run measures the passes interleaved (so
//! that drift in the host's load hits both alike) and prints the ratio
//! `private process_vm_readv / memfd pread`: the goal is at most 2.
//!
//! `cargo bench -p vmscope-technique --bench live_read`; needs `cargo xtask images`
//! (skipped with a note otherwise).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vmscope_linux::{Hints, Kernel};
use vmscope_mem::{MemoryMap, SliceMem};
use vmscope_technique::{Access, Guest, Options, ReadMethod, Target, Technique};
use vmscope_testbed::{GuestImages, QemuVm, RamBacking};

/// A booted guest, opened as vmscope opens it, with its kernel attached once.
struct Booted {
    _vm: QemuVm,
    guest: Guest,
    kernel: Kernel<SliceMem<Vec<u8>>>,
}

fn boot(images: &GuestImages, ram: RamBacking) -> Booted {
    let mut cfg = images.kernel("6.1").expect("a 6.1 guest image").qemu_config();
    cfg.memory_mib = 1024;
    cfg.ram = ram;
    let vm = QemuVm::launch(cfg).expect("boot the guest");
    let guest = Target::Qemu { pid: vm.pid(), qmp: Some(vm.extra_qmp_socket()) }.open().expect("open the guest");
    let regs = guest.registers().expect("vCPU registers");
    let access = guest.access(Some(Technique::LiveRead), &Options::default()).expect("live-read");
    let kernel = access
        .pass(|mem| {
            let k = Kernel::attach(mem, Hints::from_registers(regs.cr3, regs.cr4)).expect("attach");
            k.rebind(SliceMem::new(Vec::new(), MemoryMap::flat(0)))
        })
        .expect("a pass");
    drop(access);
    Booted { _vm: vm, guest, kernel }
}

/// live-read by `method` on `b`.
fn open(b: &Booted, method: ReadMethod) -> Access<'_> {
    let opts = Options { read_method: Some(method), ..Options::default() };
    b.guest.access(Some(Technique::LiveRead), &opts).expect("live-read")
}

fn ps(b: &Booted, a: &Access<'_>) -> usize {
    a.pass(|mem| b.kernel.rebind(mem).processes().processes.len()).expect("a pass")
}

fn live_read(c: &mut Criterion) {
    let Some(images) = GuestImages::for_benchmark("live-read") else { return };
    let memfd = boot(&images, RamBacking::SharedMemfd);
    let private = boot(&images, RamBacking::Plain);
    let cases = [
        ("memfd/pread", &memfd, ReadMethod::Pread),
        ("memfd/process_vm_readv", &memfd, ReadMethod::VmReadv),
        ("private/process_vm_readv", &private, ReadMethod::VmReadv),
        ("private/proc-mem", &private, ReadMethod::ProcMem),
    ];
    let mut g = c.benchmark_group("live_read_ps");
    g.measurement_time(Duration::from_secs(5));
    for (name, b, m) in cases {
        let a = open(b, m);
        g.bench_function(name, |bench| bench.iter(|| black_box(ps(b, &a))));
    }
    g.finish();

    // The ratio, interleaved pass by pass (alternating which goes first), in this
    // thread's CPU time — what the technique costs, which a loaded host's scheduling
    // does not inflate — and in wall time.
    let (fast, slow) = (open(&memfd, ReadMethod::Pread), open(&private, ReadMethod::VmReadv));
    let mut cpu = [Vec::new(), Vec::new()];
    let mut wall = [Vec::new(), Vec::new()];
    for round in 0..400 {
        for i in [round % 2, 1 - round % 2] {
            let (b, a) = if i == 0 { (&memfd, &fast) } else { (&private, &slow) };
            let (c, w) = (thread_cpu(), Instant::now());
            black_box(ps(b, a));
            wall[i].push(w.elapsed());
            cpu[i].push(thread_cpu() - c);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    let [cf, cs] = cpu.map(|mut v| median(&mut v));
    let [wf, ws] = wall.map(|mut v| median(&mut v));
    println!(
        "live-read ps, 1 GiB guests, median per pass: memfd by pread {cf:.0} us CPU ({wf:.0} us wall), private by \
         process_vm_readv {cs:.0} us CPU ({ws:.0} us wall): ratio {:.2} in CPU time, {:.2} in wall time (goal <= 2)",
        cs / cf,
        ws / wf
    );
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`, which lives on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

criterion_group!(benches, live_read);
criterion_main!(benches);
