//! `vmscope watch` on a Debian 6.1 guest: a process started and killed and a module
//! loaded and unloaded in the guest (through the agent) appear as events with the
//! PID, comm and name the guest itself reported; SIGINT ends the watch cleanly with a
//! summary; a halting technique pauses the guest once per pass and leaves it running;
//! the agent technique watches too.

mod common;

use std::time::Duration;

use common::watch::Watching;
use serde_json::Value;
use vmscope_testbed::{GuestImages, boot};

fn is(v: &Value, event: &str, key: &str, want: &Value) -> bool {
    v["event"] == event && &v[key] == want
}

/// What the test's own QMP monitor saw of pauses and resumes since the last call.
fn stop_resume(g: &vmscope_testbed::Guest) -> (usize, usize) {
    let mut q = g.vm.hv().qmp();
    q.execute("query-status", None).unwrap();
    let names: Vec<String> = q.take_events().into_iter().map(|e| e.name).collect();
    (names.iter().filter(|n| *n == "STOP").count(), names.iter().filter(|n| *n == "RESUME").count())
}

#[test]
fn watch_sees_processes_and_modules_come_and_go_on_6_1() {
    if !GuestImages::present_or_skip() {
        return;
    }
    let mut g = boot("6.1");
    let cache = tempfile::tempdir().unwrap();
    let qmp = g.vm.extra_qmp_socket();
    assert!(!g.sh("cat /proc/modules").contains("dummy "), "dummy is not loaded at boot");

    let before: Vec<(i32, String)> = g.agent.processes().unwrap().into_iter().map(|p| (p.pid, p.comm)).collect();
    let mut w = Watching::start(g.vm.pid(), &qmp, cache.path(), &[], &["--hz", "50"]);
    w.wait_running();

    // A process: its PID as the guest's shell reported it.
    let out = g.sh("sleep 100000 </dev/null >/dev/null 2>&1 & echo $! $$");
    let ids: Vec<i64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    let (pid, shell) = (ids[0], ids[1]);
    // Its shell has exited by now: the parent it was given then.
    let stat = g.sh(&format!("cat /proc/{pid}/stat"));
    let adopted: i64 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let start =
        w.wait_for("the start of sleep", Duration::from_secs(20), |v| is(v, "process-start", "pid", &pid.into()));
    // Seen as the forked shell (`sh`), as busybox re-executing itself for the applet
    // (`/proc/self/exe`: `exe`, seen under load), or once it is `sleep`.
    assert!(["sleep", "sh", "exe"].iter().any(|c| start["comm"] == *c), "{start}");
    assert!(
        start["ppid"] == shell || start["ppid"] == adopted,
        "parent: the shell {shell} or, once it exited, {adopted} (the guest's /proc/{pid}/stat): {start}"
    );
    assert_eq!(start["uid"], 0, "{start}");
    g.sh(&format!("kill {pid}"));
    let exit = w.wait_for("the exit of sleep", Duration::from_secs(20), |v| is(v, "process-exit", "pid", &pid.into()));
    assert_eq!(exit["comm"], "sleep", "as last seen: {exit}");

    // A module: its name and size as the guest's /proc/modules says.
    g.sh("insmod /lib/modules/dummy.ko");
    let line = g.sh("grep '^dummy ' /proc/modules");
    let size: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let load =
        w.wait_for("the load of dummy", Duration::from_secs(20), |v| is(v, "module-load", "name", &"dummy".into()));
    assert_eq!(load["size"], size, "{load} vs /proc/modules: {line}");
    g.sh("rmmod dummy");
    w.wait_for("the unload of dummy", Duration::from_secs(20), |v| is(v, "module-unload", "name", &"dummy".into()));

    // No process the guest had all along came or went (a torn view could make a
    // watch say so): none of them is in an event.
    let after: Vec<(i32, String)> = g.agent.processes().unwrap().into_iter().map(|p| (p.pid, p.comm)).collect();
    let stable: Vec<i32> = before.iter().filter(|p| after.contains(p)).map(|p| p.0).collect();
    assert!(stable.len() > 20, "the guest's processes before and after: {stable:?}");
    for l in &w.seen {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["event"].is_string() && v["pid"].as_i64().is_some_and(|p| stable.contains(&(p as i32))) {
            panic!("an event for a process that ran all along: {v}");
        }
    }

    // SIGINT: a clean end, with a summary.
    w.signal(libc::SIGINT);
    let (status, err) = w.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "SIGINT ends the watch cleanly: {err}");
    eprintln!("watch printed:\n{}", w.seen.join("\n"));
    let s = w.summary();
    assert_eq!(s["technique"], "live-map", "{s}");
    assert!(s["ended"].as_str().unwrap().contains("signal 2"), "{s}");
    let passes = s["figures"]["passes"].as_u64().unwrap();
    assert!(passes >= 50, "{passes} passes at 50 Hz over several seconds: {s}");
    assert!(s["figures"]["pass_p99_us"].as_u64().unwrap() > 0, "{s}");

    // A halting technique: the guest paused once per pass (and once to attach), and
    // running afterwards.
    stop_resume(&g);
    let mut w =
        Watching::start(g.vm.pid(), &qmp, cache.path(), &["--technique", "halt-map"], &["--hz", "20", "--count", "10"]);
    let (status, err) = w.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(w.summary()["figures"]["passes"], 10);
    assert_eq!(stop_resume(&g), (11, 11), "one pause and one resume per pass, one pass to attach");
    assert!(!vmscope_hv::Hypervisor::is_paused(g.vm.hv()).unwrap(), "the guest runs after the watch");

    // The agent technique (QEMU serves one client on the agent's socket: the test's
    // goes first).
    let vmscope_testbed::Guest { agent, vm, .. } = g;
    drop(agent);
    let mut w =
        Watching::start(vm.pid(), &qmp, cache.path(), &["--technique", "agent"], &["--hz", "5", "--count", "3"]);
    let (status, err) = w.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{err}");
    let s = w.summary();
    assert_eq!((&s["technique"], &s["figures"]["passes"]), (&"agent".into(), &3.into()), "{s}");
}
