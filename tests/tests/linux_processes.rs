//! The process list rebuilt from guest RAM matches the guest's own /proc: a few
//! dozen user processes started with distinct names, users and command lines, each
//! found with the pid, ppid, uid, gid, comm, state, thread count and command line
//! the guest reports, and with its start time and resident set; a multi-threaded
//! process that burnt CPU has its threads, their names and its CPU time; the tree
//! agrees with them.

use std::collections::HashMap;

use vmscope_agent::{ExecRequest, ProcessInfo};
use vmscope_hv::Hypervisor;
use vmscope_linux::{Hints, Kernel, Process};
use vmscope_testbed::{Guest, boot_with};

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
    // Four threads (vmsw-1..3 beside the main one), after 250 ms of CPU in the main one.
    sh_as(g, 1004, &format!("/sbin/vmscope-workload threads 4 250 {quiet}"));
    std::thread::sleep(std::time::Duration::from_millis(500));
}

/// What the guest's /proc says of one task, from `/proc/PID[/task/TID]/stat`.
#[derive(Debug)]
struct Stat {
    comm: String,
    /// Clock ticks (USER_HZ, 100 per second).
    utime: u64,
    stime: u64,
    starttime: u64,
    /// Pages, from the mm's counters.
    rss: u64,
}

fn parse_stat(line: &str) -> Stat {
    let (open, close) = (line.find('(').expect("stat comm"), line.rfind(')').expect("stat comm"));
    let f: Vec<&str> = line[close + 2..].split(' ').collect();
    // f[0] is field 3 (state): utime is field 14, stime 15, starttime 22, rss 24.
    let n = |field: usize| f[field - 3].parse::<u64>().unwrap_or_else(|_| panic!("stat field {field}: {line}"));
    Stat { comm: line[open + 1..close].to_owned(), utime: n(14), stime: n(15), starttime: n(22), rss: n(24) }
}

/// Nanoseconds to USER_HZ clock ticks, as the kernel's nsec_to_clock_t does.
fn ticks(ns: u64) -> u64 {
    ns / 10_000_000
}

/// Start time, resident set, threads and CPU time against the guest's /proc.
fn check_details(g: &mut Guest, kernel: &Kernel<vmscope_mem::FileMem>, list: &[Process], pids: &[i32]) {
    let ours: HashMap<i32, &Process> = list.iter().map(|p| (p.pid, p)).collect();
    // Resident pages by a walk of the page tables (smaps). The mm's counters, which
    // /proc/PID/stat shows, lag behind what vmscope adds: the threads' cached counts
    // (6.1) or the per-CPU deltas (6.2+).
    let pid_list = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
    let out = g.sh(&format!(
        "for p in {pid_list}; do echo \"$(cat /proc/$p/stat)|$(grep '^Rss:' /proc/$p/smaps_rollup)\"; done"
    ));
    let mut errors = Vec::new();
    for (line, &pid) in out.lines().zip(pids) {
        let (stat, rss) = line.split_once('|').expect("stat|Rss");
        let want = parse_stat(stat);
        let rss_kib: u64 = rss.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("Rss: N kB");
        let p = ours[&pid];
        let start = p.start_boottime_ns.map(ticks);
        if start != Some(want.starttime) {
            errors.push(format!("pid {pid}: start {start:?} ticks, guest {}", want.starttime));
        }
        if p.rss_pages != Some(rss_kib / 4) {
            errors.push(format!("pid {pid}: rss {:?} pages, guest {} (stat {})", p.rss_pages, rss_kib / 4, want.rss));
        }
    }
    assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.join("\n"));

    // The multi-threaded workload: its threads by id and name, their CPU time.
    let mt = list.iter().find(|p| p.uid == 1004 && p.comm == "vmscope-workloa").expect("vmscope-workload running");
    assert_eq!(mt.threads, 4, "{mt:?}");
    let out = g.sh(&format!("for t in /proc/{}/task/*; do echo \"${{t##*/}} $(cat $t/stat)\"; done", mt.pid));
    let mut want: Vec<(i32, Stat)> = out
        .lines()
        .map(|l| {
            let (tid, stat) = l.split_once(' ').expect("tid stat");
            (tid.parse().expect("tid"), parse_stat(stat))
        })
        .collect();
    want.sort_by_key(|(tid, _)| *tid);
    let threads = kernel.threads(mt.pid).expect("the workload's threads");
    let mut got: Vec<_> = threads.threads.iter().collect();
    got.sort_by_key(|t| t.tid);
    let got_names: Vec<(i32, &str)> = got.iter().map(|t| (t.tid, t.comm.as_str())).collect();
    let want_names: Vec<(i32, &str)> = want.iter().map(|(tid, s)| (*tid, s.comm.as_str())).collect();
    assert_eq!(got_names, want_names, "threads of the workload");
    // CPU time: /proc scales the sampled utime and stime to the scheduler's exact
    // runtime, so they agree only within a few ticks; the main thread's 250 ms are
    // there, and the sleepers have next to none.
    for (t, (_, w)) in got.iter().zip(&want) {
        let (ours, guest) = (ticks(t.utime_ns + t.stime_ns), w.utime + w.stime);
        assert!(ours.abs_diff(guest) <= 3 + guest / 5, "thread {} ({}): {ours} ticks, guest {guest}", t.tid, t.comm);
    }
    let main = ticks(got[0].utime_ns + got[0].stime_ns);
    assert!(main >= 20, "the main thread burnt 250 ms, vmscope saw {main} ticks");
    let group = ticks(mt.utime_ns + mt.stime_ns);
    let guest_group = want.iter().map(|(_, w)| w.utime + w.stime).sum::<u64>();
    assert!(group.abs_diff(guest_group) <= 3 + guest_group / 5, "process: {group} ticks, guest {guest_group}");
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
    let pids: Vec<i32> = workload.iter().map(|p| p.pid).collect();

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

    check_details(&mut g, &kernel, &list.processes, &pids);

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
