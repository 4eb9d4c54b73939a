//! Experiment 6: how a pass's time grows with the guest — with the number of tasks
//! (100 → 10,000, processes and threads) and with RAM size (256 MiB → 8 GiB).
//!
//! A pass is the task list: every task (process and thread) the kernel has, walked
//! from `init_task.tasks` and each thread group (`Kernel::task_graph`); the agent
//! answers from the guest's own /proc. The guest's /proc, read through the agent
//! before each configuration, is the ground truth the items found are compared with.
//! Tasks come from `vmscope-workload spawn` (idle processes of idle threads), grown in
//! one guest from the smallest count to the largest.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use plotters::prelude::*;
use vmscope_linux::Kernel;
use vmscope_mem::PhysMem;
use vmscope_technique::{Access, Options, ReadMethod, Technique};

use super::Ctx;
use super::frequency::memory_techniques;
use crate::measure::run_for;
use crate::qemu_runs::{Booted, attach, boot};
use crate::table::Table;

const COLUMNS: &[&str] = &[
    "guest",
    "ram_mib",
    "tasks_target",
    "proc_processes",
    "proc_tasks",
    "technique",
    "passes",
    "failed",
    "passes_per_s",
    "median_ms",
    "items",
    "items_minus_proc",
];

const FIT_COLUMNS: &[&str] = &["guest", "technique", "us_per_task", "intercept_ms", "r2", "ram_ratio", "ms_per_gib"];

/// The idle guest's size: the study's (and the RAM series') task count.
const FEW_TASKS: usize = 100;
/// The target: live-map lists this many tasks in at most [`TARGET_MS`].
const TARGET_TASKS: f64 = 10_000.0;
const TARGET_MS: f64 = 10.0;
/// Threads per spawned process when many tasks are added (threads are cheaper to
/// create than processes, and a pass must walk both).
const THREADS_PER_PROC: usize = 4;

/// What one run measures.
struct Plan {
    /// Task counts, ascending, all in one guest of `task_ram` MiB.
    tasks: &'static [usize],
    task_ram: u64,
    /// RAM sizes (MiB) measured with [`FEW_TASKS`] tasks, besides `task_ram`.
    rams: &'static [u64],
    techniques: Vec<Technique>,
    /// Passes at most per configuration of a snapshot technique (each copies RAM).
    snap_passes: u64,
}

fn plan(ctx: &Ctx) -> Plan {
    let all: Vec<Technique> = memory_techniques().chain([Technique::Agent]).filter(|&t| ctx.wants(t)).collect();
    if ctx.smoke {
        let techniques = [Technique::LiveMap, Technique::HaltRead].into_iter().filter(|&t| ctx.wants(t)).collect();
        return Plan { tasks: &[FEW_TASKS], task_ram: 1024, rams: &[], techniques, snap_passes: 3 };
    }
    if ctx.quick {
        return Plan {
            tasks: &[FEW_TASKS, 1_000],
            task_ram: 2048,
            rams: &[256, 1024],
            techniques: all,
            snap_passes: 3,
        };
    }
    Plan {
        tasks: &[FEW_TASKS, 1_000, 5_000, 10_000],
        task_ram: 2048,
        rams: &[256, 1024, 4096, 8192],
        techniques: all,
        snap_passes: 5,
    }
}

pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    if ctx.hypervisor != super::HypervisorKind::Qemu {
        // The test kernel has a fixed set of lists: nothing to grow.
        eprintln!("lab: scale runs on Linux guests under QEMU only; skipped");
        return Ok(());
    }
    let plan = plan(ctx);
    let mut table = Table::new(COLUMNS);
    let mut skipped = Vec::new();
    let kernels = ctx.kernels.clone();
    let configs = plan.tasks.len() + plan.rams.len();
    let pb = ctx.bar((kernels.len() * configs * plan.techniques.len()) as u64, "scale (QEMU)");
    for id in &kernels {
        let guest = format!("linux-{id}");
        pb.set_message(format!("scale: booting linux-{id}, {} MiB", plan.task_ram));
        let b = boot(ctx, id, plan.task_ram)?;
        let kernel = attach(&b.guest).context("attaching")?;
        for &n in plan.tasks {
            pb.set_message(format!("scale: growing linux-{id} to {n} tasks"));
            let truth = grow(&b, n).with_context(|| format!("growing linux-{id} to {n} tasks"))?;
            for &t in &plan.techniques {
                pb.set_message(format!("scale: {t}, {n} tasks, linux-{id}"));
                table.push(measure(ctx, &plan, &b, &kernel, t, (&guest, plan.task_ram, n, truth))?);
                pb.inc(1);
            }
        }
        drop(kernel);
        drop(b);
        for &ram in plan.rams {
            if !host_holds(ram) {
                skipped.push(format!("{ram} MiB (the host has too little memory available)"));
                pb.inc(plan.techniques.len() as u64);
                continue;
            }
            pb.set_message(format!("scale: booting linux-{id}, {ram} MiB"));
            let b = boot(ctx, id, ram)?;
            let kernel = attach(&b.guest).context("attaching")?;
            let truth = grow(&b, FEW_TASKS)?;
            for &t in &plan.techniques {
                pb.set_message(format!("scale: {t}, {ram} MiB, linux-{id}"));
                if t.reads_memory() && is_snapshot(t) && !host_holds(2 * ram) {
                    skipped.push(format!("{t} at {ram} MiB (a copy of RAM would not fit)"));
                } else {
                    table.push(measure(ctx, &plan, &b, &kernel, t, (&guest, ram, FEW_TASKS, truth))?);
                }
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    table.rows.sort_by_key(|r| (r[0].clone(), num(&r[1]) as u64, num(&r[4]) as u64));

    let fits = fit(&table, plan.task_ram);
    fits.write_csv(&ctx.report.path("scale-fit.csv"))?;
    loglog(
        &ctx.report.path("scale-tasks.svg"),
        "Pass time vs tasks",
        "tasks in the guest (/proc; log)",
        &series(&table, |r| num(&r[1]) as u64 == plan.task_ram, 4),
    )?;
    loglog(
        &ctx.report.path("scale-ram.svg"),
        "Pass time vs guest RAM (about 100 tasks)",
        "guest RAM, MiB (log)",
        &series(&table, |r| num(&r[2]) as usize == FEW_TASKS, 1),
    )?;
    let mut prose = String::from(
        "Median time of one pass (the task list: every process and thread, walked from `init_task.tasks` and \
         each thread group; the agent reads the guest's /proc) as the guest grows: with the number of tasks \
         (idle processes of idle threads from `vmscope-workload spawn`, in one guest) and, at about 100 tasks, \
         with its RAM. `proc_tasks` is the guest's own /proc count (every thread of every process) read through \
         the agent before each configuration; `items_minus_proc` is what a pass found minus that (the walk \
         does not count the idle task). Snapshot techniques copy all of RAM per pass, so they run at most a \
         few passes per configuration.\n\n",
    );
    prose.push_str(&format!(
        "Fitted cost per task (least squares of median pass time against /proc's task count, {} MiB guest; \
         `ram_ratio` is the median pass time at the largest RAM over that at the smallest, about 100 tasks; \
         `ms_per_gib` the fitted slope against RAM), also in [`scale-fit.csv`](scale-fit.csv):\n\n{}\n",
        plan.task_ram,
        fits.markdown()
    ));
    prose.push_str(&findings(&table, &fits));
    if !skipped.is_empty() {
        prose.push_str(&format!("\n\nNot measured: {}.", skipped.join("; ")));
    }
    ctx.report.section(
        "scale",
        "Scale: pass time vs tasks and RAM",
        &prose,
        &table,
        &["scale-tasks.svg", "scale-ram.svg"],
    )
}

fn is_snapshot(t: Technique) -> bool {
    matches!(t, Technique::HaltSnap | Technique::LiveSnap)
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// Whether the host has `mib` available beyond a reserve of 2 GiB.
fn host_holds(mib: u64) -> bool {
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines().find_map(|l| l.strip_prefix("MemAvailable:")?.split_whitespace().next()?.parse::<u64>().ok())
    });
    avail.is_none_or(|kib| kib / 1024 >= mib + 2048)
}

/// The guest's /proc: (processes, tasks).
fn proc_counts(b: &Booted) -> anyhow::Result<(usize, usize)> {
    let ps = b.agent()?.processes()?;
    Ok((ps.len(), ps.iter().map(|p| p.threads as usize).sum()))
}

/// Adds idle tasks until the guest has about `target`; returns /proc's counts then.
fn grow(b: &Booted, target: usize) -> anyhow::Result<(usize, usize)> {
    let (_, have) = proc_counts(b)?;
    let add = target.saturating_sub(have);
    if add < 2 {
        return proc_counts(b);
    }
    let per = if add >= 40 * THREADS_PER_PROC { THREADS_PER_PROC } else { 1 };
    // The spawning parent is a task too.
    let procs = ((add - 1) as f64 / per as f64).round().max(1.0) as usize;
    let out = format!("/tmp/vmscope-spawn-{target}.out");
    let mut agent = b.agent()?;
    agent.sh(&format!("/sbin/vmscope-workload spawn {procs} {per} >{out} 2>&1 &"))?;
    let t0 = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&agent.read_file(&out, 4096).unwrap_or_default()).into_owned();
        if text.contains("spawn: up") {
            break;
        }
        anyhow::ensure!(!text.contains("failed") && !text.contains("usage"), "spawn: {}", text.trim());
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(900), "{procs} × {per} tasks not up after 900 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(agent);
    proc_counts(b)
}

