//! Kernel invariants on real guests, halted: the PID table rebuilt from guest RAM
//! holds the ids the guest's /proc lists (threads included); `invariants::check`
//! finds no violation on an idle guest running multi-threaded processes; and the
//! thread groups of the task graph have the sizes /proc/PID/status reports.
//! Ground truth comes from the guest through its agent, never from vmscope.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use vmscope_consistency::invariants;
use vmscope_hv::{Hypervisor, PauseGuard};
use vmscope_linux::{Hints, Kernel};
use vmscope_testbed::{Guest, GuestImages, boot_with, eventually};

/// Every task id under /proc, and each process's `Threads:`.
#[derive(Debug)]
struct Truth {
    tids: BTreeSet<i32>,
    threads: BTreeMap<i32, usize>,
}

fn truth(g: &mut Guest) -> Truth {
    let out = g.sh(
        "for p in /proc/[0-9]*; do n=$(sed -n 's/^Threads:[[:space:]]*//p' $p/status 2>/dev/null); \
         [ -n \"$n\" ] && echo \"P ${p##*/} $n\"; for t in $p/task/[0-9]*; do [ -e \"$t\" ] && echo \"T ${t##*/}\"; done; done",
    );
    let mut t = Truth { tids: BTreeSet::new(), threads: BTreeMap::new() };
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["P", pid, n] => {
                t.threads.insert(pid.parse().expect("pid"), n.parse().expect("Threads"));
            }
            ["T", tid] => {
                t.tids.insert(tid.parse().expect("tid"));
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
    t
}

fn run(id: &str) {
    if !GuestImages::present_or_skip() {
        return;
    }
    let mut g = boot_with(id, |c| c.kaslr = true);
    // Two multi-threaded processes (4 and 7 threads) and some sleepers.
    let quiet = "</dev/null >/dev/null 2>&1 &";
    g.sh(&format!("/sbin/vmscope-workload threads 4 50 {quiet} /sbin/vmscope-workload threads 7 50 {quiet}"));
    g.sh(&format!("for i in 1 2 3 4 5; do sleep 900$i {quiet} done"));
    let started = eventually(Duration::from_secs(30), || {
        let t = truth(&mut g);
        let mut sizes: Vec<usize> = t.threads.values().copied().filter(|&n| n == 4 || n == 7).collect();
        sizes.sort();
        sizes == [4, 7]
    });
    assert!(started, "the workloads did not reach 4 and 7 threads: {:?}", truth(&mut g));

    let regs = g.vm.hv().vcpu_registers(0).expect("registers");
    let kernel = Kernel::attach(g.ram(), Hints::from_registers(regs.cr3, regs.cr4)).expect("attach");
    let before = truth(&mut g);

    let pause = PauseGuard::new(g.vm.hv()).expect("pause");
    kernel.invalidate();
    let t0 = Instant::now();
    let graph = kernel.task_graph();
    let t_graph = t0.elapsed();
    let t0 = Instant::now();
    let pids = kernel.pid_table();
    let t_pids = t0.elapsed();
    let t0 = Instant::now();
    let checked = invariants::check(&kernel);
    let t_check = t0.elapsed();
    pause.release().expect("resume");
    let after = truth(&mut g);
    eprintln!(
        "linux-{id}: {} tasks, {} PID table entries; task_graph {t_graph:?}, pid_table {t_pids:?}, check {t_check:?} (halted)",
        graph.tasks.len(),
        pids.entries.len()
    );

    // The PID table against /proc: ids present both before and after the pause are
    // in the table; every id the table has a task for was in /proc at one of them
    // (the agent's own shells come and go around the pause, never during it).
    assert!(pids.available && pids.anomalies.is_empty(), "{:#?}", pids.anomalies);
    let table: BTreeSet<i32> =
        pids.entries.iter().filter(|e| !e.tasks.is_empty()).map(|e| i32::try_from(e.nr).expect("a pid")).collect();
    let stable: BTreeSet<i32> = before.tids.intersection(&after.tids).copied().collect();
    let seen: BTreeSet<i32> = before.tids.union(&after.tids).copied().collect();
    let missing: Vec<&i32> = stable.difference(&table).collect();
    let extra: Vec<&i32> = table.difference(&seen).collect();
    assert!(missing.is_empty() && extra.is_empty(), "PID table vs /proc: missing {missing:?}, not in /proc {extra:?}");
    assert!(stable.len() > 50, "a booted guest has more tasks than {}", stable.len());

    // No violation on a halted, idle guest.
    assert!(checked.violations.is_empty(), "violations on a halted guest: {:#?}", checked.violations);
    assert!(checked.anomalies.is_empty(), "{:#?}", checked.anomalies);
    assert_eq!(checked.tasks, graph.tasks.len());
    assert_eq!(graph.nr_threads.map(|n| n as usize), Some(graph.tasks.len() - 1), "nr_threads");

    // Thread groups: their sizes as /proc/PID/status says, for every process
    // whose size did not change around the pause.
    let mut compared = 0;
    for t in graph.tasks.iter().filter(|t| t.on_task_list) {
        let (Some(&b), Some(&a)) = (before.threads.get(&t.pid), after.threads.get(&t.pid)) else { continue };
        if a != b {
            continue;
        }
        assert_eq!(t.threads.len(), b, "threads of pid {} ({})", t.pid, t.comm);
        assert_eq!(t.nr_threads, Some(b as i32), "nr_threads of pid {} ({})", t.pid, t.comm);
        compared += 1;
    }
    let workloads: Vec<usize> =
        graph.tasks.iter().filter(|t| t.on_task_list && t.comm == "vmscope-workloa").map(|t| t.threads.len()).collect();
    assert_eq!(workloads.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([4, 7]), "{workloads:?}");
    assert!(compared > 50, "only {compared} processes compared");
}

#[test]
fn linux_6_1_halted() {
    run("6.1");
}

#[test]
fn linux_6_12_halted() {
    run("6.12");
}
