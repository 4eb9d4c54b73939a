//! Experiment 1, continued: monitoring frequency while the guest runs the study's
//! workloads, against the same configuration on the idle guest.

use anyhow::Context;
use vmscope_technique::Technique;
use vmscope_testbed::workloads::Workload;

use super::frequency::{configurations, measure_counted, memory_techniques};
use super::impact::{finish, start};
use super::{Ctx, HypervisorKind};
use crate::qemu_runs::{TASKS, attach, boot_with, ps_pass};
use crate::table::Table;

const COLUMNS: &[&str] = &["guest", "workload", "technique", "method", "passes_per_s", "idle_passes_per_s", "x_idle"];

/// Measures every configuration of `idle` (frequency's table) again with each
/// workload running, on the first kernel; a report section of its own. Skipped
/// (with a note) in `--smoke`, on the built-in VMM and without the workload image.
pub fn run(ctx: &mut Ctx, idle: &Table) -> anyhow::Result<()> {
    if ctx.smoke || ctx.hypervisor != HypervisorKind::Qemu {
        return Ok(());
    }
    let disks = match ctx.images.workload_disks() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lab: frequency under workloads skipped: {e}");
            return Ok(());
        }
    };
    let workloads: &[Workload] = if ctx.quick {
        &[Workload::SysbenchCpu]
    } else {
        &[
            Workload::X264,
            Workload::SysbenchCpu,
            Workload::SysbenchMemory,
            Workload::Httperf,
            Workload::Stream,
            Workload::Fio,
        ]
    };
    let id = ctx.kernels.first().cloned().unwrap_or_else(|| "6.1".into());
    let configs = configurations(ctx, memory_techniques().chain([Technique::Agent]));
    let b = boot_with(ctx, &id, 1024, |c| c.disks = disks)?;
    b.populate(TASKS)?;
    let kernel = attach(&b.guest).context("attaching")?;
    let (hv, guest) = (format!("qemu-{}", vmscope_testbed::Accel::detect().name()), format!("linux-{id}"));
    let mut table = Table::new(COLUMNS);
    let pb = ctx.bar((workloads.len() * configs.len()) as u64, "frequency under workloads");
    // Long enough for every configuration; snapshots may take longer than their budget.
    let secs = (configs.len() as f64 * ctx.budget().as_secs_f64() * 1.5).ceil() as u64 + 5;
    for &w in workloads {
        start(&b, w, secs)?;
        for &(t, m) in &configs {
            pb.set_message(format!("frequency: {t} under {}", w.name()));
            let r = measure_counted(ctx, (&hv, &guest), &b.guest, (t, m), |a| ps_pass(a, &kernel))?;
            let (technique, method, rate) = (&r[2], &r[3], &r[7]);
            let base = idle
                .rows
                .iter()
                .find(|i| i[1] == guest && i[2] == *technique && i[3] == *method)
                .and_then(|i| i[7].parse::<f64>().ok());
            let ratio = match (rate.parse::<f64>(), base) {
                (Ok(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
                _ => "-".into(),
            };
            let base = base.map_or_else(|| "-".into(), |b| format!("{b:.1}"));
            table.push(vec![
                guest.clone(),
                w.name().into(),
                technique.clone(),
                method.clone(),
                rate.clone(),
                base,
                ratio,
            ]);
            pb.inc(1);
        }
        finish(&b, w, secs).with_context(|| format!("{} under monitoring", w.name()))?;
    }
    pb.finish_and_clear();
    let prose = format!(
        "The configurations above again, on linux-{id} while it runs each of the study's workloads (started \
         in the guest, for as long as the measurements take). `x_idle` is the rate over the idle guest's; \
         under TCG the guest's busy vCPU thread takes a host core from the introspector and from QEMU's \
         device emulation, so a busy guest slows the syscall and snapshot techniques most.\n\n### Findings\n\n{}",
        findings(&table)
    );
    ctx.report.section("frequency_workloads", "Monitoring frequency under the study's workloads", &prose, &table, &[])
}

/// Per workload, the technique slowed most and the median ratio to idle.
fn findings(table: &Table) -> String {
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for r in &table.rows {
        if seen.contains(&r[1].as_str()) {
            continue;
        }
        seen.push(&r[1]);
        let mut ratios: Vec<(f64, &str)> = table
            .rows
            .iter()
            .filter(|x| x[1] == r[1])
            .filter_map(|x| Some((x[6].parse().ok()?, x[2].as_str())))
            .collect();
        if ratios.is_empty() {
            continue;
        }
        ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
        let median = ratios[ratios.len() / 2].0;
        out.push_str(&format!(
            "- **{}**: the median technique ran at {median:.2}× its idle rate; {} slowed most ({:.2}×), {} least \
             ({:.2}×).\n",
            r[1],
            ratios[0].1,
            ratios[0].0,
            ratios[ratios.len() - 1].1,
            ratios[ratios.len() - 1].0
        ));
    }
    out
}
