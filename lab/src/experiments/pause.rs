//! How steady pausing is: the latency of one pause + resume through the hypervisor's
//! control interface (the built-in VMM's control socket, QEMU's QMP), many times over,
//! on 1 and 2 vCPUs; and, on the built-in VMM, halt-map against halt-read — two
//! techniques that differ only in how they read, so any gap between them is the pause.
//!
//! Two rhythms: back to back (pause, resume, pause... — what a halting technique does
//! at its highest frequency, where the guest barely runs in between), and with the
//! guest running for a millisecond between cycles, so that every pause has to stop
//! vCPUs that are busy in the guest's mutator.

use std::time::{Duration, Instant};

use anyhow::Context;
use vmscope_hv::Hypervisor;
use vmscope_mem::PhysMem;
use vmscope_technique::{Access, Guest, Options, ReadMethod, Target, Technique};
use vmscope_vmm::testkernel::Manifest;

use super::{Ctx, HypervisorKind};
use crate::guests;
use crate::measure::{Rate, run_for};
use crate::table::Table;

const LATENCY_COLUMNS: &[&str] = &[
    "hypervisor",
    "vcpus",
    "rhythm",
    "step",
    "samples",
    "median_us",
    "p90_us",
    "p99_us",
    "max_us",
    "p99_over_median",
    "moved_while_paused",
];

fn col(columns: &[&str], name: &str) -> usize {
    columns.iter().position(|c| *c == name).expect("a column of the table")
}

const HALT_COLUMNS: &[&str] = &[
    "hypervisor",
    "vcpus",
    "technique",
    "passes",
    "failed",
    "seconds",
    "passes_per_s",
    "map_over_read",
    "first_error",
];

/// Time the guest runs between cycles in the `guest-runs` rhythm.
const RUN_GAP: Duration = Duration::from_millis(1);

pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let samples = if ctx.smoke {
        30
    } else if ctx.quick {
        300
    } else {
        2000
    };
    let vcpu_counts: &[u32] = if ctx.smoke { &[1] } else { &[1, 2] };
    let mut latency = Table::new(LATENCY_COLUMNS);
    let mut halt = Table::new(HALT_COLUMNS);
    let mut series = Vec::new();
    match ctx.hypervisor {
        HypervisorKind::Builtin => {
            for &vcpus in vcpu_counts {
                let vm = guests::testkernel(&ctx.images, vcpus, "1G", "")?;
                let guest = Target::Builtin { control: vm.control(), agent: None }.open()?;
                let manifest = wait_for_manifest(&guest, u64::from(vcpus))?;
                let probe = Probe::new(&guest, manifest.clone())?;
                let hv = guest.hypervisor().context("the built-in VMM has a control socket")?;
                for (rhythm, gap) in [("back-to-back", None), ("guest-runs", Some(RUN_GAP))] {
                    let s = cycles(hv, samples, gap, Some(&probe))?;
                    s.rows("builtin", vcpus, rhythm, &mut latency);
                    series.push((format!("{vcpus} vCPU, {rhythm}"), s.total_us()));
                }
                halt_passes(ctx, &guest, &manifest, vcpus, &mut halt)?;
            }
        }
        HypervisorKind::Qemu => {
            let kernel = ctx.kernels.first().cloned().context("no guest kernel chosen")?;
            for &vcpus in vcpu_counts {
                let mut cfg = ctx.images.kernel(&kernel)?.qemu_config();
                cfg.vcpus = vcpus;
                let vm = vmscope_testbed::QemuVm::launch(cfg)?;
                let guest = Target::Qemu { pid: vm.pid(), qmp: Some(vm.extra_qmp_socket()) }.open()?;
                let hv = guest.hypervisor().context("QEMU was started with a QMP socket")?;
                for (rhythm, gap) in [("back-to-back", None), ("guest-runs", Some(RUN_GAP))] {
                    let s = cycles(hv, samples, gap, None)?;
                    s.rows("qemu", vcpus, rhythm, &mut latency);
                    series.push((format!("{vcpus} vCPU, {rhythm}"), s.total_us()));
                }
                drop(guest);
                drop(vm);
            }
        }
    }
    crate::plot::latency_histogram(
        &ctx.report.path("pause.svg"),
        "Pause + resume latency",
        "microseconds per pause + resume (log)",
        &series,
    )?;
    let prose = match ctx.hypervisor {
        HypervisorKind::Builtin => {
            "Latency of one pause + resume of the built-in VMM through its control socket (the client's \
             round trips, as `Halted` pays them per pass), on the test kernel with 1 and 2 vCPUs. \
             `back-to-back`: cycles follow each other at once, as a halting technique at full speed does; \
             `guest-runs`: the guest runs 1 ms between cycles, so each pause stops vCPUs busy in the \
             mutator. `moved_while_paused` counts pauses during which a per-CPU iteration counter of the \
             test kernel changed (read twice through pread while paused): it must be 0. The target: p99 \
             within 2x of the median. Below it, halt-map and halt-read (each one pause per pass, a pass \
             reads every list) on the same guest; they differ only in how they read, so their rates should \
             be close (`map_over_read`)."
        }
        HypervisorKind::Qemu => {
            "Latency of one QMP `stop` + `cont` of a Debian guest under QEMU with 1 and 2 vCPUs. \
             `back-to-back`: cycles follow each other at once; `guest-runs`: the guest runs 1 ms between \
             cycles. halt-map against halt-read on QEMU guests is in the frequency experiment."
        }
    };
    let prose = format!("{prose}\n\n### Findings\n\n{}", findings(&latency));
    ctx.report.section("pause", "Pause latency", &prose, &latency, &["pause.svg"])?;
    if !halt.rows.is_empty() {
        let prose = format!(
            "Passes per second of halt-map and halt-read on the test kernel, measured in 20 alternating \
             rounds on one guest so that both see the same host.\n\n### Findings\n\n{}",
            halt_findings(&halt)
        );
        ctx.report.section("pause_halt", "Halting techniques on the same guest", &prose, &halt, &[])?;
    }
    Ok(())
}

