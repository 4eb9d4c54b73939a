//! `vmscope ps --verify` and `lsmod --verify` on a QEMU guest whose processes churn:
//! every technique says whether its view was torn, how that was decided, the window
//! and the read set; the consistent techniques never return a torn view.

mod common;

use std::path::Path;

use vmscope_testbed::{Guest, boot};

/// `vmscope args...`'s stdout; it must succeed.
fn vmscope(g: &Guest, cache: &Path, args: &[&str]) -> String {
    String::from_utf8(common::vmscope_on(g, cache, args).stdout).unwrap()
}

fn verify_under_churn(id: &str) {
    let mut g = boot(id);
    let cache = tempfile::tempdir().unwrap();
    // Processes forked and reaped all the time (busybox: each `true` is a fork).
    g.sh("(while :; do /bin/true; done) >/dev/null 2>&1 &");
    let pids: Vec<i32> = g.agent.processes().unwrap().iter().map(|p| p.pid).collect();

    for t in ["live-map", "live-read", "halt-read", "consistent-read", "consistent-map"] {
        let doc: serde_json::Value =
            serde_json::from_str(&vmscope(&g, cache.path(), &["--technique", t, "ps", "--verify", "--json"])).unwrap();
        let c = &doc["consistency"];
        let method = c["method"].as_str().unwrap_or_else(|| panic!("{t}: no consistency.method in {c}"));
        let allowed: &[&str] = match t {
            "halt-read" => &["halted"],
            "live-map" | "live-read" => &["double-collect"],
            _ => &["double-collect", "halted"],
        };
        assert!(allowed.contains(&method), "{t}: method {method}");
        assert!(c["window_us"].as_u64().unwrap() > 0, "{t}: {c}");
        assert!(c["read_pages"].as_u64().unwrap() > 10, "{t}: {c}");
        assert!(c["read_bytes"].as_u64().unwrap() >= c["read_pages"].as_u64().unwrap(), "{t}: {c}");
        assert!(c["tries"].as_u64().unwrap() >= 1, "{t}: {c}");
        let torn = c["torn"].as_bool().unwrap();
        assert_eq!(torn, !c["torn_pages"].as_array().unwrap().is_empty(), "{t}: {c}");
        if t.starts_with("consistent") || t.starts_with("halt") {
            assert!(!torn, "{t} returned a torn view: {c}");
        }
        let listed: Vec<i64> =
            doc["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_i64().unwrap()).collect();
        // Long-lived processes (pid 1, the agent, ...) are in every view.
        for pid in pids.iter().filter(|&&p| p < 100) {
            assert!(listed.contains(&i64::from(*pid)), "{t}: pid {pid} missing");
        }
    }

    // Under churn both halted and consistent-read views may catch the kernel's own
    // transient states (a task between __exit_signal and leaving the task list, say):
    // every violation of a view that is not torn is intrinsic. (Which states a view
    // catches is chance; tests/tests/consistency.rs compares the two techniques on
    // one frozen moment.)
    let mut broken = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for round in 0..8 {
        for t in ["halt-read", "consistent-read"] {
            let doc: serde_json::Value =
                serde_json::from_str(&vmscope(&g, cache.path(), &["--technique", t, "ps", "--verify", "--json"]))
                    .unwrap();
            let c = &doc["consistency"];
            assert_eq!(c["rules_checked"].as_u64(), Some(11), "{t}: {c}");
            assert!(c["tasks_checked"].as_u64().unwrap() >= pids.len() as u64 / 2, "{t} round {round}: {c}");
            for v in c["violations"].as_array().unwrap() {
                assert_eq!(v["origin"], "intrinsic", "{t}: a violation in a view that is not torn: {v}");
                broken.entry(t).or_default().push(format!("{}: {}", v["rule"], v["detail"]));
            }
        }
    }
    eprintln!("violations under churn: {broken:#?}");

    let text = vmscope(&g, cache.path(), &["--technique", "consistent-read", "lsmod", "--verify"]);
    let line =
        text.lines().find(|l| l.starts_with("consistency:")).unwrap_or_else(|| panic!("no consistency line:\n{text}"));
    assert!(line.contains("not torn") && line.contains("window") && line.contains("pages"), "{line}");
    assert!(text.lines().any(|l| l.starts_with("invariants: ") && l.contains("of 11 rules")), "{text}");
}

#[test]
fn verify_under_churn_6_1() {
    verify_under_churn("6.1");
}

#[test]
fn verify_under_churn_6_12() {
    verify_under_churn("6.12");
}
