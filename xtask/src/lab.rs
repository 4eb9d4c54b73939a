//! `cargo xtask lab`: images if missing, then the lab binary in release mode.

use std::process::Command;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    crate::images::ensure()?;
    let root = crate::project_root();
    crate::test::status(
        Command::new("cargo").current_dir(&root).args(["run", "--release", "--quiet", "-p", "vmscope-lab", "--"]).args(args),
        "the lab",
    )
}
