//! `vmscope` against a QEMU started by hand with exactly the flags the README gives,
//! checked against the guest's own /proc through the agent.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use vmscope_hv::Hypervisor;
use vmscope_hv::qemu::QmpHypervisor;

use common::ReadmeQemu;

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "vmscope failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// PID -> (PPID, UID, COMM) from `vmscope ps` output.
fn parse_ps(text: &str) -> BTreeMap<i32, (i32, u32, String)> {
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    assert!(head.split_whitespace().eq(["PID", "PPID", "UID", "STATE", "COMM", "CMD"]), "{head}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), (f[1].parse().unwrap(), f[2].parse().unwrap(), f[4].to_owned()))
        })
        .collect()
}

fn truth(q: &ReadmeQemu) -> BTreeMap<i32, (i32, u32, String)> {
    q.agent().processes().unwrap().into_iter().map(|p| (p.pid, (p.ppid, p.uid, p.comm))).collect()
}

#[test]
fn ps_lsmod_info_against_a_hand_started_qemu() {
    let q = ReadmeQemu::start("6.1");
    q.load_modules_and_run_as_alice("sleep 100000 >/dev/null 2>&1 &");
    let ours = ps_against_proc(&q, &["ps"]);
    assert!(ours.values().any(|(_, uid, comm)| *uid == 1001 && comm == "sleep"), "alice's sleep is missing");

    // JSON: one document.
    let doc: serde_json::Value = serde_json::from_str(&stdout(&q.vmscope(&["ps", "--json"]))).unwrap();
    assert_eq!(doc["processes"].as_array().unwrap().len(), ours.len());

    // lsmod equals /proc/modules (names and sizes).
    let mods = stdout(&q.vmscope(&["lsmod"]));
    let proc_modules = String::from_utf8(q.agent().read_file("/proc/modules", 1 << 20).unwrap()).unwrap();
    let want: BTreeMap<String, u64> = proc_modules
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].parse().unwrap())
        })
        .collect();
    let got: BTreeMap<String, u64> = mods
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(got, want);
    assert!(got.contains_key("dummy") && got.contains_key("crc7"));

    // info: the release the guest reports.
    let release = q.agent().sh("uname -r").unwrap();
    let info = stdout(&q.vmscope(&["info"]));
    assert!(info.lines().next().unwrap().ends_with(release.trim()), "{info}");
    assert!(info.contains("evidence"), "{info}");

    deeper_views(&q);
    system_views(&q);
    agent_views(&q);

    // Every technique answers `ps` from the command line, each against the guest's
    // /proc (the agent technique too: the test holds no agent connection meanwhile).
    for t in ["live-read", "halt-read", "halt-map", "halt-snap", "live-snap", "agent"] {
        ps_against_proc(&q, &["--technique", t, "ps"]);
    }
}

/// Runs a `ps` command line and checks it against the guest's /proc read just before
/// and just after: every process that both readings agree on is in the output with
/// the same PPID, UID and COMM, and every row of the output is a process /proc showed
/// (one that started and ended in between is named). Returns the rows.
fn ps_against_proc(q: &ReadmeQemu, args: &[&str]) -> BTreeMap<i32, (i32, u32, String)> {
    let before = truth(q);
    let ours = parse_ps(&stdout(&q.vmscope(args)));
    let after = truth(q);
    agrees_with_proc(&format!("{args:?}"), &ours, &before, &after);
    ours
}

