//! The snapshot experiment on Debian guests under QEMU.

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use vmscope_hv::RamLocation;
use vmscope_hv::qemu::QmpHypervisor;
use vmscope_mem::FileMem;
use vmscope_snap::{SnapOptions, Source};
use vmscope_technique::Technique;

use super::{Config, DIRTY_MB_S, Sample, host_has_room, ram_sizes, repeats, rss, touched_mib};
use crate::experiments::Ctx;
use crate::qemu_runs::{Booted, boot};

/// Where the workload writes its log in the guest.
const LOG: &str = "/tmp/vmscope-dirty.log";

pub fn run(ctx: &Ctx, configs: &mut Vec<Config>, skipped: &mut Vec<String>) -> anyhow::Result<()> {
    let id = ctx.kernels.first().context("no guest kernel chosen")?.clone();
    let techniques: Vec<&'static str> = [
        (Technique::HaltSnap, "halt-snap"),
        (Technique::LiveSnap, "live-snap/precopy"),
        (Technique::HaltSnap, "qemu-dump"),
        (Technique::LiveSnap, "qemu-background"),
    ]
    .into_iter()
    .filter(|(t, name)| ctx.wants(*t) && (!ctx.smoke || matches!(*name, "halt-snap" | "live-snap/precopy")))
    .map(|(_, name)| name)
    .collect();
    let sizes = ram_sizes(ctx);
    let pb = ctx.bar((sizes.len() * techniques.len()) as u64, "snapshot (QEMU)");
    for mib in sizes {
        // The guest, the introspector's copy, and QEMU's own full allocation under a
        // background snapshot.
        if !host_has_room(mib, 3) {
            skipped.push(format!("QEMU with {mib} MiB (not enough free host memory)"));
            continue;
        }
        // A size that fails costs its own rows (which lack the workload's dirty rate
        // until it is stopped), not the section.
        let first = configs.len();
        if let Err(e) = one_size(ctx, &id, mib, &techniques, &pb, configs) {
            configs.truncate(first);
            skipped.push(format!("QEMU with {mib} MiB: {e:#}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.finish_and_clear();
    Ok(())
}

/// Boots linux-`id` with `mib` MiB, touches its RAM and measures `techniques`.
fn one_size(
    ctx: &Ctx,
    id: &str,
    mib: u64,
    techniques: &[&'static str],
    pb: &ProgressBar,
    configs: &mut Vec<Config>,
) -> anyhow::Result<()> {
    pb.set_message(format!("snapshot: booting linux-{id} with {mib} MiB"));
    let b = boot(ctx, id, mib)?;
    let touched = touched_mib(mib);
    let workload = Dirty::start(&b, touched)?;
    let hv = b.vm.hv();
    let pid = b.vm.pid();
    let loc = RamLocation::qemu(pid, &hv.ram_layout()?)?;
    let ram = loc.open_files()?;
    let first = configs.len();
    for &t in techniques {
        pb.set_message(format!("snapshot: {t}, {mib} MiB"));
        let samples = (0..repeats(ctx))
            .map(|_| sample(hv, pid, &ram, t))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("{t} of a {mib} MiB guest"))?;
        configs.push(Config {
            hypervisor: format!("qemu-{}", vmscope_testbed::Accel::detect().name()),
            guest: format!("linux-{id}"),
            ram_mib: mib,
            touched_mib: touched,
            dirty_mb_s: 0.0,
            guest_dirty_mb_s: None,
            technique: t,
            samples,
        });
        pb.inc(1);
    }
    let rate = workload.stop(&b)?;
    for c in &mut configs[first..] {
        c.dirty_mb_s = rate;
    }
    Ok(())
}

fn sample(hv: &QmpHypervisor, pid: u32, ram: &FileMem, technique: &str) -> anyhow::Result<Sample> {
    let opts = SnapOptions { registers: false, vmcoreinfo: false };
    let (mine, theirs) = (rss(None), rss(Some(pid)));
    let s = match technique {
        "halt-snap" | "live-snap/precopy" => {
            let (snap, st) = if technique == "halt-snap" {
                vmscope_snap::halt_snap(hv, Source::Backed(ram), opts)?
            } else {
                vmscope_snap::live::precopy_snap(hv, ram, opts)?
            };
            let extra = rss(None) - mine;
            drop(snap);
            Sample { pause: st.downtime, total: st.total, copied: st.copied_bytes, extra, hv_rss_delta: 0 }
        }
        "qemu-dump" => {
            let dir = std::env::temp_dir().join(format!("vmscope-lab-dump-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("guest.elf");
            let t = Instant::now();
            // QEMU pauses the guest for the whole dump.
            let took = vmscope_snap::qemu_dump_guest_memory(hv, &path, Duration::from_secs(900));
            let total = t.elapsed();
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_dir_all(&dir);
            let pause = took?;
            Sample { pause, total, copied: len, extra: len as i64, hv_rss_delta: 0 }
        }
        "qemu-background" => {
            let (snap, st, _) = vmscope_snap::live::qemu_background_snap(hv, opts)?;
            let extra = rss(None) - mine;
            drop(snap);
            Sample { pause: st.downtime, total: st.total, copied: st.copied_bytes, extra, hv_rss_delta: 0 }
        }
        other => anyhow::bail!("no snapshot technique `{other}` on QEMU"),
    };
    Ok(Sample { hv_rss_delta: rss(Some(pid)) - theirs, ..s })
}

/// `vmscope-workload dirty` in the guest.
struct Dirty {
    pid: u32,
}

impl Dirty {
    /// Starts it on `mib` MiB and waits until that much is touched.
    fn start(b: &Booted, mib: u64) -> anyhow::Result<Self> {
        let mut agent = b.agent()?;
        let out = agent.sh(&format!("/sbin/vmscope-workload dirty {DIRTY_MB_S} {mib} >{LOG} 2>&1 & echo $!"))?;
        let pid = out.trim().parse().with_context(|| format!("the workload's pid from `{out}`"))?;
        let t = Instant::now();
        loop {
            let log = agent.sh(&format!("cat {LOG}"))?;
            if log.contains("dirty: touched") {
                return Ok(Self { pid });
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(600) && !log.contains("vmscope-workload:"),
                "the dirty workload did not touch {mib} MiB: {log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops it; returns the dirty rate it achieved (MB/s) from its summary line.
    fn stop(self, b: &Booted) -> anyhow::Result<f64> {
        let mut agent = b.agent()?;
        let pid = self.pid;
        agent.sh(&format!("kill {pid}"))?;
        // Its parent is gone and a zombie still answers `kill -0`: wait for the summary.
        let t = Instant::now();
        loop {
            let log = agent.sh(&format!("cat {LOG}"))?;
            if let Some(r) = summary_rate(&log) {
                return Ok(r);
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "no summary in the workload's log: {log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// R from the summary line `dirty: N pages in S s = R MB/s (...)`.
fn summary_rate(log: &str) -> Option<f64> {
    let line = log.lines().rev().find(|l| l.starts_with("dirty: ") && l.contains(" pages in "))?;
    line.split(" = ").nth(1)?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_summary_rate() {
        let log = "dirty: touched 128 MiB in 0.20 s\ndirty: t=1s 2560 pages = 10.00 MB/s (target 10 MB/s)\n\
                   dirty: 7000 pages in 2.74 s = 9.98 MB/s (target 10 MB/s, 0 pages dropped)\n";
        assert_eq!(super::summary_rate(log), Some(9.98));
        assert_eq!(super::summary_rate("dirty: touched 1 MiB in 0.00 s\n"), None);
    }
}
