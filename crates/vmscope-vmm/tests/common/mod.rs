//! Shared by the end-to-end tests: images, a VMM child process killed on drop, guest
//! memory readers, and the test kernel's manifest, lists and journal.
#![allow(dead_code)]

pub mod testkernel;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vmscope_hv::builtin::BuiltinVmm;
use vmscope_mem::{Error as MemError, MemoryMap, PhysMem, ReadOp};

/// Where guest images are: $VMSCOPE_IMAGES or <workspace>/target/guest-images.
pub fn images_dir() -> PathBuf {
    std::env::var_os("VMSCOPE_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest-images"))
}

/// An image under [`images_dir`], or a panic telling how to build it.
pub fn image(rel: &str) -> PathBuf {
    let p = images_dir().join(rel);
    assert!(p.exists(), "guest image {} is missing: run `cargo xtask images` (or set VMSCOPE_IMAGES)", p.display());
    p
}

/// The test kernel.
pub fn testkernel_image() -> PathBuf {
    image("testkernel/testkernel.elf")
}

/// A `vmscope-vmm` child process in its own temporary directory; killed on drop.
pub struct Vm {
    child: Child,
    dir: tempfile::TempDir,
    /// The control socket.
    pub control: PathBuf,
    /// The ttyS0 log.
    pub console: PathBuf,
    status: Option<ExitStatus>,
}

impl Vm {
    /// Starts `vmscope-vmm --kernel kernel` with `extra` arguments.
    pub fn start(kernel: &Path, extra: &[&str]) -> Vm {
        let dir = tempfile::tempdir().expect("temporary directory");
        let control = dir.path().join("control.sock");
        let console = dir.path().join("console.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmscope-vmm"));
        cmd.arg("--kernel")
            .arg(kernel)
            .arg("--control")
            .arg(&control)
            .arg("--serial0")
            .arg(&console)
            .arg("--die-with-parent")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: the closure runs between fork and exec and only calls prctl, which
        // is async-signal-safe; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawning vmscope-vmm");
        Vm { child, dir, control, console, status: None }
    }

    /// The test kernel on `vcpus` vCPUs with 2 GiB (so its direct map has a 1 GiB
    /// page) and `backing`.
    pub fn testkernel(vcpus: u8, backing: &str, cmdline: &str) -> Vm {
        let v = vcpus.to_string();
        Vm::start(&testkernel_image(), &["--vcpus", &v, "--memory", "2G", "--backing", backing, "--cmdline", cmdline])
    }

    /// The VMM's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A scratch directory that lives as long as the VM.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects to the control socket, waiting up to 10 s for it to appear.
    pub fn client(&mut self) -> BuiltinVmm {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = BuiltinVmm::connect(&self.control) {
                return c;
            }
            if let Some(st) = self.try_wait() {
                panic!("vmscope-vmm exited with {st} before its control socket was up");
            }
            assert!(Instant::now() < deadline, "no control socket at {}", self.control.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// ttyS0 output so far.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Waits until ttyS0 shows `needle`.
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

    /// The exit status, if the VMM has ended.
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
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Guest RAM read with pread from a file laid out by backing offset: the VMM's memfd
/// (/proc/PID/fd/N), a memfd copy, or a snapshot file.
pub struct FileMem {
    file: File,
    map: MemoryMap,
}

impl FileMem {
    /// Opens `path` (a file or a /proc/PID/fd/N link) for reading.
    pub fn open(path: &Path, map: MemoryMap) -> FileMem {
        let file = File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        FileMem { file, map }
    }
}

impl PhysMem for FileMem {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        for op in ops.iter_mut() {
            let mut done = 0usize;
            for chunk in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (_, off, len) = chunk.map_err(|gpa| MemError::Unbacked { gpa })?;
                let buf = &mut op.buf[done..done + len as usize];
                self.file.read_exact_at(buf, off).map_err(|source| MemError::Io { gpa: op.gpa, source })?;
                done += len as usize;
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

/// Guest RAM inside another process (a fork snapshot), read through /proc/PID/mem at
/// `hva + backing offset`.
pub struct ProcMem {
    inner: FileMem,
    hva: u64,
}

impl ProcMem {
    /// Reads process `pid`'s RAM mapping at `hva`.
    pub fn open(pid: u32, hva: u64, map: MemoryMap) -> ProcMem {
        ProcMem { inner: FileMem::open(Path::new(&format!("/proc/{pid}/mem")), map), hva }
    }
}

impl PhysMem for ProcMem {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        for op in ops.iter_mut() {
            let mut done = 0usize;
            for chunk in self.inner.map.chunks(op.gpa, op.buf.len() as u64) {
                let (_, off, len) = chunk.map_err(|gpa| MemError::Unbacked { gpa })?;
                let buf = &mut op.buf[done..done + len as usize];
                self.inner
                    .file
                    .read_exact_at(buf, self.hva + off)
                    .map_err(|source| MemError::Io { gpa: op.gpa, source })?;
                done += len as usize;
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.inner.map
    }
}

/// The live RAM of `vm` through its memfd, plus its control client.
pub fn live_memfd(vm: &mut Vm) -> (BuiltinVmm, FileMem) {
    let c = vm.client();
    let info = c.memory_map_info().expect("memory-map");
    let path = info.backing.path.clone().expect("memfd backing has a path");
    let map = MemoryMap::new(info.regions).expect("valid map");
    (c, FileMem::open(Path::new(&path), map))
}

/// Whether /proc/cpuinfo shows hardware virtualization.
pub fn has_hw_virt() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.split_whitespace().any(|w| w == "vmx" || w == "svm"))
        .unwrap_or(false)
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; whether it held. Tests
/// wait for guest progress this way rather than sleeping a fixed time, so a loaded
/// host (other VMs, builds) slows them down instead of failing them.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
