//! The machine: a KVM VM with in-kernel irqchip and PIT, guest RAM slots, the port-I/O
//! devices, vCPU threads, pause/resume and the dirty log.

use std::collections::BTreeSet;
use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VmFd};
use vm_superio::Serial;
use vmm_sys_util::eventfd::EventFd;
use vmscope_hv::VcpuRegisters;

use crate::boot::{self, BootSpec};
use crate::devices::Action;
use crate::devices::i8042::I8042;
use crate::devices::serial::{EventFdTrigger, SerialOut, Uart};
use crate::layout::*;
use crate::memory::{Backing, GuestRam};
use crate::vcpu::{self, ExitReason, RunControl};
use crate::{Error, Result, regs};

/// Everything needed to build a machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// What to boot.
    pub boot: BootSpec,
    /// Bytes of RAM.
    pub ram_size: u64,
    /// RAM backing.
    pub backing: Backing,
    /// ttyS0 output.
    pub serial0: SerialOut,
    /// ttyS1 output.
    pub serial1: SerialOut,
}

/// The port-I/O devices.
#[derive(Debug)]
pub struct Devices {
    /// ttyS0.
    pub com1: Uart<EventFdTrigger>,
    /// ttyS1.
    pub com2: Uart<EventFdTrigger>,
    /// The keyboard controller (reset).
    pub i8042: I8042,
}

impl Devices {
    /// A port write from the guest.
    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> Action {
        let Some(&value) = data.first() else {
            return Action::None;
        };
        match port {
            COM1_PORT..=0x3ff => {
                let _ = self.com1.write((port - COM1_PORT) as u8, value);
                Action::None
            }
            COM2_PORT..=0x2ff => {
                let _ = self.com2.write((port - COM2_PORT) as u8, value);
                Action::None
            }
            I8042_DATA_PORT | I8042_COMMAND_PORT => self.i8042.write((port - I8042_DATA_PORT) as u8, value),
            DEBUG_EXIT_PORT => Action::Exit(value),
            _ => Action::None,
        }
    }

    /// A port read from the guest; unclaimed ports read as all ones.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        let v = match port {
            COM1_PORT..=0x3ff => self.com1.read((port - COM1_PORT) as u8),
            COM2_PORT..=0x2ff => self.com2.read((port - COM2_PORT) as u8),
            I8042_DATA_PORT | I8042_COMMAND_PORT => self.i8042.read((port - I8042_DATA_PORT) as u8),
            _ => 0xff,
        };
        data.fill(v);
    }
}

#[derive(Debug, Default)]
struct DirtyState {
    on: bool,
    /// Pages the VMM itself wrote while logging; ORed into the next fetch.
    vmm_written: BTreeSet<u64>,
}