/// `ours` against two readings of the guest's /proc (see [`ps_against_proc`]).
fn agrees_with_proc(
    what: &str,
    ours: &BTreeMap<i32, (i32, u32, String)>,
    before: &BTreeMap<i32, (i32, u32, String)>,
    after: &BTreeMap<i32, (i32, u32, String)>,
) {
    for (pid, want) in before.iter().filter(|(p, w)| after.get(p) == Some(w)) {
        let got = ours.get(pid).unwrap_or_else(|| panic!("{what}: pid {pid} {want:?} missing"));
        // A kworker's name in /proc ends with the workqueue it runs at that moment
        // (`kworker/0:0-events`), which changes between readings; memory holds the
        // name without it.
        let worker = |c: &str| c.split_once('-').map_or(c, |(w, _)| w).to_owned();
        let comm_ok = got.2 == want.2 || (got.2.starts_with("kworker/") && worker(&got.2) == worker(&want.2));
        assert!(got.0 == want.0 && got.1 == want.1 && comm_ok, "{what}: pid {pid}: vmscope {got:?}, /proc {want:?}");
    }
    let unknown: Vec<_> = ours.iter().filter(|(p, _)| !before.contains_key(p) && !after.contains_key(p)).collect();
    assert!(unknown.is_empty(), "{what}: processes /proc never showed: {unknown:?}");
}

