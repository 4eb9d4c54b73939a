//! Debian packages through apt-get with a private state directory: no root, and the
//! host's apt configuration is neither read nor changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const SOURCES: &str = "\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main non-free
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

impl Apt {
    /// The packages `apt-get install --no-install-recommends -t bookworm` would install
    /// for `names` on a system that has only `assumed` (stub entries in a private dpkg
    /// status, so their own dependencies are not followed): (name, version), in
    /// apt's order. Fails if any comes from another suite than bookworm.
    pub fn resolve(&mut self, names: &[&str], assumed: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
        self.update()?;
        let status = self.dir.join("status-assumed");
        let mut stub = String::new();
        for a in assumed {
            stub.push_str(&format!(
                "Package: {a}\nStatus: install ok installed\nVersion: 999:0\nArchitecture: amd64\n\
                 Multi-Arch: foreign\nMaintainer: none\nDescription: assumed by vmscope\n\n"
            ));
        }
        std::fs::write(&status, stub)?;
        let out = Command::new("apt-get")
            .args(self.options())
            .arg(format!("-oDir::State::status={}", status.display()))
            .args(["-s", "install", "--no-install-recommends", "-t", "bookworm"])
            .args(names)
            .output()
            .context("running apt-get -s install")?;
        if !out.status.success() {
            bail!(
                "apt-get -s install {} failed:\n{}{}",
                names.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut v = Vec::new();
        // "Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])"
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(rest) = line.strip_prefix("Inst ") else { continue };
            let mut w = rest.split_whitespace();
            let (Some(name), Some(ver)) = (w.next(), w.next()) else { continue };
            let origin = w.next().unwrap_or("");
            if !origin.starts_with("Debian:12") {
                bail!("{name} would come from {origin}, not bookworm: {line}");
            }
            v.push((name.to_owned(), ver.trim_start_matches('(').to_owned()));
        }
        Ok(v)
    }

    /// Downloads `name=version` for each of `pkgs` into `into` (one apt-get run) and
    /// returns their paths in the same order.
    pub fn download_many(&mut self, pkgs: &[(String, String)], into: &Path) -> anyhow::Result<Vec<PathBuf>> {
        self.update()?;
        std::fs::create_dir_all(into)?;
        let file = |n: &str, v: &str, arch: &str| into.join(format!("{n}_{}_{arch}.deb", v.replace(':', "%3a")));
        let find = |n: &str, v: &str| ["amd64", "all"].iter().map(|a| file(n, v, a)).find(|p| p.exists());
        let missing: Vec<String> =
            pkgs.iter().filter(|(n, v)| find(n, v).is_none()).map(|(n, v)| format!("{n}={v}")).collect();
        if !missing.is_empty() {
            eprintln!("images: downloading {} packages", missing.len());
            run(
                Command::new("apt-get").current_dir(into).args(self.options()).arg("download").args(&missing),
                "apt-get download (workload packages)",
            )?;
        }
        pkgs.iter().map(|(n, v)| find(n, v).with_context(|| format!("apt-get download {n}={v} left no .deb"))).collect()
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
