//! A guest that a real libvirtd runs: the project's kernel and initramfs as a
//! transient QEMU domain (`virsh create`), destroyed on drop. This is how a libvirt
//! user's VM looks to vmscope: libvirt owns QEMU's monitor, RAM is private unless the
//! domain asks for a shared memfd, and serial port 1 is a unix socket for the agent.
//!
//! libvirtd runs here as root without systemd (see PLATFORM.md): [`LibvirtDomain::start`]
//! starts `virtlogd` and `libvirtd` itself when they do not answer. Where that cannot
//! work (not root, libvirt not installed) it fails with [`Error::Unavailable`], whose
//! message a test prints as `SKIPPED:`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::qemu::read_tail;
use crate::{Error, GuestKernel, READY_MARKER, Result};

/// The system daemon's URI: the tests run as root.
pub const URI: &str = "qemu:///system";

/// Where libvirt's QEMU (user libvirt-qemu) may read a kernel and write sockets.
const IMAGES: &str = "/var/lib/libvirt/images";

/// How the domain's RAM is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// libvirt's default: private anonymous memory (`memory-backend-ram`).
    Default,
    /// `<memoryBacking><source type='memfd'/><access mode='shared'/>`: a shared memfd.
    SharedMemfd,
}

/// A running transient libvirt domain; destroyed, with its files, on drop.
#[derive(Debug)]
pub struct LibvirtDomain {
    name: String,
    dir: PathBuf,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl LibvirtDomain {
    /// Boots `kernel` as a domain of `mib` MiB, one vCPU (multi-threaded TCG oopses
    /// 6.12 at boot now and then), RAM as `memory` says; returns once the guest's
    /// agent is up.
    pub fn start(kernel: &GuestKernel, memory: Memory, mib: u64) -> Result<Self> {
        ensure_daemons()?;
        let name = format!("vmscope-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = Path::new(IMAGES).join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // The domain owns its files from here: dropping it removes them.
        let d = LibvirtDomain { name, dir };
        for (from, to) in [(&kernel.bzimage, "bzImage"), (&kernel.initramfs, "initramfs.cpio")] {
            std::fs::copy(from, d.dir.join(to)).map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
        }
        let xml = d.dir.join("domain.xml");
        std::fs::write(&xml, d.xml(memory, mib)).map_err(|e| Error::io("writing the domain XML", e))?;
        virsh(&["create", &xml.display().to_string()])?;
        d.wait_ready(Duration::from_secs(120))?;
        Ok(d)
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The unix socket of serial port 1, where the guest's agent listens.
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// The guest's console (serial port 0).
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    fn xml(&self, memory: Memory, mib: u64) -> String {
        let backing = match memory {
            Memory::Default => "",
            Memory::SharedMemfd => "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>",
        };
        let d = self.dir.display();
        format!(
            "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mib}</memory>
  <vcpu>1</vcpu>
  {backing}
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{d}/bzImage</kernel>
    <initrd>{d}/initramfs.cpio</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 no5lvl</cmdline>
  </os>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='{d}/console.log'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='{d}/agent.sock'/><target port='1'/></serial>
  </devices>
</domain>
",
            name = self.name
        )
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let t = Instant::now();
        loop {
            if std::fs::read_to_string(self.console()).unwrap_or_default().contains(READY_MARKER) {
                return Ok(());
            }
            if t.elapsed() > timeout {
                return Err(Error::Launch(format!(
                    "libvirt domain {} never became ready in {} s:\n{}",
                    self.name,
                    timeout.as_secs(),
                    read_tail(&self.console(), 40)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LibvirtDomain {
    fn drop(&mut self) {
        // A transient domain disappears when destroyed; it may be gone already.
        let _ = virsh(&["destroy", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `virsh -c URI ARGS`; its standard output.
fn virsh(args: &[&str]) -> Result<String> {
    let out = Command::new("virsh")
        .args(["-q", "-c", URI])
        .args(args)
        .output()
        .map_err(|e| Error::Unavailable(format!("cannot run virsh ({e}): apt-get install libvirt-clients")))?;
    if !out.status.success() {
        return Err(Error::Launch(format!(
            "virsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes sure libvirtd answers on [`URI`], starting `virtlogd` and `libvirtd` as
/// daemons if it does not (they outlive the test, as a system's would).
fn ensure_daemons() -> Result<()> {
    if virsh(&["version"]).is_ok() {
        kvm_group_access();
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Unavailable("libvirtd does not answer on qemu:///system and this is not root".into()));
    }
    kvm_group_access();
    for daemon in ["virtlogd", "libvirtd"] {
        let st = Command::new(daemon).arg("-d").status().map_err(|e| {
            Error::Unavailable(format!("cannot start {daemon} ({e}): apt-get install libvirt-daemon-system"))
        })?;
        if !st.success() {
            return Err(Error::Launch(format!("{daemon} -d failed: {st}")));
        }
    }
    let t = Instant::now();
    while let Err(e) = virsh(&["version"]) {
        if t.elapsed() > Duration::from_secs(60) {
            return Err(Error::Launch(format!("libvirtd started but does not answer: {e}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Debian's udev rule gives `/dev/kvm` to group `kvm`, mode 0660, and libvirt checks
/// KVM as its QEMU user (libvirt-qemu, in group kvm). A host without udev leaves the
/// node root-only: libvirt then finds its QEMU capability cache outdated at every
/// domain start ("KVM was enabled when probing, but it is not available now") and
/// probes QEMU again for about a minute. Apply the rule as udev would; nothing else
/// changes (the domains are TCG).
fn kvm_group_access() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let node = Path::new("/dev/kvm");
    let Some(gid) = std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|g| g.lines().find_map(|l| l.strip_prefix("kvm:")?.split(':').nth(1)?.parse::<u32>().ok()))
    else {
        return;
    };
    if node.exists() && chown(node, None, Some(gid)).is_ok() {
        let _ = std::fs::set_permissions(node, std::fs::Permissions::from_mode(0o660));
    }
}
