//! The guests experiments run on: Debian kernels under QEMU (started by
//! `vmscope_testbed::QemuVm`), or the test kernel under vmscope's built-in VMM.

use std::time::Duration;

use vmscope_testbed::GuestImages;
use vmscope_vmm::VmmChild;

/// The test kernel under `vmscope-vmm` on `vcpus` vCPUs with `memory` of memfd RAM,
/// once its control socket answers; killed on drop.
pub fn testkernel(images: &GuestImages, vcpus: u32, memory: &str) -> anyhow::Result<VmmChild> {
    let kernel = images.testkernel()?;
    let vcpus = vcpus.to_string();
    let mut vm =
        VmmChild::spawn(&VmmChild::binary()?, &kernel, &["--vcpus", &vcpus, "--memory", memory, "--backing", "memfd"])?;
    vm.connect(Duration::from_secs(30))?;
    Ok(vm)
}
