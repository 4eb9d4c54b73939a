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
    Ok(Output { doc, table: text(&r), findings: r.findings.len(), anomalies: r.anomalies })
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
    match out.findings {
        0 => Ok(()),
        n => Err(Found(n).into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vmscope_linux::checks::CheckStatus;
    use vmscope_linux::{CheckKind, CheckReport, Finding};
    use vmscope_mem::Gva;

    use super::*;

    fn output(doc: serde_json::Value, findings: usize) -> Output {
        Output { doc, table: String::new(), anomalies: Vec::new(), findings }
    }

    #[test]
    fn only_a_report_with_findings_ends_in_status_3() {
        let found = verdict(&output(json!({}), 2)).unwrap_err();
        assert_eq!(found.downcast_ref::<Found>().map(|f| f.0), Some(2));
        assert!(verdict(&output(json!({}), 0)).is_ok());
        // Another view's document with a `findings` key does not decide the status.
        assert!(verdict(&output(json!({ "findings": [{}] }), 0)).is_ok());
    }

    #[test]
    fn the_text_has_a_line_per_check_then_each_finding() {
        let r = CheckReport {
            findings: vec![Finding {
                check: CheckKind::Idt,
                subject: "IDT vector 0x03".into(),
                at: Some(Gva::new(0x1030)),
                value: Some(Gva::new(0xdead)),
                found: "outside kernel text and every listed module".into(),
                expected: "a handler in kernel text".into(),
            }],
            checks: vec![
                CheckStatus { check: CheckKind::Idt, examined: 256, skipped: None },
                CheckStatus { check: CheckKind::TtyHook, examined: 0, skipped: Some("no tty_ldiscs".into()) },
            ],
            anomalies: Vec::new(),
        };
        let want = "CHECK              EXAMINED FINDINGS  NOTE\n\
                    idt                     256        1  \n\
                    tty_hook                  0        0  skipped: no tty_ldiscs\n\
                    \n1 finding:\n  \
                    idt: IDT vector 0x03 at 0x1030 = 0xdead: outside kernel text and every listed module; \
                    expected a handler in kernel text\n";
        assert_eq!(text(&r), want);
    }
}
