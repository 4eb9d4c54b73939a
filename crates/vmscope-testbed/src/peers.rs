//! The peer tools the end-to-end tests compare vmscope with: drgn and Volatility 3,
//! from PyPI, in a private Python venv under `target/peer-tools/` that the first
//! test to need it makes. The wheels are kept outside the clone
//! (`$XDG_CACHE_HOME/vmscope/wheels`, else `~/.cache/vmscope/wheels`), so a fresh
//! clone on a machine that ran the tests before installs without the network.
//!
//! Nothing is installed on the host: where Python's `venv` module is missing or
//! PyPI cannot be reached, [`PeerTools::ensure`] fails with
//! [`Error::Unavailable`], which tests print as `SKIPPED:`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{Error, GuestImages, GuestKernel, Result};

/// The versions the tests are written against (pip resolves their dependencies).
pub const PACKAGES: [&str; 2] = ["drgn==0.3.0", "volatility3==2.28.2"];

/// drgn and Volatility 3, installed in a private venv.
#[derive(Debug, Clone)]
pub struct PeerTools {
    /// The venv directory.
    pub venv: PathBuf,
}

impl PeerTools {
    /// The venv beside the guest images (`target/peer-tools/venv`), made and filled
    /// on first use (one process at a time: a lock file serializes concurrent tests).
    pub fn ensure() -> Result<Self> {
        let images = GuestImages::locate()?;
        let root = images.dir.parent().unwrap_or(&images.dir).join("peer-tools");
        Self::ensure_in(&root)
    }

    /// The venv at `root/venv`, made and filled on first use.
    pub fn ensure_in(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let lock_path = root.join("lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
        lock.lock().map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        let tools = PeerTools { venv: root.join("venv") };
        let stamp = tools.venv.join("vmscope-packages");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&PACKAGES.join("\n")) {
            return Ok(tools);
        }
        let start = Instant::now();
        let _ = std::fs::remove_dir_all(&tools.venv);
        run(Command::new("python3").arg("-m").arg("venv").arg(&tools.venv), "python3 -m venv (Debian: python3-venv)")?;
        // pip's HTTP cache keeps nothing from an index that says no-store, so the
        // wheels are kept as files: installed offline from there, downloaded first
        // when they are not all there.
        let wheels = cache_dir().join("wheels");
        let install = || {
            run(
                Command::new(tools.bin("pip"))
                    .args([
                        "install",
                        "--quiet",
                        "--no-compile",
                        "--disable-pip-version-check",
                        "--no-index",
                        "--find-links",
                    ])
                    .arg(&wheels)
                    .args(PACKAGES),
                "pip install of drgn and volatility3 from the wheel cache",
            )
        };
        if install().is_err() {
            run(
                Command::new(tools.bin("pip"))
                    .args(["download", "--quiet", "--disable-pip-version-check", "--dest"])
                    .arg(&wheels)
                    .args(PACKAGES),
                "pip download of drgn and volatility3 from PyPI",
            )?;
            install()?;
        }
        std::fs::write(&stamp, PACKAGES.join("\n"))
            .map_err(|e| Error::io(format!("writing {}", stamp.display()), e))?;
        eprintln!(
            "testbed: installed {} into {} in {:.1} s",
            PACKAGES.join(", "),
            tools.venv.display(),
            start.elapsed().as_secs_f64()
        );
        Ok(tools)
    }

    /// A program of the venv (`drgn`, `vol`, `python`, `pip`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.venv.join("bin").join(name)
    }

    /// `drgn ARGS...`, ready to run.
    pub fn drgn(&self) -> Command {
        Command::new(self.bin("drgn"))
    }

    /// `vol ARGS...` (Volatility 3), ready to run.
    pub fn vol(&self) -> Command {
        Command::new(self.bin("vol"))
    }
}

/// The DWARF vmlinux of `kernel` from Debian's `linux-image-RELEASE-dbg` package
/// (about 280 MB to download): drgn 0.3 takes types only from DWARF. Downloaded once
/// with the guest images' private apt state, and only the vmlinux kept, under
/// `~/.cache/vmscope/debug/RELEASE/`.
pub fn debug_vmlinux(kernel: &GuestKernel) -> Result<PathBuf> {
    let dir = cache_dir().join("debug").join(&kernel.release);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path).map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
    lock.lock().map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
    let vmlinux = dir.join("vmlinux");
    if vmlinux.exists() {
        return Ok(vmlinux);
    }
    let start = Instant::now();
    let images = GuestImages::locate()?;
    let apt = images.dir.join("apt");
    let package = format!("linux-image-{}-dbg", kernel.release);
    let spec = format!("{package}={}", kernel.version);
    let download = || {
        run(
            Command::new("apt-get").current_dir(&dir).args(apt_options(&apt)).arg("download").arg(&spec),
            &format!("apt-get download {spec}"),
        )
    };
    if download().is_err() {
        run(Command::new("apt-get").args(apt_options(&apt)).arg("update"), "apt-get update")?;
        download()?;
    }
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| Error::Unavailable(format!("apt-get download {spec} left no .deb in {}", dir.display())))?;
    let partial = dir.join("vmlinux.partial");
    let member = format!("./usr/lib/debug/boot/vmlinux-{}", kernel.release);
    let script = format!("dpkg-deb --fsys-tarfile '{}' | tar -xO '{member}' > '{}'", deb.display(), partial.display());
    run(Command::new("sh").arg("-c").arg(&script), &format!("extracting {member} from {}", deb.display()))?;
    std::fs::rename(&partial, &vmlinux).map_err(|e| Error::io(format!("renaming {}", partial.display()), e))?;
    let _ = std::fs::remove_file(&deb);
    eprintln!("testbed: cached {} from {package} in {:.1} s", vmlinux.display(), start.elapsed().as_secs_f64());
    Ok(vmlinux)
}

/// apt-get's options for the private state `cargo xtask images` keeps in `dir`.
fn apt_options(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("-oDir::Etc::sourcelist={d}/sources.list"),
        "-oDir::Etc::sourceparts=-".into(),
        format!("-oDir::State::Lists={d}/lists"),
        format!("-oDir::State::status={d}/status"),
        format!("-oDir::Cache={d}/cache"),
        "-oDebug::NoLocking=1".into(),
        "-oAPT::Sandbox::User=root".into(),
        "-qq".into(),
    ]
}

/// vmscope's cache directory outside any clone: `$XDG_CACHE_HOME/vmscope`, else
/// `~/.cache/vmscope`.
fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("vmscope")
}

/// Runs `cmd`; a failure is [`Error::Unavailable`] with its output's tail.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::Unavailable(format!("{what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(5).collect();
    Err(Error::Unavailable(format!(
        "{what} failed ({}): {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    )))
}
