//! The guest images `cargo xtask images` builds, found through their manifest.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::qemu::{Disk, QemuConfig};

/// The virtio serial of the workload image; the guest mounts it at /mnt/w.
pub const WORKLOADS_SERIAL: &str = "vmscope-workloads";
use crate::{Error, Result};

/// One guest kernel with its initramfs.
#[derive(Debug, Clone, Deserialize)]
pub struct GuestKernel {
    /// `6.1`, `6.12`.
    pub id: String,
    /// The guest's `uname -r`.
    pub release: String,
    /// Debian package version.
    pub version: String,
    /// Absolute path of the bzImage.
    pub bzimage: PathBuf,
    /// Absolute path of the ELF vmlinux extracted from it.
    pub vmlinux: PathBuf,
    /// Absolute path of the kernel config.
    pub config: PathBuf,
    /// Absolute path of the initramfs.
    pub initramfs: PathBuf,
    /// Modules under /lib/modules in the initramfs, in load order.
    pub modules: Vec<String>,
}

impl GuestKernel {
    /// A QEMU configuration that boots this kernel with its initramfs.
    pub fn qemu_config(&self) -> QemuConfig {
        QemuConfig::new(&self.bzimage, Some(self.initramfs.clone()))
    }
}

#[derive(Deserialize)]
struct Manifest {
    kernels: Vec<GuestKernel>,
    #[serde(default)]
    workloads: Option<WorkloadsEntry>,
}

#[derive(Deserialize)]
struct WorkloadsEntry {
    image: PathBuf,
}

/// The image directory (`target/guest-images`) and what its manifest lists.
#[derive(Debug, Clone)]
pub struct GuestImages {
    /// The directory holding manifest.json.
    pub dir: PathBuf,
    /// The kernels, in manifest order.
    pub kernels: Vec<GuestKernel>,
    /// The workload disk image (absolute), if the images have one.
    pub workloads: Option<PathBuf>,
}

impl GuestImages {
    /// [`locate`](Self::locate) for a benchmark, which has nothing to measure without
    /// images: `None`, with a note saying why `what` is skipped.
    pub fn for_benchmark(what: &str) -> Option<Self> {
        Self::locate().inspect_err(|e| eprintln!("note: skipping the {what} benchmark: {e}")).ok()
    }

    /// Whether the images are there, for an end-to-end test that has nothing to run
    /// on without them: if not, it says so loudly (`SKIPPED: ...` on stderr) and the
    /// test returns.
    pub fn present_or_skip() -> bool {
        match Self::locate() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("SKIPPED: no guest images ({e}); set VMSCOPE_IMAGES or run `cargo xtask images`");
                false
            }
        }
    }

    /// `$VMSCOPE_IMAGES`, else `target/guest-images` in the first ancestor of the
    /// current directory that has one.
    pub fn locate() -> Result<Self> {
        if let Some(d) = std::env::var_os("VMSCOPE_IMAGES") {
            return Self::open(Path::new(&d));
        }
        let cwd = std::env::current_dir().map_err(|e| Error::io("current directory", e))?;
        for dir in cwd.ancestors() {
            let cand = dir.join("target/guest-images");
            if cand.join("manifest.json").exists() {
                return Self::open(&cand);
            }
        }
        Err(Error::Launch(format!(
            "no guest images found above {} (looked for target/guest-images/manifest.json): \
             run `cargo xtask images`, or set VMSCOPE_IMAGES",
            cwd.display()
        )))
    }

    /// Reads `dir/manifest.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::Launch(format!("{}: {e} (run `cargo xtask images`)", path.display())))?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Launch(format!("{}: {e} (rebuild with `cargo xtask images`)", path.display())))?;
        let kernels = m
            .kernels
            .into_iter()
            .map(|mut k| {
                for p in [&mut k.bzimage, &mut k.vmlinux, &mut k.config, &mut k.initramfs] {
                    *p = dir.join(&*p);
                }
                k
            })
            .collect();
        let workloads = m.workloads.map(|w| dir.join(w.image));
        Ok(Self { dir: dir.to_path_buf(), kernels, workloads })
    }

    /// The built-in VMM's test kernel, `testkernel/testkernel.elf`.
    pub fn testkernel(&self) -> Result<PathBuf> {
        let p = self.dir.join("testkernel/testkernel.elf");
        if p.exists() {
            Ok(p)
        } else {
            Err(Error::Launch(format!("{} is missing: run `cargo xtask images`", p.display())))
        }
    }

    /// The disks for workloads: the workload image (read-only, at /mnt/w in the guest)
    /// and a fresh 512 MiB scratch disk (at /mnt/w/scratch).
    pub fn workload_disks(&self) -> Result<Vec<Disk>> {
        let path = self.workloads.clone().ok_or_else(|| {
            Error::Launch(format!("{} has no workload image: run `cargo xtask images`", self.dir.display()))
        })?;
        Ok(vec![Disk::ReadOnly { path, serial: WORKLOADS_SERIAL.into() }, Disk::Scratch { size_mib: 512 }])
    }

    /// The kernel with id `id` (`6.1`, `6.12`).
    pub fn kernel(&self, id: &str) -> Result<&GuestKernel> {
        self.kernels.iter().find(|k| k.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.kernels.iter().map(|k| k.id.as_str()).collect();
            Error::Launch(format!("no guest kernel {id} in {} (have: {})", self.dir.display(), ids.join(", ")))
        })
    }
}
