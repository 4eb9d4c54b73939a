//! CI smoke test of the lab: each experiment's `--smoke` run (one short
//! configuration) measures something real, and the report it writes is whole: a
//! Findings paragraph per section, every referenced SVG present and an SVG.
//!
//! Needs guest images (`VMSCOPE_IMAGES` or target/guest-images) and /dev/kvm; says
//! `SKIPPED: ...` and passes without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Runs the lab with `args` into a fresh directory and returns it, or `None` (and
/// says why) where this machine cannot run guests.
fn lab(name: &str, args: &[&str]) -> Option<PathBuf> {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("SKIPPED: {name}: no /dev/kvm");
        return None;
    }
    let images = std::env::var_os("VMSCOPE_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guest-images"));
    if !images.join("manifest.json").exists() {
        eprintln!("SKIPPED: {name}: no guest images in {} (cargo xtask images)", images.display());
        return None;
    }
    let out = std::env::temp_dir().join(format!("vmscope-lab-smoke-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let t = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmscope-lab"));
    if let (None, Some(vmm)) = (std::env::var_os("VMSCOPE_VMM"), vmm_binary()) {
        cmd.env("VMSCOPE_VMM", vmm);
    }
    let run =
        cmd.args(args).arg("--out").arg(&out).arg("--images").arg(&images).output().expect("the lab binary starts");
    eprintln!("{name}: {:.1} s\n{}", t.elapsed().as_secs_f64(), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{name}: the lab failed: {}", String::from_utf8_lossy(&run.stderr));
    Some(out)
}

/// The built-in VMM beside the lab binary, where a workspace build put it.
fn vmm_binary() -> Option<PathBuf> {
    Some(Path::new(env!("CARGO_BIN_EXE_vmscope-lab")).with_file_name("vmscope-vmm")).filter(|p| p.is_file())
}

/// The CSV's rows as maps from column name to value, after checking `columns` are there.
fn csv(path: &Path, columns: &[&str]) -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().expect("a header").split(',').map(str::to_owned).collect();
    for c in columns {
        assert!(header.iter().any(|h| h == c), "{}: no column {c} in {header:?}", path.display());
    }
    let rows: Vec<Vec<(String, String)>> =
        lines.map(|l| header.iter().cloned().zip(l.split(',').map(str::to_owned)).collect()).collect();
    assert!(!rows.is_empty(), "{}: no rows", path.display());
    rows
}

fn value(row: &[(String, String)], col: &str) -> f64 {
    let v = &row.iter().find(|(c, _)| c == col).unwrap_or_else(|| panic!("no {col}")).1;
    v.parse().unwrap_or_else(|_| panic!("{col} = `{v}` is not a number"))
}

/// Every `## ` section has a `### Findings` paragraph with text; every `![..](x.svg)`
/// exists and is an SVG; run.json and environment.json say how to repeat the run.
fn check_report(dir: &Path, sections: usize) {
    let report = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    let parts: Vec<&str> = report.split("\n## ").skip(1).filter(|s| !s.starts_with("Environment")).collect();
    assert_eq!(parts.len(), sections, "sections in report.md:\n{report}");
    for part in parts {
        let title = part.lines().next().unwrap_or("");
        let after = part.split("### Findings").nth(1).unwrap_or_else(|| panic!("section `{title}` has no Findings"));
        assert!(after.trim_start().starts_with("- **"), "section `{title}`: an empty Findings paragraph");
    }
    let mut svgs = 0;
    for piece in report.split("](").skip(1) {
        let file = piece.split(')').next().unwrap_or("");
        if file.ends_with(".svg") {
            let svg = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{file} is not an SVG");
            svgs += 1;
        }
    }
    assert!(svgs >= 1, "report.md references no SVG");
    assert!(report.contains("| seed | 1 |") && report.contains("| command line | `vmscope-lab --smoke"), "{report}");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).expect("run.json")).unwrap();
    assert!(run["args"].as_array().is_some_and(|a| a.iter().any(|x| x == "--smoke")), "{run}");
}

