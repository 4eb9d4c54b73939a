//! How the lab's task-list pass grows with the guest's tasks: the task graph (every
//! process and thread, walked from `init_task.tasks` and each thread group) of a live
//! 2 GiB Debian 6.1 guest under QEMU, read through vmscope's read-only mapping of
//! QEMU's RAM memfd (live-map, as `cargo xtask lab --experiment scale` reads it). The
//! guest is grown in place with idle processes of four threads (`vmscope-workload
//! spawn`) from about 1,000 tasks to about 10,000:
//!
//! - `task_graph/live-map/1000` and `.../10000`: one pass, throughput in tasks, so
//!   criterion reports each size's rate per task;
//! - at the end, the baseline comparison: the per-task cost at 10,000 tasks over the
//!   per-task cost at 1,000 (medians of the samples above, same run, same guest).
//!   1 means the pass is linear in the tasks; before the lines-only batched reads it
//!   was about 3.
//!
//! - the budget's cost: at 10,000 tasks the same pass again with no budget
//!   (`Budget::unlimited()`: nothing checked), `task_graph/live-map-unbudgeted`; and,
//!   since a loaded host drifts between two benchmarks, 200 pairs of passes
//!   interleaved (budgeted then unbudgeted, then the other way round): the ratio of
//!   their medians, budgeted over unbudgeted, is printed.
//!
//! `cargo bench -p vmscope-linux --bench scale`; needs `cargo xtask images` (skipped
//! with a note otherwise). The figures are in the crate README.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vmscope_hv::Hypervisor;
use vmscope_linux::{Budget, Hints, Kernel, Limits};
use vmscope_map::Mapped;
use vmscope_mem::PhysMem;
use vmscope_testbed::{Guest, GuestImages};

/// Task counts measured, ascending (the guest only grows); the first is the baseline.
const SIZES: [usize; 2] = [1_000, 10_000];
/// Threads per spawned process, as the lab's scale experiment spawns them.
const THREADS_PER_PROC: usize = 4;

fn scale(c: &mut Criterion) {
    if let Err(e) = GuestImages::locate() {
        eprintln!("note: skipping the scale benchmark: {e}");
        return;
    }
    let mut guest = vmscope_testbed::boot_with("6.1", |c| c.memory_mib = 2048);
    let hv = guest.vm.hv();
    let mem = Mapped::open(guest.ram_location()).expect("map RAM");
    let regs = hv.vcpu_registers(0).expect("registers");
    let k = Kernel::attach(&mem, Hints::from_registers(regs.cr3, regs.cr4)).expect("attach");
    // What the lab's live-map pass does: refresh the hole guard when stale, then walk.
    let unbudgeted = k.with_limits(Limits { budget: Budget::unlimited(), ..k.limits() });
    let pass_of = |k: &Kernel<&&Mapped>| {
        mem.holes().refresh_if_older(Duration::from_millis(500)).expect("hole refresh");
        let g = k.rebind(&mem as &dyn PhysMem).task_graph();
        g.tasks.iter().filter(|t| t.addr != g.init_task).count()
    };
    let budgeted = k.with_limits(k.limits());
    let pass = || pass_of(&budgeted);

    let mut per_task = Vec::new();
    let mut g = c.benchmark_group("task_graph");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let proc_tasks = grow(&mut guest, n);
        let found = pass();
        eprintln!("scale bench: /proc has {proc_tasks} tasks, the task graph {found}");
        assert!(found.abs_diff(proc_tasks) <= 10, "the pass found {found} tasks, /proc {proc_tasks}");
        let mut samples = Vec::new();
        g.throughput(Throughput::Elements(found as u64));
        g.bench_function(BenchmarkId::new("live-map", n), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    black_box(pass());
                }
                let took = t0.elapsed();
                samples.push(took.as_secs_f64() / iters as f64);
                took
            })
        });
        per_task.push(median(&mut samples) / found as f64);
    }
    // The budget's bookkeeping: the last size again, unmetered, right after.
    let mut samples = Vec::new();
    g.bench_function(BenchmarkId::new("live-map-unbudgeted", SIZES[1]), |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                black_box(pass_of(&unbudgeted));
            }
            let took = t0.elapsed();
            samples.push(took.as_secs_f64() / iters as f64);
            took
        })
    });
    let unmetered = median(&mut samples);
    g.finish();
    let [base, big] = per_task[..] else { unreachable!("one figure per size") };
    eprintln!(
        "scale bench: per task {:.0} ns at {} tasks, {:.0} ns at {} tasks: ratio {:.2} (1 = linear)",
        base * 1e9,
        SIZES[0],
        big * 1e9,
        SIZES[1],
        big / base
    );
    let found = pass_of(&unbudgeted) as f64;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let time = |k: &Kernel<&&Mapped>, into: &mut Vec<f64>| {
        let t = Instant::now();
        black_box(pass_of(k));
        into.push(t.elapsed().as_secs_f64());
    };
    for i in 0..200 {
        if i % 2 == 0 {
            time(&budgeted, &mut with);
            time(&unbudgeted, &mut without);
        } else {
            time(&unbudgeted, &mut without);
            time(&budgeted, &mut with);
        }
    }
    let (with, without) = (median(&mut with), median(&mut without));
    eprintln!(
        "scale bench: budget bookkeeping at {} tasks: criterion medians {:.0} vs {:.0} ns per task; interleaved \
         medians {:.0} vs {:.0} ns per task: ratio {:.3} (budgeted over unbudgeted)",
        SIZES[1],
        big * 1e9,
        unmetered / found * 1e9,
        with / found * 1e9,
        without / found * 1e9,
        with / without
    );
}

/// Spawns idle tasks until the guest has about `target`; returns /proc's task count.
fn grow(guest: &mut Guest, target: usize) -> usize {
    let have = proc_tasks(guest);
    let add = target.saturating_sub(have);
    if add >= THREADS_PER_PROC {
        let procs = (add - 1) / THREADS_PER_PROC;
        let out = format!("/tmp/scale-bench-{target}.out");
        guest.sh(&format!("/sbin/vmscope-workload spawn {procs} {THREADS_PER_PROC} >{out} 2>&1 &"));
        let up = vmscope_testbed::eventually(Duration::from_secs(600), || {
            let text = guest.sh(&format!("cat {out}"));
            assert!(!text.contains("failed"), "spawn: {text}");
            text.contains("spawn: up")
        });
        assert!(up, "{procs} processes of {THREADS_PER_PROC} threads not up after 600 s");
    }
    proc_tasks(guest)
}

/// Tasks in the guest's /proc (every thread of every process).
fn proc_tasks(guest: &mut Guest) -> usize {
    guest.agent.processes().expect("the agent's process list").iter().map(|p| p.threads as usize).sum()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

criterion_group!(benches, scale);
criterion_main!(benches);