/// `maps`, `env`, `dmesg`, `lsof`, `pstree` and `ps --threads`/`--tree` on the same
/// guest (the views themselves are checked field by field in tests/tests/linux_views.rs).
fn deeper_views(q: &ReadmeQemu) {
    let text = |path: &str| String::from_utf8(q.agent().read_file(path, 1 << 20).unwrap()).unwrap();
    assert_eq!(stdout(&q.vmscope(&["maps", "1"])), text("/proc/1/maps"), "maps 1");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&q.vmscope(&["maps", "1", "--json"]))).unwrap();
    assert_eq!(doc["vmas"].as_array().unwrap().len(), text("/proc/1/maps").lines().count());
    let env: Vec<String> = text("/proc/1/environ").split('\0').filter(|v| !v.is_empty()).map(str::to_owned).collect();
    assert_eq!(stdout(&q.vmscope(&["env", "1"])).lines().collect::<Vec<_>>(), env, "env 1");

    let guest = q.agent().sh("dmesg -r").unwrap();
    let ours = stdout(&q.vmscope(&["dmesg", "-r"]));
    assert!(ours.starts_with(&guest), "dmesg -r:\n{ours}\nguest:\n{guest}");
    let plain = stdout(&q.vmscope(&["dmesg"]));
    assert!(plain.starts_with("[    0.000000] Linux version"), "{}", &plain[..100.min(plain.len())]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&q.vmscope(&["dmesg", "--json"]))).unwrap();
    assert!(doc["records"].as_array().unwrap().len() >= guest.lines().count() / 2);

    let lsof = stdout(&q.vmscope(&["lsof", "1"]));
    let head = lsof.lines().next().unwrap();
    assert!(head.split_whitespace().eq(["COMMAND", "PID", "FD", "TYPE", "FLAGS", "POS", "INODE", "NAME"]), "{head}");
    assert!(lsof.lines().any(|l| l.contains(" cwd ") && l.ends_with(" /")), "{lsof}");
    assert!(lsof.lines().any(|l| l.contains(" 0u ") && l.ends_with(" /dev/console")), "{lsof}");
    let all = stdout(&q.vmscope(&["lsof"]));
    assert!(all.lines().any(|l| l.starts_with("vmscope-agent") && l.ends_with(" /dev/ttyS1")), "{all}");

    let pstree = stdout(&q.vmscope(&["pstree"]));
    assert!(pstree.starts_with("init(1)") && pstree.contains("kthreadd(2)"), "{pstree}");
    let threads = stdout(&q.vmscope(&["ps", "--threads"]));
    assert!(
        threads.lines().next().unwrap().split_whitespace().eq(["PID", "TID", "PPID", "UID", "STATE", "COMM", "CMD"])
    );
    let tree = stdout(&q.vmscope(&["ps", "--tree"]));
    assert!(tree.lines().nth(1).unwrap().split_whitespace().next() == Some("1"), "{tree}");
    assert!(tree.contains("\\_ "), "{tree}");

    let o = q.vmscope(&["maps", "999999"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no process 999999"));
}

/// `sockets`, `mounts`, `ns` and `creds` on the same guest: the commands, their
/// tables and JSON (the views are checked field by field in tests/tests/linux_views.rs).
fn system_views(q: &ReadmeQemu) {
    let sh = |line: &str| q.agent().sh(line).unwrap();
    // Each mountinfo line of init, but for the options a file system adds itself.
    let mounts = stdout(&q.vmscope(&["mounts", "1"]));
    let guest = sh("cat /proc/1/mountinfo");
    let ours: Vec<&str> = mounts.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(ours.len(), guest.lines().count(), "mounts 1:\n{mounts}\nguest:\n{guest}");
    for (o, g) in ours.iter().zip(guest.lines()) {
        assert!(g == *o || g.strip_prefix(o).is_some_and(|r| r.starts_with(',')), "{o:?} vs {g:?}");
    }

    let net = sh("readlink /proc/1/ns/net");
    let inum = net.trim().trim_start_matches("net:[").trim_end_matches(']').to_owned();
    let ns = stdout(&q.vmscope(&["ns", "1"]));
    let head = ns.lines().next().unwrap();
    assert!(
        head.split_whitespace()
            .eq(["PID", "COMM", "CGROUP", "IPC", "MNT", "NET", "PID", "TIME", "USER", "UTS", "CGROUP"]),
        "{head}"
    );
    assert!(ns.lines().nth(1).unwrap().split_whitespace().nth(5) == Some(inum.as_str()), "{ns}\n{net}");

    let doc: serde_json::Value = serde_json::from_str(&stdout(&q.vmscope(&["creds", "1", "--json"]))).unwrap();
    let eff = sh("grep CapEff /proc/1/status");
    let want = u64::from_str_radix(eff.trim().trim_start_matches("CapEff:").trim(), 16).unwrap();
    assert_eq!(doc["processes"][0]["cap_effective"].as_u64(), Some(want), "{doc}");

    for t in ["live-read", "halt-read"] {
        let doc: serde_json::Value =
            serde_json::from_str(&stdout(&q.vmscope(&["-t", t, "sockets", "--json"]))).unwrap();
        assert!(
            doc["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_u64().map(|n| n.to_string()) == Some(inum.clone())),
            "{t}: {doc}"
        );
        assert!(doc["anomalies"].as_array().unwrap().is_empty(), "{t}: {doc}");
    }
    let table = stdout(&q.vmscope(&["sockets"]));
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NETID", "STATE", "NETNS", "LOCAL", "PEER", "INODE", "PROCESS"]),
        "{table}"
    );
}

/// The rows of a `sockets` table whose NETID starts with one of `netids`, as a set:
/// NETID STATE NETNS LOCAL, PEER for TCP and UDP (/proc/net/unix names no peer),
/// INODE and PROCESS.
fn socket_rows(table: &str, netids: &[&str]) -> std::collections::BTreeSet<String> {
    table
        .lines()
        .skip(1)
        .filter(|l| netids.iter().any(|n| l.starts_with(n)))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let users = f.last().filter(|u| u.starts_with("users:")).map_or("", |u| u);
            let inode = f[f.len() - 1 - usize::from(!users.is_empty())];
            let peer = if f[0] == "tcp" || f[0] == "udp" { f[4] } else { "-" };
            format!("{} {} {} {} {peer} {inode} {users}", f[0], f[1], f[2], f[3])
        })
        .collect()
}

