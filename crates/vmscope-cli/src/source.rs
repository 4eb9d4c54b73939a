//! Where the `vmscope` command gets guest state from: a live guest (QEMU or the
//! built-in VMM) through a technique, or a dump file.

use std::path::PathBuf;

use anyhow::Context;
use vmscope_linux::{AttachOptions, Hints, Kernel, ProfileCache};
use vmscope_mem::PhysMem;
use vmscope_snap::DumpFile;

use crate::{Access, Hv, Target, Technique};

/// The profile cache: `$XDG_CACHE_HOME/vmscope` or `~/.cache/vmscope`; offsets are
/// kept per kernel banner and build ID, and re-checked against memory on every use.
pub fn profile_cache() -> Option<ProfileCache> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(ProfileCache::in_dir(base.join("vmscope")))
}

/// Register hints from the hypervisor (vCPU 0), if it gives them.
pub fn hints(target: &Target) -> Hints {
    let Some(hv) = &target.hv else { return Hints::none() };
    match hv.as_dyn().vcpu_registers(0) {
        Ok(r) if r.cr3 != 0 => {
            let h = Hints::from_registers(r.cr3, r.cr4);
            // QEMU's monitor does not show LSTAR; the built-in VMM does.
            if r.lstar != 0 && matches!(hv, Hv::Builtin(_)) { h.with_lstar(vmscope_mem::Gva::new(r.lstar)) } else { h }
        }
        _ => Hints::none(),
    }
}

/// Register hints saved in a dump (QEMU's and vmscope's ELF dumps carry them).
pub fn dump_hints(d: &DumpFile) -> Hints {
    d.meta().vcpus.first().filter(|v| v.cr3 != 0).map_or_else(Hints::none, |v| Hints::from_registers(v.cr3, v.cr4))
}

/// Attaches to the kernel in `mem` and runs `f` on it.
pub fn with_kernel<R>(
    mem: &dyn PhysMem,
    hints: Hints,
    f: impl FnOnce(&Kernel<&dyn PhysMem>) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let cache = profile_cache();
    let kernel = Kernel::attach_with(mem, AttachOptions { hints, cache: cache.as_ref(), ..AttachOptions::default() })
        .context("finding the Linux kernel in guest memory")?;
    f(&kernel)
}

/// Runs `f` on the kernel of a live target through `technique`.
pub fn live<R>(
    target: &Target,
    technique: Technique,
    f: impl FnOnce(&Kernel<&dyn PhysMem>) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let access: Access<'_> = target.open(technique)?;
    let hints = hints(target);
    access.pass(|mem| with_kernel(mem, hints, f))?
}

/// Picks the fastest technique that works on `target`: a mapping of shared RAM, else
/// syscall reads, else the agent.
pub fn default_technique(target: &Target) -> Technique {
    if target.loc.file.is_some() { Technique::LiveMap } else { Technique::LiveRead }
}
