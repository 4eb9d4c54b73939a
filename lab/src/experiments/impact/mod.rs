//! Experiment: guest impact. Each of the study's workloads runs in a Debian guest
//! under QEMU alone (the baseline), then while a technique introspects the guest at a
//! set frequency; the workload's own figure (frames/s, events/s, MiB/s, requests/s,
//! Mbit/s) gives its slowdown, with a 95% confidence interval over the repetitions.
//! Beside it: the introspector's CPU time per pass, QEMU's extra CPU time, and the
//! share of the run the guest spent paused (halting techniques), which tells
//! guest-visible pausing from host contention. With `--pin` (the default on hosts
//! with two or more cores) QEMU runs on the last core and the introspector on the
//! others, so that contention for a core is not counted as impact.

pub mod monitor;

use std::time::{Duration, Instant};

use anyhow::Context;
use vmscope_linux::Kernel;
use vmscope_mem::{MemoryMap, SliceMem};
use vmscope_technique::{Options, ReadMethod, Technique};
use vmscope_testbed::workloads::Workload;

use monitor::{Frequency, Monitored, mean_ci95, monitor, pin_apart, process_cpu, unpin_self};

use super::{Ctx, HypervisorKind};
use crate::qemu_runs::{Booted, TASKS, attach, boot_with};
use crate::table::Table;

const COLUMNS: &[&str] = &[
    "hypervisor",
    "guest",
    "workload",
    "unit",
    "technique",
    "frequency",
    "runs",
    "runs_failed",
    "figure",
    "figure_ci95",
    "slowdown_pct",
    "slowdown_ci95",
    "passes_per_s",
    "failed",
    "introspector_cpu_us_per_pass",
    "qemu_cpu_pct",
    "paused_pct",
];

/// What the experiment runs: a plan sized by `--smoke`, `--quick` or neither.
struct Plan {
    workloads: Vec<Workload>,
    techniques: Vec<Technique>,
    frequencies: Vec<Frequency>,
    runs: usize,
    secs: u64,
}

impl Plan {
    fn of(ctx: &Ctx) -> Plan {
        let all_techniques = [
            Technique::LiveMap,
            Technique::LiveRead,
            Technique::HaltMap,
            Technique::HaltRead,
            Technique::HaltSnap,
            Technique::Agent,
        ];
        let wanted = |ts: &[Technique]| ts.iter().copied().filter(|t| ctx.wants(*t)).collect();
        if ctx.smoke {
            Plan {
                workloads: vec![Workload::SysbenchCpu],
                techniques: wanted(&[Technique::LiveMap, Technique::HaltRead]),
                frequencies: vec![Frequency::Max],
                runs: 1,
                secs: 2,
            }
        } else if ctx.quick {
            Plan {
                workloads: vec![Workload::SysbenchCpu, Workload::Httperf],
                techniques: wanted(&[Technique::LiveMap, Technique::HaltRead]),
                frequencies: vec![Frequency::Hz(10.0), Frequency::Max],
                runs: 3,
                secs: 3,
            }
        } else {
            Plan {
                workloads: Workload::ALL.to_vec(),
                techniques: wanted(&all_techniques),
                frequencies: vec![Frequency::Hz(1.0), Frequency::Hz(10.0), Frequency::Max],
                runs: 3,
                // 627 runs: 2 s each keeps the whole lab within an hour on 2 cores.
                secs: 2,
            }
        }
    }

    fn runs_total(&self) -> usize {
        self.workloads.len() * (1 + self.techniques.len() * self.frequencies.len()) * self.runs
    }
}

pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    anyhow::ensure!(
        ctx.hypervisor == HypervisorKind::Qemu,
        "impact runs the study's workloads in Debian guests under QEMU; the test kernel has none"
    );
    let plan = Plan::of(ctx);
    let id = ctx.kernels.first().cloned().unwrap_or_else(|| "6.1".into());
    let disks = ctx.images.workload_disks().context("the workload image (cargo xtask images builds it)")?;
    let b = boot_with(ctx, &id, 1024, |c| c.disks = disks)?;
    b.populate(TASKS)?;
    let kernel = attach(&b.guest).context("attaching")?;
    let pinned = ctx.pin && pin_apart(b.vm.pid(), last_cpu())?;
    let hv = format!("qemu-{}", vmscope_testbed::Accel::detect().name());
    let guest = format!("linux-{id}");
    let mut table = Table::new(COLUMNS);
    let pb = ctx.bar(plan.runs_total() as u64, "impact");
    // A failed run is counted in its row, so nothing here stops the loop early.
    let counted = |r| {
        pb.inc(1);
        r
    };
    for &w in &plan.workloads {
        pb.set_message(format!("impact: {} alone", w.name()));
        let base = Runs::of(plan.runs, || counted(one_run(&b, &kernel, w, None, plan.secs)));
        let base_figure = mean_ci95(&base.ok.iter().map(|r| r.figure).collect::<Vec<_>>()).0;
        let base_qemu = base.ok.iter().map(|r| r.qemu_cpu_pct).sum::<f64>() / base.ok.len().max(1) as f64;
        table.push(row((&hv, &guest), w, None, &base, base_figure, base_qemu));
        for &t in &plan.techniques {
            for &f in &plan.frequencies {
                pb.set_message(format!("impact: {} under {t} at {}", w.name(), f.label()));
                let runs = Runs::of(plan.runs, || counted(one_run(&b, &kernel, w, Some((t, f)), plan.secs)));
                table.push(row((&hv, &guest), w, Some((t, f)), &runs, base_figure, base_qemu));
            }
        }
    }
    pb.finish_and_clear();
    if pinned {
        unpin_self()?;
    }
    let svg = "impact.svg";
    figure(&ctx.report.path(svg), &table, &plan)?;
    let prose = format!(
        "Each workload ran {runs} times for about {secs} s alone (the baseline), then {runs} times while each \
         technique listed the guest's processes at each frequency (plan: {plan_w} workloads × {plan_t} techniques \
         × {plan_f} frequencies, on linux-{id}, 1 GiB, 2 vCPUs under TCG). `slowdown_pct` is the drop of the \
         workload's own figure against its baseline mean, with the half-width of its 95% confidence interval \
         (Student's t over the runs); negative is faster, i.e. noise. `introspector_cpu_us_per_pass` is this \
         process's CPU time per pass; `qemu_cpu_pct` QEMU's CPU time as a share of the run (against the \
         baseline row's); `paused_pct` the share of the run the guest spent paused by a halting technique — the \
         guest-visible part of the impact. QEMU stops the guest's clock while the guest is paused, so a \
         workload that times itself with the guest's clock does not see a pause in its own figure: \
         `paused_pct`, in host time, is what the pauses cost it. {pin}\n\n### Findings\n\n{}",
        findings(&table),
        runs = plan.runs,
        secs = plan.secs,
        plan_w = plan.workloads.len(),
        plan_t = plan.techniques.len(),
        plan_f = plan.frequencies.len(),
        pin = if pinned {
            "QEMU's threads were pinned to the last core and the introspector to the others (`--pin`), so what \
             remains of a live technique's impact is shared caches and memory bandwidth, not a shared core."
        } else {
            "QEMU and the introspector were not pinned apart: a live technique's impact includes competing for a core."
        },
    );
    ctx.report.section("impact", "Guest impact under the study's workloads", &prose, &table, &[svg])
}

/// The last online CPU, QEMU's when pinned.
fn last_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from) - 1
}

/// One run of a workload: its figure, and what monitoring it cost.
#[derive(Debug)]
struct Run {
    figure: f64,
    monitored: Monitored,
    qemu_cpu_pct: f64,
    paused: Duration,
}

/// The runs of one configuration: those that measured, and how many did not with the
/// first one's cause (a workload that printed no figure, an agent that timed out) —
/// counted, not fatal, so one bad run does not lose the experiment.
#[derive(Debug, Default)]
struct Runs {
    ok: Vec<Run>,
    failed: usize,
    first_error: Option<String>,
}

impl Runs {
    fn of(n: usize, mut run: impl FnMut() -> anyhow::Result<Run>) -> Runs {
        let mut runs = Runs::default();
        for _ in 0..n {
            match run() {
                Ok(r) => runs.ok.push(r),
                Err(e) => {
                    runs.failed += 1;
                    runs.first_error.get_or_insert_with(|| format!("{e:#}").lines().next().unwrap_or("").to_owned());
                }
            }
        }
        runs
    }
}

