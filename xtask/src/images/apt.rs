//! Debian packages through apt-get with a private state directory: no root, and the
//! host's apt configuration is neither read nor changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const SOURCES: &str = "\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
";

pub struct Apt {
    dir: PathBuf,
    updated: bool,
}

impl Apt {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, updated: false }
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::sourcelist={d}/sources.list"),
            "-oDir::Etc::sourceparts=-".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::State::status={d}/status"),
            format!("-oDir::Cache={d}/cache"),
            "-oDebug::NoLocking=1".into(),
            // Downloads go into our own directory, which the _apt user may not reach.
            "-oAPT::Sandbox::User=root".into(),
            "-qq".into(),
        ]
    }

    /// `apt-get update` against bookworm and trixie, once per run.
    pub fn update(&mut self) -> anyhow::Result<()> {
        if self.updated {
            return Ok(());
        }
        for sub in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(self.dir.join(sub))?;
        }
        std::fs::write(self.dir.join("sources.list"), SOURCES)?;
        std::fs::write(self.dir.join("status"), "")?;
        eprintln!("images: apt-get update (private state in {})", self.dir.display());
        run(Command::new("apt-get").args(self.options()).arg("update"), "apt-get update")?;
        self.updated = true;
        Ok(())
    }

    /// Downloads `spec` (`name/suite` or `name=version`) into `into` and returns the
    /// path of the .deb.
    pub fn download(&mut self, spec: &str, into: &Path) -> anyhow::Result<PathBuf> {
        self.update()?;
        std::fs::create_dir_all(into)?;
        let before = list_debs(into)?;
        eprintln!("images: downloading {spec}");
        run(
            Command::new("apt-get").current_dir(into).args(self.options()).arg("download").arg(spec),
            &format!("apt-get download {spec}"),
        )?;
        let name = spec.split(['/', '=']).next().unwrap_or(spec);
        let prefix = format!("{name}_");
        // The file that appeared, or (if it was already there) the one of that name.
        let after = list_debs(into)?;
        let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).cloned().collect();
        let pick = new
            .into_iter()
            .chain(after)
            .find(|p| p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&prefix)));
        pick.with_context(|| format!("apt-get download {spec} left no {prefix}*.deb in {}", into.display()))
    }
}

fn list_debs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            v.push(p);
        }
    }
    Ok(v)
}

/// A control field of a .deb (`Package`, `Version`, `Depends`).
pub fn deb_field(deb: &Path, field: &str) -> anyhow::Result<String> {
    let out = Command::new("dpkg-deb").arg("-f").arg(deb).arg(field).output().context("running dpkg-deb")?;
    if !out.status.success() {
        bail!("dpkg-deb -f {} {field}: {}", deb.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Unpacks a .deb's files into `dir`.
pub fn extract(deb: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir), &format!("dpkg-deb -x {}", deb.display()))
}

pub fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("{what}: could not start"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
