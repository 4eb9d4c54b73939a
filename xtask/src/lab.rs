//! `cargo xtask lab`: host tools and images if missing, then the lab binary (and the
//! built-in VMM it may start) in release mode.

use std::process::Command;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    crate::images::ensure()?;
    let root = crate::project_root();
    crate::test::status(
        Command::new("cargo").current_dir(&root).args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "vmscope-lab",
            "-p",
            "vmscope-vmm",
        ]),
        "building the lab",
    )?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target"));
    crate::test::status(
        Command::new(target.join("release/vmscope-lab"))
            .current_dir(&root)
            .env("VMSCOPE_IMAGES", crate::images::out_dir())
            .args(args),
        "the lab",
    )
}
