//! The adversarial suite: a real Debian 6.1 guest under QEMU (memfd RAM, the
//! README's flags), paused over QMP, its kernel structures corrupted on purpose by
//! writing the RAM memfd from this test (each case's bytes restored before the
//! next), and every view of the `vmscope` command run under the memory techniques.
//!
//! Each run must end by itself (a timeout here), exit 0 (anomalies allowed) or 1
//! with an error that says what happened — never a signal or a panic — stay under
//! 256 MiB of RSS beyond a snapshot's own copy of guest RAM, and `ps` must still list
//! every process the guest's own /proc listed (through the agent, before pausing).
//! The table this prints is the README's (section "Reliability").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ReadmeQemu;
use vmscope_hv::qemu::Qmp;
use vmscope_linux::{Hints, Kernel};
use vmscope_mem::{Gva, PhysMem};
use vmscope_technique::{Options, Target, Technique};

/// Every technique that reads guest memory (the agent reads none).
const TECHNIQUES: &[&str] =
    &["live-read", "halt-read", "live-map", "halt-map", "halt-snap", "live-snap", "consistent-read", "consistent-map"];

/// RSS a run may use beyond a snapshot's copy of guest RAM.
const RSS_MAX: u64 = 256 << 20;
/// Guest RAM (the README's `-m 1G`): what a snapshot technique copies.
const GUEST_RAM: u64 = 1 << 30;
/// The budget each view gets (`--budget-ms`), and how long attaching (and a
/// snapshot's copy) may add to it before the run counts as hung.
const BUDGET_MS: u64 = 5000;
const ATTACH_ALLOWANCE: Duration = Duration::from_secs(40);

/// One write into guest RAM, by guest-physical address.
#[derive(Debug, Clone)]
struct Patch {
    gpa: u64,
    bytes: Vec<u8>,
}

impl Patch {
    fn u64(gpa: u64, v: u64) -> Self {
        Patch { gpa, bytes: v.to_le_bytes().to_vec() }
    }
}

/// One corruption.
struct Case {
    name: &'static str,
    patches: Vec<Patch>,
    /// Whether the kernel can still be found (a case that breaks the kernel's own
    /// mapping of itself cannot list processes: `vmscope` must say why instead).
    attachable: bool,
}

/// The views: every view subcommand of `vmscope`, for a process `pid`.
fn views(pid: i32) -> Vec<Vec<String>> {
    let p = pid.to_string();
    let v: &[&[&str]] = &[
        &["ps"],
        &["ps", "--threads"],
        &["ps", "--tree"],
        &["pstree"],
        &["lsmod"],
        &["maps", &p],
        &["lsof"],
        &["lsof", &p],
        &["env", &p],
        &["dmesg"],
        &["info"],
        &["mounts"],
        &["sockets"],
        &["ns"],
        &["creds"],
        &["pids"],
        &["check"],
    ];
    v.iter().map(|a| a.iter().map(|s| (*s).to_owned()).collect()).collect()
}

/// How one run ended.
#[derive(Debug)]
struct Run {
    code: i32,
    took: Duration,
    /// CPU time (user and system): what a run costs on an idle machine.
    cpu: Duration,
    max_rss: u64,
    doc: Option<serde_json::Value>,
    stderr: String,
}

/// Runs `vmscope --qemu PID --technique T --json ARGS`, its output to files (a pipe
/// could fill and stall it), waiting with `wait4` for its exit status and peak RSS;
/// kills it and fails the test past the deadline.
#[allow(clippy::zombie_processes, reason = "reaped by wait4, which also gives its rusage")]
fn run(q: &ReadmeQemu, cache: &Path, technique: &str, args: &[String], what: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["--qemu", &q.pid().to_string(), "--technique", technique, "--json", "--budget-ms"])
        .arg(BUDGET_MS.to_string())
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .current_dir(q.dir())
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let deadline = Duration::from_millis(BUDGET_MS) + ATTACH_ALLOWANCE;
    let (status, rusage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of the plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child, with pointers to the two locals above.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        assert!(r >= 0, "{what}: wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break (status, ru);
        }
        if start.elapsed() > deadline {
            // SAFETY: kill(2) of our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what}: still running after {deadline:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(!libc::WIFSIGNALED(status), "{what}: killed by signal {}: {stderr}", libc::WTERMSIG(status));
    let code = libc::WEXITSTATUS(status);
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    assert!(code == 0 || code == 1, "{what}: exit {code}: {stderr}");
    let doc = if code == 0 {
        let text = std::fs::read_to_string(&out).unwrap();
        Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not one JSON document ({e}): {text:.200}")))
    } else {
        assert!(stderr.starts_with("vmscope: ") && stderr.len() > 20, "{what}: exit 1 without a reason: {stderr:?}");
        None
    };
    // ru_maxrss is in KiB.
    let max_rss = rusage.ru_maxrss as u64 * 1024;
    let allowed = RSS_MAX + if technique.ends_with("-snap") { GUEST_RAM } else { 0 };
    assert!(max_rss <= allowed, "{what}: peak RSS {} MiB over {} MiB", max_rss >> 20, allowed >> 20);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(rusage.ru_utime) + tv(rusage.ru_stime);
    Run { code, took, cpu, max_rss, doc, stderr }
}

/// The anomaly kinds a JSON document reports.
fn anomaly_kinds(doc: &serde_json::Value) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    let mut visit = vec![doc];
    while let Some(v) = visit.pop() {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(an)) = m.get("anomalies") {
                    kinds.extend(an.iter().filter_map(|a| a["kind"].as_str().map(str::to_owned)));
                }
                visit.extend(m.values());
            }
            serde_json::Value::Array(a) => visit.extend(a),
            _ => {}
        }
    }
    kinds
}

