//! The deeper views rebuilt from guest RAM match what the guest itself reports:
//! memory maps against `/proc/PID/maps` (byte for byte), open files against
//! `readlink /proc/PID/fd/N` and `/proc/PID/fdinfo/N`, the working directory, root
//! and executable against their links, the environment against `/proc/PID/environ`,
//! and the kernel log against `dmesg -r` and `/dev/kmsg` (sequence numbers too).
//!
//! The guest runs `vmscope-workload hold` in a directory reached through a tmpfs
//! and a bind mount on it, so paths cross mounts (and a bind mount's root that is
//! not its file system's root); it holds regular, deleted and appended-to files, a
//! pipe, an eventfd, an epoll instance, a listening unix socket, a memfd mapped
//! shared, a file mapped at an offset, a descriptor past the first 64, and writes a
//! marker to `/dev/kmsg`. One boot per kernel serves every check, those of
//! [`system`] too (sockets, mounts, namespaces, cgroup, credentials).

#[path = "linux_views/system.rs"]
mod system;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use vmscope_hv::Hypervisor;
use vmscope_linux::{FileKind, Hints, Kernel, LogFormat, format_log, format_maps};
use vmscope_mem::FileMem;
use vmscope_testbed::{Guest, boot_with, eventually};

/// Where the workload holds its files: a bind mount (of /tmp/vmsv-src) on a tmpfs.
const DIR: &str = "/mnt/vmsv/bound/hold";

/// Starts the workload with a known environment; returns its pid and that of its
/// child in namespaces of its own (0 if the guest did not let it unshare).
fn start_hold(g: &mut Guest) -> (i32, i32) {
    g.sh("mkdir -p /mnt/vmsv /tmp/vmsv-src && mount -t tmpfs vmsv /mnt/vmsv && mkdir /mnt/vmsv/bound \
         && mount --bind /tmp/vmsv-src /mnt/vmsv/bound");
    let long = "x".repeat(300);
    let pid: i32 = g
        .sh(&format!(
            "env -i VMSCOPE_VIEWS=1 PATH=/sbin:/bin LONG={long} EMPTY= /sbin/vmscope-workload hold {DIR} \
             </dev/null >/tmp/hold.out 2>&1 & echo $!"
        ))
        .trim()
        .parse()
        .expect("the workload's pid");
    let up = eventually(Duration::from_secs(30), || g.sh("cat /tmp/hold.out").contains("hold: up"));
    let out = g.sh("cat /tmp/hold.out");
    assert!(up, "the workload did not come up: {out}");
    let child = out.split("ns=").nth(1).and_then(|c| c.split_whitespace().next()).and_then(|c| c.parse().ok());
    let child = child.unwrap_or_else(|| panic!("no ns=CHILD in {out:?}"));
    if child == 0 {
        eprintln!("SKIPPED: the namespaced child (the guest refused unshare): {out}");
    }
    (pid, child)
}

fn attach(g: &Guest) -> Kernel<FileMem> {
    let regs = g.vm.hv().vcpu_registers(0).expect("registers");
    Kernel::attach(g.ram(), Hints::from_registers(regs.cr3, regs.cr4)).expect("attach")
}

/// Processes that sit still while the test reads them: init, the workload and the
/// sleepers (not the agent, whose commands come and go).
fn still(g: &mut Guest, hold: i32) -> Vec<i32> {
    let mut pids = vec![1, hold];
    pids.extend(g.sh("pidof sleep").split_whitespace().map(|p| p.parse::<i32>().expect("pid")));
    pids
}

/// One shell command's output per pid, split on `== PID` lines.
fn per_pid(g: &mut Guest, pids: &[i32], each: &str) -> HashMap<i32, String> {
    let list = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
    let out = g.sh(&format!("for p in {list}; do echo \"== $p\"; {each}; done"));
    let mut map = HashMap::new();
    for part in out.split("== ").skip(1) {
        let (pid, body) = part.split_once('\n').unwrap_or((part, ""));
        map.insert(pid.trim().parse().expect("pid"), body.to_owned());
    }
    map
}

fn check_maps(g: &mut Guest, k: &Kernel<FileMem>, pids: &[i32], hold: i32, vsyscall: bool) {
    let truth = per_pid(g, pids, "cat /proc/$p/maps");
    for &pid in pids {
        let m = k.memory_map(pid).expect("maps supported").unwrap_or_else(|| panic!("pid {pid} missing"));
        assert!(m.anomalies.is_empty(), "pid {pid}: {:?}", m.anomalies);
        assert_eq!(format_maps(&m.vmas), truth[&pid], "/proc/{pid}/maps");
    }
    let text = &truth[&hold];
    for want in [
        "/memfd:vmscope-memfd (deleted)".to_owned(),
        "r--p 00001000 00:".to_owned(),
        format!("{DIR}/data.bin"),
        "[stack]".into(),
        "[vdso]".into(),
    ] {
        assert!(text.contains(&want), "{want:?} not in the workload's maps:\n{text}");
    }
    assert_eq!(text.contains("[vsyscall]"), vsyscall, "{text}");
    // Every process in one walk, the same as one by one.
    let all = k.memory_maps().expect("maps supported");
    for p in all.processes.iter().filter(|p| pids.contains(&p.pid)) {
        assert_eq!(format_maps(&p.vmas), truth[&p.pid], "pid {} in the walk of all", p.pid);
    }
}

