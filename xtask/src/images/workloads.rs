//! The workload disk image: the study's benchmarks (and fio, iperf3) from Debian 12
//! packages with every library they need, as a root-like tree in an ext4 image that
//! the guest mounts read-only at /mnt/w and enters with chroot.
//!
//! The package set is apt's own answer: `apt-get -s install --no-install-recommends`
//! of [`TOOLS`] from bookworm on an empty system, except that [`ASSUMED`] are declared
//! installed (interpreters and maintainer-script tools no benchmark binary links), so
//! their closures stay out. Afterwards every ELF NEEDED entry reachable from the tools'
//! binaries must resolve inside the tree: nothing is copied from the build host.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::apt::{self, Apt};
use super::manifest::{Package, sha256_file};

/// Debian 12 packages with the benchmarks.
pub const TOOLS: &[&str] = &["x264", "sysbench", "httperf", "netperf", "bonnie++", "stress-ng", "fio", "iperf3"];

/// Binaries (in the tree) that must run; their NEEDED closure is checked.
pub const BINARIES: &[&str] = &[
    "usr/bin/x264",
    "usr/bin/sysbench",
    "usr/bin/httperf",
    "usr/bin/netperf",
    "usr/bin/netserver",
    "usr/sbin/bonnie++",
    "usr/bin/stress-ng",
    "usr/bin/fio",
    "usr/bin/iperf3",
];

/// Declared installed for the resolution: script interpreters (bonnie++'s report
/// scripts are perl, fio's plotting scripts python) and packaging tools.
pub const ASSUMED: &[&str] = &[
    "perl",
    "perl-base",
    "perl-modules-5.36",
    "libperl5.36",
    "libfile-find-rule-perl",
    "libnumber-compare-perl",
    "libtext-glob-perl",
    "python3",
    "python3-minimal",
    "python3.11",
    "python3.11-minimal",
    "libpython3-stdlib",
    "libpython3.11-stdlib",
    "libpython3.11-minimal",
    "dpkg",
    "debconf",
    "debconf-2.0",
    "adduser",
    "passwd",
    "usrmerge",
    "init-system-helpers",
    "tar",
    "shared-mime-info",
];

/// The synthetic video for x264: CIF, 25 frames/s, [`VIDEO_FRAMES`] frames.
pub const VIDEO: (u32, u32) = (352, 288);
pub const VIDEO_FRAMES: u32 = 50;

/// Files the runner relies on: /etc for the C library, mount points for the chroot.
const ETC_HOSTS: &str = "127.0.0.1\tlocalhost\n";
const ETC_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
const ETC_GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// Everything that changes the image but is not a package.
pub fn recipe() -> String {
    format!("{TOOLS:?}{ASSUMED:?}{BINARIES:?}{VIDEO:?}{VIDEO_FRAMES}{ETC_HOSTS}{ETC_PASSWD}{ETC_GROUP}v1")
}

/// Resolves (or takes the pins of) the packages, downloads them, and returns them with
/// their sha256.
pub fn fetch(apt: &mut Apt, debs: &Path, pins: &[Package], out: &Path) -> anyhow::Result<Vec<Package>> {
    let wanted: Vec<(String, String)> = if pins.is_empty() {
        let mut all: Vec<&str> = TOOLS.to_vec();
        all.push("busybox-static");
        apt.resolve(&all, ASSUMED)?
    } else {
        pins.iter().map(|p| (p.name.clone(), p.version.clone())).collect()
    };
    let files = apt.download_many(&wanted, debs)?;
    let mut pkgs = Vec::new();
    for ((name, version), deb) in wanted.into_iter().zip(files) {
        let sha = sha256_file(&deb)?;
        if let Some(p) = pins.iter().find(|p| p.name == name)
            && p.sha256 != sha
        {
            bail!("{} has sha256 {sha}, the manifest pins {}", deb.display(), p.sha256);
        }
        pkgs.push(Package {
            name,
            version,
            suite: "bookworm".into(),
            file: deb.strip_prefix(out).unwrap_or(&deb).to_string_lossy().into_owned(),
            sha256: sha,
        });
    }
    Ok(pkgs)
}

