//! Shared pieces of the end-to-end tests: boot a guest from the built images, talk to
//! its agent, read its RAM the simplest way.
//!
//! Every test boots its own QEMU; `cargo nextest` runs each test in its own process.
//! A guest is killed when its [`Guest`] drops, and with its starting thread.

use std::time::Duration;

use vmscope_agent::Client;
use vmscope_hv::qemu::{GuestImages, GuestKernel, QemuConfig, QemuVm};
use vmscope_mem::PhysMem;

/// A booted guest and a connection to its agent.
#[allow(missing_debug_implementations)]
pub struct Guest {
    /// The agent (command channel); ground truth comes through it.
    pub agent: Client,
    /// The kernel it runs.
    pub kernel: GuestKernel,
    /// QEMU (dropped last: fields drop in order).
    pub vm: QemuVm,
}

/// The image catalog; panics with the fix when images are missing.
pub fn images() -> GuestImages {
    GuestImages::locate().unwrap_or_else(|e| panic!("{e}"))
}

/// Boots kernel `id` (`6.1`, `6.12`) after `tweak` adjusts the configuration.
pub fn boot_with(id: &str, tweak: impl FnOnce(&mut QemuConfig)) -> Guest {
    let kernel = images().kernel(id).unwrap_or_else(|e| panic!("{e}")).clone();
    let mut cfg = kernel.qemu_config();
    tweak(&mut cfg);
    let vm = QemuVm::launch(cfg).unwrap_or_else(|e| panic!("booting linux-{id}: {e}"));
    let agent = Client::connect(vm.agent_socket(), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("agent of linux-{id}: {e}\nconsole:\n{}", vm.console_tail(20)));
    Guest { agent, kernel, vm }
}

/// Boots kernel `id` with the defaults (1 GiB, 2 vCPUs, KASLR on).
pub fn boot(id: &str) -> Guest {
    boot_with(id, |_| {})
}

impl Guest {
    /// Runs a shell line in the guest; panics (with stderr) unless it exits 0.
    pub fn sh(&mut self, line: &str) -> String {
        self.agent.sh(line).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Guest RAM through the QEMU process's memfd (pread: touches nothing).
    pub fn ram(&self) -> vmscope_read::Pread {
        let map = vmscope_hv::Hypervisor::memory_map(self.vm.hv()).expect("memory map over QMP");
        let loc = vmscope_hv::RamLocation::qemu(self.vm.pid(), map).expect("QEMU's RAM backing");
        vmscope_read::Pread::open(loc).expect("the RAM memfd of QEMU")
    }
}

/// Every `Linux version ...\n` string followed by a NUL in guest RAM.
pub fn find_banners(mem: &impl PhysMem) -> Vec<String> {
    const NEEDLE: &[u8] = b"Linux version ";
    const CHUNK: u64 = 16 << 20;
    let mut found = Vec::new();
    for r in mem.memory_map().regions() {
        let mut at = 0;
        while at < r.size {
            // Overlap chunks so a banner on a boundary is seen whole.
            let len = (r.size - at).min(CHUNK + 512);
            let mut buf = vec![0u8; len as usize];
            if mem.read(r.gpa.checked_add(at).expect("in region"), &mut buf).is_ok() {
                for s in memchr::memmem::find_iter(&buf, NEEDLE) {
                    if s as u64 >= CHUNK && at + CHUNK < r.size {
                        break; // the next chunk sees it
                    }
                    let tail = &buf[s..(s + 512).min(buf.len())];
                    if let Some(nl) = tail.iter().position(|&b| b == b'\n')
                        && tail.get(nl + 1) == Some(&0)
                        && tail[..nl].iter().all(|b| b.is_ascii_graphic() || *b == b' ')
                    {
                        found.push(String::from_utf8_lossy(&tail[..=nl]).into_owned());
                    }
                }
            }
            at += CHUNK;
        }
    }
    found
}

pub use vmscope_hv::qemu::process_alive;
