//! A consistent technique on a QEMU it cannot pause (started without `-qmp`): under
//! fast process churn, every `vmscope -t consistent-read ps --verify` either prints
//! a view validated live (double collect) or fails saying the view could not be
//! validated and what to do — it never prints a torn view, and never falls back to a
//! pause it cannot make. Once the churn stops, the same command validates.

mod common;

use common::ReadmeQemu;

#[test]
fn without_qmp_a_torn_view_is_an_error_not_an_answer() {
    let q = ReadmeQemu::start_with("6.1", false);
    let churn = q.agent().sh("/sbin/vmscope-workload churn procs max >/dev/null 2>&1 & echo $!").unwrap();
    let (mut validated, mut refused) = (0, 0);
    for run in 0..15 {
        let o = q.vmscope(&["-t", "consistent-read", "ps", "--verify", "--json"]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let c = &doc["consistency"];
            assert_eq!(c["torn"], false, "run {run}: {c}");
            assert_eq!(c["method"], "double-collect", "run {run}: no QMP, so no halted fallback: {c}");
            validated += 1;
        } else {
            assert_eq!(o.status.code(), Some(1), "run {run}: {stderr}");
            assert!(
                stderr.contains("could not be validated") && stderr.contains("--qmp"),
                "run {run}: the error says what happened and what to do: {stderr}"
            );
            refused += 1;
        }
    }
    eprintln!("without QMP under churn: {validated} views validated, {refused} refused");
    assert!(refused > 0, "fast churn tore every try of some pass in 15 runs");

    // Quiet again: the same command validates at once.
    q.agent().sh(&format!("kill {}; sleep 0.5", churn.trim())).unwrap();
    let o = q.vmscope(&["-t", "consistent-read", "ps", "--verify", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((&doc["consistency"]["torn"], &doc["consistency"]["method"]), (&false.into(), &"double-collect".into()));
}
