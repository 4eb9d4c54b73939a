//! `vmscope` against QEMU however its user started it: plain `-m`, memory backends
//! (ram, memfd, file shared and private, hugetlbfs), `-machine memory-backend=` or
//! not, pc and q35, 4 and 8 GiB with RAM above 4 GiB, NUMA nodes each with its own
//! backend, several vCPUs. For each, `vmscope ps --json` under every technique the
//! configuration allows equals the guest's own process list (its agent's /proc), the
//! default technique is the fastest allowed, and the techniques it refuses say why
//! and what works.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use vmscope_agent::Client;
use vmscope_testbed::{GuestImages, HugePages, QemuConfig, QemuVm, RamBacking};

/// Every technique that reads guest memory by syscalls or copies: what private RAM
/// allows.
const PRIVATE: [&str; 5] = ["live-read", "halt-read", "consistent-read", "halt-snap", "live-snap"];
/// The mapping techniques: shared RAM only.
const MAPPING: [&str; 3] = ["live-map", "halt-map", "consistent-map"];

/// A QEMU guest configuration under test.
struct Case {
    kernel: &'static str,
    machine: &'static str,
    mib: u64,
    vcpus: u32,
    ram: RamBacking,
    /// Whether all of guest RAM is shared files (mapping allowed).
    shared: bool,
}

impl Case {
    fn boot(&self) -> QemuVm {
        let images = GuestImages::locate().unwrap_or_else(|e| panic!("{e}"));
        let kernel = images.kernel(self.kernel).unwrap_or_else(|e| panic!("{e}"));
        let mut cfg: QemuConfig = kernel.qemu_config();
        cfg.machine = self.machine.into();
        cfg.memory_mib = self.mib;
        cfg.vcpus = self.vcpus;
        cfg.ram = self.ram.clone();
        QemuVm::launch(cfg).unwrap_or_else(|e| panic!("booting {}: {e}", self.name()))
    }

    fn name(&self) -> String {
        format!("linux-{} {} {} MiB {:?}", self.kernel, self.machine, self.mib, self.ram)
    }
}

/// `vmscope --qemu PID --qmp SECOND-MONITOR args...`, with its own profile cache.
fn vmscope(vm: &QemuVm, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .arg("--qemu")
        .arg(vm.pid().to_string())
        .arg("--qmp")
        .arg(vm.extra_qmp_socket())
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap()
}

