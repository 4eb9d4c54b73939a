//! The study's workloads run in a 6.1 guest from the workload disk image and each
//! reports a positive figure: x264, sysbench (cpu, memory, threads, fileio on the
//! scratch disk), httperf against busybox httpd, netperf and iperf3 on loopback,
//! bonnie++ and fio on the scratch disk, and stress-ng's STREAM stressor.

use std::time::{Duration, Instant};

use vmscope_testbed::boot_with_workloads;
use vmscope_testbed::workloads::{Workload, run};

#[test]
fn every_workload_reports_a_positive_figure() {
    let mut g = boot_with_workloads("6.1", |_| {});
    let mut failed = Vec::new();
    for w in Workload::ALL {
        let t = Instant::now();
        match run(&mut g.agent, w, Duration::from_secs(2)) {
            Ok(f) if f.value > 0.0 && f.value.is_finite() => {
                eprintln!("{:>17}: {:>12.2} {:<10} ({:.1} s)", w.name(), f.value, f.unit, t.elapsed().as_secs_f64());
            }
            Ok(f) => failed.push(format!("{}: figure {} {}", w.name(), f.value, f.unit)),
            Err(e) => failed.push(e.to_string()),
        }
    }
    assert!(failed.is_empty(), "workloads without a positive figure:\n{}", failed.join("\n\n"));
}

#[test]
fn the_guest_without_disks_mounts_nothing() {
    let mut g = vmscope_testbed::boot("6.1");
    let mounts = g.sh("cat /proc/mounts");
    assert!(!mounts.contains("/mnt/w"), "{mounts}");
    assert!(g.sh("ls /sys/block").split_whitespace().all(|d| !d.starts_with("vd")));
}