/// What the guest says of one descriptor: its link and fdinfo.
#[derive(Debug, PartialEq)]
struct Fd {
    path: String,
    pos: i64,
    flags: u32,
    mnt_id: i32,
    ino: u64,
}

fn guest_fds(body: &str) -> BTreeMap<u32, Fd> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(u32, Fd)> = None;
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("fd ") {
            out.extend(cur.take());
            let (n, path) = rest.split_once(' ').unwrap_or_else(|| panic!("`fd N PATH`: {l:?} in\n{body}"));
            let fd = Fd { path: path.to_owned(), pos: -1, flags: 0, mnt_id: -1, ino: 0 };
            cur = Some((n.parse().expect("fd number"), fd));
            continue;
        }
        let Some((_, fd)) = cur.as_mut() else { continue };
        match l.split_once(":\t") {
            Some(("pos", v)) => fd.pos = v.parse().expect("pos"),
            Some(("flags", v)) => fd.flags = u32::from_str_radix(v, 8).expect("octal flags"),
            Some(("mnt_id", v)) => fd.mnt_id = v.parse().expect("mnt_id"),
            Some(("ino", v)) => fd.ino = v.parse().expect("ino"),
            _ => {}
        }
    }
    out.extend(cur);
    out
}

fn check_files(g: &mut Guest, k: &Kernel<FileMem>, pids: &[i32], hold: i32) {
    let truth = per_pid(
        g,
        pids,
        "echo \"links $(readlink /proc/$p/cwd) $(readlink /proc/$p/root) $(readlink /proc/$p/exe)\"; \
         for f in /proc/$p/fd/*; do n=${f##*/}; echo \"fd $n $(readlink $f)\"; cat /proc/$p/fdinfo/$n; done",
    );
    for &pid in pids {
        let f = k.open_files(pid).expect("files supported").unwrap_or_else(|| panic!("pid {pid} missing"));
        assert!(f.anomalies.is_empty(), "pid {pid}: {:?}", f.anomalies);
        let body = &truth[&pid];
        let links = body.lines().next().and_then(|l| l.strip_prefix("links ")).expect("links line");
        let ours = format!(
            "{} {} {}",
            f.cwd.as_deref().unwrap_or(""),
            f.root.as_deref().unwrap_or(""),
            f.exe.as_deref().unwrap_or("")
        );
        assert_eq!(ours, links, "pid {pid}: cwd, root, exe");
        let want = guest_fds(body);
        let got: BTreeMap<u32, Fd> = f
            .files
            .iter()
            .map(|o| {
                let fd = Fd {
                    path: o.path.clone(),
                    pos: o.pos,
                    flags: o.flags,
                    mnt_id: o.mnt_id.unwrap_or(-1),
                    ino: o.inode,
                };
                (o.fd, fd)
            })
            .collect();
        assert_eq!(got, want, "pid {pid}: descriptors");
    }
    let f = k.open_files(hold).expect("files").expect("the workload");
    let kind = |fd: u32| f.files.iter().find(|o| o.fd == fd).map(|o| (o.kind, o.path.as_str()));
    assert_eq!(kind(3), Some((FileKind::Regular, &*format!("{DIR}/data.bin"))));
    assert_eq!(kind(5), Some((FileKind::Regular, &*format!("{DIR}/gone.txt (deleted)"))));
    assert!(matches!(kind(6), Some((FileKind::Fifo, p)) if p.starts_with("pipe:[")), "{:?}", kind(6));
    assert_eq!(kind(8), Some((FileKind::AnonInode, "anon_inode:[eventfd]")));
    assert_eq!(kind(9), Some((FileKind::AnonInode, "anon_inode:[eventpoll]")));
    assert!(matches!(kind(10), Some((FileKind::Socket, p)) if p.starts_with("socket:[")), "{:?}", kind(10));
    assert_eq!(kind(11), Some((FileKind::Regular, "/memfd:vmscope-memfd (deleted)")));
    assert_eq!(kind(13), Some((FileKind::Directory, DIR)));
    assert_eq!(kind(100), kind(3));
    let all = k.all_open_files().expect("files supported");
    let walked = all.processes.iter().find(|p| p.pid == hold).expect("the workload in the walk of all");
    assert_eq!(walked.files, f.files);
}

