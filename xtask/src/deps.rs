//! Host tools the images and tests need, installed from Debian when missing.

use std::process::Command;

use anyhow::bail;

/// (command, Debian package).
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("lz4", "lz4"),
    ("zstd", "zstd"),
    ("xz", "xz-utils"),
    ("dpkg-deb", "dpkg"),
    ("apt-get", "apt"),
    ("gcc", "gcc"),
    ("objdump", "binutils"),
    ("mke2fs", "e2fsprogs"),
];

fn have(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Installs what is missing with apt-get (as root, or through `sudo -n`); says what
/// to run when it cannot.
pub fn ensure() -> anyhow::Result<()> {
    let missing: Vec<&str> = TOOLS.iter().filter(|(c, _)| !have(c)).map(|(_, p)| *p).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y --no-install-recommends {}", missing.join(" "));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    eprintln!("xtask: installing {}", missing.join(", "));
    let apt = |args: &[&str]| {
        let mut cmd = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            cmd.args(["-n", "apt-get"]);
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success())
    };
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    let ok = apt(&["update", "-qq"]) && apt(&args);
    if !ok || TOOLS.iter().any(|(c, _)| !have(c)) {
        bail!("missing host tools; install them with:\n  sudo {install}");
    }
    Ok(())
}
