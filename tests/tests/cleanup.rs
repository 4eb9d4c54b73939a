//! No QEMU outlives its test: not after a panic, not after the test process is
//! killed outright.

use std::process::Command;
use std::time::{Duration, Instant};

use vmscope_testbed::process_alive;

/// Runs one of the helper tests below in a child process; returns (child, QEMU pid).
fn run_helper(name: &str, pid_file: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--include-ignored", "--nocapture"])
        .env("VMSCOPE_E2E_PID_FILE", pid_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for_pid(file: &std::path::Path) -> u32 {
    let t = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "helper never reported its QEMU");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_gone(pid: u32) {
    let t = Instant::now();
    while process_alive(pid) {
        assert!(t.elapsed() < Duration::from_secs(10), "QEMU {pid} outlived its test");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_qemu_outlives_a_panicking_test() {
    let file = std::env::temp_dir().join(format!("vmscope-e2e-panic-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut child = run_helper("helper_panics_with_a_running_guest", &file);
    let qemu = wait_for_pid(&file);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the helper was meant to fail");
    assert_gone(qemu);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn no_qemu_outlives_a_killed_test() {
    let file = std::env::temp_dir().join(format!("vmscope-e2e-kill-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut child = run_helper("helper_hangs_with_a_running_guest", &file);
    let qemu = wait_for_pid(&file);
    assert!(process_alive(qemu));
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert_gone(qemu);
    let _ = std::fs::remove_file(&file);
}

fn boot_and_report() -> vmscope_testbed::Guest {
    let g = vmscope_testbed::boot("6.1");
    let file = std::env::var("VMSCOPE_E2E_PID_FILE").expect("run by the cleanup tests");
    std::fs::write(file, g.vm.pid().to_string()).unwrap();
    g
}

#[test]
#[ignore = "helper of no_qemu_outlives_a_panicking_test"]
fn helper_panics_with_a_running_guest() {
    let _g = boot_and_report();
    panic!("deliberate failure with a guest running");
}

#[test]
#[ignore = "helper of no_qemu_outlives_a_killed_test"]
fn helper_hangs_with_a_running_guest() {
    let _g = boot_and_report();
    std::thread::sleep(Duration::from_secs(600));
}
