//! `cargo xtask images`: guest kernels and initramfs from Debian packages.
//!
//! Everything lands in `target/guest-images/`:
//! - `debs/`: the downloaded packages (pinned by the manifest);
//! - `linux-<id>/`: `bzImage`, `vmlinux` (ELF, carries `.BTF`), `config`, and
//!   `initramfs.cpio` (busybox, the agent, the kernel's test modules);
//! - `workloads/workloads.img`: ext4 image with the study's benchmarks and their
//!   libraries from Debian 12 packages, plus a synthetic video (see [`workloads`]);
//! - `testkernel/testkernel.elf`: the built-in VMM's test kernel (gcc);
//! - `manifest.json`: every package and artifact with version and sha256.
//!
//! A second run verifies the hashes and downloads nothing. Work happens in a staging
//! directory and is moved into place only when complete, so a failure never leaves a
//! half image behind.

mod agent;
mod apt;
mod bzimage;
mod cpio;
pub mod debug;
mod initramfs;
pub mod manifest;
mod workloads;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use apt::Apt;
use manifest::{Artifact, Kernel, Manifest, Package, Workloads, sha256_file, sha256_hex};

/// Guest kernels: (id, Debian suite whose `linux-image-cloud-amd64` we take).
const KERNELS: &[(&str, &str)] = &[("6.1", "bookworm"), ("6.12", "trixie")];

/// Bump when the recipe changes in a way the other inputs do not show.
const RECIPE_VERSION: &str = "2";

/// Where images go: `target/guest-images/`.
pub fn out_dir() -> PathBuf {
    crate::project_root().join("target/guest-images")
}

struct Options {
    /// Resolve package versions anew instead of using the manifest's pins.
    update: bool,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut opts = Options { update: false };
    let mut debug_info = false;
    for a in args {
        match a.as_str() {
            "--update" => opts.update = true,
            "--debug" => debug_info = true,
            "-h" | "--help" => {
                println!(
                    "cargo xtask images [--update] [--debug]\n\n\
                     Builds guest images into target/guest-images/ from Debian packages.\n\
                     --update   resolve the newest package versions instead of the manifest's pins\n\
                     --debug    also cache each kernel's DWARF vmlinux (for drgn) in ~/.cache/vmscope/debug"
                );
                return Ok(());
            }
            other => bail!("unknown option `{other}` (try --help)"),
        }
    }
    build(&out_dir(), &opts)?;
    if debug_info { debug::ensure() } else { Ok(()) }
}

/// Builds what is missing; returns quickly when everything is present and verified.
pub fn ensure() -> anyhow::Result<()> {
    build(&out_dir(), &Options { update: false })
}

