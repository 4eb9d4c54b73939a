//! Starting QEMU guests for tests and the lab, and making sure they stop.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vmscope_hv::qemu::QmpHypervisor;

use crate::{Error, Result};

/// The RAM backend id, and so the name of the RAM region in `info mtree`.
pub const RAM_ID: &str = "ram";

/// What the agent prints on the console once the guest is ready.
pub const READY_MARKER: &str = "VMSCOPE-READY";

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM where the CPU has hardware virtualization, else TCG.
    Auto,
    /// Hardware-assisted KVM.
    Kvm,
    /// QEMU's binary translator.
    Tcg,
}

impl Accel {
    /// `Kvm` when /proc/cpuinfo shows vmx or svm and /dev/kvm opens; `Tcg` otherwise.
    /// (A /dev/kvm without vmx/svm is a software hypervisor on which QEMU stalls.)
    pub fn detect() -> Accel {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        let kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        if hw && kvm { Accel::Kvm } else { Accel::Tcg }
    }

    /// The resolved accelerator (`Auto` detected).
    pub fn resolve(self) -> Accel {
        match self {
            Accel::Auto => Accel::detect(),
            a => a,
        }
    }

    /// `kvm` or `tcg`.
    pub fn name(self) -> &'static str {
        match self.resolve() {
            Accel::Kvm => "kvm",
            _ => "tcg",
        }
    }

    /// The `-accel` argument. TCG runs every vCPU on one host thread: with one thread
    /// per vCPU (MTTCG), a vCPU can execute code another vCPU has just rewritten from a
    /// stale translation, and Linux's live code patching (text_poke_bp's int3) then
    /// oopses during boot — seen in CI on 6.12 in 2 of about 40 boots. One thread also
    /// keeps an idle guest to one host core, leaving the other to the introspector.
    pub fn qemu_arg(self) -> &'static str {
        match self.resolve() {
            Accel::Kvm => "kvm",
            _ => "tcg,thread=single",
        }
    }
}

/// A virtio-blk disk for the guest. The guest's /init mounts disks by their serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// An existing image file, attached read-only.
    ReadOnly {
        /// The image.
        path: PathBuf,
        /// Its virtio serial (`vmscope-workloads` is mounted at /mnt/w).
        serial: String,
    },
    /// A sparse ext4 file of `size_mib` created (with `mke2fs`) in the VM's directory
    /// and removed with it; serial `vmscope-scratch`, mounted at /mnt/w/scratch.
    Scratch {
        /// Size in MiB.
        size_mib: u64,
    },
}

/// The virtio serial of the scratch disk.
pub const SCRATCH_SERIAL: &str = "vmscope-scratch";

/// How QEMU backs guest RAM: the configurations a user may run, each introspected
/// differently (see the README's "Any QEMU").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RamBacking {
    /// `-object memory-backend-memfd,id=ram,share=on` as the machine's memory backend:
    /// every technique, mapping included.
    SharedMemfd,
    /// Plain `-m`: anonymous private memory (QEMU's `pc.ram`), as most users run it.
    Plain,
    /// `-machine memory-backend=ram` with `-object memory-backend-KIND,id=ram,size=SIZE,PROPS`,
    /// e.g. `("file", "mem-path=/dev/shm/x,share=off")` or `("ram", "")`.
    Backend {
        /// `ram`, `memfd`, `file`.
        kind: String,
        /// More properties, comma-separated (may be empty).
        props: String,
    },
    /// One NUMA node per `(kind, props)` backend (ids `ram0`, `ram1`, ...), guest RAM
    /// split evenly between them.
    Numa(Vec<(String, String)>),
}

/// How to start a guest. [`QemuConfig::new`] gives the defaults: 1 GiB, 2 vCPUs,
/// KASLR on, 4-level paging, accelerator detected.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The kernel (bzImage).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: Option<PathBuf>,
    /// Extra kernel command-line words.
    pub append: Vec<String>,
    /// Guest RAM in MiB (256 to 8192 tested).
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Leave KASLR on (otherwise `nokaslr`).
    pub kaslr: bool,
    /// Offer 5-level paging (LA57) to the guest.
    pub la57: bool,
    /// Accelerator.
    pub accel: Accel,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Console text that says the guest is up; `None` returns once QMP answers.
    pub ready_marker: Option<String>,
    /// How long to wait for it.
    pub ready_timeout: Duration,
    /// More QEMU arguments.
    pub extra_args: Vec<String>,
    /// virtio-blk disks (none by default).
    pub disks: Vec<Disk>,
    /// How guest RAM is backed (default: a shared memfd).
    pub ram: RamBacking,
    /// The machine type: `q35` (default) or `pc`.
    pub machine: String,
}

