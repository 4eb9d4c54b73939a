//! Experiment runs on Debian guests under QEMU.

use std::time::Duration;

use anyhow::Context;
use vmscope_agent::Client;
use vmscope_linux::{AttachOptions, Hints, Kernel, ProfileCache};
use vmscope_mem::{MemoryMap, PhysMem, SliceMem};
use vmscope_technique::{Access, Guest, Options, ReadMethod, Target, Technique};
use vmscope_testbed::{QemuVm, RamBacking};

use crate::experiments::Ctx;
use crate::experiments::frequency::{configurations, measure_counted, memory_techniques};
use crate::table::Table;

/// Tasks in the guest while passes are measured (the study's idle guest).
pub const TASKS: usize = 100;

/// A booted guest, opened over its spare QMP socket.
pub struct Booted {
    pub guest: Guest,
    /// QEMU; dropped last.
    pub vm: QemuVm,
}

/// Boots kernel `id` with `mib` of RAM.
pub fn boot(ctx: &Ctx, id: &str, mib: u64) -> anyhow::Result<Booted> {
    boot_with(ctx, id, mib, |_| {})
}

/// Boots kernel `id` with `mib` of RAM after `tweak` adjusts the configuration
/// (disks, vCPUs).
pub fn boot_with(
    ctx: &Ctx,
    id: &str,
    mib: u64,
    tweak: impl FnOnce(&mut vmscope_testbed::QemuConfig),
) -> anyhow::Result<Booted> {
    let mut cfg = ctx.images.kernel(id)?.qemu_config();
    cfg.memory_mib = mib;
    tweak(&mut cfg);
    let vm = QemuVm::launch(cfg)?;
    let guest = Target::Qemu { pid: vm.pid(), qmp: Some(vm.extra_qmp_socket()) }.open()?;
    Ok(Booted { guest, vm })
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

/// A kernel attached once (through the guest's default technique — a live mapping
/// of shared RAM, live-read of private RAM — offsets from the user's profile cache)
/// and detached from memory: each pass rebinds it to the memory the pass sees.
pub fn attach(guest: &Guest) -> anyhow::Result<Kernel<SliceMem<Vec<u8>>>> {
    let access = guest.access(None, &Options::default())?;
    let hints = guest
        .registers()
        .map_or_else(Hints::none, |r| Hints::from_registers(r.cr3, r.cr4).with_lstar(vmscope_mem::Gva::new(r.lstar)));
    let cache = ProfileCache::per_user();
    let kernel = access.pass(|mem| {
        Kernel::attach_with(mem, AttachOptions { hints, cache: cache.as_ref(), ..Default::default() })
            .map(|k| k.rebind(SliceMem::new(Vec::new(), MemoryMap::flat(0))))
    })??;
    Ok(kernel)
}

/// One process-list pass through `access`, reusing the attached kernel: (processes,
/// anomalies the walk reported).
pub fn ps_pass<K: PhysMem>(access: &Access<'_>, kernel: &Kernel<K>) -> anyhow::Result<(usize, usize)> {
    if let Some(mut agent) = access.agent() {
        return Ok((agent.processes()?.len(), 0));
    }
    Ok(access.pass(|mem| {
        let list = kernel.rebind(mem).processes();
        (list.processes.len(), list.anomalies.len())
    })?)
}

pub fn frequency(ctx: &mut Ctx, table: &mut Table) -> anyhow::Result<()> {
    let kernels = ctx.kernels.clone();
    let configs = configurations(ctx, memory_techniques().chain([Technique::Agent]));
    let pb = ctx.bar((kernels.len() * configs.len()) as u64, "frequency (QEMU)");
    for id in &kernels {
        pb.set_message(format!("frequency: booting linux-{id}"));
        let b = boot(ctx, id, 1024)?;
        b.populate(TASKS)?;
        let kernel = attach(&b.guest).context("attaching")?;
        let hv = format!("qemu-{}", vmscope_testbed::Accel::detect().name());
        let guest = format!("linux-{id}");
        for &(t, m) in &configs {
            pb.set_message(format!("frequency: {t} on linux-{id}"));
            table.push(measure_counted(ctx, (&hv, &guest), &b.guest, (t, m), |a| ps_pass(a, &kernel))?);
            pb.inc(1);
        }
        drop(b);
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.finish_and_clear();
    if let Some(id) = kernels.first() {
        backends(ctx, table, id)?;
    }
    Ok(())
}

/// The guest RAM backings besides the shared memfd of every other run, as users
/// start QEMU: (label, backing in a scratch directory, whether it is shared).
fn backings(dir: &std::path::Path) -> Vec<(&'static str, RamBacking, bool)> {
    let file = |share: &str| RamBacking::Backend {
        kind: "file".into(),
        props: format!("mem-path={},share={share}", dir.display()),
    };
    vec![
        ("plain -m", RamBacking::Plain, false),
        ("memory-backend-file share=off", file("off"), false),
        ("memory-backend-file share=on", file("on"), true),
    ]
}

/// A row per RAM backing on kernel `id`: live-read by every read method the backing
/// allows (private RAM only through QEMU's address space), the same process list as
/// the memfd guest's rows.
fn backends(ctx: &mut Ctx, table: &mut Table, id: &str) -> anyhow::Result<()> {
    if !ctx.wants(Technique::LiveRead) {
        return Ok(());
    }
    // The file backings' directory: QEMU creates (and unlinks) its file there.
    let dir = std::env::temp_dir().join(format!("vmscope-lab-ram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let measured = measure_backings(ctx, table, id, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

fn measure_backings(ctx: &mut Ctx, table: &mut Table, id: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let all = backings(dir);
    let all = if ctx.smoke { &all[..1] } else { &all[..] };
    let pb = ctx.bar(all.len() as u64, "frequency per RAM backing (QEMU)");
    for (label, ram, shared) in all {
        pb.set_message(format!("frequency: linux-{id} with {label}"));
        let b = boot_with(ctx, id, 1024, |c| c.ram = ram.clone())?;
        b.populate(TASKS)?;
        let kernel = attach(&b.guest).context("attaching")?;
        let hv = format!("qemu-{}", vmscope_testbed::Accel::detect().name());
        let guest = format!("linux-{id}, {label}");
        let methods: &[ReadMethod] =
            if *shared { &ReadMethod::ALL } else { &[ReadMethod::VmReadv, ReadMethod::ProcMem] };
        for &m in methods {
            let t = (Technique::LiveRead, m);
            table.push(measure_counted(ctx, (&hv, &guest), &b.guest, t, |a| ps_pass(a, &kernel))?);
        }
        drop(b);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(())
}