/// Runs workload `w` for about `secs` in the background of the guest, monitored by
/// `how` (technique and frequency) or not at all, and reads its figure.
fn one_run<K: vmscope_mem::PhysMem>(
    b: &Booted,
    kernel: &Kernel<K>,
    w: Workload,
    how: Option<(Technique, Frequency)>,
    secs: u64,
) -> anyhow::Result<Run> {
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    // A technique other than the agent opens before the workload starts (opening is
    // not monitoring); the agent's socket serves one client, the runner's first.
    let mut access = match how {
        Some((t, _)) if t != Technique::Agent => Some(b.guest.access(Some(t), &opts)?),
        _ => None,
    };
    start(b, w, secs)?;
    let (t0, q0) = (Instant::now(), process_cpu(b.vm.pid())?);
    let until = t0 + Duration::from_secs(secs);
    let mut paused = Duration::ZERO;
    let monitored = match how {
        None => {
            std::thread::sleep(Duration::from_secs(secs));
            Monitored::default()
        }
        Some((t, f)) => {
            if t == Technique::Agent {
                access = Some(b.guest.access(Some(t), &opts)?);
            }
            let a = access.as_ref().expect("opened above");
            let detached = kernel.rebind(SliceMem::new(Vec::new(), MemoryMap::flat(0)));
            monitor(f, until, || {
                if let Some(mut agent) = a.agent() {
                    agent.processes()?;
                    return Ok(());
                }
                let seen = a.observed_pass(|mem| detached.rebind(mem).processes().processes.len())?;
                if a.technique().is_some_and(|t| t.needs_hypervisor()) {
                    paused += seen.consistency.verdict.window;
                }
                Ok(())
            })
        }
    };
    drop(access);
    // Wait for the workload's end (it may outlast the monitoring: x264 runs a fixed clip).
    let figure = finish(b, w, secs)?;
    let wall = t0.elapsed();
    let qemu_cpu_pct = 100.0 * process_cpu(b.vm.pid())?.saturating_sub(q0).as_secs_f64() / wall.as_secs_f64();
    Ok(Run { figure, monitored, qemu_cpu_pct, paused })
}

/// Starts workload `w` for about `secs` in the guest's background, its output to
/// /tmp/wl.out and its exit status to /tmp/wl.done; the agent connection is closed
/// again (QEMU serves one client on the agent's socket, which the agent technique
/// may want).
pub fn start(b: &Booted, w: Workload, secs: u64) -> anyhow::Result<()> {
    let mut agent = b.agent()?;
    agent.sh("rm -f /tmp/wl.out /tmp/wl.done")?;
    agent.sh(&format!(
        "( ( {} ) > /tmp/wl.out 2>&1; echo $? > /tmp/wl.done ) </dev/null >/dev/null 2>&1 &",
        w.command(secs)
    ))?;
    Ok(())
}

