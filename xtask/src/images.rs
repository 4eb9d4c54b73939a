//! `cargo xtask images`: guest kernels and initramfs from Debian packages.

use std::path::PathBuf;

/// Where images go: `target/guest-images/`.
pub fn out_dir() -> PathBuf {
    crate::project_root().join("target/guest-images")
}

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
