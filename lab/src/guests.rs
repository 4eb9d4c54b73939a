//! The guests experiments run on: Debian kernels under QEMU (started by
//! `vmscope_testbed::QemuVm`), or the test kernel under vmscope's built-in VMM.

use std::time::{Duration, Instant};

use vmscope_mem::PhysMem;
use vmscope_testbed::GuestImages;
use vmscope_vmm::VmmChild;
use vmscope_vmm::testkernel::Manifest;

/// The test kernel under `vmscope-vmm` on `vcpus` vCPUs with `memory` of memfd RAM
/// and kernel command line `cmdline` (`tk.rate=N`, ...), once its control socket
/// answers; killed on drop.
pub fn testkernel(images: &GuestImages, vcpus: u32, memory: &str, cmdline: &str) -> anyhow::Result<VmmChild> {
    let kernel = images.testkernel()?;
    let vcpus = vcpus.to_string();
    let cmdline = format!("console=ttyS0 reboot=k panic=-1 {cmdline}");
    let args = ["--vcpus", &vcpus, "--memory", memory, "--backing", "memfd", "--cmdline", &cmdline];
    let mut vm = VmmChild::spawn(&VmmChild::binary()?, &kernel, &args)?;
    vm.connect(Duration::from_secs(30))?;
    Ok(vm)
}

/// The test kernel's manifest read from `mem`, once `cpus` CPUs run its mutator (60 s
/// at most).
pub fn wait_for_manifest(mem: &dyn PhysMem, cpus: u64) -> anyhow::Result<Manifest> {
    let t = Instant::now();
    loop {
        if let Some(m) = Manifest::read(mem)?
            && m.cpus_online(mem)? >= cpus
        {
            return Ok(m);
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "the test kernel did not start {cpus} cpus in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
