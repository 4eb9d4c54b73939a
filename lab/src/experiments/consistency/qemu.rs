//! The consistency experiment on Debian guests under QEMU, with process churn.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use vmscope_consistency::invariants::{self, Origin};
use vmscope_linux::Kernel;
use vmscope_mem::PhysMem;
use vmscope_technique::{Access, Consistency, Options, ReadMethod, Technique};

use super::{Samples, budget, techniques};
use crate::experiments::Ctx;
use crate::qemu_runs::{Booted, TASKS, attach, boot};
use crate::table::Table;

/// Fork rates the guest runs at (`max`: as fast as it can).
const CHURN: &[&str] = &["0", "10", "100", "1000", "max"];
const CHURN_QUICK: &[&str] = &["0", "100", "max"];

pub fn run(ctx: &mut Ctx, table: &mut Table) -> anyhow::Result<()> {
    let levels = ctx.levels(CHURN, CHURN_QUICK);
    let ts = techniques(ctx, true);
    let hv = format!("qemu-{}", vmscope_testbed::Accel::detect().name());
    let kernels = ctx.kernels.clone();
    let pb = ctx.bar((kernels.len() * levels.len() * ts.len()) as u64, "consistency (QEMU)");
    for id in &kernels {
        pb.set_message(format!("consistency: booting linux-{id}"));
        let b = boot(ctx, id, 1024)?;
        b.populate(TASKS)?;
        let kernel = attach(&b.guest).context("attaching")?;
        let guest = format!("linux-{id}");
        for &level in levels {
            let churn = Churn::start(&b, level)?;
            for &t in &ts {
                pb.set_message(format!("consistency: {t}, churn {level}, linux-{id}"));
                let mut s = measure(ctx, &b, &kernel, t)?;
                table.push(s.row(&hv, &guest, (level, churn.rate(&b)?), t));
                pb.inc(1);
            }
            churn.stop(&b)?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// Process churn in the guest, started through the agent.
struct Churn {
    pid: Option<u32>,
    forks: u64,
    since: Instant,
}

impl Churn {
    fn start(b: &Booted, level: &str) -> anyhow::Result<Self> {
        let mut agent = b.agent()?;
        let pid = if level == "0" {
            None
        } else {
            let out = agent.sh(&format!("/sbin/vmscope-workload churn procs {level} >/dev/null 2>&1 & echo $!"))?;
            Some(out.trim().parse().with_context(|| format!("churn's pid from `{out}`"))?)
        };
        std::thread::sleep(Duration::from_millis(300));
        Ok(Churn { pid, forks: forks(&mut agent)?, since: Instant::now() })
    }

    /// Forks per second the guest counted since the start.
    fn rate(&self, b: &Booted) -> anyhow::Result<f64> {
        let n = forks(&mut b.agent()?)?;
        Ok(n.saturating_sub(self.forks) as f64 / self.since.elapsed().as_secs_f64())
    }

    fn stop(self, b: &Booted) -> anyhow::Result<()> {
        if let Some(pid) = self.pid {
            b.agent()?.sh(&format!("kill {pid}; wait {pid} 2>/dev/null; true"))?;
        }
        Ok(())
    }
}

/// The guest's fork counter (/proc/stat `processes`).
fn forks(agent: &mut vmscope_agent::Client) -> anyhow::Result<u64> {
    let stat = String::from_utf8(agent.read_file("/proc/stat", 1 << 16)?)?;
    stat.lines()
        .find_map(|l| l.strip_prefix("processes ").and_then(|n| n.trim().parse().ok()))
        .context("no `processes` line in /proc/stat")
}

fn measure<K: PhysMem>(ctx: &Ctx, b: &Booted, kernel: &Kernel<K>, t: Technique) -> anyhow::Result<Samples> {
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    let access = b.guest.access(Some(t), &opts).with_context(|| format!("opening {t}"))?;
    let (budget, max) = budget(ctx, t);
    let mut s = Samples::default();
    let t0 = Instant::now();
    while (t0.elapsed() < budget || s.passes + s.failed < 3) && s.passes + s.failed < max {
        match pass(&access, kernel) {
            Ok(o) => s.add(o.consistency.as_ref(), o.intrinsic, o.extrinsic),
            Err(e) => s.fail(&e),
        }
    }
    s.wall = t0.elapsed();
    Ok(s)
}

/// What one pass found.
struct Outcome {
    consistency: Option<Consistency>,
    intrinsic: bool,
    extrinsic: bool,
}

/// One pass: the process list and the invariants, each violation classified by the
/// pages the guest wrote during the pass.
fn pass<K: PhysMem>(access: &Access<'_>, kernel: &Kernel<K>) -> anyhow::Result<Outcome> {
    if let Some(mut agent) = access.agent() {
        // No read set: the agent's own list, checked for parents it does not list.
        let procs = agent.processes()?;
        let pids: HashSet<i32> = procs.iter().map(|p| p.pid).collect();
        let orphaned = procs.iter().any(|p| p.ppid != 0 && !pids.contains(&p.ppid));
        return Ok(Outcome { consistency: None, intrinsic: orphaned, extrinsic: false });
    }
    let seen = access.observed_pass(|mem| {
        let k = kernel.rebind(mem);
        k.processes();
        invariants::check(&k).violations
    })?;
    let torn = &seen.consistency.verdict.torn_pages;
    let origin = |o| seen.value.iter().any(|v| v.origin(torn) == o);
    let (intrinsic, extrinsic) = (origin(Origin::Intrinsic), origin(Origin::Extrinsic));
    Ok(Outcome { consistency: Some(seen.consistency), intrinsic, extrinsic })
}