fn json(o: &Output, what: &str) -> serde_json::Value {
    assert!(o.status.success(), "{what} failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// PID -> (PPID, UID, COMM).
type Table = BTreeMap<i64, (i64, i64, String)>;

fn table(doc: &serde_json::Value) -> Table {
    let procs = doc["processes"].as_array().expect("a process list");
    procs
        .iter()
        .map(|p| {
            let comm = p["full_name"].as_str().or(p["comm"].as_str()).unwrap_or("").to_owned();
            (p["pid"].as_i64().unwrap(), (p["ppid"].as_i64().unwrap(), p["uid"].as_i64().unwrap(), comm))
        })
        .collect()
}

/// The guest's own process list, through its agent.
fn truth(agent: &Path) -> Table {
    let mut c = Client::connect(agent, Duration::from_secs(30)).unwrap();
    c.processes()
        .unwrap()
        .into_iter()
        .map(|p| (i64::from(p.pid), (i64::from(p.ppid), i64::from(p.uid), p.comm)))
        .collect()
}

/// `ours` lists every process the guest listed before and after it, as the guest
/// did, and nothing far beyond.
fn assert_same(what: &str, ours: &Table, before: &Table, after: &Table) {
    for (pid, want) in before.iter().filter(|(p, w)| after.get(p) == Some(w)) {
        let got = ours.get(pid).unwrap_or_else(|| panic!("{what}: pid {pid} {want:?} is missing"));
        // A kworker's name says what it works on at the moment.
        let kworkers = got.2.starts_with("kworker/") && want.2.starts_with("kworker/");
        let comm_ok = got.2 == want.2 || want.2.starts_with(&got.2) || got.2.starts_with(&want.2) || kworkers;
        assert!(got.0 == want.0 && got.1 == want.1 && comm_ok, "{what}: pid {pid}: vmscope {got:?}, /proc {want:?}");
    }
    assert!(
        ours.len() <= before.len().max(after.len()) + 3,
        "{what}: {} processes, /proc {}",
        ours.len(),
        before.len()
    );
}

/// `vmscope ps --json` under `technique` (`None`: the default) equals the guest's
/// list; returns the technique that answered.
fn ps_matches(vm: &QemuVm, cache: &Path, technique: Option<&str>, extra: &[&str], what: &str) -> String {
    let mut args: Vec<&str> = technique.map_or(vec![], |t| vec!["--technique", t]);
    args.extend(extra);
    args.extend(["--json", "ps"]);
    let before = truth(&vm.agent_socket());
    let doc = json(&vmscope(vm, cache, &args), what);
    let after = truth(&vm.agent_socket());
    assert_same(what, &table(&doc), &before, &after);
    doc["technique"].as_str().unwrap().to_owned()
}

/// Every technique the case allows answers `ps` as the guest does; the default is
/// the fastest; the mapping techniques on private RAM say why not and what works.
fn check(case: &Case, vm: &QemuVm) {
    let cache = tempfile::tempdir().unwrap();
    let name = case.name();
    let info = json(&vmscope(vm, cache.path(), &["--json", "info"]), &format!("{name}, info"));
    let blocks = info["ram"]["blocks"].as_array().unwrap_or_else(|| panic!("{name}: no RAM blocks in {info}"));
    let shared = blocks.iter().all(|b| b["shared"] == true);
    assert_eq!(shared, case.shared, "{name}: info says {blocks:?}");
    let default = ps_matches(vm, cache.path(), None, &[], &format!("{name}, the default"));
    assert_eq!(default, if case.shared { "live-map" } else { "live-read" }, "{name}: the default technique");
    let mut allowed: Vec<&str> = PRIVATE.to_vec();
    if case.shared {
        allowed.extend(MAPPING);
    }
    allowed.push("agent");
    for t in allowed {
        ps_matches(vm, cache.path(), Some(t), &[], &format!("{name}, {t}"));
    }
    for m in ["process_vm_readv", "proc-mem"] {
        ps_matches(vm, cache.path(), Some("live-read"), &["--read-method", m], &format!("{name}, live-read by {m}"));
    }
    if !case.shared {
        for t in MAPPING {
            let o = vmscope(vm, cache.path(), &["--technique", t, "ps"]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{name}: {t} on private RAM succeeded");
            assert!(
                err.contains("private") && err.contains("cannot map") && err.contains("live-read"),
                "{name}: {t} should say why it cannot map, and what works: {err}"
            );
        }
        let o = vmscope(vm, cache.path(), &["--technique", "live-read", "--read-method", "pread", "ps"]);
        assert!(!o.status.success(), "{name}: pread of private RAM succeeded");
    }
}

fn run(case: Case) {
    let vm = case.boot();
    check(&case, &vm);
}

fn backend(kind: &str, props: &str) -> (String, String) {
    (kind.to_owned(), props.to_owned())
}

#[test]
fn plain_m_q35() {
    run(Case { kernel: "6.1", machine: "q35", mib: 512, vcpus: 2, ram: RamBacking::Plain, shared: false });
}

#[test]
fn memory_backend_ram_pc() {
    let ram = RamBacking::Backend { kind: "ram".into(), props: String::new() };
    run(Case { kernel: "6.12", machine: "pc", mib: 512, vcpus: 2, ram, shared: false });
}

#[test]
fn file_shared_q35() {
    let dir = tempfile::tempdir().unwrap();
    let props = format!("mem-path={},share=on", dir.path().display());
    let ram = RamBacking::Backend { kind: "file".into(), props };
    run(Case { kernel: "6.1", machine: "q35", mib: 512, vcpus: 2, ram, shared: true });
}

#[test]
fn file_private_pc() {
    // A file with data of its own: pages the guest never wrote read as the file's.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ram");
    std::fs::write(&file, vec![0xa5u8; 512 << 20]).unwrap();
    let props = format!("mem-path={},share=off", file.display());
    let ram = RamBacking::Backend { kind: "file".into(), props };
    run(Case { kernel: "6.12", machine: "pc", mib: 512, vcpus: 2, ram, shared: false });
}

#[test]
fn hugetlbfs_shared_q35() {
    let huge = HugePages::reserve(300).unwrap_or_else(|e| panic!("{e}"));
    let props = format!("mem-path={},share=on", huge.path().display());
    let ram = RamBacking::Backend { kind: "file".into(), props };
    let case = Case { kernel: "6.1", machine: "q35", mib: 512, vcpus: 2, ram, shared: true };
    let vm = case.boot();
    let free = HugePages::free().unwrap();
    check(&case, &vm);
    // The guest ran meanwhile and may have touched new pages; never many.
    assert!(HugePages::free().unwrap() + 8 >= free, "introspection allocated huge pages");
}

/// RAM above 4 GiB on q35 (2 GiB below the PCI hole), private, 4 vCPUs.
#[test]
fn q35_4g_plain_four_vcpus() {
    run(Case { kernel: "6.12", machine: "q35", mib: 4096, vcpus: 4, ram: RamBacking::Plain, shared: false });
}

/// Two NUMA nodes, each its own shared memfd, on pc (3 GiB below the hole): two RAM
/// blocks mapped side by side, the second split by the hole.
#[test]
fn pc_4g_two_memfd_nodes() {
    let ram = RamBacking::Numa(vec![backend("memfd", "share=on"), backend("memfd", "share=on")]);
    run(Case { kernel: "6.1", machine: "pc", mib: 4096, vcpus: 2, ram, shared: true });
}

/// 8 GiB on q35: one node anonymous, one a private file mapping; a dump costs what
/// the guest uses, not 8 GiB, and reads back as the live guest.
#[test]
fn q35_8g_private_nodes_and_a_dump() {
    let dir = tempfile::tempdir().unwrap();
    let props = format!("mem-path={},share=off", dir.path().display());
    let ram = RamBacking::Numa(vec![backend("ram", ""), backend("file", &props)]);
    let case = Case { kernel: "6.12", machine: "q35", mib: 8192, vcpus: 2, ram, shared: false };
    let vm = case.boot();
    check(&case, &vm);
    let out = dir.path().join("guest.elf");
    let cache = tempfile::tempdir().unwrap();
    let o = vmscope(&vm, cache.path(), &["dump", "--format", "elf", out.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let meta = std::fs::metadata(&out).unwrap();
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(meta.len() > 8 << 30, "the dump holds all 8 GiB: {}", meta.len());
    assert!(allocated < 1 << 30, "the dump stores only what the guest uses: {} MiB", allocated >> 20);
    let before = truth(&vm.agent_socket());
    let o =
        Command::new(env!("CARGO_BIN_EXE_vmscope")).arg("--dump").arg(&out).args(["--json", "ps"]).output().unwrap();
    let dumped = table(&json(&o, "ps of the dump"));
    for (pid, want) in before.iter().filter(|(p, _)| **p < 200) {
        assert_eq!(dumped.get(pid).map(|g| (g.0, g.1)), Some((want.0, want.1)), "pid {pid} in the dump");
    }
}

/// 8 GiB plain `-m` on pc (QEMU's default machine): RAM from 4 GiB to 9 GiB.
#[test]
fn pc_8g_plain() {
    run(Case { kernel: "6.1", machine: "pc", mib: 8192, vcpus: 2, ram: RamBacking::Plain, shared: false });
}

/// A plain `-m` QEMU without QMP: the layout comes from its command line and
/// /proc/PID/maps; the live techniques read it, the halting ones say they need QMP.
#[test]
fn plain_m_without_qmp() {
    let q = common::ReadmeQemu::start_edited("6.12", |line| {
        line.replace(",memory-backend=ram", "")
            .replace("-object memory-backend-memfd,id=ram,size=1G,share=on", "")
            .replace("-qmp unix:qmp.sock,server=on,wait=off", "")
    });
    let cache = tempfile::tempdir().unwrap();
    for t in [None, Some("live-read"), Some("consistent-read")] {
        let mut args: Vec<&str> = t.map_or(vec![], |t| vec!["--technique", t]);
        args.extend(["--json", "ps"]);
        let before = truth(&q.dir().join("agent.sock"));
        let o = q.vmscope_env(&args, cache.path());
        let doc = json(&o, &format!("{t:?} without QMP"));
        let after = truth(&q.dir().join("agent.sock"));
        assert_same(&format!("{t:?} without QMP"), &table(&doc), &before, &after);
        assert_eq!(doc["technique"], t.unwrap_or("live-read"));
    }
    let o = q.vmscope_env(&["--technique", "halt-read", "ps"], cache.path());
    assert!(String::from_utf8_lossy(&o.stderr).contains("QMP"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = q.vmscope_env(&["--technique", "live-map", "ps"], cache.path());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot map"), "{}", String::from_utf8_lossy(&o.stderr));

    // Another user, without ptrace rights over QEMU: the error says how to get them.
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        let o = Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .args(["--qemu", &q.pid().to_string(), "ps"])
            .uid(65534)
            .gid(65534)
            .env("XDG_CACHE_HOME", "/tmp")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("ptrace rights") && err.contains("CAP_SYS_PTRACE"), "{err}");
    }
}
