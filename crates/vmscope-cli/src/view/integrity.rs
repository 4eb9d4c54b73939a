//! `check`: the integrity checks, each finding with its evidence; the exit status
//! says whether anything was found (3) so that scripts can act on it.

use std::fmt::{self, Write as _};

use serde_json::json;
use vmscope_linux::{CheckReport, Kernel};
use vmscope_mem::PhysMem;

use super::Output;

/// The exit status of a check that found something.
pub const FOUND_STATUS: i32 = 3;

/// The error `check` ends with when it found something: the report is printed
/// already; the status tells the caller.
#[derive(Debug)]
pub struct Found(pub usize);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} finding{}", self.0, if self.0 == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Found {}

/// Every check: a line per check (examined, found or skipped), then each finding.
pub fn check<M: PhysMem>(technique: &str, k: &Kernel<M>) -> anyhow::Result<Output> {
    let r = k.check()?;
    let doc = json!({
        "technique": technique, "clean": r.clean(), "findings": r.findings, "checks": r.checks,
        "anomalies": r.anomalies,
    });
    Ok(Output { doc, table: text(&r), anomalies: r.anomalies })
}

/// The report as text.
fn text(r: &CheckReport) -> String {
    let mut s = format!("{:18} {:>8} {:>8}  {}\n", "CHECK", "EXAMINED", "FINDINGS", "NOTE");
    for c in &r.checks {
        let n = r.findings.iter().filter(|f| f.check == c.check).count();
        let note = c.skipped.as_deref().map_or(String::new(), |why| format!("skipped: {why}"));
        let _ = writeln!(s, "{:18} {:>8} {:>8}  {note}", c.check.name(), c.examined, n);
    }
    if r.findings.is_empty() {
        s.push_str("\nno findings\n");
    } else {
        let _ = writeln!(s, "\n{} finding{}:", r.findings.len(), if r.findings.len() == 1 { "" } else { "s" });
        for f in &r.findings {
            let _ = writeln!(s, "  {f}");
        }
    }
    s
}

/// `Err(Found)` when `out` is a check report with findings.
pub fn verdict(out: &Output) -> anyhow::Result<()> {
    match out.doc.get("findings").and_then(|f| f.as_array()) {
        Some(f) if !f.is_empty() => Err(Found(f.len()).into()),
        _ => Ok(()),
    }
}