/// A running (or paused) VM.
#[derive(Debug)]
pub struct Machine {
    vm: VmFd,
    /// Guest RAM.
    pub ram: GuestRam,
    /// Number of vCPUs.
    pub vcpus: usize,
    /// Run state shared with the vCPU threads.
    pub ctl: Arc<RunControl>,
    /// The devices (shared with the vCPU threads and the ttyS1 socket).
    pub devices: Arc<Mutex<Devices>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    dirty: Mutex<DirtyState>,
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

impl Machine {
    /// Creates the VM, loads the guest and starts the vCPUs.
    pub fn start(cfg: MachineConfig) -> Result<Arc<Self>> {
        let vcpus = usize::from(cfg.boot.vcpus);
        if vcpus == 0 || vcpus > 32 {
            return Err(Error::Setup(format!("{vcpus} vCPUs: between 1 and 32 are supported")));
        }
        let kvm_sys = Kvm::new().map_err(kvm("opening /dev/kvm"))?;
        let vm = kvm_sys.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
        vm.set_tss_address(KVM_TSS_ADDRESS as usize).map_err(kvm("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config { flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(kvm("KVM_CREATE_PIT2"))?;

        let ram = GuestRam::new(cfg.ram_size, cfg.backing)?;
        for (slot, r) in ram.map.regions().iter().enumerate() {
            let region = slot_region(slot as u32, r.gpa.raw(), r.size, ram.hva + r.offset, 0);
            // SAFETY: the host range [hva + offset, + size) is part of the RAM mapping,
            // which stays mapped for the life of the process, so KVM never sees it go.
            unsafe { vm.set_user_memory_region(region) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let entry = boot::load(&ram, &cfg.boot)?;

        let com1_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::io("eventfd", e))?;
        let com2_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::io("eventfd", e))?;
        vm.register_irqfd(&com1_evt, COM1_IRQ).map_err(kvm("KVM_IRQFD (ttyS0)"))?;
        vm.register_irqfd(&com2_evt, COM2_IRQ).map_err(kvm("KVM_IRQFD (ttyS1)"))?;
        let devices = Arc::new(Mutex::new(Devices {
            com1: Serial::new(EventFdTrigger(com1_evt), cfg.serial0),
            com2: Serial::new(EventFdTrigger(com2_evt), cfg.serial1),
            i8042: I8042,
        }));

        let cpuid = kvm_sys.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
        let mut fds = Vec::new();
        for i in 0..vcpus {
            let fd = vm.create_vcpu(i as u64).map_err(kvm("KVM_CREATE_VCPU"))?;
            fd.set_cpuid2(&regs::vcpu_cpuid(&cpuid, i as u8, vcpus as u8)).map_err(kvm("KVM_SET_CPUID2"))?;
            regs::setup_common(&fd)?;
            if i == 0 {
                regs::setup_boot_vcpu(&fd, entry)?;
            }
            // Application processors wait for INIT/SIPI in the in-kernel LAPIC.
            fds.push(fd);
        }

        vcpu::install_kick_handler().map_err(|e| Error::io("installing the vCPU kick handler", e))?;
        let ctl = Arc::new(RunControl::default());
        {
            let mut st = ctl.lock();
            st.alive = vcpus;
            st.regs = vec![None; vcpus];
        }
        let machine = Arc::new(Self {
            vm,
            ram,
            vcpus,
            ctl: ctl.clone(),
            devices: devices.clone(),
            threads: Mutex::new(Vec::new()),
            dirty: Mutex::new(DirtyState::default()),
        });
        let mut threads = lock(&machine.threads);
        for (i, fd) in fds.into_iter().enumerate() {
            let (ctl, devices) = (ctl.clone(), devices.clone());
            let t = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || vcpu::run_vcpu(fd, i, ctl, devices))
                .map_err(|e| Error::io("spawning a vCPU thread", e))?;
            threads.push(t);
        }
        drop(threads);
        Ok(machine)
    }

    fn kick_all(&self) {
        for t in lock(&self.threads).iter() {
            // SAFETY: the pthread_t belongs to a JoinHandle we still hold, so the thread
            // is not joined and its id is valid; the signal's handler is installed.
            unsafe { libc::pthread_kill(t.as_pthread_t(), vcpu::kick_signal()) };
        }
    }

    /// Parks every vCPU; returns once none runs, and whether the guest ran before
    /// (so that a caller resumes only what it paused). Idempotent.
    ///
    /// A pause right after a resume usually finds the vCPUs still parked (they had
    /// not been scheduled yet) and returns at once; they never ran in between.
    pub fn pause(&self) -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut st = self.ctl.lock();
        let was_running = !st.pause_requested && st.exit.is_none();
        st.pause_requested = true;
        while st.parked < st.alive && st.exit.is_none() {
            drop(st);
            // Again on every round: a vCPU thread that is not on a core takes the
            // signal only once it is scheduled; another kick costs nothing.
            self.kick_all();
            st = self.ctl.lock();
            if st.parked >= st.alive {
                break;
            }
            st = self.ctl.wait_timeout(&self.ctl.stopped_cv, st, Duration::from_micros(50));
            if Instant::now() > deadline {
                st.pause_requested = false;
                self.ctl.run_cv.notify_all();
                return Err(Error::Control("vCPUs did not stop within 10 s".into()));
            }
        }
        Ok(was_running)
    }

    /// Lets the vCPUs run again.
    pub fn resume(&self) {
        self.resume_later().wake();
    }

    /// Lifts the pause (from now on the VMM reports the guest as running and a
    /// `pause` has to stop it again) but wakes the parked vCPU threads only when the
    /// returned [`Wake`] is used or dropped. The control socket replies in between:
    /// woken vCPU threads are busy threads that could otherwise take the cores from
    /// the thread writing the reply and from the client reading it.
    pub fn resume_later(&self) -> Wake<'_> {
        self.ctl.lock().pause_requested = false;
        Wake(Some(&self.ctl))
    }

    /// Whether a pause is in effect.
    pub fn is_paused(&self) -> bool {
        self.ctl.lock().pause_requested
    }

