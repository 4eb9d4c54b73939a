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
];

pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let mut table = Table::new(COLUMNS);
    match ctx.hypervisor {
        HypervisorKind::Builtin => builtin(ctx, &mut table)?,
        HypervisorKind::Qemu => crate::qemu_runs::frequency(ctx, &mut table)?,
    }
    add_baseline_ratio(&mut table);
    let bars: Vec<(String, f64)> = table
        .rows
        .iter()
        .map(|r| {
            let label = if r[2] == "live-read" {
                format!("{} ({}) {}", r[2], r[3], r[1])
            } else {
                format!("{} {}", r[2], r[1])
            };
            (label, r[7].parse::<f64>().unwrap_or(0.0))
        })
        .collect();
    crate::plot::log_bars(&ctx.report.path("frequency.svg"), "Monitoring frequency", "passes per second (log)", &bars)?;
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
    ctx.report.section("frequency", "Monitoring frequency and host cost", prose, &table, &["frequency.svg"])
}

/// Appends `x_baseline`: each row's passes per second over that of the baseline
/// measured in the same run on the same guest — the agent (the guest answering for
/// itself) on QEMU, halt-read on the built-in VMM.
fn add_baseline_ratio(table: &mut Table) {
    table.columns.push("x_baseline".into());
    let rate = |r: &Vec<String>| r[7].parse::<f64>().unwrap_or(0.0);
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
    ]
}

/// Measures `t` (with read method `m` where it reads by syscalls) on `target` for
/// one budget of `pass`es, and formats the row.
pub fn measure(
    ctx: &Ctx,
    (hv, guest): (&str, &str),
    target: &Guest,
    (t, m): (Technique, ReadMethod),
    pass: impl Fn(&Access<'_>) -> anyhow::Result<usize>,
) -> anyhow::Result<Vec<String>> {
    let opts = Options { read_method: Some(m), ..Options::default() };
    let access = target.access(Some(t), &opts).with_context(|| format!("opening {t}"))?;
    let max = if matches!(t, Technique::HaltSnap | Technique::LiveSnap) { 40 } else { u64::MAX };
    let before = access.cache_stats();
    let mut rate = run_for(ctx.budget(), 3, max, || pass(&access), || {});
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
        table.push(measure(ctx, ("builtin", "testkernel"), &guest, (t, m), |a| lists_pass(a, &manifest))?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(())
}

fn lists_pass(access: &Access<'_>, manifest: &Manifest) -> anyhow::Result<usize> {
    let lists = access.pass(|mem| manifest.lists(mem))??;
    Ok(lists.iter().map(|l| l.ids.len()).sum())
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