/// Every view the agent answers, against the guest's /proc read by the test and
/// against the same view read from memory (live-map), with a workload holding files
/// and sockets; and the views only memory answers, refused with what to do.
fn agent_views(q: &ReadmeQemu) {
    let sh = |line: &str| q.agent().sh(line).unwrap();
    let agent = |args: &[&str]| stdout(&q.vmscope(&[&["--technique", "agent"], args].concat()));
    let memory = |args: &[&str]| stdout(&q.vmscope(&[&["--technique", "live-map"], args].concat()));
    // /proc/PID/cgroup has no `0::` line until cgroup2 is mounted once (nor has the
    // memory view a cgroup): mount it, with two of its options.
    sh(
        "mkdir -p /tmp/agent-hold /tmp/agent-cg && mount -t cgroup2 -o nsdelegate,memory_recursiveprot none /tmp/agent-cg",
    );
    let hold: i32 =
        sh("VMSCOPE_VIEWS=1 /sbin/vmscope-workload hold /tmp/agent-hold </dev/null >/tmp/ah.out 2>&1 & echo $!")
            .trim()
            .parse()
            .unwrap();
    let up = vmscope_testbed::eventually(Duration::from_secs(30), || sh("cat /tmp/ah.out").contains("hold: up"));
    assert!(up, "the workload did not come up: {}", sh("cat /tmp/ah.out"));
    let pid = hold.to_string();
    let p = pid.as_str();

    // maps and env: the guest's files, byte for byte, and what memory shows.
    let maps = agent(&["maps", p]);
    assert_eq!(maps, sh(&format!("cat /proc/{p}/maps")), "maps");
    assert_eq!(maps, memory(&["maps", p]), "maps: agent vs live-map");
    let env = sh(&format!("tr '\\0' '\\n' < /proc/{p}/environ"));
    assert_eq!(agent(&["env", p]), env, "env");

    // lsof: every descriptor's link and position as /proc shows them; every row as
    // memory shows it.
    let lsof = agent(&["lsof", p]);
    let links = sh(&format!("cd /proc/{p}/fd && for f in *; do echo \"$f $(readlink $f)\"; done"));
    let named: Vec<String> = lsof
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let fd = f[2].trim_end_matches(['r', 'w', 'u']);
            fd.parse::<u32>().ok().map(|_| format!("{fd} {}", f[7..].join(" ")))
        })
        .collect();
    let mut want: Vec<String> = links.lines().map(str::to_owned).collect();
    want.sort_by_key(|l| l.split(' ').next().unwrap().parse::<u32>().unwrap());
    assert_eq!(named, want, "lsof {p}:\n{lsof}");
    assert!(lsof.lines().count() > 8, "the workload holds files: {lsof}");
    assert_eq!(lsof, memory(&["lsof", p]), "lsof: agent vs live-map");
    let all = agent(&["lsof"]);
    assert!(all.lines().any(|l| l.starts_with("vmscope-agent") && l.ends_with(" /dev/ttyS1")), "{all}");

    // mounts: the guest's mountinfo, per-fs options too; ns, creds: as memory.
    let mounts = agent(&["mounts", "1"]);
    let ours: Vec<&str> = mounts.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(ours, sh("cat /proc/1/mountinfo").lines().collect::<Vec<_>>(), "mounts 1");
    // Every mount namespace (the workload's child has one; kdevtmpfs is chrooted and
    // sees only what is under its root), as memory shows them: whole for tmpfs,
    // devtmpfs, rootfs, devpts, proc, sysfs and cgroup2 (mounted above with two of its
    // options), without the options a file system adds itself for any other.
    let blocks = |table: &str| -> Vec<String> {
        let whole = ["tmpfs", "devtmpfs", "rootfs", "devpts", "proc", "sysfs", "cgroup2"];
        let keep = |l: &str| {
            l.starts_with('#')
                || l.split_once(" - ").is_some_and(|(_, t)| whole.contains(&t.split(' ').next().unwrap_or("")))
        };
        table.lines().map(|l| if keep(l) { l } else { l.rsplit_once(' ').map_or(l, |(a, _)| a) }.to_owned()).collect()
    };
    let (ours, theirs) = (agent(&["mounts"]), memory(&["mounts"]));
    assert!(ours.lines().filter(|l| l.starts_with("# mnt:")).count() >= 3, "{ours}");
    assert_eq!(blocks(&ours), blocks(&theirs), "mounts:\n{ours}\nlive-map:\n{theirs}");
    assert_eq!(agent(&["ns", p]), memory(&["ns", p]), "ns");
    assert_eq!(agent(&["ns"]).lines().count(), memory(&["ns"]).lines().count(), "ns of every process");
    assert_eq!(agent(&["creds", p]), memory(&["creds", p]), "creds");
    let doc: serde_json::Value = serde_json::from_str(&agent(&["creds", "1", "--json"])).unwrap();
    let eff = sh("grep CapEff /proc/1/status");
    let want = u64::from_str_radix(eff.trim().trim_start_matches("CapEff:").trim(), 16).unwrap();
    assert_eq!(doc["processes"][0]["cap_effective"].as_u64(), Some(want), "{doc}");

    // sockets: the workload's TCP and UDP sockets as memory shows them (owners too),
    // and the same unix sockets.
    let ours = agent(&["sockets"]);
    let theirs = memory(&["sockets"]);
    let inet = socket_rows(&ours, &["tcp", "udp"]);
    assert!(inet.iter().any(|r| r.contains("LISTEN") && r.contains("127.0.0.1:7701")), "{ours}");
    assert_eq!(inet, socket_rows(&theirs, &["tcp", "udp"]), "inet sockets:\n{ours}\nlive-map:\n{theirs}");
    assert_eq!(
        socket_rows(&ours, &["u_"]),
        socket_rows(&theirs, &["u_"]),
        "unix sockets:\n{ours}\n{}\n{}",
        agent(&["sockets", "--json"]),
        sh(&format!("cat /proc/{p}/net/unix"))
    );

    // The kernel log and symbols.
    let guest = sh("dmesg -r");
    let log = agent(&["dmesg", "-r"]);
    assert!(log.starts_with(guest.lines().next().unwrap()) && log.lines().count() >= guest.lines().count());
    assert!(agent(&["dmesg"]).starts_with("[    0.000000] Linux version"));
    let mut a: Vec<String> = agent(&["kallsyms", "dummy"]).lines().map(str::to_owned).collect();
    let mut m: Vec<String> = memory(&["kallsyms", "dummy"]).lines().map(str::to_owned).collect();
    a.sort();
    m.sort();
    assert!(a.iter().any(|l| l.ends_with("\t[dummy]")), "{a:?}");
    assert_eq!(a, m, "kallsyms dummy");

    // Threads, and the tree of user processes, as memory shows them.
    let threaded: i32 =
        sh("/sbin/vmscope-workload threads 3 0 </dev/null >/dev/null 2>&1 & echo $!").trim().parse().unwrap();
    let ready = vmscope_testbed::eventually(Duration::from_secs(30), || {
        sh(&format!("ls /proc/{threaded}/task | wc -l")).trim() == "3"
    });
    assert!(ready, "the threads workload did not start its threads");
    let rows = |table: &str| -> Vec<String> {
        table
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(&*threaded.to_string()))
            .map(str::to_owned)
            .collect()
    };
    let ours = rows(&agent(&["ps", "--threads"]));
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert!(ours.iter().any(|l| l.contains(" vmsw-1 ")), "{ours:?}");
    assert_eq!(ours, rows(&memory(&["ps", "--threads"])), "ps --threads");
    // Each thread's TID and name as the guest lists them.
    let listed: BTreeMap<String, String> =
        sh(&format!("cd /proc/{threaded}/task && for t in *; do echo $t $(cat $t/comm); done"))
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(t, c)| (t.to_owned(), c.to_owned())))
            .collect();
    let shown: BTreeMap<String, String> = ours
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_owned(), f[5].to_owned())
        })
        .collect();
    assert_eq!(shown, listed, "ps --threads: TIDs and names against /proc/{threaded}/task");
    let init_tree = |drawing: &str| -> Vec<String> {
        drawing.lines().take_while(|l| l.starts_with("init(1)") || l.starts_with(' ')).map(str::to_owned).collect()
    };
    let ours = init_tree(&agent(&["pstree"]));
    assert!(ours.iter().any(|l| l.contains(&format!("vmscope-workloa({threaded})"))), "{ours:?}");
    assert_eq!(ours, init_tree(&memory(&["pstree"])), "pstree");
    // The tree of user processes; without the STATE column (the agent runs while it
    // answers).
    let user = |table: &str| -> Vec<String> {
        table.lines().filter(|l| !l.trim_end().ends_with(']')).map(|l| format!("{}{}", &l[..23], &l[28..])).collect()
    };
    let tree = agent(&["ps", "--tree"]);
    assert_eq!(user(&tree), user(&memory(&["ps", "--tree"])), "ps --tree");
    // Every process's parent as the guest's /proc has it.
    let parents: BTreeMap<String, String> =
        sh("for p in /proc/[0-9]*; do echo ${p#/proc/} $(grep PPid $p/status 2>/dev/null | cut -f2); done")
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(p, pp)| (p.to_owned(), pp.trim().to_owned())))
            .collect();
    let mut checked = 0;
    for l in tree.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let Some(pp) = parents.get(f[0]).filter(|pp| !pp.is_empty()) {
            assert_eq!(f[1], pp, "ps --tree: the parent of {} against /proc/{}/status", f[0], f[0]);
            checked += 1;
        }
    }
    assert!(checked * 10 >= parents.len() * 9, "{checked} of {} parents compared", parents.len());
    sh(&format!("kill {threaded}"));

    for cmd in ["check", "pids"] {
        let o = q.vmscope(&["--technique", "agent", cmd]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("choose a technique that reads memory"), "{cmd}: {err}");
    }
    sh(&format!("kill {p}"));
}

