//! `vmscope-lab --smoke --experiment scale` boots a Debian 6.1 guest under QEMU and
//! writes real measurements: every column, passes that took time, and as many tasks
//! found as the guest's own /proc counts.

use std::process::Command;

#[test]
fn scale_smoke_measures_tasks_against_proc() {
    let out = std::env::temp_dir().join(format!("vmscope-lab-scale-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let st = Command::new(env!("CARGO_BIN_EXE_vmscope-lab"))
        .args(["--smoke", "--experiment", "scale", "--kernel", "6.1", "--out"])
        .arg(&out)
        .status()
        .expect("vmscope-lab runs");
    assert!(st.success(), "vmscope-lab --smoke --experiment scale failed");
    let csv = std::fs::read_to_string(out.join("scale.csv")).expect("scale.csv written");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    for c in [
        "guest",
        "ram_mib",
        "proc_tasks",
        "technique",
        "passes",
        "passes_per_s",
        "median_ms",
        "items",
        "items_minus_proc",
    ] {
        assert!(header.contains(&c), "column {c} missing from {header:?}");
    }
    let col = |row: &[&str], name: &str| -> f64 {
        let i = header.iter().position(|h| *h == name).unwrap();
        row[i].parse().unwrap_or_else(|_| panic!("{name} = {:?} is not a number", row[i]))
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let techniques: Vec<&str> =
        rows.iter().map(|r| r[header.iter().position(|h| *h == "technique").unwrap()]).collect();
    assert!(techniques.contains(&"live-map") && techniques.contains(&"halt-read"), "rows: {techniques:?}");
    for r in &rows {
        let proc_tasks = col(r, "proc_tasks");
        assert!(proc_tasks >= 90.0, "the guest has {proc_tasks} tasks, not about 100: {r:?}");
        assert!(col(r, "passes") >= 3.0 && col(r, "passes_per_s") > 0.0 && col(r, "median_ms") > 0.0, "{r:?}");
        let diff = col(r, "items_minus_proc");
        assert!(diff.abs() <= 3.0, "items found differ from /proc's count by {diff}: {r:?}");
    }
    for f in ["report.md", "scale-tasks.svg", "scale-ram.svg", "scale-fit.csv"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("### Findings"), "no findings in the report");
    std::fs::remove_dir_all(&out).unwrap();
}
