//! Experiment 1 (and 2): how many introspection passes per second each technique
//! sustains, and what each pass costs the introspector in CPU time.
//!
//! A pass on QEMU guests is the process list; on the built-in VMM, reading every list
//! of the test kernel.

use std::time::Duration;

use anyhow::Context;
use vmscope_mem::PhysMem;
use vmscope_technique::{Access, Guest, Options, ReadMethod, Target, Technique};
use vmscope_vmm::testkernel::Manifest;

use super::{Ctx, HypervisorKind};
use crate::guests;
use crate::measure::{Rate, run_for};
use crate::plot::Bar;
use crate::table::Table;

const COLUMNS: &[&str] = &[
    "hypervisor",
    "guest",
    "technique",
    "method",
    "passes",
    "failed",
    "seconds",
    "passes_per_s",
    "cpu_us_per_pass",
    "pages_per_pass",
    "items",
    "anomalies",
    "first_error",
];

/// Column indices, by name.
fn col(name: &str) -> usize {
    COLUMNS.iter().position(|c| *c == name).expect("a column of the frequency table")
}

pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let mut table = Table::new(COLUMNS);
    match ctx.hypervisor {
        HypervisorKind::Builtin => builtin(ctx, &mut table)?,
        HypervisorKind::Qemu => crate::qemu_runs::frequency(ctx, &mut table)?,
    }
    add_baseline_ratio(&mut table);
    let bars: Vec<Bar> = table
        .rows
        .iter()
        .map(|r| Bar {
            group: format!("{} ({})", r[1], r[0]),
            label: if r[2] == "live-read" { format!("{} ({})", r[2], r[3]) } else { r[2].clone() },
            class: crate::plot::class_of_name(&r[2]),
            value: r[col("passes_per_s")].parse::<f64>().unwrap_or(0.0),
        })
        .collect();
    crate::plot::grouped_bars(
        &ctx.report.path("frequency.svg"),
        "Monitoring frequency per technique",
        "passes per second (log scale)",
        "/s",
        &bars,
    )?;
    let prose = match ctx.hypervisor {
        HypervisorKind::Builtin => {
            "Passes per second each technique sustains on the built-in VMM running the test kernel (a pass \
             reads every list of the test kernel), and the introspector's CPU time (user + system, getrusage) \
             per pass. Halting techniques pause the guest through the VMM's control socket for each pass; \
             snapshot techniques copy the RAM memfd (halt-snap: paused; live-snap: pre-copy, then a short pause)."
        }
        HypervisorKind::Qemu => {
            "Passes per second each technique sustains on an idle QEMU guest (a pass is the full process \
             list), and the introspector's CPU time (user + system, getrusage) per pass. Halting techniques \
             pause the guest over QMP for each pass; snapshot techniques copy all of guest RAM (halt-snap: \
             paused; live-snap: pre-copy, then a short pause); the agent asks the guest over its serial port.\n\n\
             Where the time goes: a mapping costs a copy (volatile loads) per field; a syscall technique fetches each page it \
             needs per pass (`pages_per_pass`), so its CPU time per pass divided by that is the price of one fetch \
             (pread of the memfd is cheapest; process_vm_readv and /proc/PID/mem pin every page of QEMU's address \
             space first). The QEMU guest's TCG threads share the host's cores with the introspector, so on a \
             small host these figures are lower and noisier than the technique itself allows."
        }
    };
    let prose = format!("{prose}\n\n### Findings\n\n{}", findings(&table));
    ctx.report.section("frequency", "Monitoring frequency and host cost", &prose, &table, &["frequency.svg"])?;
    super::frequency_load::run(ctx, &table)
}

/// Appends `x_baseline`: each row's passes per second over that of the baseline
/// measured in the same run on the same guest — the agent (the guest answering for
/// itself) on QEMU, halt-read on the built-in VMM.
fn add_baseline_ratio(table: &mut Table) {
    table.columns.push("x_baseline".into());
    let rate = |r: &Vec<String>| r[col("passes_per_s")].parse::<f64>().unwrap_or(0.0);
    let baselines: Vec<(String, f64)> = table
        .rows
        .iter()
        .filter(|r| r[2] == "agent" || (r[0] == "builtin" && r[2] == "halt-read"))
        .map(|r| (r[1].clone(), rate(r)))
        .collect();
    for r in &mut table.rows {
        let base = baselines.iter().find(|(g, _)| *g == r[1]).map(|b| b.1).filter(|b| *b > 0.0);
        let cell = base.map_or_else(|| "-".into(), |b| format!("{:.1}", rate(r) / b));
        r.push(cell);
    }
}