/// Waits (at most a minute past `secs`) for the workload [`start`] started to end,
/// and reads its figure.
pub fn finish(b: &Booted, w: Workload, secs: u64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(secs + 60);
    let mut agent = b.agent()?;
    loop {
        if agent.sh("cat /tmp/wl.done 2>/dev/null || true")?.trim().parse::<i32>().is_ok() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{} did not finish in {} s", w.name(), secs + 60);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = String::from_utf8_lossy(&agent.read_file("/tmp/wl.out", 1 << 20)?).into_owned();
    w.parse(&out).with_context(|| format!("{}: no figure in its output:\n{out}", w.name()))
}

fn row(
    (hv, guest): (&str, &str),
    w: Workload,
    how: Option<(Technique, Frequency)>,
    all: &Runs,
    base_figure: f64,
    base_qemu: f64,
) -> Vec<String> {
    let runs = &all.ok;
    let figures: Vec<f64> = runs.iter().map(|r| r.figure).collect();
    let (fig, fig_ci) = mean_ci95(&figures);
    let slow: Vec<f64> = figures.iter().map(|f| 100.0 * (base_figure - f) / base_figure).collect();
    let (slow_m, slow_ci) = mean_ci95(&slow);
    let passes: u64 = runs.iter().map(|r| r.monitored.passes).sum();
    let failed: u64 = runs.iter().map(|r| r.monitored.failed).sum();
    let wall: f64 = runs.iter().map(|r| r.monitored.wall.as_secs_f64()).sum();
    let cpu: f64 = runs.iter().map(|r| r.monitored.cpu.as_secs_f64()).sum();
    let paused: f64 = runs.iter().map(|r| r.paused.as_secs_f64()).sum();
    let qemu = runs.iter().map(|r| r.qemu_cpu_pct).sum::<f64>() / runs.len().max(1) as f64;
    let monitored = how.is_some();
    let opt = |on: bool, s: String| if on && !s.contains("NaN") { s } else { "-".to_owned() };
    let failed_cell = match runs.iter().find_map(|r| r.monitored.first_error.as_deref()) {
        Some(e) => format!("{failed} ({})", e.lines().next().unwrap_or(e)),
        None => failed.to_string(),
    };
    vec![
        hv.into(),
        guest.into(),
        w.name().into(),
        w.unit().into(),
        how.map_or("none (baseline)".into(), |(t, _)| t.name().into()),
        how.map_or("-".into(), |(_, f)| f.label()),
        runs.len().to_string(),
        match &all.first_error {
            Some(e) => format!("{} ({e})", all.failed),
            None => all.failed.to_string(),
        },
        opt(!runs.is_empty(), format!("{fig:.1}")),
        opt(true, format!("{fig_ci:.1}")),
        opt(monitored, format!("{slow_m:.1}")),
        opt(monitored, format!("{slow_ci:.1}")),
        opt(monitored, format!("{:.1}", passes as f64 / wall.max(1e-9))),
        opt(monitored, failed_cell),
        opt(monitored && passes > 0, format!("{:.0}", cpu * 1e6 / passes.max(1) as f64)),
        if monitored { format!("{qemu:.0} ({:+.0})", qemu - base_qemu) } else { format!("{qemu:.0}") },
        opt(monitored, format!("{:.2}", 100.0 * paused / wall.max(1e-9))),
    ]
}

fn cell(table: &Table, r: &[String], col: &str) -> f64 {
    table.columns.iter().position(|c| c == col).and_then(|i| r[i].parse().ok()).unwrap_or(f64::NAN)
}

/// Mean slowdown over the workloads, per technique, against frequency.
fn figure(path: &std::path::Path, table: &Table, plan: &Plan) -> anyhow::Result<()> {
    let labels: Vec<String> = plan.frequencies.iter().map(|f| f.label()).collect();
    let series: Vec<(String, Vec<f64>)> = plan
        .techniques
        .iter()
        .map(|t| {
            let ys = labels
                .iter()
                .map(|f| {
                    let v: Vec<f64> = table
                        .rows
                        .iter()
                        .filter(|r| r[4] == t.name() && r[5] == *f)
                        .map(|r| cell(table, r, "slowdown_pct"))
                        .filter(|v| v.is_finite())
                        .collect();
                    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
                })
                .collect();
            (t.name().to_owned(), ys)
        })
        .collect();
    crate::plot::lines(path, "Workload slowdown vs monitoring frequency", &labels, "mean slowdown (%)", &series)
}

/// One technique at one frequency, averaged over the workloads.
struct Effect {
    technique: String,
    frequency: String,
    /// Mean slowdown in %, negative where monitored runs went faster.
    slowdown: f64,
    /// Mean half-width of the slowdowns' 95% intervals, in points.
    ci: f64,
    /// Mean share of the run the guest was paused, in %.
    paused: f64,
}

impl Effect {
    /// A slowdown larger than its own interval.
    fn measurable(&self) -> bool {
        self.slowdown > self.ci
    }

    fn describe(&self) -> String {
        if self.measurable() {
            format!("{:.1}% ± {:.1}", self.slowdown, self.ci)
        } else {
            format!("{:.1}% ± {:.1}, within noise", self.slowdown, self.ci)
        }
    }
}

/// The Findings paragraph: which technique hurts most at its highest rate, what the
/// lowest rate costs, and how much of a halting technique's impact is its pauses.
fn findings(table: &Table) -> String {
    let monitored: Vec<&Vec<String>> = table.rows.iter().filter(|r| r[5] != "-").collect();
    let mut per: Vec<Effect> = Vec::new();
    for r in &monitored {
        if per.iter().any(|p| p.technique == r[4] && p.frequency == r[5]) {
            continue;
        }
        let same: Vec<&&Vec<String>> = monitored.iter().filter(|x| x[4] == r[4] && x[5] == r[5]).collect();
        let mean = |col: &str| {
            let v: Vec<f64> = same.iter().map(|x| cell(table, x, col)).filter(|v| v.is_finite()).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        per.push(Effect {
            technique: r[4].clone(),
            frequency: r[5].clone(),
            slowdown: mean("slowdown_pct"),
            ci: mean("slowdown_ci95"),
            paused: mean("paused_pct"),
        });
    }
    let Some(worst) = per.iter().filter(|p| p.frequency == "max").max_by(|a, b| a.slowdown.total_cmp(&b.slowdown))
    else {
        return "No monitored runs.\n".into();
    };
    let least = per
        .iter()
        .filter(|p| p.frequency == "max")
        .min_by(|a, b| a.slowdown.total_cmp(&b.slowdown))
        .expect("worst exists");
    let mut s = if worst.measurable() {
        format!(
            "- **At the highest rate**, {} slowed the workloads most ({}; the guest was paused {:.1}% of the \
             time) and {} least ({}).",
            worst.technique,
            worst.describe(),
            worst.paused,
            least.technique,
            least.describe()
        )
    } else {
        format!(
            "- **At the highest rate**, no technique slowed the workloads by more than the run-to-run noise: the \
             mean slowdowns range from {:.1}% ({}) to {:.1}% ({}), each within its mean 95% interval (±{:.1} \
             points at most); a negative slowdown is a monitored run that went faster than its baseline.",
            least.slowdown,
            least.technique,
            worst.slowdown,
            worst.technique,
            per.iter().filter(|p| p.frequency == "max").map(|p| p.ci).fold(0.0, f64::max)
        )
    };
    let lowest: Vec<&Effect> = per.iter().filter(|p| p.frequency != "max").collect();
    if let Some(first) = lowest.first() {
        let f = first.frequency.clone();
        let at: Vec<String> =
            per.iter().filter(|p| p.frequency == f).map(|p| format!("{} {}", p.technique, p.describe())).collect();
        s.push_str(&format!(" At {f}: {}.", at.join(", ")));
    }
    s.push_str(
        "\n\nThe study found that monitoring at low frequency costs the guest little whatever the technique, \
         that halting techniques hurt in proportion to how long and how often they pause it, and that the guest \
         agent competes with the workload for the guest's own CPU. Where `paused_pct` accounts for the slowdown, \
         the impact is guest-visible pausing; where a live technique slows the workload with no pause, it is \
         contention on the host.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of one workload under two techniques at max and 1 Hz.
    fn table(slowdowns: [(&str, &str, f64, f64, f64); 4]) -> Table {
        let mut t = Table::new(COLUMNS);
        for (technique, frequency, slowdown, ci, paused) in slowdowns {
            let mut row: Vec<String> = COLUMNS.iter().map(|_| "0".to_string()).collect();
            row[4] = technique.into();
            row[5] = frequency.into();
            let at = |c: &str| COLUMNS.iter().position(|x| *x == c).unwrap();
            row[at("slowdown_pct")] = slowdown.to_string();
            row[at("slowdown_ci95")] = ci.to_string();
            row[at("paused_pct")] = paused.to_string();
            t.rows.push(row);
        }
        t
    }

    #[test]
    fn a_slowdown_beyond_its_interval_is_named() {
        let f = findings(&table([
            ("halt-read", "max", 30.0, 2.0, 25.0),
            ("live-map", "max", 1.0, 2.0, 0.0),
            ("halt-read", "1 Hz", 0.5, 1.0, 0.1),
            ("live-map", "1 Hz", -0.5, 1.0, 0.0),
        ]));
        assert!(f.contains("halt-read slowed the workloads most (30.0% ± 2.0; the guest was paused 25.0%"), "{f}");
        assert!(f.contains("live-map least (1.0% ± 2.0, within noise)"), "{f}");
        assert!(f.contains("At 1 Hz: halt-read 0.5% ± 1.0, within noise"), "{f}");
    }

    #[test]
    fn slowdowns_all_within_noise_are_not_ranked() {
        let f = findings(&table([
            ("halt-read", "max", -1.0, 3.0, 2.0),
            ("live-map", "max", -4.0, 5.0, 0.0),
            ("halt-read", "1 Hz", 0.5, 1.0, 0.1),
            ("live-map", "1 Hz", -0.5, 1.0, 0.0),
        ]));
        assert!(!f.contains("slowed the workloads most"), "{f}");
        assert!(f.contains("no technique slowed the workloads by more than the run-to-run noise"), "{f}");
        assert!(f.contains("from -4.0% (live-map) to -1.0% (halt-read)"), "{f}");
        assert!(f.contains("±5.0 points at most"), "{f}");
    }
}
