//! `vmscope-vmm`: boot a kernel on KVM with a control socket. See the crate docs.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Parser;
use vmscope_vmm::boot::BootProtocol;
use vmscope_vmm::control::{self, Controller};
use vmscope_vmm::devices::serial::SerialOut;
use vmscope_vmm::machine::Devices;
use vmscope_vmm::memory::Backing;
use vmscope_vmm::vcpu::ExitReason;
use vmscope_vmm::{BootSpec, Machine, MachineConfig};

/// A minimal KVM VMM for introspection tests and the vmscope lab.
///
/// Boots an ELF kernel (vmlinux, or the vmscope test kernel) or a bzImage through the
/// 64-bit boot protocol, or a vmlinux through its PVH entry. Ends when the guest resets
/// (i8042), triple-faults, writes the debug-exit port 0x501 (exit status = the value
/// written), on a `quit` request, or on SIGTERM/SIGINT/SIGHUP; the exit status is 0
/// except for a debug exit or an error (1).
///
/// Control protocol (--control): one JSON object per line each way, e.g.
/// {"cmd":"pause"} -> {"ok":true,"result":{"was_running":true}}. Commands: pause, resume, status,
/// memory-map, vcpu-registers {vcpu}, dirty-log-start, dirty-log-fetch,
/// dirty-log-stop, snapshot {path?}, snapshot-release {id}, quit. Full reference with
/// an example session: crates/vmscope-vmm/README.md and the vmscope_hv::builtin docs.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Kernel image: an ELF (vmlinux, testkernel.elf) or a bzImage.
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,

    /// Initramfs (cpio, optionally compressed) loaded at the top of low RAM.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,

    /// Kernel command line.
    #[arg(long, value_name = "STRING", default_value = "console=ttyS0 reboot=k panic=-1")]
    cmdline: String,

    /// Entry protocol: `linux64` (Linux x86-64 boot protocol, ELF or bzImage) or `pvh`
    /// (32-bit PVH entry from the ELF note of a vmlinux built with CONFIG_PVH).
    #[arg(long, value_enum, default_value_t = BootProtocol::Linux64)]
    boot: BootProtocol,

    /// Number of vCPUs (1..=32); the MP table lists them all.
    #[arg(long, value_name = "N", default_value_t = 1)]
    vcpus: u8,

    /// Guest RAM size, with an optional K, M or G suffix (binary units).
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_size)]
    memory: u64,

    /// RAM backing: `memfd` (shared; other processes map or pread /proc/PID/fd/N) or
    /// `private` (anonymous; `snapshot` forks a copy-on-write child).
    #[arg(long, value_enum, default_value_t = Backing::Memfd)]
    backing: Backing,

    /// Where ttyS0 output goes: `stdout`, `none`, or a file path (created/truncated).
    #[arg(long, value_name = "stdout|none|PATH", default_value = "stdout")]
    serial0: String,

    /// Unix socket (mode 0600) for ttyS1: the VMM listens; one client at a time gets
    /// the port's output and feeds its input. Output is dropped while no client is
    /// connected.
    #[arg(long, value_name = "PATH")]
    serial1_socket: Option<PathBuf>,

    /// Unix socket (mode 0600) for the JSON-lines control protocol.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,

    /// Die with SIGKILL when the parent process exits (PR_SET_PDEATHSIG).
    #[arg(long)]
    die_with_parent: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|e| format!("bad size {s:?}: {e}"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} overflows"))
}

fn main() {
    let args = Args::parse();
    if args.die_with_parent {
        // SAFETY: prctl with an integer argument; no memory is passed.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    match run(args) {
        Ok(reason) => {
            eprintln!("vmscope-vmm: guest stopped: {}", reason.describe());
            std::process::exit(reason.status());
        }
        Err(e) => {
            eprintln!("vmscope-vmm: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> Result<ExitReason, Box<dyn std::error::Error>> {
    let stop_signals = block_stop_signals()?;
    let serial0 = match args.serial0.as_str() {
        "stdout" => SerialOut::Stdout,
        "none" => SerialOut::Sink,
        path => SerialOut::File(Arc::new(Mutex::new(
            std::fs::File::create(path).map_err(|e| format!("creating {path}: {e}"))?,
        ))),
    };
    let ttys1_client = Arc::new(Mutex::new(None));
    let serial1 = match &args.serial1_socket {
        Some(_) => SerialOut::Socket(ttys1_client.clone()),
        None => SerialOut::Sink,
    };
    let ttys1_listener = match &args.serial1_socket {
        Some(p) => Some(control::bind_private(p)?),
        None => None,
    };
    let machine = Machine::start(MachineConfig {
        boot: BootSpec {
            kernel: args.kernel,
            initrd: args.initrd,
            cmdline: args.cmdline,
            vcpus: args.vcpus,
            protocol: args.boot,
        },
        ram_size: args.memory,
        backing: args.backing,
        serial0,
        serial1,
    })?;
    if let Some(l) = ttys1_listener {
        serve_ttys1(l, ttys1_client, machine.devices.clone());
    }
    let controller = Controller::new(machine.clone());
    if let Some(p) = &args.control {
        control::listen(p, controller.clone())?;
    }
    {
        let machine = machine.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let mut sig = 0;
            // SAFETY: stop_signals is an initialised sigset; sig is a valid out pointer.
            unsafe { libc::sigwait(&stop_signals, &mut sig) };
            machine.ctl.set_exit(ExitReason::Quit);
        })?;
    }
    let reason = machine.wait_exit();
    machine.shutdown(reason.clone());
    controller.release_snapshots();
    for p in [&args.control, &args.serial1_socket].into_iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    Ok(reason)
}

/// Blocks SIGTERM, SIGINT and SIGHUP in every thread (they are inherited), so the
/// `signals` thread receives them with sigwait and shuts down cleanly.
fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it and
    // pthread_sigmask only reads it; return codes are checked.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Accepts ttyS1 clients one at a time: output goes to the newest client, its input
/// goes into the UART's receive FIFO.
fn serve_ttys1(listener: UnixListener, client: Arc<Mutex<Option<UnixStream>>>, devices: Arc<Mutex<Devices>>) {
    let _ = std::thread::Builder::new().name("ttyS1".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let Ok(reader) = stream.try_clone() else {
                continue;
            };
            *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
            let devices = devices.clone();
            let _ = std::thread::Builder::new().name("ttyS1-in".into()).spawn(move || {
                let mut reader = reader;
                let mut buf = [0u8; 256];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut pending = &buf[..n];
                    while !pending.is_empty() {
                        let taken = devices
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .com2
                            .enqueue_raw_bytes(pending)
                            .unwrap_or(0);
                        pending = &pending[taken..];
                        if taken == 0 {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                    }
                }
            });
        }
    });
}
