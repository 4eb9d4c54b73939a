//! Experiment runs on Debian guests under QEMU.

use std::time::Duration;

use anyhow::Context;
use vmscope_agent::Client;
use vmscope_cli::source::{hints, profile_cache};
use vmscope_cli::{Access, Target, Technique};
use vmscope_hv::qemu::{GuestImages, QemuVm};
use vmscope_linux::{AttachOptions, Kernel};
use vmscope_mem::PhysMem;

use crate::experiments::Ctx;
use crate::experiments::frequency::{configurations, measure, memory_techniques};
use crate::table::Table;

/// Tasks in the guest while passes are measured (the study's idle guest).
pub const TASKS: usize = 100;

/// A booted guest and a target over its spare QMP socket.
pub struct Booted {
    pub target: Target,
    /// QEMU; dropped last.
    pub vm: QemuVm,
}

/// Boots kernel `id` with `mib` of RAM.
pub fn boot(ctx: &Ctx, id: &str, mib: u64) -> anyhow::Result<Booted> {
    let images = GuestImages::open(&ctx.images)?;
    let mut cfg = images.kernel(id)?.qemu_config();
    cfg.memory_mib = mib;
    let vm = QemuVm::launch(cfg)?;
    let target = Target::qemu(vm.pid(), Some(&vm.extra_qmp_socket()))?;
    Ok(Booted { target, vm })
}

impl Booted {
    /// Starts idle processes until the guest has about `tasks` tasks (kernel
    /// threads included), each with its own name.
    pub fn populate(&self, tasks: usize) -> anyhow::Result<usize> {
        // QEMU serves one client on the agent's socket: connect for this only.
        let mut agent = self.agent()?;
        let have = agent.processes()?.len();
        let add = tasks.saturating_sub(have);
        if add > 0 {
            agent.sh(&format!(
                "i=0; while [ $i -lt {add} ]; do sh -c \"exec -a busybox-idle-$i /bin/busybox sleep 1000000\" >/dev/null 2>&1 & i=$((i+1)); done"
            ))?;
        }
        Ok(agent.processes()?.len())
    }

    /// A connection to the guest agent (only one may be open at a time).
    pub fn agent(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(self.vm.agent_socket(), Duration::from_secs(30))?)
    }
}

/// Attaches once, through a live mapping (the profile cache makes later attaches cheap).
pub fn attach(target: &Target) -> anyhow::Result<Kernel<vmscope_map::Mapped>> {
    let mem = vmscope_map::Mapped::open(target.loc.clone())?;
    let cache = profile_cache();
    Ok(Kernel::attach_with(mem, AttachOptions { hints: hints(target), cache: cache.as_ref(), ..Default::default() })?)
}

/// One process-list pass through `access`, reusing the attached kernel.
pub fn ps_pass<K: PhysMem>(access: &Access<'_>, kernel: &Kernel<K>) -> anyhow::Result<usize> {
    if let Some(mut agent) = access.agent() {
        return Ok(agent.processes()?.len());
    }
    access.pass(|mem| {
        let list = kernel.rebind(mem).processes();
        list.processes.len()
    })
}

pub fn frequency(ctx: &mut Ctx, table: &mut Table) -> anyhow::Result<()> {
    let kernels = ctx.kernels.clone();
    let configs = configurations(ctx, memory_techniques().chain([Technique::Agent]));
    let pb = ctx.bar((kernels.len() * configs.len()) as u64, "frequency (QEMU)");
    for id in &kernels {
        pb.set_message(format!("frequency: booting linux-{id}"));
        let mut b = boot(ctx, id, 1024)?;
        b.populate(TASKS)?;
        let kernel = attach(&b.target).context("attaching")?;
        let hv = format!("qemu-{}", vmscope_hv::qemu::Accel::detect().name());
        let guest = format!("linux-{id}");
        for &(t, m) in &configs {
            pb.set_message(format!("frequency: {t} on linux-{id}"));
            table.push(measure(ctx, (&hv, &guest), &mut b.target, (t, m), |a| ps_pass(a, &kernel))?);
            pb.inc(1);
        }
        drop(b);
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.finish_and_clear();
    Ok(())
}
