//! Builds the in-guest agent (guest-images/agent) as a static executable.

use std::process::Command;

use anyhow::{Context, bail};

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the agent (a no-op for cargo when nothing changed) and returns its bytes.
pub fn build() -> anyhow::Result<Vec<u8>> {
    let root = crate::project_root();
    let target_dir = root.join("target/guest-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // An explicit --target keeps the static-CRT flag away from build scripts and
    // proc-macros, which must stay dynamic.
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "vmscope-guest-agent", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .status()
        .context("running cargo to build the guest agent")?;
    if !status.success() {
        bail!("building the guest agent failed");
    }
    let path = target_dir.join(TARGET).join("release/vmscope-guest-agent");
    let bin = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if has_interpreter(&bin) {
        bail!("{} is dynamically linked; the guest has no libc", path.display());
    }
    Ok(bin)
}

/// Whether an ELF64 file asks for a dynamic loader (a PT_INTERP program header).
fn has_interpreter(elf: &[u8]) -> bool {
    let rd16 = |at: usize| elf.get(at..at + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let phoff = elf.get(0x20..0x28).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
    let (phentsize, phnum) = (rd16(0x36), rd16(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == 3)
    })
}
