//! The process list rebuilt from guest RAM matches the guest's own /proc: a few
//! dozen user processes started with distinct names, users and command lines, each
//! found with the pid, ppid, uid, gid, comm, state, thread count and command line
//! the guest reports; threads and the tree agree with them.

use std::collections::HashMap;

use vmscope_agent::{ExecRequest, ProcessInfo};
use vmscope_e2e::{Guest, boot_with};
use vmscope_hv::Hypervisor;
use vmscope_linux::{Hints, Kernel, Process};

/// Runs a shell line as `uid`, which must exit 0 (it backgrounds what it starts).
fn sh_as(g: &mut Guest, uid: u32, line: &str) {
    let r = g
        .agent
        .exec(ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), line.into()],
            uid: Some(uid),
            ..Default::default()
        })
        .expect("exec");
    assert!(r.success(), "`{line}` as {uid}: {} {}", r.status_text(), String::from_utf8_lossy(&r.stderr));
}

/// Starts 40 sleepers: 10 per user (root, alice, bob, carol), each with its own
/// command line, and under distinct names (busybox symlinks, `exec -a`).
fn start_workload(g: &mut Guest) {
    g.sh("mkdir -p /tmp/vms && for i in 0 1 2 3 4 5 6 7 8 9; do ln -sf /bin/busybox /tmp/vms/busybox_w$i; done");
    let quiet = "</dev/null >/dev/null 2>&1 &";
    g.sh(&format!("for i in 0 1 2 3 4 5 6 7 8 9; do sleep 400$i {quiet} done"));
    sh_as(g, 1001, &format!("for i in 0 1 2 3 4 5 6 7 8 9; do sleep 100$i {quiet} done"));
    sh_as(g, 1002, &format!("for i in 0 1 2 3 4 5 6 7 8 9; do /tmp/vms/busybox_w$i sleep 200$i {quiet} done"));
    sh_as(
        g,
        1003,
        &format!(
            "for i in 0 1 2 3 4 5 6 7 8 9; do sh -c \"exec -a busybox-carol-$i /bin/busybox sleep 300$i\" {quiet} done"
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn same(ours: &Process, want: &ProcessInfo) -> Result<(), String> {
    let cmdline = ours.cmdline.as_ref().map(|c| c.join(" "));
    let got = (ours.ppid, ours.uid, ours.gid, ours.comm.as_str(), ours.state, ours.threads, cmdline.as_deref());
    let exp =
        (want.ppid, want.uid, want.gid, want.comm.as_str(), want.state, want.threads, Some(want.cmdline.trim_end()));
    if got == exp { Ok(()) } else { Err(format!("pid {}: vmscope {got:?}, guest {exp:?}", want.pid)) }
}

fn check(mut g: Guest) {
    start_workload(&mut g);
    let truth = g.agent.processes().expect("the guest's process list");
    let workload: Vec<&ProcessInfo> = truth
        .iter()
        .filter(|p| {
            p.cmdline.contains(" 100")
                || p.cmdline.contains(" 200")
                || p.cmdline.contains(" 300")
                || p.cmdline.contains(" 400")
        })
        .collect();
    assert_eq!(workload.len(), 40, "the workload did not start: {truth:#?}");

    let regs = g.vm.hv().vcpu_registers(0).expect("registers");
    let kernel = Kernel::attach(g.ram(), Hints::from_registers(regs.cr3, regs.cr4)).expect("attach");
    let list = kernel.processes();
    let ours: HashMap<i32, &Process> = list.processes.iter().map(|p| (p.pid, p)).collect();

    let mut errors = Vec::new();
    // Every workload process, and every other user process that was asleep (the
    // agent's own helpers come and go).
    for want in truth.iter().filter(|p| workload.contains(p) || (p.state == 'S' && !p.cmdline.is_empty())) {
        match ours.get(&want.pid) {
            Some(p) => errors.extend(same(p, want).err()),
            None => errors.push(format!("pid {} ({}) missing", want.pid, want.comm)),
        }
    }
    assert!(errors.is_empty(), "{} mismatches:\n{}\nanomalies: {:#?}", errors.len(), errors.join("\n"), list.anomalies);
    // Kernel threads: present, flagged, no command line.
    let kthreadd = ours.get(&2).expect("kthreadd");
    assert!(kthreadd.kernel_thread && kthreadd.cmdline.as_deref() == Some(&[][..]) && kthreadd.comm == "kthreadd");
    assert!(list.processes.iter().filter(|p| p.ppid == 2).all(|p| p.kernel_thread));
    // Users' processes have memory and names as started.
    for p in list.processes.iter().filter(|p| p.uid == 1002) {
        assert!(p.comm.starts_with("busybox_w") && p.rss_pages.unwrap_or(0) > 0, "{p:?}");
    }
    assert!(
        list.processes
            .iter()
            .any(|p| { p.uid == 1003 && p.cmdline.as_ref().is_some_and(|c| c[0] == "busybox-carol-7") })
    );

    // Threads of a sleeper: itself.
    let sleeper = workload[0];
    let threads = kernel.threads(sleeper.pid).expect("a known pid");
    assert_eq!(threads.threads.len(), 1);
    assert_eq!(threads.threads[0].tid, sleeper.pid);
    assert!(kernel.threads(1 << 30).is_none());

    // The tree puts every workload process under its parent.
    let tree = kernel.process_tree();
    let walk = tree.walk();
    assert_eq!(walk.len(), list.processes.len());
    let depth: HashMap<i32, usize> = walk.iter().map(|(d, p)| (p.pid, *d)).collect();
    for w in &workload {
        assert_eq!(depth[&w.pid], depth[&w.ppid] + 1, "pid {} under {}", w.pid, w.ppid);
    }
}

#[test]
fn linux_6_1_kaslr() {
    check(boot_with("6.1", |c| c.kaslr = true));
}

#[test]
fn linux_6_12_kaslr() {
    check(boot_with("6.12", |c| c.kaslr = true));
}

#[test]
fn linux_6_12_five_level() {
    check(boot_with("6.12", |c| c.la57 = true));
}
