//! `vmscope-lab --smoke --experiment snapshot` boots a 256 MiB Linux guest under QEMU,
//! touches its RAM with the dirty workload, takes one halt-snap and one live-snap,
//! and writes real, positive measurements.

use std::process::Command;

#[test]
fn snapshot_smoke_measures_halt_and_live_snap() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let status = Command::new(env!("CARGO_BIN_EXE_vmscope-lab"))
        .args(["--smoke", "--experiment", "snapshot", "--kernel", "6.1", "--out"])
        .arg(out.path())
        .status()
        .expect("vmscope-lab runs");
    assert!(status.success(), "vmscope-lab --smoke --experiment snapshot failed: {status}");
    let csv = std::fs::read_to_string(out.path().join("snapshot.csv")).expect("snapshot.csv written");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    for c in
        ["technique", "ram_mib", "touched_mib", "dirty_mb_s", "pause_ms", "total_ms", "copied_bytes", "extra_host_mib"]
    {
        assert!(header.contains(&c), "column {c} missing from {header:?}");
    }
    let col = |row: &[&str], name: &str| -> f64 {
        let i = header.iter().position(|h| *h == name).expect("a known column");
        row[i].parse().unwrap_or_else(|_| panic!("{name} = `{}` is not a number", row[i]))
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let techniques: Vec<&str> =
        rows.iter().map(|r| r[header.iter().position(|h| *h == "technique").unwrap()]).collect();
    assert!(techniques.contains(&"halt-snap") && techniques.contains(&"live-snap/precopy"), "rows: {techniques:?}");
    for r in &rows {
        let touched = col(r, "touched_mib") * f64::from(1u32 << 20);
        assert!(col(r, "ram_mib") == 256.0, "smoke runs a 256 MiB guest: {r:?}");
        assert!(col(r, "copied_bytes") >= touched, "copied less than the touched RAM: {r:?}");
        assert!(col(r, "pause_ms") > 0.0 && col(r, "total_ms") >= col(r, "pause_ms"), "times: {r:?}");
        assert!(col(r, "dirty_mb_s") > 0.0, "the workload dirtied nothing: {r:?}");
    }
    let report = std::fs::read_to_string(out.path().join("report.md")).expect("report.md written");
    assert!(report.contains("### Findings") && out.path().join("snapshot.svg").exists());
}