/// Formats one result row.
pub fn row(hv: &str, guest: &str, t: Technique, method: &str, r: &Rate) -> Vec<String> {
    vec![
        hv.into(),
        guest.into(),
        t.name().into(),
        method.into(),
        r.passes.to_string(),
        r.failed.to_string(),
        format!("{:.2}", r.wall.as_secs_f64()),
        format!("{:.1}", r.per_second()),
        format!("{:.1}", r.cpu_us_per_pass()),
        r.pages_fetched.map_or_else(|| "-".into(), |p| format!("{p:.0}")),
        r.items.to_string(),
        r.anomalies.to_string(),
        r.error_cell(),
    ]
}

/// Measures `t` (with read method `m` where it reads by syscalls) on `target` for
/// one budget of `pass`es, and formats the row.
#[allow(dead_code, reason = "for experiments whose passes report no anomalies")]
pub fn measure(
    ctx: &Ctx,
    (hv, guest): (&str, &str),
    target: &Guest,
    (t, m): (Technique, ReadMethod),
    pass: impl Fn(&Access<'_>) -> anyhow::Result<usize>,
) -> anyhow::Result<Vec<String>> {
    measure_counted(ctx, (hv, guest), target, (t, m), |a| pass(a).map(|n| (n, 0)))
}

/// [`measure`] with a pass that returns (items, anomalies): the anomalies of every
/// successful pass are summed into the row.
pub fn measure_counted(
    ctx: &Ctx,
    (hv, guest): (&str, &str),
    target: &Guest,
    (t, m): (Technique, ReadMethod),
    pass: impl Fn(&Access<'_>) -> anyhow::Result<(usize, usize)>,
) -> anyhow::Result<Vec<String>> {
    let opts = Options { read_method: Some(m), ..Options::default() };
    let access = target.access(Some(t), &opts).with_context(|| format!("opening {t}"))?;
    let max = if matches!(t, Technique::HaltSnap | Technique::LiveSnap) { 40 } else { u64::MAX };
    let before = access.cache_stats();
    let anomalies = std::cell::Cell::new(0u64);
    let counted = || {
        let (items, odd) = pass(&access)?;
        anomalies.set(anomalies.get() + odd as u64);
        Ok(items)
    };
    let mut rate = run_for(ctx.budget(), 3, max, counted, || {});
    rate.anomalies = anomalies.get();
    if let (Some(a), Some(b)) = (before, access.cache_stats()) {
        rate.pages_fetched = Some((b.misses - a.misses) as f64 / rate.passes.max(1) as f64);
    }
    let method = match t {
        Technique::LiveRead | Technique::HaltRead | Technique::ConsistentRead => m.name(),
        Technique::LiveMap | Technique::HaltMap | Technique::ConsistentMap => "mmap",
        Technique::HaltSnap | Technique::LiveSnap => "pread copy",
        Technique::Agent => "serial",
    };
    Ok(row(hv, guest, t, method, &rate))
}

/// Each technique to measure, with the read methods to measure it with: live-read
/// once per method, everything else with the default.
pub fn configurations(ctx: &Ctx, techniques: impl Iterator<Item = Technique>) -> Vec<(Technique, ReadMethod)> {
    techniques
        .filter(|&t| ctx.wants(t))
        .flat_map(|t| {
            let methods: &[ReadMethod] = if t == Technique::LiveRead { &ReadMethod::ALL } else { &[ReadMethod::Pread] };
            methods.iter().map(move |&m| (t, m))
        })
        .collect()
}

/// Techniques that read memory, in report order.
pub fn memory_techniques() -> impl Iterator<Item = Technique> {
    Technique::ALL.into_iter().filter(|t| t.reads_memory())
}

fn builtin(ctx: &mut Ctx, table: &mut Table) -> anyhow::Result<()> {
    let vm = guests::testkernel(&ctx.images, 2, "1G", "")?;
    let guest = Target::Builtin { control: vm.control(), agent: None }.open()?;
    let manifest = wait_for_manifest(&guest)?;
    let configs = configurations(ctx, memory_techniques());
    let pb = ctx.bar(configs.len() as u64, "frequency (built-in VMM)");
    for (t, m) in configs {
        pb.set_message(format!("frequency: {t} on the test kernel"));
        table.push(measure_counted(ctx, ("builtin", "testkernel"), &guest, (t, m), |a| lists_pass(a, &manifest))?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(())
}

/// Every list of the test kernel: (nodes, lists found broken).
fn lists_pass(access: &Access<'_>, manifest: &Manifest) -> anyhow::Result<(usize, usize)> {
    let lists = access.pass(|mem| manifest.lists(mem))??;
    Ok((lists.iter().map(|l| l.ids.len()).sum(), lists.iter().filter(|l| l.broken).count()))
}

fn wait_for_manifest(guest: &Guest) -> anyhow::Result<Manifest> {
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    let access = guest.access(Some(Technique::LiveRead), &opts)?;
    let t = std::time::Instant::now();
    loop {
        if let Some(m) = access.pass(|mem: &dyn PhysMem| Manifest::read(mem))?? {
            return Ok(m);
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "the test kernel published no manifest in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Findings paragraph, computed from the table: per guest, the fastest technique
/// and its lead over the next and over the agent, what halting and snapshots cost
/// against live access, the introspector's CPU per pass, failures and anomalies —
/// each next to what the study reported.
pub fn findings(table: &Table) -> String {
    let num = |r: &[String], c: &str| r[col(c)].parse::<f64>().unwrap_or(f64::NAN);
    let mut guests: Vec<(String, String)> = Vec::new();
    for r in &table.rows {
        if !guests.contains(&(r[0].clone(), r[1].clone())) {
            guests.push((r[0].clone(), r[1].clone()));
        }
    }
    let mut out = String::new();
    // "linux-6.1, plain -m": the same guest on another RAM backing, said apart below.
    let (backed, guests): (Vec<_>, Vec<_>) = guests.into_iter().partition(|(_, g)| g.contains(", "));
    for (hv, guest) in &guests {
        let rows: Vec<&Vec<String>> = table.rows.iter().filter(|r| r[0] == *hv && r[1] == *guest).collect();
        // Per technique its best configuration (live-read: its fastest read method).
        let mut best: Vec<(&str, &str, f64, f64)> = Vec::new();
        for r in &rows {
            let (rate, cpu) = (num(r, "passes_per_s"), num(r, "cpu_us_per_pass"));
            if rate.is_nan() || rate <= 0.0 {
                continue;
            }
            match best.iter_mut().find(|b| b.0 == r[2]) {
                Some(b) if b.2 >= rate => {}
                Some(b) => *b = (&r[2], &r[3], rate, cpu),
                None => best.push((&r[2], &r[3], rate, cpu)),
            }
        }
        best.sort_by(|a, b| b.2.total_cmp(&a.2));
        let rate_of = |t: &str| best.iter().find(|b| b.0 == t).map(|b| b.2);
        let label = |b: &(&str, &str, f64, f64)| {
            if b.0 == "live-read" { format!("{} ({})", b.0, b.1) } else { b.0.to_owned() }
        };
        let mut s = format!("- **{guest} on {hv}**: ");
        let Some(first) = best.first() else {
            out.push_str(&format!("{s}no technique completed a pass.\n"));
            continue;
        };
        s.push_str(&format!("the fastest technique was {} at {:.0} passes/s", label(first), first.2));
        if let Some(next) = best.get(1) {
            s.push_str(&format!(", {:.1}× the next, {} ({:.0}/s)", first.2 / next.2, label(next), next.2));
        }
        if let Some(agent) = rate_of("agent") {
            s.push_str(&format!(", and {:.0}× the agent ({agent:.1}/s), the study's baseline", first.2 / agent));
        }
        s.push_str(". ");
        let mut halting = Vec::new();
        for (live, halt) in [("live-map", "halt-map"), ("live-read", "halt-read")] {
            if let (Some(l), Some(h)) = (rate_of(live), rate_of(halt)) {
                halting.push(format!("{halt} ran at {:.2}× {live}'s rate", h / l));
            }
        }
        if !halting.is_empty() {
            s.push_str(&format!("Halting cost: {}. ", halting.join(", ")));
        }
        let reference = rate_of("live-map").or_else(|| rate_of("live-read"));
        let snaps: Vec<String> = ["halt-snap", "live-snap"]
            .iter()
            .filter_map(|t| {
                let r = rate_of(t)?;
                Some(match reference {
                    Some(live) => format!("{t} {r:.1}/s ({:.0}× slower than live access)", live / r),
                    None => format!("{t} {r:.1}/s"),
                })
            })
            .collect();
        if !snaps.is_empty() {
            s.push_str(&format!("Snapshots: {}. ", snaps.join(", ")));
        }
        let mem_cpu: Vec<&(&str, &str, f64, f64)> = best.iter().filter(|b| b.0 != "agent" && b.3.is_finite()).collect();
        let cheapest = mem_cpu.iter().min_by(|a, b| a.3.total_cmp(&b.3));
        let dearest = mem_cpu.iter().max_by(|a, b| a.3.total_cmp(&b.3));
        if let (Some(lo), Some(hi)) = (cheapest, dearest) {
            s.push_str(&format!(
                "Introspector CPU per pass: {:.0} µs for {}; across memory techniques from {:.0} µs ({}) to {:.0} µs ({}). ",
                first.3,
                label(first),
                lo.3,
                label(lo),
                hi.3,
                label(hi)
            ));
        }
        let failed: u64 = rows.iter().map(|r| num(r, "failed") as u64).sum();
        let anomalies: u64 = rows.iter().map(|r| num(r, "anomalies") as u64).sum();
        if failed == 0 {
            s.push_str("No pass failed");
        } else {
            let causes: Vec<String> = rows
                .iter()
                .filter(|r| r[col("failed")] != "0")
                .map(|r| format!("{} {} (first: {})", r[col("failed")], r[2], r[col("first_error")]))
                .collect();
            s.push_str(&format!("{failed} passes failed: {}", causes.join("; ")));
        }
        s.push_str(&format!("; the walks reported {anomalies} anomalies.\n"));
        // The study's qualitative claims, checked against this guest's numbers.
        let mem = |t: &str| rate_of(t);
        let checks: Vec<(&str, Option<bool>)> = vec![
            (
                "memory mapping is the fastest access",
                rate_of("live-map").map(|_| matches!(first.0, "live-map" | "halt-map" | "consistent-map")),
            ),
            ("syscall reads are slower than mapping", mem("live-read").zip(mem("live-map")).map(|(r, m)| r < m)),
            ("halting is costly", mem("halt-map").zip(mem("live-map")).map(|(h, l)| h < l)),
            (
                "snapshots are the costliest",
                mem("halt-snap")
                    .or(mem("live-snap"))
                    .map(|snap| best.iter().filter(|b| b.0 != "agent" && !b.0.ends_with("-snap")).all(|b| b.2 > snap)),
            ),
            ("agents are slow", mem("agent").zip(mem("live-map")).map(|(a, m)| a < m)),
        ];
        let verdicts: Vec<String> = checks
            .iter()
            .filter_map(|(claim, ok)| ok.map(|ok| format!("{claim}: {}", if ok { "agrees" } else { "**disagrees**" })))
            .collect();
        if !verdicts.is_empty() {
            s.push_str(&format!("  Against the study: {}.\n", verdicts.join("; ")));
        }
        out.push_str(&s);
    }
    out.push_str(&backings(table, &backed));
    out.push_str(
        "\nThe study (Suneja et al., VEE 2015) found memory-mapping techniques the fastest, reads through \
         system calls of the hypervisor process slower, halting the guest costly, snapshots the costliest, \
         and in-guest agents slow; its figures came from hardware-virtualized hosts. Each line above checks \
         those claims against this run's numbers.\n",
    );
    out
}

/// One line per guest measured on other RAM backings (`backed`: (hypervisor,
/// "GUEST, BACKING")): each backing's fastest live-read against the memfd guest's.
fn backings(table: &Table, backed: &[(String, String)]) -> String {
    let best = |hv: &str, guest: &str| {
        let rows = table.rows.iter().filter(|r| r[0] == hv && r[1] == guest && r[2] == "live-read");
        rows.filter_map(|r| Some((r[3].clone(), r[col("passes_per_s")].parse::<f64>().ok()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    let mut out = String::new();
    let mut bases: Vec<(&str, &str)> =
        backed.iter().filter_map(|(hv, g)| Some((hv.as_str(), g.split_once(", ")?.0))).collect();
    bases.dedup();
    for (hv, base) in bases {
        let Some((base_method, base_rate)) = best(hv, base) else { continue };
        let parts: Vec<String> = backed
            .iter()
            .filter(|(h, g)| h == hv && g.starts_with(&format!("{base}, ")))
            .filter_map(|(_, g)| {
                let (method, rate) = best(hv, g)?;
                let backing = &g[base.len() + 2..];
                Some(format!("{backing} {rate:.0}/s by {method} ({:.2}×)", rate / base_rate))
            })
            .collect();
        out.push_str(&format!(
            "- **{base} on {hv}, by RAM backing** (live-read, each backing's fastest method, against the memfd \
             guest's {base_rate:.0}/s by {base_method}): {}.\n",
            parts.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, &str, f64, u64)]) -> Table {
        let mut t = Table::new(COLUMNS);
        for &(tech, method, rate, failed) in rows {
            let r = Rate {
                passes: (rate * 2.0) as u64,
                failed,
                wall: Duration::from_secs(2),
                cpu: Duration::from_millis(10),
                first_error: (failed > 0).then(|| "reading 0x1000: hole".into()),
                ..Rate::default()
            };
            let mut row = row("qemu-tcg", "linux-6.1", tech.parse().unwrap(), method, &r);
            row[col("passes_per_s")] = format!("{rate:.1}");
            t.push(row);
        }
        t
    }

    #[test]
    fn findings_name_the_fastest_its_lead_and_the_study() {
        let t = table(&[
            ("live-map", "mmap", 1000.0, 0),
            ("live-read", "pread", 400.0, 0),
            ("halt-map", "mmap", 100.0, 0),
            ("halt-snap", "pread copy", 2.0, 0),
            ("agent", "serial", 5.0, 3),
        ]);
        let f = findings(&t);
        assert!(f.contains("fastest technique was live-map at 1000 passes/s, 2.5× the next, live-read (pread)"), "{f}");
        assert!(f.contains("200× the agent"), "{f}");
        assert!(f.contains("halt-map ran at 0.10× live-map's rate"), "{f}");
        assert!(f.contains("halt-snap 2.0/s (500× slower"), "{f}");
        assert!(f.contains("3 passes failed: 3 agent (first: reading 0x1000: hole)"), "{f}");
        assert!(f.contains("snapshots are the costliest: agrees") && !f.contains("disagrees"), "{f}");
    }

    #[test]
    fn backings_are_said_against_the_memfd_guest() {
        let mut t = table(&[("live-read", "pread", 400.0, 0), ("live-map", "mmap", 1000.0, 0)]);
        let mut row = |guest: &str, method: &str, rate: f64| {
            let r = Rate { passes: 10, wall: Duration::from_secs(1), ..Rate::default() };
            let mut v = super::row("qemu-tcg", guest, Technique::LiveRead, method, &r);
            v[col("passes_per_s")] = format!("{rate:.1}");
            t.rows.push(v);
        };
        row("linux-6.1, plain -m", "process_vm_readv", 200.0);
        row("linux-6.1, plain -m", "proc-mem", 150.0);
        let f = findings(&t);
        assert!(f.contains("linux-6.1 on qemu-tcg, by RAM backing"), "{f}");
        assert!(f.contains("plain -m 200/s by process_vm_readv (0.50×)"), "{f}");
        assert!(!f.contains("**linux-6.1, plain -m"), "backings are not guests of their own: {f}");
    }
}
