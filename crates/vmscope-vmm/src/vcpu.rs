//! vCPU threads: the KVM_RUN loop, port I/O dispatch, and parking on pause.
//!
//! Pausing: the controller sets `pause_requested` and sends [`kick_signal`] to every
//! vCPU thread. The handler sets `immediate_exit` in that thread's `kvm_run`, so
//! KVM_RUN returns EINTR whether the signal lands inside KVM_RUN or just before it;
//! the thread then records its registers and parks on a condition variable.
//!
//! Each kind of waiter has its own condition variable (parked vCPUs, the controller
//! waiting for them, the main thread waiting for the end), so a pause or a resume
//! wakes only the threads it concerns: on a small host every needless wakeup is a
//! thread that has to win a core back from busy vCPUs, which costs up to a
//! scheduler tick.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmscope_hv::VcpuRegisters;

use crate::devices::Action;
use crate::machine::Devices;
use crate::regs::read_registers;

/// Why the guest stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// i8042 reset.
    Reset,
    /// Triple fault or KVM_SYSTEM_EVENT shutdown.
    Shutdown,
    /// The debug-exit port got this value.
    DebugExit(u8),
    /// A `quit` request or a signal to the VMM.
    Quit,
    /// KVM could not go on (internal error, failed entry, ioctl error).
    Error(String),
}

impl ExitReason {
    /// The VMM's process exit status for this reason.
    pub fn status(&self) -> i32 {
        match self {
            ExitReason::Reset | ExitReason::Shutdown | ExitReason::Quit => 0,
            ExitReason::DebugExit(v) => i32::from(*v),
            ExitReason::Error(_) => 1,
        }
    }

    /// A short description (`reset`, `shutdown`, `error: ...`).
    pub fn describe(&self) -> String {
        match self {
            ExitReason::Reset => "reset".into(),
            ExitReason::Shutdown => "shutdown".into(),
            ExitReason::DebugExit(v) => format!("debug-exit {v}"),
            ExitReason::Quit => "quit".into(),
            ExitReason::Error(e) => format!("error: {e}"),
        }
    }
}

/// State shared by the vCPU threads and the controller.
#[derive(Debug, Default)]
pub struct RunState {
    /// The controller wants every vCPU parked.
    pub pause_requested: bool,
    /// vCPUs currently parked.
    pub parked: usize,
    /// vCPU threads still alive.
    pub alive: usize,
    /// Set once the guest has stopped for good.
    pub exit: Option<ExitReason>,
    /// Registers of each parked vCPU, captured as it parked.
    pub regs: Vec<Option<VcpuRegisters>>,
}

/// [`RunState`] with its condition variables.
#[derive(Debug, Default)]
pub struct RunControl {
    state: Mutex<RunState>,
    /// Parked vCPUs wait here: signalled when the pause is lifted or the guest exits.
    pub run_cv: Condvar,
    /// The controller waits here: signalled when every live vCPU is parked, when a
    /// vCPU thread ends, and on exit.
    pub stopped_cv: Condvar,
    /// Signalled once, on exit.
    pub exit_cv: Condvar,
}

impl RunControl {
    /// Locks the state (a poisoned lock is still usable: the state stays consistent).
    pub fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the first exit reason and wakes everyone.
    pub fn set_exit(&self, reason: ExitReason) {
        let mut st = self.lock();
        if st.exit.is_none() {
            st.exit = Some(reason);
        }
        self.run_cv.notify_all();
        self.stopped_cv.notify_all();
        self.exit_cv.notify_all();
    }

    /// Waits on `cv` (one of ours) with the state's guard.
    pub fn wait<'a>(&self, cv: &Condvar, st: MutexGuard<'a, RunState>) -> MutexGuard<'a, RunState> {
        cv.wait(st).unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on `cv` (one of ours) with the state's guard, at most `timeout`.
    pub fn wait_timeout<'a>(
        &self,
        cv: &Condvar,
        st: MutexGuard<'a, RunState>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, RunState> {
        cv.wait_timeout(st, timeout).unwrap_or_else(|p| p.into_inner()).0
    }
}

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal that kicks a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    KVM_RUN.with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: `run` is this thread's own kvm_run mapping, set by `run_vcpu`
            // before any KVM_RUN and valid for as long as the VcpuFd lives (the thread
            // clears it before dropping the VcpuFd); immediate_exit is a plain u8 the
            // kernel reads on entry.
            unsafe { std::ptr::write_volatile(&mut (*run).immediate_exit, 1) };
        }
    });
}