/// Builds `dst` (an ext4 image) from the packages; returns the unpacked size in bytes.
pub fn build(pkgs: &[Package], out: &Path, staging: &Path, dst: &Path) -> anyhow::Result<u64> {
    let root = staging.join("workloads-root");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    for p in pkgs {
        apt::extract(&out.join(&p.file), &root)?;
    }
    for d in ["proc", "sys", "dev", "tmp", "scratch", "root", "etc", "bin", "data"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    if !root.join("bin/sh").exists() {
        std::os::unix::fs::symlink("busybox", root.join("bin/sh"))?;
    }
    std::fs::write(root.join("etc/hosts"), ETC_HOSTS)?;
    std::fs::write(root.join("etc/passwd"), ETC_PASSWD)?;
    std::fs::write(root.join("etc/group"), ETC_GROUP)?;
    std::fs::write(root.join("data/video.y4m"), y4m(VIDEO.0, VIDEO.1, VIDEO_FRAMES))?;
    let list: String = pkgs.iter().map(|p| format!("{} {}\n", p.name, p.version)).collect();
    std::fs::write(root.join("etc/vmscope-workloads"), list)?;
    check_needed(&root)?;

    let bytes = du(&root)?;
    // ext4 metadata and slack: a quarter more, at least 64 MiB.
    let size_mib = (bytes + bytes / 4) / (1 << 20) + 64;
    if dst.exists() {
        std::fs::remove_file(dst)?;
    }
    apt::run(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-O", "^has_journal", "-L", "vmscope-wl", "-m", "0"])
            .args(["-U", "5d3c0b6e-7a1f-4b3a-9a57-766d73636f70", "-E", "root_owner=0:0"])
            .arg("-d")
            .arg(&root)
            .arg(dst)
            .arg(format!("{size_mib}M")),
        "mke2fs -d (workload image)",
    )?;
    std::fs::remove_dir_all(&root)?;
    Ok(bytes)
}

/// A YUV4MPEG2 4:2:0 clip: a diagonal gradient that scrolls, with a bright square
/// moving across it, so the encoder has motion to estimate.
pub fn y4m(w: u32, h: u32, frames: u32) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let mut v = format!("YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n").into_bytes();
    for t in 0..frames as usize {
        v.extend_from_slice(b"FRAME\n");
        let (sx, sy) = ((t * 5) % (w - 48), (t * 3) % (h - 48));
        for y in 0..h {
            for x in 0..w {
                let inside = x >= sx && x < sx + 48 && y >= sy && y < sy + 48;
                v.push(if inside { 235 } else { ((x + y + 4 * t) % 200 + 16) as u8 });
            }
        }
        for plane in 0..2 {
            for y in 0..h / 2 {
                for x in 0..w / 2 {
                    v.push((((x * (plane + 1) + y + 2 * t) % 64) + 96) as u8);
                }
            }
        }
    }
    v
}

/// Every NEEDED of the [`BINARIES`] and of the libraries they pull must be a file in
/// the tree's library directories.
fn check_needed(root: &Path) -> anyhow::Result<()> {
    // librbd finds libceph-common through its RUNPATH.
    let dirs = [
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu/ceph",
        "lib64",
        "lib",
        "usr/lib",
    ];
    let mut libs: HashMap<String, PathBuf> = HashMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(root.join(d)) else { continue };
        for e in rd {
            let p = e?.path();
            if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                libs.entry(n.to_owned()).or_insert(p.clone());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<(PathBuf, String)> = BINARIES.iter().map(|b| (root.join(b), (*b).to_owned())).collect();
    while let Some((path, what)) = todo.pop() {
        let path = resolve_in(root, &path)?;
        for so in needed(&path).with_context(|| format!("reading {what}"))? {
            let Some(lib) = libs.get(&so) else {
                bail!("{what} needs {so}, which no package in the workload image provides");
            };
            if seen.insert(so.clone()) {
                todo.push((lib.clone(), so));
            }
        }
    }
    Ok(())
}

/// Follows symlinks as the guest would see them (absolute targets inside `root`).
fn resolve_in(root: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..16 {
        match std::fs::read_link(&p) {
            Ok(t) if t.is_absolute() => p = root.join(t.strip_prefix("/")?),
            Ok(t) => p = p.parent().context("symlink without parent")?.join(t),
            Err(_) => return Ok(p),
        }
    }
    bail!("too many symlinks at {}", path.display())
}

fn needed(path: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("objdump").arg("-p").arg(path).output().context("running objdump")?;
    if !out.status.success() {
        bail!("objdump -p {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(|s| s.trim().to_owned())
        .collect())
}

fn du(dir: &Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            n += du(&e.path())?;
        } else {
            n += m.len();
        }
    }
    Ok(n)
}