/// Where to corrupt, found with vmscope's library on the paused guest.
struct Plan {
    cases: Vec<Case>,
    /// The process whose memory map, files and environment the views read.
    victim: i32,
}

fn plan(q: &ReadmeQemu) -> Plan {
    let guest = Target::Qemu { pid: q.pid(), qmp: Some(q.dir().join("qmp.sock")) }.open().unwrap();
    let access = guest.access(Some(Technique::LiveRead), &Options::default()).unwrap();
    let hints = guest.registers().map_or_else(Hints::none, |r| Hints::from_registers(r.cr3, r.cr4));
    access
        .pass(|mem: &dyn PhysMem| {
            let k = Kernel::attach(mem, hints).expect("attach to the untouched guest");
            let (o, km) = (k.offsets(), k.kernel_mem());
            let gpa = |va: Gva| km.translate(va).unwrap_or_else(|e| panic!("{va:#x}: {e}")).0.raw();
            let at = |base: Gva, off: u64| gpa(base.checked_add(off).unwrap());
            let read = |base: Gva, off: u64| km.read_u64(base.checked_add(off).unwrap()).unwrap();
            let procs = k.processes().processes;
            let sleeper = |arg: &str| {
                procs
                    .iter()
                    .position(|p| p.uid == 1001 && p.cmdline.as_deref().is_some_and(|c| c.iter().any(|a| a == arg)))
                    .unwrap_or_else(|| panic!("the sleeper {arg} is not in the task list"))
            };
            let (v, w, x) = (sleeper("100001"), sleeper("100002"), sleeper("100003"));
            let node = |i: usize| procs[i].task.checked_add(o.task.tasks).unwrap();
            let next = |i: usize| gpa(node(i).checked_add(o.list.next).unwrap());
            let vt = procs[v].task;
            let mm = Gva::new(read(vt, o.task.mm));
            let direct = k.info().page_offset_base;
            let i3 = v.min(procs.len() - 3);

            // Threads: a thread list that loops on its one node, with nr_threads
            // saying there are a thousand.
            let wt = procs[w].task;
            let signal = Gva::new(read(wt, o.task.signal));
            let thread_node = wt.checked_add(o.task.thread_node).unwrap();

            let mods = k.modules().modules;
            assert!(mods.len() >= 3, "dummy, crc7 and qemu_fw_cfg are loaded: {mods:?}");
            let mod_node = |m: &vmscope_linux::Module| m.addr.checked_add(o.module.list).unwrap();

            // Page tables: the kernel's root entry that maps the modules, pointing at
            // the root itself; a process's whole root table pointing at itself.
            let root = k.info().kernel_root.gpa().raw();
            let mod_slot = (mods[0].base.raw() >> 39) & 511;
            let xmm = Gva::new(read(procs[x].task, o.task.mm));
            let xpgd = gpa(Gva::new(read(xmm, o.mm.pgd)));
            let all_root: Vec<u8> = (0..512).flat_map(|_| (xpgd | 0x67).to_le_bytes()).collect();

            // Mount propagation: the slave /tmp/adv-b's master (the shared
            // /tmp/adv-a), moved out of the namespace so that `propagate_from:` has
            // to look further, and two other mounts to make a peer ring of.
            let mo = o.mounts.expect("mount offsets");
            let table = k.mounts(Some(1)).expect("mounts").expect("pid 1");
            let mount = |point: &str| {
                table.namespaces[0]
                    .mounts
                    .iter()
                    .find(|m| m.mount_point == point)
                    .unwrap_or_else(|| panic!("{point}"))
                    .mount
            };
            let slave = mount("/tmp/adv-b");
            let master = Gva::new(read(slave, mo.mnt_master));
            assert_eq!(master, mount("/tmp/adv-a"), "the slave's master");
            let (pa, pb) = (mount("/proc"), mount("/sys"));
            let share = |m: Gva| m.checked_add(mo.mnt_share).unwrap();
            let share_next = |m: Gva| gpa(share(m).checked_add(o.list.next).unwrap());
            let elsewhere = |m: Gva| Patch::u64(at(m, mo.mnt_ns), 0xffff_ffff_ffff_f000);

            let cases = vec![
                Case {
                    name: "task list self-loop",
                    patches: vec![Patch::u64(next(v), node(v).raw())],
                    attachable: true,
                },
                Case {
                    name: "cycle through three tasks",
                    patches: vec![Patch::u64(next(i3 + 2), node(i3).raw())],
                    attachable: true,
                },
                Case {
                    name: "`next` into unbacked memory",
                    patches: vec![Patch::u64(next(v), direct.raw() + (256 << 30))],
                    attachable: true,
                },
                Case {
                    name: "non-canonical `mm`",
                    patches: vec![Patch::u64(at(vt, o.task.mm), 0xdead_0000_0000_0000)],
                    attachable: true,
                },
                Case {
                    name: "`mm` into a hole (VGA, 0xa0000)",
                    patches: vec![Patch::u64(at(vt, o.task.mm), direct.raw() + 0xa0000)],
                    attachable: true,
                },
                Case {
                    name: "`arg_end` 1 TiB past `arg_start`",
                    patches: vec![Patch::u64(at(mm, o.mm.arg_end), read(mm, o.mm.arg_start) + (1 << 40))],
                    attachable: true,
                },
                Case {
                    name: "`comm` without NUL",
                    patches: vec![Patch { gpa: at(vt, o.task.comm), bytes: vec![b'X'; o.task.comm_len as usize] }],
                    attachable: true,
                },
                Case {
                    name: "thread list that never returns",
                    patches: vec![
                        Patch::u64(gpa(thread_node.checked_add(o.list.next).unwrap()), thread_node.raw()),
                        Patch { gpa: at(signal, o.signal.nr_threads), bytes: 1000u32.to_le_bytes().to_vec() },
                    ],
                    attachable: true,
                },
                Case {
                    name: "module list cycle",
                    patches: vec![Patch::u64(
                        gpa(mod_node(&mods[mods.len() - 1]).checked_add(o.list.next).unwrap()),
                        mod_node(&mods[0]).raw(),
                    )],
                    attachable: true,
                },
                Case {
                    name: "mount master chain that loops",
                    patches: vec![elsewhere(master), Patch::u64(at(master, mo.mnt_master), master.raw())],
                    attachable: true,
                },
                Case {
                    name: "mount peer ring that never returns",
                    patches: vec![
                        elsewhere(master),
                        elsewhere(pa),
                        elsewhere(pb),
                        Patch::u64(share_next(master), share(pa).raw()),
                        Patch::u64(share_next(pa), share(pb).raw()),
                        Patch::u64(share_next(pb), share(pa).raw()),
                    ],
                    attachable: true,
                },
                Case {
                    name: "page table that maps itself (kernel root, module slot)",
                    patches: vec![Patch::u64(root + 8 * mod_slot, root | 0x63)],
                    attachable: false,
                },
                Case {
                    name: "PML4 whose entries all point at the root (a process's)",
                    patches: vec![Patch { gpa: xpgd, bytes: all_root }],
                    attachable: true,
                },
            ];
            Plan { cases, victim: procs[v].pid }
        })
        .unwrap()
}

