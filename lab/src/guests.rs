//! The guests experiments run on: Debian kernels under QEMU, or the test kernel under
//! vmscope's built-in VMM.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A `vmscope-vmm` process running the test kernel; killed on drop.
#[derive(Debug)]
pub struct BuiltinGuest {
    child: Child,
    dir: PathBuf,
    pub control: PathBuf,
}

impl BuiltinGuest {
    /// Starts the test kernel on `vcpus` vCPUs with `memory` of RAM.
    pub fn start(images: &Path, vcpus: u32, memory: &str) -> anyhow::Result<Self> {
        let kernel = images.join("testkernel/testkernel.elf");
        if !kernel.exists() {
            bail!("{} is missing: run `cargo xtask images`", kernel.display());
        }
        let dir = std::env::temp_dir().join(format!("vmscope-lab-vmm-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let control = dir.join("control.sock");
        let _ = std::fs::remove_file(&control);
        let mut cmd = Command::new(vmm_binary()?);
        cmd.arg("--kernel")
            .arg(&kernel)
            .args(["--vcpus", &vcpus.to_string(), "--memory", memory, "--backing", "memfd"])
            .arg("--serial0")
            .arg(dir.join("console.log"))
            .arg("--control")
            .arg(&control)
            .arg("--die-with-parent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only prctl in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting vmscope-vmm")?;
        let g = Self { child, dir, control };
        let t = Instant::now();
        while !g.control.exists() {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("vmscope-vmm did not open its control socket in 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(g)
    }
}

impl Drop for BuiltinGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$VMSCOPE_VMM`, else `vmscope-vmm` beside this executable (cargo builds both into
/// the same directory).
fn vmm_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("VMSCOPE_VMM") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("vmscope-vmm");
    if p.exists() {
        return Ok(p);
    }
    bail!(
        "vmscope-vmm not found beside {}: build it (cargo build --release -p vmscope-vmm) or set VMSCOPE_VMM",
        exe.display()
    )
}
