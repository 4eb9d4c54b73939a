//! `cargo xtask lab`: host tools and images if missing, then the lab binary (and the
//! built-in VMM it may start) in release mode. `cargo xtask lab --rerun DIR/EXPERIMENT`
//! runs one experiment again with the arguments recorded in `DIR/run.json`, into
//! `DIR/rerun-EXPERIMENT/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = match args.iter().position(|a| a == "--rerun" || a.starts_with("--rerun=")) {
        Some(i) => {
            let (spec, rest) = match args[i].strip_prefix("--rerun=") {
                Some(v) => (v.to_owned(), &args[i + 1..]),
                None => {
                    (args.get(i + 1).context("--rerun needs DIR/EXPERIMENT")?.clone(), &args[(i + 2).min(args.len())..])
                }
            };
            let mut extra = args[..i].to_vec();
            extra.extend_from_slice(rest);
            rerun_args(Path::new(&spec), &extra)?
        }
        None => args.to_vec(),
    };
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
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    crate::test::status(
        Command::new(target.join("release/vmscope-lab"))
            .current_dir(&root)
            .env("VMSCOPE_IMAGES", crate::images::out_dir())
            .args(&args),
        "the lab",
    )
}

/// The lab arguments that repeat experiment `spec`'s file name from the run in its
/// parent directory: the recorded arguments without their experiments and output
/// directory, then `--experiment NAME --out DIR/rerun-NAME`, then `extra`.
fn rerun_args(spec: &Path, extra: &[String]) -> anyhow::Result<Vec<String>> {
    let name = spec.file_name().and_then(|n| n.to_str()).context("--rerun DIR/EXPERIMENT: no experiment named")?;
    let dir = spec.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file = dir.join("run.json");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&file).with_context(|| format!("reading {} (written by every lab run)", file.display()))?,
    )
    .with_context(|| format!("parsing {}", file.display()))?;
    let recorded: Vec<String> = json["args"]
        .as_array()
        .context("run.json has no `args` list")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let ran = json["experiments"].as_array().is_some_and(|e| e.iter().any(|x| x.as_str() == Some(name)));
    anyhow::ensure!(ran, "the run in {} did not run experiment `{name}`", dir.display());
    let mut out = strip(&recorded, &["--experiment", "--out"]);
    let out_dir = dir.join(format!("rerun-{name}"));
    out.extend(["--experiment".into(), name.into(), "--out".into(), out_dir.display().to_string()]);
    out.extend_from_slice(extra);
    eprintln!("xtask: re-running with: {}", out.join(" "));
    Ok(out)
}

/// `args` without the options named in `drop`, in either `--opt V` or `--opt=V` form.
fn strip(args: &[String], drop: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if drop.contains(&a.as_str()) {
            it.next();
        } else if !drop.iter().any(|d| a.starts_with(&format!("{d}="))) {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerun_repeats_the_recorded_arguments_for_one_experiment() {
        let dir = std::env::temp_dir().join(format!("xtask-rerun-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = r#"{"args": ["--quick", "--experiment", "pause", "--out=/x", "--seed", "7", "--experiment=frequency"],
                      "experiments": ["pause", "frequency"]}"#;
        std::fs::write(dir.join("run.json"), run).unwrap();
        let args = rerun_args(&dir.join("frequency"), &["--smoke".into()]).unwrap();
        let out = dir.join("rerun-frequency").display().to_string();
        assert_eq!(args, ["--quick", "--seed", "7", "--experiment", "frequency", "--out", out.as_str(), "--smoke"]);
        assert!(rerun_args(&dir.join("scale"), &[]).is_err(), "an experiment the run did not run");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