/// The guest's RAM memfd, opened for writing through QEMU's descriptor.
fn memfd(q: &ReadmeQemu) -> File {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", q.pid())).unwrap();
    for fd in fds.flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("/memfd:memory-backend-memfd") {
            return std::fs::OpenOptions::new().read(true).write(true).open(fd.path()).unwrap();
        }
    }
    panic!("QEMU {} has no memory-backend-memfd descriptor", q.pid());
}

fn qmp(q: &ReadmeQemu, command: &str) {
    // One command per connection: vmscope's halting techniques need the monitor too.
    let mut m = Qmp::connect(q.dir().join("qmp.sock"), Duration::from_secs(10)).unwrap();
    m.execute(command, None).unwrap();
}

/// What the runs of one case came to, for the README's table.
#[derive(Default)]
struct Outcome {
    runs: usize,
    exits: BTreeSet<i32>,
    kinds: BTreeSet<String>,
    max_rss: u64,
    max_took: Duration,
    errors: BTreeSet<String>,
}

#[test]
fn corrupted_kernel_structures_end_every_view_cleanly() {
    let q = ReadmeQemu::start("6.1");
    q.load_modules_and_run_as_alice("for n in 100001 100002 100003; do sleep $n >/dev/null 2>&1 & done");
    // A slave mount, for the propagation cases.
    q.agent()
        .sh("mkdir -p /tmp/adv-a /tmp/adv-b && mount -t tmpfs adv /tmp/adv-a && mount --make-shared /tmp/adv-a \
             && mount --bind /tmp/adv-a /tmp/adv-b && mount --make-slave /tmp/adv-b")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Ground truth: the guest's own process list, then the guest paused for good.
    let truth: BTreeMap<i32, String> = q.agent().processes().unwrap().into_iter().map(|p| (p.pid, p.comm)).collect();
    qmp(&q, "stop");
    let plan = plan(&q);
    let ram = memfd(&q);
    let cache = tempfile::tempdir().unwrap();
    let everything = std::env::var_os("VMSCOPE_ADVERSARIAL_FULL").is_some();
    let views = views(plan.victim);
    let started = Instant::now();
    let mut table = Vec::new();
    let mut per_technique: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut cpu = Duration::ZERO;

    for (n, case) in plan.cases.iter().enumerate() {
        let saved: Vec<Patch> = case
            .patches
            .iter()
            .map(|p| {
                let mut old = vec![0u8; p.bytes.len()];
                ram.read_exact_at(&mut old, p.gpa).unwrap();
                Patch { gpa: p.gpa, bytes: old }
            })
            .collect();
        for p in &case.patches {
            ram.write_all_at(&p.bytes, p.gpa).unwrap();
        }
        let mut outcome = Outcome::default();
        for &t in TECHNIQUES {
            for args in &views {
                // CI's share (see the README): each case every view under one technique
                // (each technique in turn), and `ps` under every technique;
                // VMSCOPE_ADVERSARIAL_FULL=1 runs every pair.
                let chosen = everything || t == TECHNIQUES[n % TECHNIQUES.len()] || args == &["ps"];
                if !chosen {
                    continue;
                }
                let what = format!("{} / {t} / {}", case.name, args.join(" "));
                let r = run(&q, cache.path(), t, args, &what);
                outcome.runs += 1;
                outcome.exits.insert(r.code);
                outcome.max_rss = outcome.max_rss.max(r.max_rss);
                outcome.max_took = outcome.max_took.max(r.took);
                if let Some(doc) = &r.doc {
                    outcome.kinds.extend(anomaly_kinds(doc));
                } else {
                    outcome.errors.insert(format!("{}: {}", args.join(" "), r.stderr.trim()));
                }
                *per_technique.entry(t).or_default() += r.took;
                cpu += r.cpu;
                if case.name.starts_with("mount ") && args == &["mounts"] {
                    let doc = r.doc.as_ref().unwrap_or_else(|| panic!("{what}: mounts failed: {}", r.stderr));
                    assert!(anomaly_kinds(doc).contains("list_cycle"), "{what}: the loop is not reported: {doc}");
                }
                if args == &["ps"] && case.attachable {
                    let doc = r.doc.as_ref().unwrap_or_else(|| panic!("{what}: ps failed: {}", r.stderr));
                    let listed: BTreeSet<i64> =
                        doc["processes"].as_array().unwrap().iter().filter_map(|p| p["pid"].as_i64()).collect();
                    let missing: Vec<(&i32, &String)> =
                        truth.iter().filter(|(pid, _)| !listed.contains(&i64::from(**pid))).collect();
                    assert!(missing.is_empty(), "{what}: untouched processes missing: {missing:?}");
                }
            }
        }
        for p in &saved {
            ram.write_all_at(&p.bytes, p.gpa).unwrap();
        }
        table.push((case.name, outcome));
    }
    qmp(&q, "cont");

    // Do no harm: the guest runs on and still answers.
    let after = q.agent().processes().unwrap();
    assert!(after.iter().any(|p| p.pid == plan.victim), "the victim process is gone after the test");

    println!("| case | runs | exit | anomalies reported | peak RSS | longest run |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, o) in &table {
        let exits: Vec<String> = o.exits.iter().map(i32::to_string).collect();
        let kinds: Vec<&str> = o.kinds.iter().map(String::as_str).collect();
        println!(
            "| {name} | {} | {} | {} | {} MiB | {:.1} s |",
            o.runs,
            exits.join(", "),
            if kinds.is_empty() { "none".to_owned() } else { kinds.join(", ") },
            o.max_rss >> 20,
            o.max_took.as_secs_f64()
        );
        for e in &o.errors {
            println!("|   exit 1: {e:.160} |");
        }
    }
    println!("time per technique: {per_technique:?}");
    println!(
        "{} runs in {:.0} s, {:.0} s of CPU",
        table.iter().map(|(_, o)| o.runs).sum::<usize>(),
        started.elapsed().as_secs_f64(),
        cpu.as_secs_f64()
    );
}