#[test]
fn frequency_smoke_measures_and_reports() {
    let Some(dir) = lab(
        "frequency",
        &[
            "--smoke",
            "--experiment",
            "frequency",
            "--kernel",
            "6.1",
            "--technique",
            "live-map",
            "--technique",
            "halt-read",
        ],
    ) else {
        return;
    };
    let rows = csv(
        &dir.join("frequency.csv"),
        &["technique", "passes", "failed", "passes_per_s", "cpu_us_per_pass", "items", "anomalies", "first_error"],
    );
    let techniques: Vec<&str> =
        rows.iter().map(|r| r.iter().find(|c| c.0 == "technique").unwrap().1.as_str()).collect();
    assert_eq!(techniques, ["live-map", "halt-read"]);
    for r in &rows {
        for col in ["passes", "passes_per_s", "cpu_us_per_pass", "items"] {
            assert!(value(r, col) > 0.0, "{col} not positive in {r:?}");
        }
    }
    check_report(&dir, 1);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("the fastest technique was") && report.contains("Against the study"), "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn consistency_smoke_measures_and_reports() {
    let Some(dir) = lab("consistency", &["--smoke", "--experiment", "consistency", "--kernel", "6.1"]) else {
        return;
    };
    let rows = csv(
        &dir.join("consistency.csv"),
        &["churn", "technique", "passes", "passes_per_s", "inconsistent_pct", "first_error"],
    );
    assert_eq!(rows.len(), 2, "one churn level, two techniques: {rows:?}");
    for r in &rows {
        assert!(value(r, "passes") > 0.0 && value(r, "passes_per_s") > 0.0, "{r:?}");
        assert!((0.0..=100.0).contains(&value(r, "inconsistent_pct")), "{r:?}");
    }
    check_report(&dir, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn pause_smoke_measures_and_reports() {
    let Some(dir) = lab("pause", &["--smoke", "--experiment", "pause", "--hypervisor", "builtin"]) else {
        return;
    };
    let rows = csv(&dir.join("pause.csv"), &["vcpus", "step", "samples", "median_us", "p99_us", "moved_while_paused"]);
    for r in &rows {
        assert!(value(r, "samples") > 0.0 && value(r, "median_us") > 0.0, "{r:?}");
        assert_eq!(value(r, "moved_while_paused"), 0.0, "a pause that did not stop the guest: {r:?}");
    }
    let halt = csv(&dir.join("pause_halt.csv"), &["technique", "passes", "passes_per_s"]);
    for r in &halt {
        assert!(value(r, "passes") > 0.0 && value(r, "passes_per_s") > 0.0, "{r:?}");
    }
    check_report(&dir, 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn impact_smoke_measures_and_reports() {
    let Some(dir) = lab("impact", &["--smoke", "--experiment", "impact", "--kernel", "6.1"]) else { return };
    let rows = csv(
        &dir.join("impact.csv"),
        &["workload", "technique", "frequency", "figure", "slowdown_pct", "passes_per_s", "paused_pct"],
    );
    assert!(rows.iter().any(|r| r.iter().any(|(c, v)| c == "technique" && v.starts_with("none"))), "a baseline row");
    for r in &rows {
        assert!(value(r, "figure") > 0.0, "the workload reported its figure: {r:?}");
        let monitored = !r.iter().any(|(c, v)| c == "technique" && v.starts_with("none"));
        if monitored {
            assert!(value(r, "passes_per_s") > 0.0, "the technique monitored meanwhile: {r:?}");
            value(r, "slowdown_pct");
        }
    }
    let halted = rows.iter().find(|r| r.iter().any(|(c, v)| c == "technique" && v == "halt-read")).expect("halt-read");
    assert!(value(halted, "paused_pct") > 0.0, "a halting technique paused the guest: {halted:?}");
    check_report(&dir, 1);
    std::fs::remove_dir_all(dir).unwrap();
}
