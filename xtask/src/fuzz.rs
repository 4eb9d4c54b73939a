//! Fuzzing that runs: every cargo-fuzz target of `fuzz/`, built once (with the
//! sanitizer flags cargo-fuzz needs, unlocked on a stable toolchain by
//! `RUSTC_BOOTSTRAP=1`) and run for a bounded time each. `cargo xtask test` ends
//! with it; `cargo xtask fuzz [SECONDS]` runs it alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Seconds each target runs within `cargo xtask test`: seven targets and the build
/// stay within about three minutes of CI on two cores.
pub const TEST_SECONDS: u32 = 15;

/// How the targets are built.
#[derive(Clone, Copy)]
pub enum Build {
    /// What `cargo xtask fuzz` runs: optimised, with AddressSanitizer.
    Thorough,
    /// What `cargo xtask test` runs, on a clean clone's empty target directory: an
    /// unoptimised build without a sanitizer (the code under test forbids `unsafe`,
    /// so a panic is what a crash is), which builds in a fraction of the time.
    Quick,
}

impl Build {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Build::Thorough => &[],
            Build::Quick => &["--dev", "--sanitizer", "none"],
        }
    }
}

/// How a fuzzing run ended, when it could run at all.
pub enum Fuzzed {
    /// Every target ran its time without a crash.
    Clean,
    /// It could not run here, and why (printed as `SKIPPED:` by the caller).
    Skipped(String),
}

/// Builds every target and runs each for `seconds`. A crash fails with the target
/// and the input file that crashed it (to be kept as a regression test).
pub fn run(seconds: u32, build: Build) -> anyhow::Result<Fuzzed> {
    let root = crate::project_root();
    let dir = root.join("fuzz");
    if let Some(why) = ensure_cargo_fuzz() {
        return Ok(Fuzzed::Skipped(why));
    }
    // Its own target directory: sanitizer builds must not invalidate the workspace's.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("fuzz");
    let fuzz = |args: &[&str]| {
        let mut c = Command::new("cargo");
        c.current_dir(&dir).arg("fuzz").args(args).env("RUSTC_BOOTSTRAP", "1").env("CARGO_TARGET_DIR", &target);
        c
    };
    let t = Instant::now();
    let flags = build.flags();
    crate::test::status(fuzz(&["build"]).args(flags), "cargo fuzz build")?;
    eprintln!("xtask: fuzz targets built in {:.0} s", t.elapsed().as_secs_f64());
    for name in targets(&dir)? {
        let corpus = target.join("corpus").join(&name);
        std::fs::create_dir_all(&corpus)?;
        let artifacts = format!("-artifact_prefix={}/", dir.join("artifacts").join(&name).display());
        std::fs::create_dir_all(dir.join("artifacts").join(&name))?;
        let time = format!("-max_total_time={seconds}");
        let corpus_arg = corpus.display().to_string();
        let t = Instant::now();
        let st = fuzz(&["run"])
            .args(flags)
            .args([&name, &corpus_arg, "--", &time, "-max_len=65536", "-rss_limit_mb=2048", &artifacts])
            .status()
            .with_context(|| format!("running fuzz target {name}"))?;
        if !st.success() {
            bail!(
                "fuzz target {name} crashed ({st}); the input is in fuzz/artifacts/{name}/: fix the code and keep \
                 the input as a unit test (hex), as the README of fuzz/ says"
            );
        }
        eprintln!("xtask: fuzz target {name}: {:.0} s, no crash", t.elapsed().as_secs_f64());
    }
    Ok(Fuzzed::Clean)
}

/// `None` when `cargo fuzz` runs (installing it into cargo's bin directory, outside
/// the clone, if it is missing); else why it cannot.
fn ensure_cargo_fuzz() -> Option<String> {
    let have = || Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if have() {
        return None;
    }
    eprintln!("xtask: installing cargo-fuzz (cargo install cargo-fuzz --locked; once, about 3 minutes)");
    let ok = Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]).status().is_ok_and(|s| s.success());
    if ok && have() {
        return None;
    }
    Some("fuzzing: cargo-fuzz is missing and `cargo install cargo-fuzz --locked` failed".into())
}

/// The targets `fuzz/Cargo.toml` declares.
fn targets(dir: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("cargo").current_dir(dir).args(["fuzz", "list"]).env("RUSTC_BOOTSTRAP", "1").output()?;
    if !out.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}
