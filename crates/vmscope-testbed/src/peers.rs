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
/// (drgn 0.3 takes types only from DWARF), as `cargo xtask test` caches it before the
/// tests run (`~/.cache/vmscope/debug/RELEASE/vmlinux`); [`Error::Unavailable`]
/// when it is not there.
pub fn debug_vmlinux(kernel: &GuestKernel) -> Result<PathBuf> {
    let vmlinux = cache_dir().join("debug").join(&kernel.release).join("vmlinux");
    if vmlinux.exists() {
        Ok(vmlinux)
    } else {
        Err(Error::Unavailable(format!(
            "{} is missing: `cargo xtask test` downloads it (Debian's linux-image-{}-dbg)",
            vmlinux.display(),
            kernel.release
        )))
    }
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
