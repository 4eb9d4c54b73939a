//! Debian's DWARF vmlinux of each guest kernel (`linux-image-RELEASE-dbg`, about
//! 300 MB to download), for the tests that run drgn: drgn 0.3 takes types only from
//! DWARF. Kept outside the clone, only the vmlinux, in
//! `$XDG_CACHE_HOME/vmscope/debug/RELEASE/vmlinux` (else `~/.cache/...`); downloaded
//! once, with the images' private apt state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;

use super::apt::{Apt, run};
use super::manifest::Manifest;

/// Where the debug vmlinux of `release` is kept (the test bed looks there too).
fn cached(release: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("vmscope/debug").join(release).join("vmlinux")
}

/// Downloads the debug vmlinux of every kernel in the images' manifest that is not
/// cached yet.
pub fn ensure() -> anyhow::Result<()> {
    let out = super::out_dir();
    let manifest = Manifest::load(&out)?.context("no image manifest: run `cargo xtask images`")?;
    let mut apt = Apt::new(out.join("apt"));
    for k in &manifest.kernels {
        let vmlinux = cached(&k.release);
        if vmlinux.exists() {
            continue;
        }
        let start = Instant::now();
        let dir = vmlinux.parent().context("a cache path has a parent")?;
        let spec = format!("linux-image-{}-dbg={}", k.release, k.version);
        let deb = apt.download(&spec, dir)?;
        let partial = dir.join("vmlinux.partial");
        let member = format!("./usr/lib/debug/boot/vmlinux-{}", k.release);
        let script =
            format!("dpkg-deb --fsys-tarfile '{}' | tar -xO '{member}' > '{}'", deb.display(), partial.display());
        run(Command::new("sh").arg("-c").arg(&script), &format!("extracting {member} from {}", deb.display()))?;
        std::fs::rename(&partial, &vmlinux)?;
        std::fs::remove_file(&deb)?;
        eprintln!("images: cached {} in {:.1} s", vmlinux.display(), start.elapsed().as_secs_f64());
    }
    Ok(())
}