/// One task-list pass: tasks found (the idle task left out, as /proc leaves it out).
fn tasks_pass<K: PhysMem>(access: &Access<'_>, kernel: &Kernel<K>) -> anyhow::Result<usize> {
    if let Some(mut agent) = access.agent() {
        return Ok(agent.processes()?.iter().map(|p| p.threads as usize).sum());
    }
    let g = access.pass(|mem| kernel.rebind(mem).task_graph())?;
    Ok(g.tasks.iter().filter(|t| t.addr != g.init_task).count())
}

/// Measures `t` for one budget and formats the row.
fn measure<K: PhysMem>(
    ctx: &Ctx,
    plan: &Plan,
    b: &Booted,
    kernel: &Kernel<K>,
    t: Technique,
    (guest, ram, target, (procs, tasks)): (&str, u64, usize, (usize, usize)),
) -> anyhow::Result<Vec<String>> {
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    let access = b.guest.access(Some(t), &opts).with_context(|| format!("opening {t}"))?;
    let max = if is_snapshot(t) { plan.snap_passes } else { u64::MAX };
    let mut times = Vec::new();
    let rate = run_for(
        ctx.budget(),
        3,
        max,
        || {
            let t0 = Instant::now();
            let n = tasks_pass(&access, kernel)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            Ok(n)
        },
        || {},
    );
    let median = median(&mut times);
    let fmt_ms = |v: f64| if v.is_finite() { format!("{v:.3}") } else { "-".into() };
    Ok(vec![
        guest.into(),
        ram.to_string(),
        target.to_string(),
        procs.to_string(),
        tasks.to_string(),
        t.name().into(),
        rate.passes.to_string(),
        rate.failed.to_string(),
        format!("{:.1}", rate.per_second()),
        fmt_ms(median),
        rate.items.to_string(),
        if rate.passes > 0 { (rate.items as i64 - tasks as i64).to_string() } else { "-".into() },
    ])
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

/// Least squares y = a + b·x: (a, b, r²), or `None` with fewer than two distinct x.
fn least_squares(pts: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    if pts.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    let r2 = if syy > 0.0 { sxy * sxy / (sxx * syy) } else { 1.0 };
    Some((my - b * mx, b, r2))
}

/// Per guest and technique: the cost per task and the RAM dependence.
fn fit(table: &Table, task_ram: u64) -> Table {
    let mut fits = Table::new(FIT_COLUMNS);
    let mut keys: Vec<(String, String)> = table.rows.iter().map(|r| (r[0].clone(), r[5].clone())).collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    for (guest, t) in keys {
        let rows = || table.rows.iter().filter(|r| r[0] == guest && r[5] == t && num(&r[9]).is_finite());
        let by_tasks: Vec<(f64, f64)> =
            rows().filter(|r| num(&r[1]) as u64 == task_ram).map(|r| (num(&r[4]), num(&r[9]))).collect();
        let mut by_ram: Vec<(f64, f64)> =
            rows().filter(|r| num(&r[2]) as usize == FEW_TASKS).map(|r| (num(&r[1]), num(&r[9]))).collect();
        by_ram.sort_by(|a, b| a.0.total_cmp(&b.0));
        let task_fit = least_squares(&by_tasks);
        let ram_fit = least_squares(&by_ram.iter().map(|(m, y)| (m / 1024.0, *y)).collect::<Vec<_>>());
        let ratio = match (by_ram.first(), by_ram.last()) {
            (Some(a), Some(z)) if by_ram.len() > 1 && a.1 > 0.0 => format!("{:.2}", z.1 / a.1),
            _ => "-".into(),
        };
        fits.push(vec![
            guest,
            t,
            task_fit.map_or_else(|| "-".into(), |f| format!("{:.3}", f.1 * 1e3)),
            task_fit.map_or_else(|| "-".into(), |f| format!("{:.3}", f.0)),
            task_fit.map_or_else(|| "-".into(), |f| format!("{:.3}", f.2)),
            ratio,
            ram_fit.map_or_else(|| "-".into(), |f| format!("{:.3}", f.1)),
        ]);
    }
    fits
}

/// The findings, from the data.
fn findings(table: &Table, fits: &Table) -> String {
    let mut s = String::from("### Findings\n\n");
    // Best: the fastest pass at the largest task count measured, per guest.
    let mut guests: Vec<&str> = fits.rows.iter().map(|r| r[0].as_str()).collect();
    guests.dedup();
    for g in guests {
        let rows = || table.rows.iter().filter(|r| r[0] == g && num(&r[9]).is_finite());
        let n = rows().map(|r| num(&r[4])).fold(0.0_f64, f64::max);
        let at_n = || rows().filter(|r| num(&r[4]) == n);
        let Some(best) = at_n().min_by(|a, b| num(&a[9]).total_cmp(&num(&b[9]))) else { continue };
        let us = |t: &str| fits.rows.iter().find(|f| f[0] == g && f[1] == t).map_or(f64::NAN, |f| num(&f[2]));
        s.push_str(&format!("On {g}, {} scales best: {:.2} ms per pass at {n:.0} tasks", best[5], num(&best[9])));
        if us(&best[5]).is_finite() {
            s.push_str(&format!(", {:.2} µs per task more", us(&best[5])));
        }
        let steep = fits
            .rows
            .iter()
            .filter(|f| f[0] == g && num(&f[2]).is_finite())
            .max_by(|a, b| num(&a[2]).total_cmp(&num(&b[2])));
        match steep {
            Some(w) if w[1] != best[5] => {
                s.push_str(&format!("; {} grows fastest, {:.2} µs per task. ", w[1], num(&w[2])));
            }
            _ => s.push_str(". "),
        }
    }
    for f in fits.rows.iter().filter(|r| r[1] == "live-map") {
        let largest = table
            .rows
            .iter()
            .filter(|r| r[0] == f[0] && r[5] == "live-map" && num(&r[9]).is_finite())
            .max_by(|a, b| num(&a[4]).total_cmp(&num(&b[4])));
        let Some(r) = largest else { continue };
        let (n, ms) = (num(&r[4]), num(&r[9]));
        if n >= TARGET_TASKS * 0.95 {
            let verdict = if ms <= TARGET_MS { "meets" } else { "misses" };
            s.push_str(&format!(
                "On {} live-map lists {n:.0} tasks in {ms:.2} ms per pass (median): it {verdict} the target of \
                 {TARGET_TASKS:.0} tasks in ≤ {TARGET_MS:.0} ms. ",
                f[0]
            ));
        } else if let (Some(us), Some(a)) = (Some(num(&f[2])).filter(|v| v.is_finite()), Some(num(&f[3]))) {
            let at = a + us * TARGET_TASKS / 1e3;
            let verdict = if at <= TARGET_MS { "would meet" } else { "would miss" };
            s.push_str(&format!(
                "On {} live-map listed {n:.0} tasks in {ms:.2} ms per pass (median); the fit extrapolates to \
                 {at:.1} ms at {TARGET_TASKS:.0} tasks, so it {verdict} the target of ≤ {TARGET_MS:.0} ms \
                 (not measured at that size in this run). ",
                f[0]
            ));
        } else {
            s.push_str(&format!(
                "On {} live-map listed {n:.0} tasks in {ms:.2} ms per pass (median); 10,000 tasks were not \
                 measured in this run. ",
                f[0]
            ));
        }
    }
    let ratios: Vec<(&str, f64)> =
        fits.rows.iter().filter(|r| num(&r[5]).is_finite()).map(|r| (r[1].as_str(), num(&r[5]))).collect();
    let mut rams: Vec<f64> =
        table.rows.iter().filter(|r| num(&r[2]) as usize == FEW_TASKS).map(|r| num(&r[1])).collect();
    rams.sort_by(f64::total_cmp);
    rams.dedup();
    let ram_ratio = match (rams.first(), rams.last()) {
        (Some(a), Some(z)) if rams.len() > 1 => Some((*a, *z, z / a)),
        _ => None,
    };
    let mut snap_grew_with_ram = None;
    if let (Some((lo_ram, hi_ram, x)), false) = (ram_ratio, ratios.is_empty()) {
        let span = |keep: &dyn Fn(&str) -> bool| {
            let v: Vec<f64> = ratios.iter().filter(|r| keep(r.0)).map(|r| r.1).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            (!v.is_empty()).then(|| (lo, v.iter().copied().fold(0.0_f64, f64::max)))
        };
        s.push_str(&format!("From {lo_ram:.0} MiB to {hi_ram:.0} MiB of RAM ({x:.0}× the RAM, about 100 tasks) "));
        let mut parts = Vec::new();
        if let Some((lo, hi)) = span(&|t| !t.ends_with("-snap") && t != "agent") {
            parts.push(format!("the map and read techniques' median pass time changed by a factor {lo:.2}–{hi:.2}"));
        }
        if let Some((lo, _)) = span(&|t| t == "agent") {
            parts.push(format!("the agent's by {lo:.2}"));
        }
        if let Some((lo, hi)) = span(&|t| t.ends_with("-snap")) {
            parts.push(format!("the snapshot techniques' by {lo:.2}–{hi:.2}"));
            snap_grew_with_ram = Some(hi >= x / 2.0);
        }
        s.push_str(&parts.join(", "));
        s.push_str(". ");
    }
    s.push_str(
        "The study found that the per-pass cost grows with what is introspected — here, the tasks walked — and \
         that snapshotting costs grow with the guest's RAM size. ",
    );
    match snap_grew_with_ram {
        Some(true) => s.push_str("Here too the snapshot techniques' pass time grew with RAM. "),
        Some(false) => s.push_str(
            "Here the snapshot techniques' pass time grew far less than the RAM: vmscope copies only the pages \
             the guest ever touched (`SEEK_DATA` on QEMU's memfd; holes are neither read nor allocated), and an \
             idle guest touches about as much memory whatever its size, so the copy tracks used RAM, not \
             configured RAM. ",
        ),
        None => {}
    }
    s.truncate(s.trim_end().len());
    s
}

/// (technique, points (x, median ms)) for the rows `keep` selects, x from column `x`.
fn series(table: &Table, keep: impl Fn(&Vec<String>) -> bool, x: usize) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in table.rows.iter().filter(|r| keep(r)) {
        let (xv, y) = (num(&r[x]), num(&r[9]));
        if !(xv > 0.0 && y > 0.0) {
            continue;
        }
        let name = format!("{} {}", r[5], r[0]);
        match out.iter_mut().find(|s| s.0 == name) {
            Some(s) => s.1.push((xv, y)),
            None => out.push((name, vec![(xv, y)])),
        }
    }
    for s in &mut out {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// A log-log line chart: one line (with points) per series of (x, y) > 0.
fn loglog(path: &Path, title: &str, x_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> anyhow::Result<()> {
    let pts = || series.iter().flat_map(|s| s.1.iter().copied());
    let decade = |v: f64, up: bool| 10f64.powf(if up { v.log10().ceil() } else { v.log10().floor() });
    let (x0, x1) = pts().fold((f64::INFINITY, 0.0_f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts().fold((f64::INFINITY, 0.0_f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x0, x1) =
        if x0.is_finite() { (decade(x0, false), decade(x1, true).max(decade(x0, false) * 10.0)) } else { (1.0, 10.0) };
    let (y0, y1) =
        if y0.is_finite() { (decade(y0, false), decade(y1, true).max(decade(y0, false) * 10.0)) } else { (1.0, 10.0) };
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
    chart.configure_mesh().x_desc(x_label).y_desc("median pass time, ms (log)").draw()?;
    for (k, (name, p)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(p.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(p.iter().map(|&q| Circle::new(q, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_a_line() {
        let pts: Vec<(f64, f64)> = [100.0, 1000.0, 5000.0].iter().map(|&x| (x, 0.5 + 0.002 * x)).collect();
        let (a, b, r2) = least_squares(&pts).unwrap();
        assert!((a - 0.5).abs() < 1e-9 && (b - 0.002).abs() < 1e-12 && (r2 - 1.0).abs() < 1e-9);
        assert!(least_squares(&[(1.0, 2.0)]).is_none());
    }

    #[test]
    fn fit_and_findings_from_rows() {
        let mut t = Table::new(COLUMNS);
        let row = |ram: u64, target: usize, tasks: usize, tech: &str, ms: f64| {
            let s = |v: &dyn ToString| v.to_string();
            vec![
                "linux-6.1".into(),
                s(&ram),
                s(&target),
                s(&(tasks / 2)),
                s(&tasks),
                tech.into(),
                "10".into(),
                "0".into(),
                "1.0".into(),
                format!("{ms:.3}"),
                s(&tasks),
                "0".into(),
            ]
        };
        for (n, ms) in [(100, 0.2), (1000, 1.1)] {
            t.push(row(2048, n, n, "live-map", ms));
            t.push(row(2048, n, n, "halt-snap", 300.0));
        }
        t.push(row(256, 100, 100, "live-map", 0.2));
        t.push(row(256, 100, 100, "halt-snap", 40.0));
        let fits = fit(&t, 2048);
        assert_eq!(fits.rows.len(), 2);
        let lm = fits.rows.iter().find(|r| r[1] == "live-map").unwrap();
        assert_eq!(lm[2], "1.000"); // 0.9 ms over 900 tasks
        let text = findings(&t, &fits);
        assert!(text.contains("live-map scales best: 1.10 ms per pass at 1000 tasks, 1.00 µs per task"), "{text}");
        assert!(text.contains("would miss"), "{text}");
        assert!(text.contains("snapshot techniques' by 7.50–7.50"), "{text}");
        assert!(text.contains("Here too the snapshot"), "{text}");
        let p = std::env::temp_dir().join(format!("vmscope-lab-loglog-{}.svg", std::process::id()));
        loglog(&p, "t", "tasks", &series(&t, |r| r[1] == "2048", 4)).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("live-map linux-6.1"));
        std::fs::remove_file(p).unwrap();
    }
}
