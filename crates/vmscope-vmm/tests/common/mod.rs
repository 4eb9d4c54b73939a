//! Shared by the end-to-end tests: images, a VMM child process killed on drop, guest
//! memory readers, and the test kernel's manifest, lists and journal.
#![allow(dead_code)]

pub mod testkernel;

use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmscope_hv::RamLocation;
use vmscope_hv::builtin::BuiltinVmm;
use vmscope_mem::{FileMem, Hva, MemoryMap};
use vmscope_read::ProcMem;
use vmscope_vmm::VmmChild;

/// The test kernel, from the guest image catalog; a panic tells how to build it.
pub fn testkernel_image() -> PathBuf {
    vmscope_testbed::GuestImages::locate().and_then(|i| i.testkernel()).unwrap_or_else(|e| panic!("{e}"))
}

/// A Debian kernel (`6.1`, `6.12`) from the guest image catalog.
pub fn kernel(id: &str) -> vmscope_testbed::GuestKernel {
    let images = vmscope_testbed::GuestImages::locate().unwrap_or_else(|e| panic!("{e}"));
    images.kernel(id).unwrap_or_else(|e| panic!("{e}")).clone()
}

/// A `vmscope-vmm` child process ([`VmmChild`]) that panics instead of returning
/// errors, as a test wants.
pub struct Vm(VmmChild);

impl Vm {
    /// Starts `vmscope-vmm --kernel kernel` with `extra` arguments.
    pub fn start(kernel: &Path, extra: &[&str]) -> Vm {
        let binary = Path::new(env!("CARGO_BIN_EXE_vmscope-vmm"));
        Vm(VmmChild::spawn(binary, kernel, extra).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The test kernel on `vcpus` vCPUs with 2 GiB (so its direct map has a 1 GiB
    /// page) and `backing`.
    pub fn testkernel(vcpus: u8, backing: &str, cmdline: &str) -> Vm {
        let v = vcpus.to_string();
        Vm::start(&testkernel_image(), &["--vcpus", &v, "--memory", "2G", "--backing", backing, "--cmdline", cmdline])
    }

    /// Connects to the control socket, waiting up to 10 s for it to appear.
    pub fn client(&mut self) -> BuiltinVmm {
        self.0.connect(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Vm {
    /// A failing test shows what the VMM said: its log goes with its directory.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("vmscope-vmm: {}", self.0.log_tail());
        }
    }
}

impl Deref for Vm {
    type Target = VmmChild;
    fn deref(&self) -> &VmmChild {
        &self.0
    }
}

impl DerefMut for Vm {
    fn deref_mut(&mut self) -> &mut VmmChild {
        &mut self.0
    }
}

/// Guest RAM read with pread from a file laid out by backing offset: the VMM's memfd
/// (/proc/PID/fd/N), a memfd copy, or a snapshot file.
pub fn file_mem(path: &Path, map: MemoryMap) -> FileMem {
    let file = File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    FileMem::new(file, map)
}

/// Guest RAM inside another process (a fork snapshot): RAM at `hva` in process `pid`,
/// read through /proc/PID/mem.
pub fn proc_mem(pid: u32, hva: u64, map: MemoryMap) -> ProcMem {
    let loc = RamLocation::single(pid, map, Hva::new(hva), None);
    ProcMem::open(loc).unwrap_or_else(|e| panic!("/proc/{pid}/mem: {e}"))
}

/// The live RAM of `vm` through its memfd, plus its control client.
pub fn live_memfd(vm: &mut Vm) -> (BuiltinVmm, FileMem) {
    let c = vm.client();
    let info = c.memory_map_info().expect("memory-map");
    let path = info.backing.path.clone().expect("memfd backing has a path");
    let map = MemoryMap::new(info.regions).expect("valid map");
    (c, file_mem(Path::new(&path), map))
}

/// Whether the CPU has hardware virtualization (vmx/svm), so Linux itself can run
/// under KVM here.
pub fn has_hw_virt() -> bool {
    vmscope_testbed::Accel::detect() == vmscope_testbed::Accel::Kvm
}
