//! `cargo xtask test`: images if missing, then every test of the workspace.

use std::process::Command;

use anyhow::bail;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    crate::images::ensure()?;
    let root = crate::project_root();
    let nextest = Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success());
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root);
    if nextest {
        // Each test in its own process: one guest per process, killed with it.
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]).args(args);
    } else {
        eprintln!("xtask: cargo-nextest not found; using cargo test");
        cmd.args(["test", "--workspace", "--no-fail-fast"]).args(args);
    }
    status(&mut cmd, "tests")?;
    if nextest {
        // nextest does not run doc tests.
        status(Command::new("cargo").current_dir(&root).args(["test", "--workspace", "--doc"]), "doc tests")?;
    }
    Ok(())
}

/// Formatting, and clippy with warnings as errors.
pub fn lint() -> anyhow::Result<()> {
    let root = crate::project_root();
    status(Command::new("cargo").current_dir(&root).args(["fmt", "--all", "--check"]), "cargo fmt --check")?;
    status(
        Command::new("cargo").current_dir(&root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "clippy",
    )
}

pub fn status(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let st = cmd.status()?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}