fn build(out: &Path, opts: &Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let agent = agent::build()?;
    // The test kernel for the built-in VMM (a no-op when its sources are unchanged).
    let testkernel = crate::testkernel::build(&crate::project_root(), out)?;
    let testkernel_rel = testkernel.strip_prefix(out).unwrap_or(&testkernel).to_string_lossy().into_owned();
    let recipe = recipe_hash(&agent, &std::fs::read(&testkernel)?);
    let old = Manifest::load(out)?;
    if let Some(m) = &old
        && !opts.update
        && m.recipe == recipe
        && m.verify(out)?
    {
        eprintln!("images: up to date ({} kernels, manifest verified)", m.kernels.len());
        return Ok(());
    }
    let (pins, wl_pins) = match old {
        Some(m) if !opts.update => (m.packages, m.workloads.map(|w| w.packages).unwrap_or_default()),
        _ => (Vec::new(), Vec::new()),
    };

    let mut apt = Apt::new(out.join("apt"));
    let debs = out.join("debs");
    let mut packages = Vec::new();
    let busybox = fetch(&mut apt, &debs, &pins, "busybox-static", "bookworm", out)?;
    packages.push(busybox.clone());
    let mut kernel_pkgs = Vec::new();
    for &(_, suite) in KERNELS {
        let pkg = fetch_kernel(&mut apt, &debs, &pins, suite, out)?;
        packages.push(pkg.clone());
        kernel_pkgs.push(pkg);
    }

    let wl_packages = workloads::fetch(&mut apt, &debs, &wl_pins, out)?;

    let staging = out.join(".staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let busybox_bin = {
        let x = staging.join("x-busybox");
        apt::extract(&out.join(&busybox.file), &x)?;
        std::fs::read(x.join("bin/busybox")).context("busybox-static has no /bin/busybox")?
    };

    let mut kernels = Vec::new();
    let mut artifacts = Vec::new();
    for (&(id, _), pkg) in KERNELS.iter().zip(&kernel_pkgs) {
        let k = build_kernel(id, pkg, out, &staging, &busybox_bin, &agent)?;
        kernels.push(k);
    }
    // Everything built: move into place.
    for k in &kernels {
        let dir = format!("linux-{}", k.id);
        let dst = out.join(&dir);
        if dst.exists() {
            std::fs::remove_dir_all(&dst)?;
        }
        std::fs::rename(staging.join(&dir), &dst)?;
        let source = format!("{} {}", k.package, k.version);
        for (file, what) in [
            (&k.bzimage, format!("{source}: /boot/vmlinuz-{}", k.release)),
            (&k.vmlinux, format!("{source}: ELF payload of the bzImage")),
            (&k.config, format!("{source}: /boot/config-{}", k.release)),
            (&k.initramfs, format!("busybox-static {}, vmscope-agent, modules of {source}", busybox.version)),
        ] {
            artifacts.push(artifact(out, file, what)?);
        }
    }
    let wl_image = "workloads/workloads.img";
    let started = std::time::Instant::now();
    std::fs::create_dir_all(out.join("workloads"))?;
    let tree_bytes = workloads::build(&wl_packages, out, &staging, &out.join(wl_image))?;
    eprintln!(
        "images: workload image: {} packages, {} MiB of files, built in {:.1} s",
        wl_packages.len(),
        tree_bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    artifacts.push(artifact(
        out,
        wl_image,
        format!("ext4 of {} Debian 12 packages (manifest `workloads`) and a synthetic video", wl_packages.len()),
    )?);
    std::fs::remove_dir_all(&staging)?;
    artifacts.push(artifact(out, &testkernel_rel, "built from guest-images/testkernel with gcc".into())?);
    let workloads = Some(Workloads { image: wl_image.into(), tree_bytes, packages: wl_packages });
    let m = Manifest { recipe, packages, kernels, artifacts, workloads };
    m.store(out)?;
    for k in &m.kernels {
        eprintln!("images: linux-{} = {} ({})", k.id, k.release, k.version);
    }
    eprintln!("images: wrote {}", out.join(manifest::FILE).display());
    Ok(())
}

fn recipe_hash(agent: &[u8], testkernel: &[u8]) -> String {
    let mut all = Vec::new();
    all.extend_from_slice(RECIPE_VERSION.as_bytes());
    for part in [initramfs::INIT, initramfs::PASSWD, initramfs::GROUP] {
        all.extend_from_slice(part.as_bytes());
    }
    all.extend_from_slice(initramfs::MODULES.join(",").as_bytes());
    all.extend_from_slice(initramfs::DISK_MODULES.join(",").as_bytes());
    all.extend_from_slice(workloads::recipe().as_bytes());
    all.extend_from_slice(sha256_hex(agent).as_bytes());
    all.extend_from_slice(sha256_hex(testkernel).as_bytes());
    sha256_hex(&all)
}

fn artifact(out: &Path, rel: &str, source: String) -> anyhow::Result<Artifact> {
    let p = out.join(rel);
    Ok(Artifact { path: rel.to_owned(), source, size: std::fs::metadata(&p)?.len(), sha256: sha256_file(&p)? })
}

/// A package: the pinned .deb if present and intact, else downloaded.
fn fetch(apt: &mut Apt, debs: &Path, pins: &[Package], name: &str, suite: &str, out: &Path) -> anyhow::Result<Package> {
    let pin = pins.iter().find(|p| p.name == name && p.suite == suite);
    fetch_pinned(apt, debs, pin, &format!("{name}/{suite}"), suite, out)
}

/// The cloud kernel of `suite`: the metapackage names the versioned image package.
fn fetch_kernel(apt: &mut Apt, debs: &Path, pins: &[Package], suite: &str, out: &Path) -> anyhow::Result<Package> {
    let pin = pins.iter().find(|p| p.name.starts_with("linux-image-") && p.suite == suite);
    if pin.is_some() {
        return fetch_pinned(apt, debs, pin, "", suite, out);
    }
    let meta_dir = out.join("apt/meta");
    let meta = apt.download(&format!("linux-image-cloud-amd64/{suite}"), &meta_dir)?;
    let depends = apt::deb_field(&meta, "Depends")?;
    std::fs::remove_dir_all(&meta_dir)?;
    // "linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)"
    let name = depends
        .split([',', '|'])
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-"))
        .and_then(|d| d.split_whitespace().next())
        .with_context(|| format!("linux-image-cloud-amd64/{suite} depends on no linux-image: {depends}"))?;
    fetch_pinned(apt, debs, None, &format!("{name}/{suite}"), suite, out)
}

fn fetch_pinned(
    apt: &mut Apt,
    debs: &Path,
    pin: Option<&Package>,
    spec: &str,
    suite: &str,
    out: &Path,
) -> anyhow::Result<Package> {
    if let Some(p) = pin {
        let path = out.join(&p.file);
        if path.exists() {
            let got = sha256_file(&path)?;
            if got != p.sha256 {
                bail!(
                    "{} has sha256 {got}, the manifest pins {}: a corrupt download? Remove it and run \
                     `cargo xtask images` again.",
                    path.display(),
                    p.sha256
                );
            }
            return Ok(p.clone());
        }
        let deb = apt.download(&format!("{}={}", p.name, p.version), debs).with_context(|| {
            format!(
                "{} {} is pinned by the manifest; if Debian no longer has it, run `cargo xtask images --update`",
                p.name, p.version
            )
        })?;
        let got = sha256_file(&deb)?;
        if got != p.sha256 {
            std::fs::remove_file(&deb)?;
            bail!("downloaded {} has sha256 {got}, the manifest pins {}", deb.display(), p.sha256);
        }
        return Ok(p.clone());
    }
    let deb = apt.download(spec, debs)?;
    Ok(Package {
        name: apt::deb_field(&deb, "Package")?,
        version: apt::deb_field(&deb, "Version")?,
        suite: suite.to_owned(),
        file: deb.strip_prefix(out).unwrap_or(&deb).to_string_lossy().into_owned(),
        sha256: sha256_file(&deb)?,
    })
}

fn build_kernel(
    id: &str,
    pkg: &Package,
    out: &Path,
    staging: &Path,
    busybox: &[u8],
    agent: &[u8],
) -> anyhow::Result<Kernel> {
    eprintln!("images: linux-{id} from {} {}", pkg.name, pkg.version);
    let x = staging.join(format!("x-{id}"));
    apt::extract(&out.join(&pkg.file), &x)?;
    let release = pkg.name.strip_prefix("linux-image-").unwrap_or(&pkg.name).to_owned();
    let dir = format!("linux-{id}");
    let dst = staging.join(&dir);
    std::fs::create_dir_all(&dst)?;

    let bz = std::fs::read(x.join(format!("boot/vmlinuz-{release}"))).context("kernel package has no /boot/vmlinuz")?;
    let vmlinux = bzimage::extract_vmlinux(&bz).with_context(|| format!("extracting vmlinux of {release}"))?;
    std::fs::write(dst.join("bzImage"), &bz)?;
    std::fs::write(dst.join("vmlinux"), &vmlinux)?;
    std::fs::copy(x.join(format!("boot/config-{release}")), dst.join("config"))?;

    let moddir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| x.join(d).join(&release))
        .find(|p| p.is_dir())
        .with_context(|| format!("no modules directory for {release}"))?;
    let modules = initramfs::collect_modules(&moddir)?;
    let disk_modules = initramfs::collect_disk_modules(&moddir)?;
    let cpio = initramfs::build(busybox, agent, &modules, &disk_modules)?;
    std::fs::write(dst.join("initramfs.cpio"), cpio)?;
    std::fs::remove_dir_all(&x)?;
    Ok(Kernel {
        id: id.to_owned(),
        release,
        package: pkg.name.clone(),
        version: pkg.version.clone(),
        bzimage: format!("{dir}/bzImage"),
        vmlinux: format!("{dir}/vmlinux"),
        config: format!("{dir}/config"),
        initramfs: format!("{dir}/initramfs.cpio"),
        modules: modules.into_iter().map(|(n, _)| n).collect(),
    })
}
