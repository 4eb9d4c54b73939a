//! The snapshot experiment on the built-in VMM running the test kernel: halt-snap,
//! the dirty-log pre-copy (memfd RAM) and the VMM's fork snapshot (private RAM). The
//! host fills the RAM the workload would touch; the test kernel's page writer
//! (`tk.dirty`) dirties it at [`DIRTY_MB_S`], beside its list mutator (`tk.rate`).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use vmscope_hv::DirtyLog;
use vmscope_hv::builtin::BuiltinVmm;
use vmscope_mem::{FileMem, PhysMem};
use vmscope_read::ProcMem;
use vmscope_snap::{SnapOptions, Source};
use vmscope_technique::Technique;
use vmscope_vmm::VmmChild;

use super::{Config, DIRTY_MB_S, Sample, host_has_room, proc_kb, ram_sizes, repeats, rss, touched_mib};
use crate::experiments::Ctx;
use crate::guests;

/// The test kernel allocates from its first few MiB: RAM from here on is never its
/// (its page writer, `tk.dirty`, starts here too).
const FREE_FROM: u64 = 64 << 20;
/// List ops per second of the test kernel's mutator while snapshots are taken.
const TK_RATE: u32 = 2560;
/// How long a fork snapshot is held before its extra memory is measured.
const HOLD: Duration = Duration::from_secs(1);

