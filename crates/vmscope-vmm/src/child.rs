//! The `vmscope-vmm` binary as a child process, as the lab and the tests start it:
//! its own scratch directory (control socket, ttyS0 log, stderr), killed when dropped
//! and when the thread that started it dies (PR_SET_PDEATHSIG), so nothing outlives
//! a panicking test.
//!
//! ```no_run
//! use std::path::Path;
//! use vmscope_vmm::VmmChild;
//!
//! let kernel = Path::new("target/guest-images/testkernel/testkernel.elf");
//! let mut vm = VmmChild::spawn(&VmmChild::binary()?, kernel, &["--vcpus", "2", "--memory", "1G"])?;
//! let control = vm.connect(std::time::Duration::from_secs(10))?;
//! # Ok::<(), vmscope_vmm::Error>(())
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vmscope_hv::builtin::BuiltinVmm;

use crate::{Error, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running `vmscope-vmm` process.
#[derive(Debug)]
pub struct VmmChild {
    child: Child,
    dir: PathBuf,
    status: Option<ExitStatus>,
}

impl VmmChild {
    /// `$VMSCOPE_VMM`, else `vmscope-vmm` beside the running executable (cargo builds
    /// binaries of one workspace into one directory; tests run from `deps/` below it).
    pub fn binary() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("VMSCOPE_VMM") {
            return Ok(p.into());
        }
        let exe = std::env::current_exe().map_err(|e| Error::io("finding this executable", e))?;
        let dirs = exe.ancestors().skip(1).take(2);
        dirs.map(|d| d.join("vmscope-vmm")).find(|p| p.is_file()).ok_or_else(|| {
            Error::Launch(format!(
                "no vmscope-vmm binary near {}: build it (cargo build --release -p vmscope-vmm) or set VMSCOPE_VMM",
                exe.display()
            ))
        })
    }

    /// Starts `binary --kernel kernel` with `extra` arguments, a control socket and
    /// ttyS0 to a file in a fresh directory.
    pub fn spawn(binary: &Path, kernel: &Path, extra: &[&str]) -> Result<Self> {
        if !kernel.exists() {
            return Err(Error::Launch(format!("{} does not exist (run `cargo xtask images`)", kernel.display())));
        }
        let dir = std::env::temp_dir().join(format!(
            "vmscope-vmm-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let stderr = std::fs::File::create(dir.join("vmm.log")).map_err(|e| Error::io("creating vmm.log", e))?;
        let mut cmd = Command::new(binary);
        cmd.arg("--kernel")
            .arg(kernel)
            .arg("--control")
            .arg(dir.join("control.sock"))
            .arg("--serial0")
            .arg(dir.join("console.log"))
            .arg("--die-with-parent")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // SAFETY: the closure runs between fork and exec and only calls prctl, which
        // is async-signal-safe; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => Ok(Self { child, dir, status: None }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(Error::io(format!("starting {}", binary.display()), e))
            }
        }
    }

    /// Connects to the control socket, waiting up to `timeout` for it to appear.
    pub fn connect(&mut self, timeout: Duration) -> Result<BuiltinVmm> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(c) = BuiltinVmm::connect(self.control()) {
                return Ok(c);
            }
            if let Some(st) = self.try_wait() {
                return Err(Error::Launch(format!(
                    "exited with {st} before its control socket was up; {}",
                    self.log_tail()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::Launch(format!("no control socket after {timeout:?}; {}", self.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The VMM's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The scratch directory, removed with the VMM.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The control socket.
    pub fn control(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// The ttyS0 log.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// ttyS0 output so far.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.console()).unwrap_or_default()).into_owned()
    }

    /// Waits up to `timeout` until ttyS0 shows `needle`.
    pub fn wait_console(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.console_text().contains(needle) {
                return true;
            }
            if self.try_wait().is_some() {
                return self.console_text().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The exit status, once the VMM has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the VMM to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The last lines of the VMM's stderr, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("vmm.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        if tail.is_empty() { "it printed nothing".into() } else { format!("it printed:\n{tail}") }
    }
}

impl Drop for VmmChild {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