/// Reads the test kernel's per-CPU iteration counters with pread, to prove a pause
/// stopped every vCPU.
struct Probe<'g> {
    access: Access<'g>,
    manifest: Manifest,
}

impl<'g> Probe<'g> {
    fn new(guest: &'g Guest, manifest: Manifest) -> anyhow::Result<Self> {
        let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
        Ok(Self { access: guest.access(Some(Technique::LiveRead), &opts)?, manifest })
    }

    fn counters(&self) -> anyhow::Result<Vec<u64>> {
        let m = &self.manifest;
        let v = self
            .access
            .pass(|mem| (0..u64::from(m.nr_cpus)).map(|cpu| m.iterations(mem, cpu)).collect::<Result<Vec<_>, _>>())??;
        Ok(v)
    }
}

/// Latencies of `n` pause + resume cycles.
#[derive(Debug, Default)]
struct Cycles {
    pause: Vec<Duration>,
    resume: Vec<Duration>,
    moved: usize,
}

impl Cycles {
    fn total_us(&self) -> Vec<f64> {
        self.pause.iter().zip(&self.resume).map(|(p, r)| (*p + *r).as_secs_f64() * 1e6).collect()
    }

    fn rows(&self, hv: &str, vcpus: u32, rhythm: &str, table: &mut Table) {
        let us = |v: &[Duration]| v.iter().map(|d| d.as_secs_f64() * 1e6).collect::<Vec<_>>();
        for (step, v) in [("pause", us(&self.pause)), ("resume", us(&self.resume)), ("pause+resume", self.total_us())] {
            let s = Summary::of(&v);
            table.push(vec![
                hv.into(),
                vcpus.to_string(),
                rhythm.into(),
                step.into(),
                v.len().to_string(),
                format!("{:.0}", s.median),
                format!("{:.0}", s.p90),
                format!("{:.0}", s.p99),
                format!("{:.0}", s.max),
                format!("{:.1}", s.p99 / s.median.max(1e-9)),
                self.moved.to_string(),
            ]);
        }
    }
}

/// Pauses (as `Halted` does: one `pause_if_running` round trip) and resumes `n`
/// times; with `probe`, checks between the two that the guest stood still.
fn cycles(hv: &dyn Hypervisor, n: usize, gap: Option<Duration>, probe: Option<&Probe<'_>>) -> anyhow::Result<Cycles> {
    let mut c = Cycles::default();
    for _ in 0..n {
        let t0 = Instant::now();
        anyhow::ensure!(hv.pause_if_running()?, "the guest was paused already");
        let t1 = Instant::now();
        if let Some(p) = probe {
            let a = p.counters()?;
            std::thread::sleep(Duration::from_micros(50));
            if p.counters()? != a {
                c.moved += 1;
            }
        }
        let t2 = Instant::now();
        hv.resume()?;
        let t3 = Instant::now();
        c.pause.push(t1 - t0);
        c.resume.push(t3 - t2);
        if let Some(gap) = gap {
            std::thread::sleep(gap);
        }
    }
    Ok(c)
}

/// Median, p90, p99 and maximum of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(v: &[f64]) -> Self {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if s.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest value with at least p of the sample at or below it.
            let rank = (p * s.len() as f64).ceil() as usize;
            s[rank.clamp(1, s.len()) - 1]
        };
        Self { median: q(0.5), p90: q(0.9), p99: q(0.99), max: s.last().copied().unwrap_or(0.0) }
    }
}