    /// Registers of vCPU `index`, pausing the VM briefly if it runs.
    pub fn vcpu_registers(&self, index: usize) -> Result<VcpuRegisters> {
        if index >= self.vcpus {
            return Err(Error::Control(format!("no vCPU {index}: there are {}", self.vcpus)));
        }
        let was_paused = self.is_paused();
        self.pause()?;
        let regs = self.ctl.lock().regs[index].clone();
        if !was_paused {
            self.resume();
        }
        regs.ok_or_else(|| Error::Control(format!("vCPU {index} has stopped for good")))
    }

    /// Blocks until the guest stops for good; returns why.
    pub fn wait_exit(&self) -> ExitReason {
        let mut st = self.ctl.lock();
        while st.exit.is_none() {
            st = self.ctl.wait(&self.ctl.exit_cv, st);
        }
        st.exit.clone().expect("loop ends only once exit is set")
    }

    /// Stops the guest for good and joins the vCPU threads.
    pub fn shutdown(&self, reason: ExitReason) {
        self.ctl.set_exit(reason);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.kick_all();
            let st = self.ctl.lock();
            if st.alive == 0 || Instant::now() > deadline {
                break;
            }
            drop(self.ctl.wait_timeout(&self.ctl.stopped_cv, st, Duration::from_millis(2)));
        }
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }

    fn set_logging(&self, on: bool) -> Result<()> {
        let flags = if on { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
        for (slot, r) in self.ram.map.regions().iter().enumerate() {
            let region = slot_region(slot as u32, r.gpa.raw(), r.size, self.ram.hva + r.offset, flags);
            // SAFETY: same slot, same host range as at start; only the flags change.
            unsafe { self.vm.set_user_memory_region(region) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }

    /// Starts dirty logging (a no-op if it is on).
    pub fn dirty_log_start(&self) -> Result<()> {
        let mut d = lock(&self.dirty);
        if !d.on {
            self.set_logging(true)?;
            d.on = true;
            d.vmm_written.clear();
        }
        Ok(())
    }

    /// Pages written since the start or the last fetch (sorted PFNs); clears the log.
    /// This is the only caller of KVM_GET_DIRTY_LOG.
    pub fn dirty_log_fetch(&self) -> Result<Vec<u64>> {
        let mut d = lock(&self.dirty);
        if !d.on {
            return Err(Error::Control("dirty logging is not on (dirty-log-start)".into()));
        }
        let mut pfns: BTreeSet<u64> = std::mem::take(&mut d.vmm_written);
        for (slot, r) in self.ram.map.regions().iter().enumerate() {
            let bitmap = self.vm.get_dirty_log(slot as u32, r.size as usize).map_err(kvm("KVM_GET_DIRTY_LOG"))?;
            let first = r.gpa.raw() >> 12;
            for (w, word) in bitmap.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let b = u64::from(bits.trailing_zeros());
                    pfns.insert(first + w as u64 * 64 + b);
                    bits &= bits - 1;
                }
            }
        }
        Ok(pfns.into_iter().collect())
    }

    /// Stops dirty logging.
    pub fn dirty_log_stop(&self) -> Result<()> {
        let mut d = lock(&self.dirty);
        if d.on {
            self.set_logging(false)?;
            d.on = false;
            d.vmm_written.clear();
        }
        Ok(())
    }

    /// Records that the VMM itself wrote `[gpa, gpa + len)`, so the next fetch reports
    /// it (KVM logs only guest writes). Every VMM write to guest RAM after boot must
    /// call this.
    pub fn note_vmm_write(&self, gpa: u64, len: u64) {
        let mut d = lock(&self.dirty);
        if d.on && len > 0 {
            for pfn in (gpa >> 12)..=((gpa + len - 1) >> 12) {
                d.vmm_written.insert(pfn);
            }
        }
    }
}

/// Wakes the vCPU threads parked by a pause that [`Machine::resume_later`] lifted,
/// when used or dropped. Waking them while a pause is requested again is harmless:
/// they look, and park on.
#[derive(Debug)]
#[must_use = "the vCPUs run again only once this is used or dropped"]
pub struct Wake<'m>(Option<&'m RunControl>);

impl Wake<'_> {
    /// Wakes the vCPU threads now.
    pub fn wake(self) {
        drop(self);
    }
}

impl Drop for Wake<'_> {
    fn drop(&mut self) {
        // No lock needed: the pause was lifted under the lock, so a vCPU thread either
        // sees that or is already waiting on run_cv.
        if let Some(ctl) = self.0.take() {
            ctl.run_cv.notify_all();
        }
    }
}

fn slot_region(slot: u32, gpa: u64, size: u64, hva: u64, flags: u32) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region { slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
