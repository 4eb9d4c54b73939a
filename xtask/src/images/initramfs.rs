//! The guest initramfs: busybox, /init, the agent, users, and test modules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::bzimage::{module_depends, read_module};
use super::cpio::{Entry, Writer};

pub const INIT: &str = include_str!("../../../guest-images/initramfs/init");
pub const PASSWD: &str = include_str!("../../../guest-images/initramfs/passwd");
pub const GROUP: &str = include_str!("../../../guest-images/initramfs/group");

/// Modules copied into the initramfs (with their dependencies): qemu_fw_cfg for
/// `-device vmcoreinfo`, the rest small and free of hardware so tests can load them.
pub const MODULES: &[&str] =
    &["qemu_fw_cfg", "dummy", "nls_utf8", "nls_cp437", "crc7", "crc-itu-t", "ts_kmp", "ts_bm", "ts_fsm", "libcrc32c"];

/// Modules for the optional virtio disks, loaded by /init only when QEMU has a
/// virtio-blk device (ext4 is built into the Debian kernels). Kept apart from
/// [`MODULES`] under /lib/modules/disk so the tests' module list is unchanged.
pub const DISK_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// [`DISK_MODULES`] and their dependencies, skipping any the kernel has built in
/// (`CONFIG_...=y`: not in the package).
pub fn collect_disk_modules(moddir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut index: HashMap<String, PathBuf> = HashMap::new();
    index_modules(&moddir.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    for name in DISK_MODULES.iter().filter(|n| index.contains_key(&key(n))) {
        visit(name, &index, &mut order, 0)?;
    }
    Ok(order)
}

/// [`MODULES`] and their dependencies from `moddir`, in load order, as
/// (name, decompressed .ko).
pub fn collect_modules(moddir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut index: HashMap<String, PathBuf> = HashMap::new();
    index_modules(&moddir.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    for name in MODULES {
        visit(name, &index, &mut order, 0)?;
    }
    Ok(order)
}

fn key(name: &str) -> String {
    name.replace('-', "_")
}

fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            index_modules(&p, index)?;
        } else if let Some(f) = p.file_name().and_then(|f| f.to_str())
            && let Some(stem) = f.split(".ko").next().filter(|_| f.contains(".ko"))
        {
            index.insert(key(stem), p.clone());
        }
    }
    Ok(())
}

fn visit(
    name: &str,
    index: &HashMap<String, PathBuf>,
    order: &mut Vec<(String, Vec<u8>)>,
    depth: usize,
) -> anyhow::Result<()> {
    if depth > 16 {
        bail!("module dependency chain through {name} is too deep (a cycle?)");
    }
    let k = key(name);
    if order.iter().any(|(n, _)| key(n) == k) {
        return Ok(());
    }
    let Some(path) = index.get(&k) else {
        bail!("module {name} is not in the kernel package (built in, or renamed?)");
    };
    let ko = read_module(path)?;
    for dep in module_depends(&ko) {
        visit(&dep, index, order, depth + 1)?;
    }
    order.push((name.to_owned(), ko));
    Ok(())
}

pub fn build(
    busybox: &[u8],
    agent: &[u8],
    modules: &[(String, Vec<u8>)],
    disk_modules: &[(String, Vec<u8>)],
) -> anyhow::Result<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "lib/modules/disk",
        "mnt",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
    ] {
        w.add(d, Entry::Dir)?;
    }
    // Without /dev/console in the archive, /init has no stdout.
    w.add("dev/console", Entry::CharDev { major: 5, minor: 1, mode: 0o600 })?;
    w.add("bin/busybox", Entry::File { data: busybox, mode: 0o755 })?;
    w.add("bin/sh", Entry::Symlink { target: "busybox" })?;
    w.add("init", Entry::File { data: INIT.as_bytes(), mode: 0o755 })?;
    w.add("sbin/vmscope-agent", Entry::File { data: agent, mode: 0o755 })?;
    // The same binary runs the tests' known workloads under this name.
    w.add("sbin/vmscope-workload", Entry::Symlink { target: "vmscope-agent" })?;
    w.add("etc/passwd", Entry::File { data: PASSWD.as_bytes(), mode: 0o644 })?;
    w.add("etc/group", Entry::File { data: GROUP.as_bytes(), mode: 0o644 })?;
    let mut list = String::new();
    for (name, ko) in modules {
        w.add(&format!("lib/modules/{name}.ko"), Entry::File { data: ko, mode: 0o644 })?;
        list.push_str(name);
        list.push('\n');
    }
    w.add("lib/modules/load-order", Entry::File { data: list.as_bytes(), mode: 0o644 })?;
    let mut list = String::new();
    for (name, ko) in disk_modules {
        w.add(&format!("lib/modules/disk/{name}.ko"), Entry::File { data: ko, mode: 0o644 })?;
        list.push_str(name);
        list.push('\n');
    }
    w.add("lib/modules/disk/load-order", Entry::File { data: list.as_bytes(), mode: 0o644 })?;
    Ok(w.finish()?)
}