impl QemuConfig {
    /// Defaults for `kernel` + `initrd`.
    pub fn new(kernel: impl Into<PathBuf>, initrd: Option<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd,
            append: Vec::new(),
            memory_mib: 1024,
            vcpus: 2,
            kaslr: true,
            la57: false,
            accel: Accel::Auto,
            qemu: PathBuf::from("qemu-system-x86_64"),
            ready_marker: Some(READY_MARKER.into()),
            ready_timeout: Duration::from_secs(120),
            extra_args: Vec::new(),
            disks: Vec::new(),
            ram: RamBacking::SharedMemfd,
            machine: "q35".into(),
        }
    }

    /// The `-machine`, `-m`, `-object` and `-numa` arguments for [`Self::ram`].
    fn ram_args(&self) -> Vec<String> {
        let mem = format!("{}M", self.memory_mib);
        let mut a = vec!["-m".to_owned(), mem.clone()];
        let backend = |kind: &str, id: &str, size: &str, props: &str| {
            let props = if props.is_empty() { String::new() } else { format!(",{props}") };
            format!("memory-backend-{kind},id={id},size={size}{props}")
        };
        match &self.ram {
            RamBacking::SharedMemfd => {
                a.extend(["-machine".into(), format!("{},memory-backend={RAM_ID}", self.machine)]);
                a.extend(["-object".into(), backend("memfd", RAM_ID, &mem, "share=on")]);
            }
            RamBacking::Plain => a.extend(["-machine".into(), self.machine.clone()]),
            RamBacking::Backend { kind, props } => {
                a.extend(["-machine".into(), format!("{},memory-backend={RAM_ID}", self.machine)]);
                a.extend(["-object".into(), backend(kind, RAM_ID, &mem, props)]);
            }
            RamBacking::Numa(nodes) => {
                a.extend(["-machine".into(), self.machine.clone()]);
                let each = format!("{}M", self.memory_mib / nodes.len().max(1) as u64);
                for (i, (kind, props)) in nodes.iter().enumerate() {
                    let id = format!("{RAM_ID}{i}");
                    a.extend(["-object".into(), backend(kind, &id, &each, props)]);
                    a.extend(["-numa".into(), format!("node,nodeid={i},memdev={id}")]);
                }
            }
        }
        a
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let accel = self.accel.resolve();
        let mut append = vec!["console=ttyS0".to_owned(), "quiet".into(), "panic=-1".into()];
        if !self.kaslr {
            append.push("nokaslr".into());
        }
        if !self.la57 {
            // Debian kernels use LA57 whenever the CPU has it.
            append.push("no5lvl".into());
        }
        append.extend(self.append.iter().cloned());
        let cpu = match (accel, self.la57) {
            (Accel::Kvm, _) => "host".to_owned(),
            (_, true) => "qemu64,+la57".to_owned(),
            (_, false) => "qemu64".to_owned(),
        };
        let p = |f: &str| dir.join(f).display().to_string();
        let mut a: Vec<String> = vec!["-accel".into(), accel.qemu_arg().into()];
        a.extend(self.ram_args());
        a.extend([
            "-cpu".into(),
            cpu,
            "-smp".into(),
            self.vcpus.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-append".into(),
            append.join(" "),
            "-display".into(),
            "none".into(),
            "-nodefaults".into(),
            "-no-reboot".into(),
            "-serial".into(),
            format!("file:{}", p("console.log")),
            "-chardev".into(),
            format!("socket,id=agent,path={},server=on,wait=off", p("agent.sock")),
            "-serial".into(),
            "chardev:agent".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", p("qmp.sock")),
            // A second monitor for other clients (the `vmscope` command, the lab):
            // QEMU serves one client per QMP socket, and the first is ours.
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", p("qmp-extra.sock")),
            "-device".into(),
            "vmcoreinfo".into(),
        ]);
        if let Some(i) = &self.initrd {
            a.push("-initrd".into());
            a.push(i.display().to_string());
        }
        for (i, d) in self.disks.iter().enumerate() {
            let (file, ro, serial) = match d {
                Disk::ReadOnly { path, serial } => (path.display().to_string(), ",readonly=on", serial.as_str()),
                Disk::Scratch { .. } => (p(&format!("scratch{i}.img")), "", SCRATCH_SERIAL),
            };
            a.push("-drive".into());
            a.push(format!("file={file},if=none,format=raw,id=disk{i}{ro}"));
            a.push("-device".into());
            a.push(format!("virtio-blk-pci,drive=disk{i},serial={serial}"));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Creates the scratch disks in `dir`.
    fn make_disks(&self, dir: &Path) -> Result<()> {
        for (i, d) in self.disks.iter().enumerate() {
            match d {
                Disk::ReadOnly { path, .. } if !path.exists() => {
                    return Err(Error::Launch(format!("{} does not exist (run `cargo xtask images`)", path.display())));
                }
                Disk::ReadOnly { .. } => {}
                Disk::Scratch { size_mib } => {
                    let f = dir.join(format!("scratch{i}.img"));
                    std::fs::File::create(&f)
                        .and_then(|h| h.set_len(size_mib << 20))
                        .map_err(|e| Error::io(format!("creating {}", f.display()), e))?;
                    let out = Command::new("mke2fs")
                        .args(["-q", "-F", "-t", "ext4", "-L", "scratch"])
                        .arg(&f)
                        .output()
                        .map_err(|e| Error::Launch(format!("cannot run mke2fs: {e} (install e2fsprogs)")))?;
                    if !out.status.success() {
                        return Err(Error::Launch(format!(
                            "mke2fs {}: {}",
                            f.display(),
                            String::from_utf8_lossy(&out.stderr)
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A running QEMU guest. Dropping it kills QEMU and removes its files; QEMU also dies
/// with the thread that started it (PR_SET_PDEATHSIG), so not even a killed test
/// leaves one behind.
#[derive(Debug)]
pub struct QemuVm {
    child: Child,
    dir: PathBuf,
    hv: QmpHypervisor,
    config: QemuConfig,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A number no other call in this process got: names temporary directories.
pub(crate) fn next_id() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl QemuVm {
    /// Starts QEMU and waits for the ready marker (or QMP, without one).
    pub fn launch(config: QemuConfig) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("vmscope-qemu-{}-{}", std::process::id(), next_id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        for f in [&config.kernel].into_iter().chain(config.initrd.as_ref()) {
            if !f.exists() {
                return Err(Error::Launch(format!("{} does not exist (run `cargo xtask images`)", f.display())));
            }
        }
        if let Err(e) = config.make_disks(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let log = std::fs::File::create(dir.join("qemu.log")).map_err(|e| Error::io("creating qemu.log", e))?;
        let log2 = log.try_clone().map_err(|e| Error::io("cloning qemu.log", e))?;
        let mut cmd = Command::new(&config.qemu);
        cmd.args(config.args(&dir)).stdin(Stdio::null()).stdout(log).stderr(log2);
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            Error::Launch(format!("cannot start {}: {e} (install qemu-system-x86)", config.qemu.display()))
        })?;
        let start = Instant::now();
        let qmp_path = dir.join("qmp.sock");
        // Until `hv` exists, clean up by hand on failure.
        let mut vm_parts = Some((child, dir.clone()));
        let hv = loop {
            let (child, _) = vm_parts.as_mut().expect("parts present until returned");
            if let Ok(Some(st)) = child.try_wait() {
                let (_, d) = vm_parts.take().expect("present");
                let msg = format!("QEMU exited at once ({st}):\n{}", read_tail(&d.join("qemu.log"), 40));
                let _ = std::fs::remove_dir_all(&d);
                return Err(Error::Launch(msg));
            }
            if qmp_path.exists()
                && let Ok(hv) = QmpHypervisor::connect(&qmp_path, Duration::from_secs(5))
            {
                break hv;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let (mut child, d) = vm_parts.take().expect("present");
                let _ = child.kill();
                let _ = child.wait();
                let msg = format!("QEMU's QMP socket never answered:\n{}", read_tail(&d.join("qemu.log"), 40));
                let _ = std::fs::remove_dir_all(&d);
                return Err(Error::Launch(msg));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let (child, dir) = vm_parts.take().expect("present");
        let vm = QemuVm { child, dir, hv, config };
        if let Some(marker) = vm.config.ready_marker.clone() {
            vm.wait_for_console(&marker, vm.config.ready_timeout)?;
        }
        Ok(vm)
    }

    /// Waits until `text` appears on the console. On timeout or QEMU exit the error
    /// carries the console's tail.
    pub fn wait_for_console(&self, text: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.console().contains(text) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Error::Launch(format!(
                    "no `{text}` on the guest console within {:.0} s; console tail:\n{}",
                    timeout.as_secs_f64(),
                    self.console_tail(30)
                )));
            }
            if !self.is_running() {
                return Err(Error::Launch(format!(
                    "QEMU exited before `{text}`; console tail:\n{}\nQEMU said:\n{}",
                    self.console_tail(30),
                    read_tail(&self.dir.join("qemu.log"), 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether QEMU still runs.
    pub fn is_running(&self) -> bool {
        process_alive(self.pid())
    }

    /// The hypervisor interface (QMP).
    pub fn hv(&self) -> &QmpHypervisor {
        &self.hv
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// The directory with its sockets and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unix socket of the guest's ttyS1 (the agent).
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// The QMP socket (already connected to by [`QemuVm::hv`]; QEMU serves one client).
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// A second QMP socket, free for another client.
    pub fn extra_qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp-extra.sock")
    }

    /// Everything the guest wrote to ttyS0.
    pub fn console(&self) -> String {
        std::fs::read(self.dir.join("console.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the console.
    pub fn console_tail(&self, lines: usize) -> String {
        read_tail(&self.dir.join("console.log"), lines)
    }

    /// Kills QEMU now (also done on drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

pub(crate) fn read_tail(path: &Path, lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let mut b = Vec::new();
        let _ = f.read_to_end(&mut b);
        s = String::from_utf8_lossy(&b).into_owned();
    }
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
