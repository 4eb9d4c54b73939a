//! `cargo xtask test`: images if missing, then every test of the workspace.

use std::process::Command;

use anyhow::bail;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    crate::images::ensure()?;
    // drgn's checks need Debian's DWARF vmlinux; without it they print SKIPPED.
    if let Err(e) = crate::images::debug::ensure() {
        eprintln!("xtask: no debug vmlinux for drgn ({e:#}); the drgn checks will be skipped");
    }
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
    let mut skipped = run_scanning(&mut cmd, "SKIPPED:")?;
    if let crate::fuzz::Fuzzed::Skipped(why) = crate::fuzz::run(crate::fuzz::TEST_SECONDS, crate::fuzz::Build::Quick)? {
        eprintln!("SKIPPED: {why}");
        skipped.push(format!("SKIPPED: {why}"));
    }
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

/// Formatting, clippy with warnings as errors, docs without warnings, and every
/// publishable crate packaged on its own (what a user importing one crate gets).
pub fn lint() -> anyhow::Result<()> {
    let root = crate::project_root();
    let cargo = || {
        let mut c = Command::new("cargo");
        c.current_dir(&root);
        c
    };
    status(cargo().args(["fmt", "--all", "--check"]), "cargo fmt --check")?;
    status(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]), "clippy")?;
    status(
        cargo().args(["doc", "--workspace", "--no-deps", "--quiet"]).env("RUSTDOCFLAGS", "-D warnings"),
        "cargo doc (warnings denied)",
    )?;
    layering(&root)?;
    let crates = publishable(&root)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let verify = target.join("package-verify");
    forget_unpacked(&verify, &crates)?;
    eprintln!("xtask: packaging {}", crates.join(", "));
    let mut package = cargo();
    // --allow-dirty: a working tree with uncommitted changes packages too (CI's is clean).
    package.args(["package", "--quiet", "--allow-dirty", "--target-dir"]).arg(&verify);
    for c in &crates {
        package.args(["-p", c]);
    }
    status(&mut package, "cargo package")
}

/// The crates a user imports alone pull in no hypervisor, technique, CLI or test
/// crate (DESIGN.md: the graph points one way).
fn layering(root: &std::path::Path) -> anyhow::Result<()> {
    const ALLOWED: &[(&str, &[&str])] = &[
        ("vmscope-mem", &["vmscope-mem"]),
        ("vmscope-x86", &["vmscope-mem", "vmscope-x86"]),
        ("vmscope-linux", &["vmscope-mem", "vmscope-x86", "vmscope-linux"]),
    ];
    const FOREIGN: &[&str] = &["kvm-ioctls", "clap", "signal-hook"];
    for (krate, allowed) in ALLOWED {
        let out = Command::new("cargo")
            .current_dir(root)
            .args(["tree", "-e", "normal", "--prefix", "none", "-p", krate])
            .output()?;
        if !out.status.success() {
            bail!("cargo tree -p {krate} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if (name.starts_with("vmscope-") && !allowed.contains(&name)) || FOREIGN.contains(&name) {
                bail!("{krate} depends on {name}: a crate users import alone must not pull it in");
            }
        }
    }
    Ok(())
}

/// `cargo package` verifies each crate against the others through a temporary local
/// registry, which cargo unpacks under `$CARGO_HOME/registry/src/-HASH/` and builds,
/// and it treats both as fresh forever for the same name and version (registry crates
/// never change): a second run would verify against the first run's sources. So the
/// verification builds in a target directory of its own (`verify`), and our crates'
/// unpacked copies and builds are removed before each run; third-party builds stay.
fn forget_unpacked(verify: &std::path::Path, crates: &[String]) -> anyhow::Result<()> {
    let ours = |name: &str| crates.iter().any(|c| name.strip_prefix(c.as_str()).is_some_and(|v| v.starts_with('-')));
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")));
    let registries = home.and_then(|h| std::fs::read_dir(h.join("registry/src")).ok());
    let local = registries.into_iter().flatten().flatten().filter(|r| r.file_name().to_string_lossy().starts_with('-'));
    let fingerprints = std::fs::read_dir(verify.join("debug/.fingerprint")).into_iter().flatten().flatten();
    for dir in local.flat_map(|r| std::fs::read_dir(r.path()).into_iter().flatten().flatten()).chain(fingerprints) {
        if ours(&dir.file_name().to_string_lossy()) {
            std::fs::remove_dir_all(dir.path())?;
        }
    }
    Ok(())
}

/// The workspace crates under `crates/` that may be published (no `publish = false`).
fn publishable(root: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let out =
        Command::new("cargo").current_dir(root).args(["metadata", "--format-version", "1", "--no-deps"]).output()?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let crates_dir = root.join("crates");
    let mut names: Vec<String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["publish"].is_null())
        .filter(|p| p["manifest_path"].as_str().is_some_and(|m| std::path::Path::new(m).starts_with(&crates_dir)))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
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
