//! A halting technique leaves the guest exactly as it found it, checked through the
//! test's own QMP monitor (the guest has a second one for `vmscope`): a running guest
//! runs again after each pass — also when `vmscope` gets SIGINT or SIGTERM in the
//! middle of one — and a guest paused beforehand (frozen for forensics) is never
//! resumed, not even for a moment: QEMU would announce that with a RESUME event.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmscope_hv::Hypervisor;
use vmscope_testbed::{Guest, boot};

const HALTING: [&str; 4] = ["halt-read", "halt-map", "halt-snap", "live-snap"];

fn vmscope(g: &Guest, cache: &Path, args: &[&str]) -> Command {
    common::vmscope_for(g, cache, args)
}

fn run_ok(mut c: Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "vmscope failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Whether the guest is paused, by the test's own monitor.
fn paused(g: &Guest) -> bool {
    g.vm.hv().is_paused().unwrap()
}

/// The STOP and RESUME events the test's monitor received since the last call.
fn stop_resume_events(g: &Guest) -> Vec<String> {
    let mut q = g.vm.hv().qmp();
    q.execute("query-status", None).unwrap(); // reads what arrived before the reply
    q.take_events().into_iter().map(|e| e.name).filter(|n| n == "STOP" || n == "RESUME").collect()
}

fn leaves_the_guest_as_found(id: &str) {
    let mut g = boot(id);
    let cache = tempfile::tempdir().unwrap();
    stop_resume_events(&g);

    for t in HALTING {
        let out = run_ok(vmscope(&g, cache.path(), &["--technique", t, "ps"]));
        assert!(out.lines().any(|l| l.split_whitespace().next() == Some("1")), "{t}: no pid 1 in\n{out}");
        assert!(!paused(&g), "{t} left a running guest paused");
        assert_eq!(stop_resume_events(&g), ["STOP", "RESUME"], "{t} paused the running guest once");
    }

    // Frozen for forensics: every halting technique and dump reads it, none resumes it.
    g.vm.hv().pause().unwrap();
    assert_eq!(stop_resume_events(&g), ["STOP"]);
    for t in HALTING {
        let out = run_ok(vmscope(&g, cache.path(), &["--technique", t, "ps"]));
        assert!(out.lines().any(|l| l.split_whitespace().next() == Some("1")), "{t}: no pid 1 in\n{out}");
        assert!(paused(&g), "{t} resumed a guest it did not pause");
    }
    let dir = tempfile::tempdir().unwrap();
    for t in ["halt-snap", "live-snap"] {
        let file = dir.path().join(format!("{t}.elf"));
        run_ok(vmscope(&g, cache.path(), &["--technique", t, "dump", file.to_str().unwrap()]));
        assert!(std::fs::metadata(&file).unwrap().len() > 1 << 20, "{t}: a dump was written");
        assert!(paused(&g), "dump by {t} resumed a guest it did not pause");
    }
    assert_eq!(stop_resume_events(&g), Vec::<String>::new(), "the frozen guest ran for a moment");
    g.vm.hv().resume().unwrap();
    assert_eq!(g.sh("echo alive"), "alive\n");
}

/// Sends `signal` to `vmscope --technique halt-read ps` once the test's monitor sees
/// the guest paused (the kernel is attached inside the pass, with an empty profile
/// cache, so the pass lasts long enough to be caught).
fn signal_mid_pass(id: &str, signal: i32) {
    let g = boot(id);
    for attempt in 1..=5 {
        let cache = tempfile::tempdir().unwrap();
        let mut child = vmscope(&g, cache.path(), &["--technique", "halt-read", "ps"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut caught = false;
        while start.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none() {
            if paused(&g) {
                // SAFETY: kill(2) of a child we spawned and have not reaped.
                unsafe { libc::kill(child.id() as i32, signal) };
                caught = true;
                break;
            }
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!paused(&g), "signal {signal}: the guest stayed paused; vmscope said: {stderr}");
        if caught {
            assert_eq!(out.status.code(), Some(128 + signal), "signal {signal}: {stderr}");
            eprintln!("attempt {attempt}: vmscope said: {stderr}");
            return;
        }
    }
    panic!("signal {signal}: never saw a halt-read pass hold the guest paused in 5 attempts");
}

#[test]
fn halting_leaves_the_guest_as_found_on_6_1() {
    leaves_the_guest_as_found("6.1");
}

#[test]
fn halting_leaves_the_guest_as_found_on_6_12() {
    leaves_the_guest_as_found("6.12");
}

#[test]
fn sigint_mid_pass_resumes_the_guest_on_6_1() {
    signal_mid_pass("6.1", libc::SIGINT);
}

#[test]
fn sigterm_mid_pass_resumes_the_guest_on_6_12() {
    signal_mid_pass("6.12", libc::SIGTERM);
}
