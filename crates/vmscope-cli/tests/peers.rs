//! vmscope's dumps and profiles opened by the tools people use, against the guest's
//! own process list: drgn (PyPI) reads vmscope's ELF dump, Volatility 3 (PyPI)
//! reads vmscope's LiME dump with the ISF `vmscope profile --isf` wrote, and vmscope
//! reads the ELF dump QEMU itself writes (`dump-guest-memory`). One guest per
//! kernel serves every check.
//!
//! The tools live in a private venv the test bed makes (`target/peer-tools`, the
//! wheels cached in `~/.cache/vmscope/wheels`); drgn takes types from DWARF only, so Debian's
//! `-dbg` vmlinux is cached once in `~/.cache/vmscope/debug`. Without PyPI or
//! Debian's archive, the checks that need them print `SKIPPED:`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vmscope_hv::Hypervisor;
use vmscope_snap::DumpFile;
use vmscope_testbed::{Error, Guest, PeerTools, boot, peers};

/// Processes as `ps` shows them: PID and comm (see [`task_name`]).
type Ps = BTreeSet<(i32, String)>;

/// The part of a comm that both the task's 16-byte `comm` and the guest's /proc
/// show: at most 15 bytes, and for a kworker not the workqueue it serves at the
/// moment, which /proc appends after a `-` (`kworker/0:1-events`). /proc also shows
/// a kernel thread's full name where `comm` has its first 15 bytes.
fn task_name(comm: &str) -> String {
    let name = match comm.strip_prefix("kworker/") {
        Some(rest) => format!("kworker/{}", rest.split('-').next().unwrap_or(rest)),
        None => comm.to_owned(),
    };
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// A `Ps` from (pid, comm) pairs.
fn ps<'a>(rows: impl IntoIterator<Item = (i64, &'a str)>) -> Ps {
    rows.into_iter().map(|(pid, comm)| (pid as i32, task_name(comm))).collect()
}

/// `vmscope --qemu PID --qmp SECOND-MONITOR args...`; its stderr, or a panic.
fn vmscope(g: &Guest, cache: &Path, args: &[&str]) -> String {
    String::from_utf8(common::vmscope_on(g, cache, args).stderr).unwrap()
}