pub fn run(ctx: &Ctx, configs: &mut Vec<Config>, skipped: &mut Vec<String>) -> anyhow::Result<()> {
    let techniques: Vec<&'static str> = [
        (Technique::HaltSnap, "halt-snap"),
        (Technique::LiveSnap, "live-snap/dirtylog"),
        (Technique::LiveSnap, "fork"),
    ]
    .into_iter()
    .filter(|(t, _)| ctx.wants(*t))
    .map(|(_, n)| n)
    .collect();
    let copies: Vec<&'static str> = techniques.iter().copied().filter(|t| *t != "fork").collect();
    let sizes = ram_sizes(ctx);
    let pb = ctx.bar((sizes.len() * techniques.len()) as u64, "snapshot (built-in VMM)");
    for mib in sizes {
        let touched = touched_mib(mib);
        // The test kernel's memfd (or private RAM) holds only what was written: the
        // touched RAM, its own few MiB, and pages only the page writer reaches.
        if !host_has_room(touched + (FREE_FROM >> 20), 2) {
            skipped.push(format!("built-in VMM with {mib} MiB (not enough free host memory)"));
            continue;
        }
        let guest = Guest { mib, touched };
        // A configuration that fails (the host ran short of memory meanwhile, say)
        // costs its own rows, not the section.
        if !copies.is_empty()
            && let Err(e) = guest.copies(ctx, &copies, &pb, configs)
        {
            skipped.push(format!("built-in VMM with {mib} MiB, {}: {e:#}", copies.join(", ")));
        }
        if techniques.contains(&"fork") {
            pb.set_message(format!("snapshot: fork, {mib} MiB (built-in VMM)"));
            match guest.fork(ctx) {
                Ok(c) => configs.push(c),
                Err(e) => skipped.push(format!("built-in VMM with {mib} MiB, fork: {e:#}")),
            }
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// One guest configuration: RAM size and how much of it is touched (MiB).
struct Guest {
    mib: u64,
    touched: u64,
}

impl Guest {
    /// The test kernel's command line: the page writer cycles through the touched RAM
    /// (as far as the kernel's direct map reaches: below the 3 GiB MMIO gap).
    fn cmdline(&self) -> String {
        format!("tk.rate={TK_RATE} tk.dirty={DIRTY_MB_S} tk.dirty_mib={}", self.touched)
    }

    /// `samples` of `technique` on this guest, taken by `take` while the guest's page
    /// writer is watched through `mem`.
    fn config(
        &self,
        technique: &'static str,
        dirty_mb_s: f64,
        mem: &dyn PhysMem,
        take: impl FnOnce() -> anyhow::Result<Vec<Sample>>,
    ) -> anyhow::Result<Config> {
        let m = guests::wait_for_manifest(mem, 2)?;
        let written = || -> anyhow::Result<u64> { Ok(m.dirty(mem)?.map_or(0, |d| d.written)) };
        let (w0, t0) = (written()?, Instant::now());
        let samples = take().with_context(|| format!("{technique} of a {} MiB test kernel", self.mib))?;
        let guest_dirty_mb_s = Some((written()? - w0) as f64 / 256.0 / t0.elapsed().as_secs_f64().max(1e-9));
        Ok(Config {
            hypervisor: "builtin".into(),
            guest: "testkernel".into(),
            ram_mib: self.mib,
            touched_mib: self.touched,
            dirty_mb_s,
            guest_dirty_mb_s,
            technique,
            samples,
        })
    }

    /// The copying techniques on a test kernel with memfd RAM; each configuration is
    /// pushed to `configs` as soon as it is measured.
    fn copies(
        &self,
        ctx: &Ctx,
        techniques: &[&'static str],
        pb: &ProgressBar,
        configs: &mut Vec<Config>,
    ) -> anyhow::Result<()> {
        let mib = self.mib;
        pb.set_message(format!("snapshot: test kernel with {mib} MiB (memfd)"));
        let vm = guests::testkernel(&ctx.images, 2, &format!("{mib}M"), &self.cmdline())?;
        let hv = BuiltinVmm::connect(vm.control())?;
        let loc = hv.ram_location()?;
        let path = match loc.blocks.first().map(|b| &b.backing) {
            Some(vmscope_hv::Backing::File { path, .. }) => path.clone(),
            _ => anyhow::bail!("the built-in VMM's memfd RAM has no path"),
        };
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let ram = FileMem::new(loc.open_file()?, loc.map.clone());
        wait_for_writer(&ram)?;
        fill(|buf, off| file.write_all_at(buf, off), self.touched)?;
        std::thread::sleep(Duration::from_secs(1));
        let rate = dirty_rate(&hv)?;
        for &t in techniques {
            pb.set_message(format!("snapshot: {t}, {mib} MiB (built-in VMM)"));
            let take = || (0..repeats(ctx)).map(|_| copy_sample(&hv, &ram, t)).collect();
            configs.push(self.config(t, rate, &ram, take)?);
            pb.inc(1);
        }
        Ok(())
    }

    /// The VMM's fork snapshot of a test kernel with private RAM.
    fn fork(&self, ctx: &Ctx) -> anyhow::Result<Config> {
        let kernel = ctx.images.testkernel()?;
        let (memory, cmdline) = (format!("{}M", self.mib), self.cmdline());
        let args = ["--vcpus", "2", "--memory", &memory, "--backing", "private", "--cmdline", &cmdline];
        let mut vm = VmmChild::spawn(&VmmChild::binary()?, &kernel, &args)?;
        let hv = vm.connect(Duration::from_secs(30))?;
        let info = hv.memory_map_info()?;
        let ram = ProcMem::open(hv.ram_location()?)?;
        wait_for_writer(&ram)?;
        let mem = OpenOptions::new().read(true).write(true).open(format!("/proc/{}/mem", info.pid))?;
        fill(|buf, off| mem.write_all_at(buf, info.backing.hva + off), self.touched)?;
        std::thread::sleep(Duration::from_secs(1));
        let rate = dirty_rate(&hv)?;
        let take = || (0..repeats(ctx)).map(|_| fork_sample(&hv, info.pid)).collect();
        self.config("fork", rate, &ram, take)
    }
}

/// Touches `mib` MiB of guest RAM from [`FREE_FROM`] with `write(buf, backing_offset)`.
fn fill(write: impl Fn(&[u8], u64) -> std::io::Result<()>, mib: u64) -> anyhow::Result<()> {
    let chunk = vec![0xa5u8; 1 << 20];
    for i in 0..mib {
        write(&chunk, FREE_FROM + (i << 20)).context("filling guest RAM")?;
    }
    Ok(())
}

/// Waits until the test kernel runs on both CPUs and its page writer has begun, so
/// that the dirty rate is measured on a guest that has finished booting.
fn wait_for_writer(mem: &dyn PhysMem) -> anyhow::Result<()> {
    let m = guests::wait_for_manifest(mem, 2)?;
    let t = Instant::now();
    while m.dirty(mem)?.is_none_or(|d| d.written == 0) {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "the test kernel's page writer (tk.dirty) did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Distinct pages the guest dirties per second, as MB/s, over one second.
fn dirty_rate(hv: &BuiltinVmm) -> anyhow::Result<f64> {
    hv.start()?;
    let t = Instant::now();
    let _ = hv.fetch()?;
    std::thread::sleep(Duration::from_secs(1));
    let pages = hv.fetch()?.len();
    let secs = t.elapsed().as_secs_f64();
    hv.stop()?;
    Ok(pages as f64 / 256.0 / secs)
}

fn copy_sample(hv: &BuiltinVmm, ram: &FileMem, technique: &str) -> anyhow::Result<Sample> {
    let opts = SnapOptions { registers: false, vmcoreinfo: false };
    let mine = rss(None);
    let (snap, st) = match technique {
        "halt-snap" => vmscope_snap::halt_snap(hv, Source::Backed(ram), opts)?,
        "live-snap/dirtylog" => vmscope_snap::live::dirtylog_precopy_snap(hv, ram, opts)?,
        other => anyhow::bail!("no snapshot technique `{other}` on the built-in VMM"),
    };
    let extra = rss(None) - mine;
    drop(snap);
    Ok(Sample { pause: st.downtime, total: st.total, copied: st.copied_bytes, extra, hv_rss_delta: 0 })
}

fn fork_sample(hv: &BuiltinVmm, vmm: u32) -> anyhow::Result<Sample> {
    let pss = |pid| proc_kb(Some(pid), "smaps_rollup", "Pss:");
    let (pss0, rss0) = (pss(vmm), rss(Some(vmm)));
    let t = Instant::now();
    let info = hv.snapshot(None)?;
    let total = t.elapsed();
    std::thread::sleep(HOLD);
    let extra = pss(vmm) + pss(info.pid) - pss0;
    let hv_rss_delta = rss(Some(vmm)) - rss0;
    hv.snapshot_release(info.id)?;
    Ok(Sample { pause: Duration::from_micros(info.pause_us), total, copied: 0, extra, hv_rss_delta })
}