fn check_env(g: &mut Guest, k: &Kernel<FileMem>, pids: &[i32], hold: i32) {
    for &pid in pids {
        let raw = g.agent.read_file(&format!("/proc/{pid}/environ"), 1 << 20).expect("environ");
        let want: Vec<String> = raw
            .strip_suffix(&[0])
            .unwrap_or(&raw)
            .split(|&b| b == 0)
            .filter(|_| !raw.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let e = k.environment(pid).expect("the process");
        assert!(e.anomalies.is_empty(), "pid {pid}: {:?}", e.anomalies);
        assert_eq!(e.vars.as_ref(), Some(&want), "pid {pid}: environment");
    }
    let e = k.environment(hold).expect("the workload").vars.expect("present");
    assert_eq!(e[..2], ["VMSCOPE_VIEWS=1".to_owned(), "PATH=/sbin:/bin".into()]);
    assert_eq!(e[2].len(), "LONG=".len() + 300);
    assert_eq!(e[3], "EMPTY=");
}

/// `PRI,SEQ,USEC,FLAGS;TEXT` records of `/dev/kmsg`, by sequence number.
fn kmsg(g: &mut Guest) -> BTreeMap<u64, (u32, u64, String)> {
    g.sh("/sbin/vmscope-workload kmsg")
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let (head, text) = l.split_once(';')?;
            let f: Vec<&str> = head.split(',').collect();
            Some((f[1].parse().ok()?, (f[0].parse().ok()?, f[2].parse().ok()?, text.to_owned())))
        })
        .collect()
}

fn check_log(g: &mut Guest, k: &Kernel<FileMem>, hold: i32) {
    let dmesg = g.sh("dmesg -r");
    let kmsg = kmsg(g);
    let log = k.kernel_log().expect("log supported");
    assert!(log.anomalies.is_empty(), "{:?}", log.anomalies);
    assert!(log.printk_time);
    let ours = format_log(&log.records, LogFormat::raw(log.printk_time));
    // The guest may log more between its reads and ours: ours goes on, never differs.
    assert!(ours.starts_with(&dmesg), "dmesg -r is not where vmscope's log starts:\nvmscope:\n{ours}\nguest:\n{dmesg}");
    let seqs: Vec<u64> = log.records.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers not consecutive: {seqs:?}");
    let mut compared = 0;
    for r in &log.records {
        let Some((pri, usec, text)) = kmsg.get(&r.seq) else { continue };
        let pri_ours = u32::from(r.facility) << 3 | u32::from(r.level);
        assert_eq!((pri_ours, r.ts_nsec / 1000), (*pri, *usec), "record {}", r.seq);
        // /dev/kmsg escapes what is not printable; compare the plain records.
        if !text.contains("\\x") {
            assert_eq!(&r.text, text, "record {}", r.seq);
        }
        compared += 1;
    }
    assert!(compared >= kmsg.len().min(log.records.len()) * 9 / 10, "{compared} of {} records compared", kmsg.len());
    let marker = log.records.iter().find(|r| r.text == format!("vmscope-hold: up in {DIR}")).expect("the marker");
    assert_eq!((marker.facility, marker.level, marker.caller.as_str()), (1, 5, &*format!("T{hold}")));
}

fn check(mut g: Guest, vsyscall: bool) {
    // The paging mode the guest asked for is the one it runs in (QEMU's CR4).
    let regs = g.vm.hv().vcpu_registers(0).expect("vCPU 0 registers over QMP");
    assert_eq!(regs.la57(), g.vm.config().la57, "CR4.LA57 in {:#x}", regs.cr4);
    system::own_option_mounts(&mut g);
    let chrooted = system::chrooted_slave(&mut g);
    let (hold, child) = start_hold(&mut g);
    // Before cgroup2 is mounted the guest's /proc/PID/cgroup has no `0::` line, and
    // the view has no cgroup.
    let cgroup = g.sh("cat /proc/1/cgroup");
    assert!(!cgroup.lines().any(|l| l.starts_with("0::")), "{cgroup}");
    let early = attach(&g).namespaces(Some(1)).expect("ns").expect("init").processes.remove(0);
    assert_eq!(early.cgroup, None, "cgroup of pid 1 before cgroup2 is mounted");
    system::into_cgroup(&mut g, hold);
    let pids = still(&mut g, hold);
    let k = attach(&g);
    check_maps(&mut g, &k, &pids, hold, vsyscall);
    check_files(&mut g, &k, &pids, hold);
    check_env(&mut g, &k, &pids, hold);
    check_log(&mut g, &k, hold);
    let mut more = pids.clone();
    more.extend((child != 0).then_some(child));
    more.push(chrooted);
    system::check_sockets(&mut g, &k, hold, child);
    system::check_mounts(&mut g, &k, &more);
    system::check_ns(&mut g, &k, &more, hold);
    system::check_creds(&mut g, &k, &more);
    system::check_hidden_socket(&mut g, &k, hold);
    system::check_bpf_delegation(&mut g, &k);
}

#[test]
fn linux_6_1_kaslr() {
    check(
        boot_with("6.1", |c| {
            c.kaslr = true;
            c.disks = system::scratch_disks();
        }),
        false,
    );
}

/// 6.12 with KASLR, 5-level paging and vsyscall pages: every view on a guest whose
/// kernel walks five levels.
#[test]
fn linux_6_12_kaslr_la57_vsyscall() {
    check(
        boot_with("6.12", |c| {
            c.kaslr = true;
            c.la57 = true;
            c.append.push("vsyscall=xonly".into());
            c.disks = system::scratch_disks();
        }),
        true,
    );
}
