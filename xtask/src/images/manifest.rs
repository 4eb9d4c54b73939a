//! `target/guest-images/manifest.json`: every artifact with its source and sha256.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FILE: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Hash of every build input that is not a package (recipe code, init script,
    /// agent binary): a change rebuilds the derived images.
    pub recipe: String,
    pub packages: Vec<Package>,
    pub kernels: Vec<Kernel>,
    pub artifacts: Vec<Artifact>,
    /// The workload disk image, if built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Workloads>,
}

/// The workload disk image (ext4, mounted read-only at /mnt/w in the guest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workloads {
    /// Relative to the manifest.
    pub image: String,
    /// Unpacked size of the tree, bytes.
    pub tree_bytes: u64,
    /// Every package in it (the tools and their dependency closure).
    pub packages: Vec<Package>,
}

/// A downloaded Debian package.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub suite: String,
    /// Relative to the manifest's directory.
    pub file: String,
    pub sha256: String,
}

/// One guest kernel and the files built for it; paths relative to the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kernel {
    /// `6.1`, `6.12`.
    pub id: String,
    /// `uname -r` of the guest.
    pub release: String,
    pub package: String,
    pub version: String,
    pub bzimage: String,
    pub vmlinux: String,
    pub config: String,
    pub initramfs: String,
    /// Modules in the initramfs under /lib/modules, in load order.
    pub modules: Vec<String>,
}

/// A file we built or copied, and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub path: String,
    pub source: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the manifest atomically (temp file, then rename).
    pub fn store(&self, dir: &Path) -> anyhow::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        Ok(())
    }

    /// Checks every artifact. `Ok(false)`: something is missing (rebuild it).
    /// A file that is present with another hash is an error: something changed it
    /// behind our back.
    pub fn verify(&self, dir: &Path) -> anyhow::Result<bool> {
        for a in &self.artifacts {
            let p = dir.join(&a.path);
            if !p.exists() {
                eprintln!("images: {} is missing; rebuilding", a.path);
                return Ok(false);
            }
            let got = sha256_file(&p)?;
            if got != a.sha256 {
                bail!(
                    "{} has sha256 {got}, but the manifest says {}: the file was changed after it was \
                     built. Remove target/guest-images and run `cargo xtask images` again.",
                    p.display(),
                    a.sha256
                );
            }
        }
        Ok(true)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