/// halt-map and halt-read in alternating rounds on one guest, so that both see the
/// same host (on a small shared host the load changes from second to second, and two
/// techniques measured one after the other compare the host's moments, not them).
fn halt_passes(ctx: &Ctx, guest: &Guest, manifest: &Manifest, vcpus: u32, table: &mut Table) -> anyhow::Result<()> {
    const ROUNDS: u32 = 20;
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    let techniques = [Technique::HaltMap, Technique::HaltRead];
    let mut rates = Vec::new();
    for t in techniques {
        let access = guest.access(Some(t), &opts).with_context(|| format!("opening {t}"))?;
        rates.push((t, access, Rate::default()));
    }
    for _ in 0..ROUNDS {
        for (_, access, total) in &mut rates {
            let r = run_for(ctx.budget() / ROUNDS, 1, u64::MAX, || lists_pass(access, manifest), || {});
            total.passes += r.passes;
            total.failed += r.failed;
            total.wall += r.wall;
            if total.first_error.is_none() {
                total.first_error = r.first_error;
            }
        }
    }
    let per_s = |t| rates.iter().find(|(x, ..)| *x == t).map_or(0.0, |(.., r)| r.per_second());
    let ratio = per_s(Technique::HaltMap) / per_s(Technique::HaltRead).max(1e-9);
    for (t, _, r) in &rates {
        table.push(vec![
            "builtin".into(),
            vcpus.to_string(),
            t.name().into(),
            r.passes.to_string(),
            r.failed.to_string(),
            format!("{:.2}", r.wall.as_secs_f64()),
            format!("{:.1}", r.per_second()),
            if *t == Technique::HaltMap { format!("{ratio:.2}") } else { "-".into() },
            r.error_cell(),
        ]);
    }
    Ok(())
}

/// The Findings paragraph for the latency table: per vCPU count and rhythm, the
/// median and tail of a pause + resume, whether p99 stayed within 2× the median, and
/// pauses that failed to stop the guest — next to the study's finding.
fn findings(table: &Table) -> String {
    let c = |n| col(LATENCY_COLUMNS, n);
    let mut out = String::new();
    for r in table.rows.iter().filter(|r| r[c("step")] == "pause+resume") {
        let ratio: f64 = r[c("p99_over_median")].parse().unwrap_or(f64::NAN);
        let moved: u64 = r[c("moved_while_paused")].parse().unwrap_or(0);
        out.push_str(&format!(
            "- **{} vCPU, {}** ({} samples): a pause + resume took {} µs at the median, {} µs at p99 and {} µs at \
             worst; p99 is {ratio:.1}× the median ({}). {}\n",
            r[c("vcpus")],
            r[c("rhythm")],
            r[c("samples")],
            r[c("median_us")],
            r[c("p99_us")],
            r[c("max_us")],
            if ratio <= 2.0 { "within the 2× target" } else { "**outside the 2× target**" },
            if r[c("hypervisor")] != "builtin" {
                "(Not probed for movement: QEMU's guest is not the test kernel.)".to_owned()
            } else if moved == 0 {
                "Every pause stopped the guest (no counter moved).".to_owned()
            } else {
                format!("**{moved} pauses did not stop the guest** (a counter moved while paused).")
            },
        ));
    }
    out.push_str(
        "\nThe study found halting costly: each pause stops the guest and costs a round trip to the \
         hypervisor, which bounds a halting technique's frequency by this latency. The medians above are that \
         bound's price per pass on this host.\n",
    );
    out
}

/// The Findings paragraph for halt-map against halt-read.
fn halt_findings(table: &Table) -> String {
    let c = |n| col(HALT_COLUMNS, n);
    let mut out = String::new();
    for r in table.rows.iter().filter(|r| r[c("technique")] == "halt-map") {
        let ratio: f64 = r[c("map_over_read")].parse().unwrap_or(f64::NAN);
        let failed: u64 = table
            .rows
            .iter()
            .filter(|x| x[c("vcpus")] == r[c("vcpus")])
            .map(|x| x[c("failed")].parse().unwrap_or(0))
            .sum();
        out.push_str(&format!(
            "- **{} vCPU**: halt-map ran at {ratio:.2}× halt-read's rate ({} vs the other's passes/s); {failed} passes failed. {}\n",
            r[c("vcpus")],
            r[c("passes_per_s")],
            if (0.5..=2.0).contains(&ratio) {
                "The two differ only in how they read, and the pause dominates both."
            } else {
                "The gap is larger than the pause alone explains: how a technique reads still matters while halted."
            },
        ));
    }
    out.push_str("\nThe study found halting costly whatever the access; a ratio near 1 says the pause, not the read, sets the rate.\n");
    out
}

fn lists_pass(access: &Access<'_>, manifest: &Manifest) -> anyhow::Result<usize> {
    let lists = access.pass(|mem| manifest.lists(mem))??;
    Ok(lists.iter().map(|l| l.ids.len()).sum())
}

/// The test kernel's manifest, once `cpus` CPUs run its mutator.
fn wait_for_manifest(guest: &Guest, cpus: u64) -> anyhow::Result<Manifest> {
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    let access = guest.access(Some(Technique::LiveRead), &opts)?;
    let t = Instant::now();
    loop {
        let found = access.pass(|mem: &dyn PhysMem| -> anyhow::Result<Option<Manifest>> {
            match Manifest::read(mem)? {
                Some(m) if m.cpus_online(mem)? >= cpus => Ok(Some(m)),
                _ => Ok(None),
            }
        })??;
        if let Some(m) = found {
            return Ok(m);
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "the test kernel did not start {cpus} cpus in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn summary_uses_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.median, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        let one = Summary::of(&[7.0]);
        assert_eq!((one.median, one.p99), (7.0, 7.0));
    }
}