/// Installs the kick handler (once per process).
pub fn install_kick_handler() -> std::io::Result<()> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), handle_kick)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// The body of vCPU thread `index`.
pub fn run_vcpu(mut vcpu: VcpuFd, index: usize, ctl: Arc<RunControl>, devices: Arc<Mutex<Devices>>) {
    KVM_RUN.with(|p| p.set(vcpu.get_kvm_run() as *mut kvm_run));
    yield_to_control();
    loop {
        if !park_if_requested(&vcpu, index, &ctl) {
            break;
        }
        let exit = match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                let action = lock(&devices).pio_write(port, data);
                match action {
                    Action::None => None,
                    Action::Reset => Some(ExitReason::Reset),
                    Action::Exit(v) => Some(ExitReason::DebugExit(v)),
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                lock(&devices).pio_read(port, data);
                None
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                data.fill(0xff);
                None
            }
            Ok(VcpuExit::MmioWrite(..)) | Ok(VcpuExit::Hlt) | Ok(VcpuExit::IrqWindowOpen) => None,
            Ok(VcpuExit::Shutdown) => {
                let (rip, cs) =
                    (vcpu.get_regs().map(|r| r.rip).unwrap_or(0), vcpu.get_sregs().map(|s| s.cs.selector).unwrap_or(0));
                eprintln!("vmscope-vmm: vCPU {index}: shutdown (triple fault?) at {cs:#x}:{rip:#x}");
                Some(ExitReason::Shutdown)
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => Some(ExitReason::Reset),
                _ => Some(ExitReason::Shutdown),
            },
            Ok(VcpuExit::InternalError) => {
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                Some(ExitReason::Error(format!("vCPU {index}: KVM internal error at rip {rip:#x}")))
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                Some(ExitReason::Error(format!("vCPU {index}: entry failed, reason {reason:#x} on cpu {cpu}")))
            }
            Ok(other) => Some(ExitReason::Error(format!("vCPU {index}: unexpected exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                None
            }
            Err(e) => Some(ExitReason::Error(format!("vCPU {index}: KVM_RUN: {e}"))),
        };
        if let Some(reason) = exit {
            ctl.set_exit(reason);
            break;
        }
    }
    KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
    let mut st = ctl.lock();
    st.alive -= 1;
    ctl.stopped_cv.notify_all();
}

/// Parks while a pause is requested. Returns false when the thread should end.
fn park_if_requested(vcpu: &VcpuFd, index: usize, ctl: &RunControl) -> bool {
    {
        let st = ctl.lock();
        if st.exit.is_some() {
            return false;
        }
        if !st.pause_requested {
            return true;
        }
    }
    // The register ioctls run without the lock, so that the other vCPUs and the
    // controller are not held up behind them. The vCPU is out of KVM_RUN, so the
    // registers are those of the stopped guest whatever happens meanwhile.
    let regs = read_registers(vcpu).ok();
    let mut st = ctl.lock();
    st.regs[index] = regs;
    st.parked += 1;
    if st.parked >= st.alive {
        ctl.stopped_cv.notify_all();
    }
    while st.pause_requested && st.exit.is_none() {
        st = ctl.wait(&ctl.run_cv, st);
    }
    st.parked -= 1;
    st.regs[index] = None;
    st.exit.is_none()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Niceness of the vCPU threads: below the control thread and the introspector, so
/// that when the vCPUs keep every core busy a pause or resume request — and the
/// client waiting for its reply — gets a core at once instead of at the end of a
/// vCPU's slice (a scheduler tick, 4 ms here). Measured with `vmscope-lab
/// --experiment pause --hypervisor builtin` on 2 vCPUs of a 2-core host: halting
/// passes went from 1,250–5,500/s at nice 0 to 6,600–10,600/s, halt-map and
/// halt-read now within 5% of each other (0.5–0.7 before). `SCHED_IDLE` did no
/// better and can starve the guest on a busy host; nice 19 did worse.
pub const VCPU_NICE: i32 = 10;

/// Lowers this (vCPU) thread's priority to [`VCPU_NICE`]; raising niceness needs no
/// privilege. On failure the thread runs at the default priority.
fn yield_to_control() {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // SAFETY: setpriority reads its three integer arguments only; PRIO_PROCESS with a
    // thread id applies to that thread alone (Linux).
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, VCPU_NICE) };
}
