//! A booted guest with its agent, and small helpers the end-to-end tests share.

use std::time::{Duration, Instant};

use vmscope_agent::Client;
use vmscope_hv::RamLocation;
use vmscope_mem::{FileMem, PhysMem};

use crate::{GuestImages, GuestKernel, QemuConfig, QemuVm};

/// A booted guest and a connection to its agent. Tests panic on set-up failures, so
/// the helpers here do too, with the fix in the message.
#[allow(missing_debug_implementations)]
pub struct Guest {
    /// The agent (command channel); ground truth comes through it.
    pub agent: Client,
    /// The kernel it runs.
    pub kernel: GuestKernel,
    /// QEMU (dropped last: fields drop in order).
    pub vm: QemuVm,
}

/// Boots kernel `id` (`6.1`, `6.12`) after `tweak` adjusts the configuration.
pub fn boot_with(id: &str, tweak: impl FnOnce(&mut QemuConfig)) -> Guest {
    let images = GuestImages::locate().unwrap_or_else(|e| panic!("{e}"));
    let kernel = images.kernel(id).unwrap_or_else(|e| panic!("{e}")).clone();
    let mut cfg = kernel.qemu_config();
    tweak(&mut cfg);
    let vm = QemuVm::launch(cfg).unwrap_or_else(|e| panic!("booting linux-{id}: {e}"));
    let agent = Client::connect(vm.agent_socket(), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("agent of linux-{id}: {e}\nconsole:\n{}", vm.console_tail(20)));
    Guest { agent, kernel, vm }
}

/// Boots kernel `id` with the workload image and a scratch disk attached (see
/// [`crate::workloads`]), after `tweak`; panics unless the guest mounted both.
pub fn boot_with_workloads(id: &str, tweak: impl FnOnce(&mut QemuConfig)) -> Guest {
    let images = GuestImages::locate().unwrap_or_else(|e| panic!("{e}"));
    let disks = images.workload_disks().unwrap_or_else(|e| panic!("{e}"));
    let mut g = boot_with(id, |c| {
        c.disks = disks;
        tweak(c);
    });
    let mounts = g.sh("cat /proc/mounts");
    assert!(
        mounts.contains(" /mnt/w ext4 ro") && mounts.contains(" /mnt/w/scratch ext4 rw"),
        "the guest did not mount the workload and scratch disks:\n{mounts}\nconsole:\n{}",
        g.vm.console_tail(30)
    );
    g
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

    /// Where QEMU keeps the guest's RAM (its layout over QMP).
    pub fn ram_location(&self) -> RamLocation {
        let layout = self.vm.hv().ram_layout().expect("RAM layout over QMP");
        RamLocation::qemu(self.vm.pid(), &layout).expect("QEMU's RAM blocks")
    }

    /// Guest RAM through the QEMU process's memfd (pread: touches nothing).
    pub fn ram(&self) -> FileMem {
        self.ram_location().open_files().expect("the RAM memfd of QEMU")
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
