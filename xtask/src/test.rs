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
    let skipped = run_scanning(&mut cmd, "SKIPPED:")?;
    if !skipped.is_empty() {
        eprintln!("\nxtask: {} check(s) could not run on this machine and were skipped:", skipped.len());
        for s in &skipped {
            eprintln!("  {s}");
        }
    }
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

/// Runs the test command, passing its output through, and returns the lines that
/// contain `marker` (tests that could not run here say so that way).
fn run_scanning(cmd: &mut Command, marker: &str) -> anyhow::Result<Vec<String>> {
    use std::io::{BufRead, BufReader, Write};
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
    let (out, err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let pass = |r: Box<dyn std::io::Read + Send>, to_stderr: bool| {
        let marker = marker.to_owned();
        std::thread::spawn(move || {
            let mut found = Vec::new();
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if to_stderr {
                    let _ = writeln!(std::io::stderr(), "{line}");
                } else {
                    let _ = writeln!(std::io::stdout(), "{line}");
                }
                if let Some(i) = line.find(&marker) {
                    found.push(line[i..].to_owned());
                }
            }
            found
        })
    };
    let (a, b) = (pass(Box::new(out), false), pass(Box::new(err), true));
    let st = child.wait()?;
    let mut found = a.join().unwrap_or_default();
    found.extend(b.join().unwrap_or_default());
    found.sort();
    found.dedup();
    if !st.success() {
        bail!("tests failed ({st})");
    }
    Ok(found)
}

pub fn status(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let st = cmd.status()?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}