#[test]
fn dump_and_read_back() {
    let q = ReadmeQemu::start("6.12");
    let dir = tempfile::tempdir().unwrap();
    // The three dumps are of one paused guest, between two readings of its /proc.
    // vmscope leaves a guest it found paused paused; QMP takes one client at a time,
    // so the test lets go of it while vmscope runs.
    let qmp = || QmpHypervisor::connect(q.dir().join("qmp.sock"), Duration::from_secs(10)).unwrap();
    let before = truth(&q);
    qmp().pause().unwrap();
    for format in ["elf", "lime", "raw"] {
        let out: PathBuf = dir.path().join(format!("guest.{format}"));
        let o = q.vmscope(&["dump", "--format", format, out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let hv = qmp();
    assert!(hv.is_paused().unwrap(), "vmscope dump resumed a guest it found paused");
    hv.resume().unwrap();
    drop(hv);
    let after = truth(&q);
    let release = q.agent().sh("uname -r").unwrap();
    for format in ["elf", "lime", "raw"] {
        let out: PathBuf = dir.path().join(format!("guest.{format}"));
        let o = Command::new(env!("CARGO_BIN_EXE_vmscope")).arg("--dump").arg(&out).arg("ps").output().unwrap();
        agrees_with_proc(&format!("dump {format}"), &parse_ps(&stdout(&o)), &before, &after);
        let o = Command::new(env!("CARGO_BIN_EXE_vmscope")).arg("--dump").arg(&out).arg("info").output().unwrap();
        let info = stdout(&o);
        assert!(info.lines().next().unwrap().ends_with(release.trim()), "{format}: {info}");
    }
}

#[test]
fn errors_say_what_to_do() {
    let bin = env!("CARGO_BIN_EXE_vmscope");
    let me = std::process::id().to_string();
    let o = Command::new(bin).args(["--qemu", &me, "ps"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not QEMU"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(bin).arg("ps").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--qemu PID"));
    let o = Command::new(bin).args(["--dump", "/nonexistent.elf", "ps"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.elf"));
    let o = Command::new(bin).args(["--qemu", &me, "--technique", "sideways", "ps"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("live-map"), "lists the techniques");
}