/// Runs a peer tool; its stdout, or a panic with its stderr.
fn tool(mut c: Command, what: &str) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(o.status.success(), "{what} failed ({}):\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The guest's processes as it reports them (its /proc, through the agent).
fn guest_ps(g: &mut Guest) -> Ps {
    let procs = g.agent.processes().unwrap();
    ps(procs.iter().map(|p| (i64::from(p.pid), p.comm.as_str())))
}

/// Runs `f` with the guest paused, between two process lists of the guest's own
/// that must agree (else the guest changed around the pause, and it is tried
/// again); returns that list — the state `f` saw.
fn frozen(g: &mut Guest, mut f: impl FnMut(&Guest)) -> Ps {
    for _ in 0..3 {
        let before = guest_ps(g);
        g.vm.hv().pause().unwrap();
        f(g);
        g.vm.hv().resume().unwrap();
        if guest_ps(g) == before {
            return before;
        }
    }
    panic!("the guest's process list changed around every pause");
}

/// The peer tools, or `None` after a loud `SKIPPED:` line.
fn peer_tools(what: &str) -> Option<PeerTools> {
    match PeerTools::ensure() {
        Ok(t) => Some(t),
        Err(Error::Unavailable(why)) => {
            eprintln!("SKIPPED: {what}: no drgn/Volatility 3: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// drgn's task list of an ELF core: the thread-group leaders' PID and comm.
const DRGN_PS: &str = r#"
from drgn.helpers.linux.pid import for_each_task
print("release", prog["init_uts_ns"].name.release.string_().decode())
for t in for_each_task(prog):
    if t.pid == t.tgid:
        print(int(t.pid), t.comm.string_().decode())
"#;

fn drgn_ps(tools: &PeerTools, core: &Path, vmlinux: &Path, dir: &Path) -> (String, Ps) {
    let script = dir.join("ps.py");
    std::fs::write(&script, DRGN_PS).unwrap();
    let mut c = tools.drgn();
    c.arg("-c").arg(core).arg("-s").arg(vmlinux).arg(&script);
    let out = tool(c, "drgn");
    let mut lines = out.lines();
    let release = lines.next().and_then(|l| l.strip_prefix("release ")).expect("drgn printed the release").to_owned();
    let tasks = lines.map(|l| {
        let (pid, comm) = l.split_once(' ').unwrap_or((l, ""));
        (pid.parse().unwrap_or_else(|_| panic!("drgn line {l:?}")), comm)
    });
    (release, ps(tasks))
}

/// Volatility 3's `linux.pslist` of `image` with the symbol files under `symbols`.
fn vol_pslist(tools: &PeerTools, image: &Path, symbols: &Path, dir: &Path) -> Ps {
    let cache = dir.join("vol-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mut c = tools.vol();
    c.args(["-q", "-r", "json", "--offline", "--cache-path"]).arg(&cache).arg("-s").arg(symbols);
    c.arg("-f").arg(image).arg("linux.pslist");
    let out = tool(c, "vol linux.pslist");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("vol's JSON: {e}: {}", &out[..out.len().min(500)]));
    ps(rows.iter().map(|r| (r["PID"].as_i64().unwrap(), r["COMM"].as_str().unwrap())))
}

/// `vmscope --dump FILE ps --json`.
fn vmscope_dump_ps(file: &Path) -> Ps {
    let o =
        Command::new(env!("CARGO_BIN_EXE_vmscope")).arg("--dump").arg(file).args(["ps", "--json"]).output().unwrap();
    assert!(o.status.success(), "vmscope --dump {} ps: {}", file.display(), String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let procs = doc["processes"].as_array().unwrap();
    ps(procs.iter().map(|p| (p["pid"].as_i64().unwrap(), p["comm"].as_str().unwrap())))
}

/// The VMCOREINFO vmscope builds for the kernel in `dump`.
fn built_vmcoreinfo(dump: &DumpFile) -> String {
    let k = vmscope_linux::Kernel::attach(dump, vmscope_linux::Hints::none()).unwrap();
    vmscope_linux::vmcoreinfo::build(&k)
}

fn assert_same(tool: &str, seen: &Ps, truth: &Ps) {
    let missing: Vec<_> = truth.difference(seen).collect();
    let extra: Vec<_> = seen.difference(truth).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{tool}: missing {missing:?}, not in the guest {extra:?}");
}

fn peers_read_dumps(id: &str) {
    // Without the peer tools, vmscope's side (QEMU's dump, the notes) is still checked.
    let tools = peer_tools(&format!("drgn and Volatility 3 on {id}"));
    let mut g = boot(id);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let elf = dir.path().join("vmscope.elf");
    let lime = dir.path().join("vmscope.lime");
    let qemu_elf = dir.path().join("qemu.elf");
    let symbols = dir.path().join("symbols");
    std::fs::create_dir_all(symbols.join("linux")).unwrap();

    // Types and symbols do not change while the kernel runs: the ISF is written live.
    let isf = symbols.join("linux/guest.json");
    vmscope(&g, &cache, &["profile", "--isf", isf.to_str().unwrap()]);

    let mut said = String::new();
    let truth = frozen(&mut g, |g| {
        said = vmscope(g, &cache, &["dump", "--format", "elf", elf.to_str().unwrap()]);
        vmscope(g, &cache, &["dump", "--format", "lime", lime.to_str().unwrap()]);
        vmscope_snap::qemu_dump_guest_memory(g.vm.hv(), &qemu_elf, Duration::from_secs(120)).unwrap();
    });
    assert!(truth.len() > 20 && truth.contains(&(1, "init".to_owned())), "{truth:?}");

    // vmscope's ELF carries what QEMU's does: the kernel's VMCOREINFO (QEMU takes
    // it from the vmcoreinfo device), and each vCPU's registers as of the pause.
    let (ours, qemus) = (DumpFile::open(&elf).unwrap(), DumpFile::open(&qemu_elf).unwrap());
    assert!(qemus.meta().vmcoreinfo.is_some(), "QEMU's dump has VMCOREINFO (vmcoreinfo device)");
    assert!(said.contains("VMCOREINFO from the kernel's vmcoreinfo_note"), "{said}");
    assert_eq!(ours.meta().vmcoreinfo, qemus.meta().vmcoreinfo, "VMCOREINFO");
    let regs = |d: &DumpFile| -> Vec<[u64; 6]> {
        d.meta().vcpus.iter().map(|r| [r.rip, r.rsp, r.rflags, r.cr3, r.cr4, r.gs_base]).collect()
    };
    assert_eq!(regs(&ours), regs(&qemus), "vCPU registers (rip, rsp, rflags, cr3, cr4, gs_base)");
    assert_eq!(ours.meta().vcpus.len(), 2);

    // vmscope reads QEMU's own dump.
    assert_same("vmscope on QEMU's dump-guest-memory", &vmscope_dump_ps(&qemu_elf), &truth);

    // Volatility 3: vmscope's LiME dump with vmscope's ISF, no dwarf2json.
    if let Some(tools) = &tools {
        assert_same("Volatility 3 linux.pslist", &vol_pslist(tools, &lime, &symbols, dir.path()), &truth);
    }

    // The VMCOREINFO vmscope builds for a kernel without one says what the
    // kernel's own says, line for line.
    let built = built_vmcoreinfo(&qemus);
    let own = qemus.meta().vmcoreinfo.clone().unwrap();
    for line in built.lines() {
        let key = line.split('=').next().unwrap();
        if let Some(theirs) = own.lines().find(|l| l.split('=').next() == Some(key)) {
            assert_eq!(line, theirs, "built VMCOREINFO");
        }
    }
    for key in ["OSRELEASE", "PAGESIZE", "SYMBOL(swapper_pg_dir)", "SYMBOL(init_uts_ns)", "KERNELOFFSET"] {
        assert!(own.contains(&format!("{key}=")) && built.contains(&format!("{key}=")), "{key} in both");
    }
    let built_elf = dir.path().join("built.elf");
    let meta = vmscope_snap::DumpMeta { vmcoreinfo: Some(built), vcpus: ours.meta().vcpus.clone() };
    vmscope_snap::write_dump(&built_elf, vmscope_snap::Format::Elf, &ours, &meta).unwrap();

    // drgn: vmscope's ELF dumps as kernel cores, with Debian's debug info: the
    // kernel's VMCOREINFO, and the one vmscope builds.
    let Some(tools) = &tools else { return };
    match peers::debug_vmlinux(&g.kernel) {
        Ok(vmlinux) => {
            for core in [&elf, &built_elf] {
                let (release, ps) = drgn_ps(tools, core, &vmlinux, dir.path());
                assert_eq!(release, g.kernel.release, "drgn's init_uts_ns release ({})", core.display());
                assert_same(&format!("drgn for_each_task ({})", core.display()), &ps, &truth);
            }
        }
        Err(Error::Unavailable(why)) => eprintln!("SKIPPED: drgn on {id}: no debug vmlinux: {why}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn peers_read_dumps_6_1() {
    peers_read_dumps("6.1");
}

#[test]
fn peers_read_dumps_6_12() {
    peers_read_dumps("6.12");
}
