//! `vmscope check`, `kallsyms` and `pids` on real Debian kernels under QEMU, one boot
//! per kernel for every assertion.
//!
//! - Untouched, the guest hides nothing (its own `ps` through the agent lists every
//!   process), and `check` finds nothing and exits 0 under every technique tried.
//! - Then the test does what a rootkit does, writing the RAM memfd itself while the
//!   guest is paused: it unlinks a busy process from the task list (DKOM) and a
//!   module from the module list, points `sys_call_table[__NR_getpid]`, IDT gate 3
//!   and `n_tty_ops.receive_buf` outside kernel text, sends `x64_sys_call`'s branch
//!   to `__x64_sys_getpid` past the kernel's text, puts a notifier_block calling
//!   outside it at the head of `keyboard_notifier_list`, and gives a process of uid
//!   1001 the effective cred of pid 1. (Where to write comes from vmscope's library:
//!   that is set-up, not ground truth.) `check` finds each of the eight, and
//!   nothing else, with exit status 3, under every technique tried; the guest
//!   stays paused and is killed after.
//! - `kallsyms` against a sample of the guest's `/proc/kallsyms` (read as root) and
//!   its line count; `pids` against the PIDs in the guest's `/proc`.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Output;

use vmscope_hv::Hypervisor;
use vmscope_linux::checks::branch_targets;
use vmscope_linux::offsets::CheckOffsets;
use vmscope_linux::{Hints, Kernel};
use vmscope_mem::{FileMem, Gva, PhysMem};
use vmscope_testbed::{Guest, boot_with};

/// The techniques each state is checked under: a mapping, syscall reads (halted
/// and live) and a snapshot.
const TECHNIQUES: [&str; 4] = ["live-map", "halt-read", "live-read", "halt-snap"];

/// `__NR_getpid` on x86-64.
const NR_GETPID: u64 = 39;

/// Where the redirected pointers point: the top of the module area, which no
/// module reaches and no kernel text is in.
const ROGUE: u64 = 0xffff_ffff_fe00_0000;

fn vmscope(g: &Guest, cache: &Path, args: &[&str]) -> Output {
    common::vmscope_for(g, cache, args).output().unwrap()
}

fn stdout_ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// `check --json` under technique `t`: its exit status and its report.
fn check(g: &Guest, cache: &Path, t: &str) -> (i32, serde_json::Value) {
    let o = vmscope(g, cache, &["--technique", t, "check", "--json"]);
    let code = o.status.code().expect("vmscope exited");
    let doc = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{t}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
    (code, doc)
}

/// Writes `bytes` at kernel-virtual `va` into the guest's RAM memfd (the guest is
/// paused). The memfd is reopened for writing through /proc/self/fd.
fn poke(ram: &FileMem, k: &Kernel<FileMem>, va: Gva, bytes: &[u8]) {
    let (gpa, contiguous) = k.kernel_mem().translate(va).expect("a mapped kernel address");
    assert!(contiguous >= bytes.len() as u64, "{va:#x} straddles a page");
    let (_, off, n) = ram.memory_map().chunks(gpa, bytes.len() as u64).next().expect("one chunk").expect("backed");
    assert_eq!(n, bytes.len() as u64);
    let seg = ram.segments().iter().find(|s| s.start <= off && off - s.start < s.len).expect("a RAM file");
    let f = OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", seg.file.as_raw_fd())).unwrap();
    f.write_all_at(bytes, seg.file_offset + (off - seg.start)).unwrap();
}

fn poke_u64(ram: &FileMem, k: &Kernel<FileMem>, va: Gva, value: u64) {
    poke(ram, k, va, &value.to_le_bytes());
}

fn at(base: Gva, off: u64) -> Gva {
    Gva::new(base.raw() + off)
}

/// Unlinks the `list_head` at `node` from its list, as `list_del` does to the
/// neighbours (the node itself is left as it was).
fn unlink(ram: &FileMem, k: &Kernel<FileMem>, node: Gva) {
    let lo = k.offsets().list;
    let km = k.kernel_mem();
    let next = km.read_ptr(at(node, lo.next)).unwrap();
    let prev = km.read_ptr(at(node, lo.prev)).unwrap();
    poke_u64(ram, k, at(prev, lo.next), next.raw());
    poke_u64(ram, k, at(next, lo.prev), prev.raw());
}

/// What the rootkit did, for the assertions.
struct Planted {
    /// The unlinked process (busy, so on a run queue too).
    task: Gva,
    pid: i32,
    module: Gva,
    /// `sys_call_table[__NR_getpid]`.
    slot: Gva,
    /// The branch of `x64_sys_call` to `__x64_sys_getpid`, and where it goes now.
    branch: Gva,
    branch_to: Gva,
    /// `idt_table[3]`.
    gate: Gva,
    /// `n_tty_ops.receive_buf`.
    ldisc_op: Gva,
    /// The cred of pid 1, now also the effective cred of a process of uid 1001.
    cred: Gva,
    cred_pid: i32,
    /// `notifier_call` of the notifier_block put first on `keyboard_notifier_list`.
    keyboard_call: Gva,
}

/// A rootkit's writes: the task list, the module list, a system call table entry,
/// a branch of the compiled dispatch, an IDT gate, a line discipline's operation, a
/// keyboard notifier, and a process's effective cred.
fn plant(g: &Guest, victim: i32, lowly: i32) -> Planted {
    let ram = g.ram();
    let regs = g.vm.hv().vcpu_registers(0).expect("registers");
    let k = Kernel::attach(g.ram(), Hints::from_registers(regs.cr3, regs.cr4)).expect("attach");
    let co = CheckOffsets::resolve(k.profile().expect("types"));
    let sym = |name: &str| k.symbols().addr(name).unwrap_or_else(|| panic!("no {name}"));
    let etext = sym("_etext");

    let graph = k.task_graph();
    let task = |pid: i32| graph.tasks.iter().find(|t| t.pid == pid && t.on_task_list).expect("a listed process");
    let victim_task = task(victim).addr;
    unlink(&ram, &k, at(victim_task, k.offsets().task.tasks));

    let m = k.modules().modules.into_iter().find(|m| m.name == "dummy").expect("dummy loaded");
    unlink(&ram, &k, at(m.addr, k.offsets().module.list));

    let slot = at(sym("sys_call_table"), 8 * NR_GETPID);
    poke_u64(&ram, &k, slot, ROGUE);

    // A direct branch (E8/E9 rel32, or 0F 8x rel32) to __x64_sys_getpid, sent
    // just past the kernel's text instead.
    let dispatch = sym("x64_sys_call");
    let code = k.kernel_mem().read_vec(dispatch, 64 << 10).unwrap();
    let getpid = sym("__x64_sys_getpid");
    let branch = branch_targets(&code, dispatch.raw())
        .into_iter()
        .find(|b| b.target == getpid && b.at.offset_from(dispatch).is_some_and(|o| o < (64 << 10) - 6))
        .expect("a branch to __x64_sys_getpid in x64_sys_call");
    let b = branch;
    let op = b.at.offset_from(dispatch).unwrap() as usize;
    let rel_at = match code[op] {
        0xe8 | 0xe9 => 1,
        0x0f => 2,
        other => panic!("a branch with opcode {other:#x} has no rel32"),
    };
    let branch_to = at(etext, 0x2000);
    let end = b.at.raw() + rel_at + 4;
    let rel = (branch_to.raw().wrapping_sub(end) as i64) as i32;
    poke(&ram, &k, at(b.at, rel_at), &rel.to_le_bytes());

    let gate = at(sym("idt_table"), 16 * 3);
    let mut g16 = [0u8; 16];
    k.kernel_mem().read(gate, &mut g16).unwrap();
    g16[0..2].copy_from_slice(&(ROGUE as u16).to_le_bytes());
    g16[6..8].copy_from_slice(&((ROGUE >> 16) as u16).to_le_bytes());
    g16[8..12].copy_from_slice(&((ROGUE >> 32) as u32).to_le_bytes());
    poke(&ram, &k, gate, &g16);

    let ldisc = co.ldisc.expect("struct tty_ldisc_ops");
    let receive = ldisc.ops.iter().find(|(n, _)| n == "receive_buf").expect("receive_buf").1;
    let ldisc_op = at(sym("n_tty_ops"), receive);
    poke_u64(&ram, &k, ldisc_op, ROGUE);

    // A keyboard notifier (a keylogger's hook): a notifier_block in bytes nobody
    // reads — the unused tail of the hidden module's name — calling ROGUE, put at the
    // head of the chain ahead of whatever was there.
    let no = co.notifier.expect("struct notifier_block");
    let block = at(m.addr, k.offsets().module.name + 16);
    let head = at(sym("keyboard_notifier_list"), no.head);
    let first = k.kernel_mem().read_ptr(head).unwrap();
    poke_u64(&ram, &k, at(block, no.call), ROGUE);
    poke_u64(&ram, &k, at(block, no.next), first.raw());
    poke_u64(&ram, &k, head, block.raw());
    let keyboard_call = at(block, no.call);

    let cred_off = co.task_cred.expect("task_struct.cred");
    let cred = k.kernel_mem().read_ptr(at(task(1).addr, cred_off)).unwrap();
    poke_u64(&ram, &k, at(task(lowly).addr, cred_off), cred.raw());

    Planted {
        task: victim_task,
        pid: victim,
        module: m.addr,
        slot,
        branch: b.at,
        branch_to,
        gate,
        ldisc_op,
        cred,
        cred_pid: lowly,
        keyboard_call,
    }
}

/// The findings of `check` of kind `kind`.
fn of_kind<'a>(doc: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    doc["findings"].as_array().unwrap().iter().filter(|f| f["check"] == kind).collect()
}

/// The one finding of kind `kind`, which must be at `at`.
fn one<'a>(doc: &'a serde_json::Value, kind: &str, at: Gva, t: &str) -> &'a serde_json::Value {
    let f = of_kind(doc, kind);
    assert!(f.len() == 1 && f[0]["at"] == at.raw(), "{t}: want one {kind} finding at {at:#x}: {f:#?}");
    f[0]
}

fn untouched(g: &mut Guest, cache: &Path, victim: i32) {
    // The guest's own view: the victim and every other process listed by its /proc.
    let ps = g.agent.processes().unwrap();
    assert!(ps.iter().any(|p| p.pid == victim), "the guest does not list its own victim");
    for t in TECHNIQUES {
        let (code, doc) = check(g, cache, t);
        assert_eq!(doc["findings"], serde_json::json!([]), "{t}: findings on an untouched guest");
        assert_eq!(code, 0, "{t}: exit status on an untouched guest");
        let checks = doc["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 8, "{t}: {doc}");
        for c in checks {
            let skipped = &c["skipped"];
            // Every check runs on these kernels (both dispatch through x64_sys_call;
            // Debian backported it to 6.1).
            assert!(skipped.is_null(), "{t}: {} skipped: {skipped}", c["check"]);
        }
        let examined = |name: &str| checks.iter().find(|c| c["check"] == name).unwrap()["examined"].as_u64().unwrap();
        assert!(examined("syscall_table") >= 400, "{t}: {doc}");
        assert!(examined("syscall_dispatch") >= 300, "{t}: {doc}");
        assert!(examined("idt") >= 200, "{t}: {doc}");
        assert!(examined("tty_hook") >= 1, "{t}: {doc}");
        assert!(examined("hidden_process") >= ps.len() as u64 / 2, "{t}: {doc}");
        assert!(examined("hidden_module") >= 5, "{t}: {doc}");
        assert!(examined("shared_cred") >= ps.len() as u64 / 2, "{t}: {doc}");
    }
}

fn rooted(g: &Guest, cache: &Path, p: &Planted) {
    for t in TECHNIQUES {
        let (code, doc) = check(g, cache, t);
        assert_eq!(code, 3, "{t}: exit status with findings: {doc}");
        let f = one(&doc, "hidden_process", p.task, t);
        assert!(f["subject"].as_str().unwrap().contains(&format!("task {} ", p.pid)), "{t}: {f}");
        let found = f["found"].as_str().unwrap();
        assert!(found.contains(&format!("on the PID table as pid {}", p.pid)), "{t}: {f}");
        assert!(found.contains("on CPU"), "{t}: the busy victim is on no run queue: {f}");
        let f = one(&doc, "hidden_module", p.module, t);
        let found = f["found"].as_str().unwrap();
        assert!(found.contains("module_kset") && found.contains("carved"), "{t}: {f}");
        assert!(f["subject"].as_str().unwrap().contains("dummy"), "{t}: {f}");
        let f = one(&doc, "syscall_table", p.slot, t);
        assert_eq!(
            (f["subject"].as_str().unwrap(), &f["value"]),
            (&*format!("sys_call_table[{NR_GETPID}]"), &ROGUE.into())
        );
        let f = one(&doc, "syscall_dispatch", p.branch, t);
        assert_eq!(f["value"], p.branch_to.raw(), "{t}: {f}");
        let f = one(&doc, "idt", p.gate, t);
        assert_eq!((f["subject"].as_str().unwrap(), &f["value"]), ("IDT vector 0x03", &ROGUE.into()));
        let f = one(&doc, "tty_hook", p.ldisc_op, t);
        assert!(f["subject"].as_str().unwrap().ends_with("->receive_buf") && f["value"] == ROGUE, "{t}: {f}");
        let f = one(&doc, "shared_cred", p.cred, t);
        let found = f["found"].as_str().unwrap();
        assert!(found.contains(&format!("{} (", p.cred_pid)) && found.contains("uid 1001"), "{t}: {f}");
        let f = one(&doc, "keyboard_notifier", p.keyboard_call, t);
        assert!(f["subject"].as_str().unwrap().ends_with("->notifier_call") && f["value"] == ROGUE, "{t}: {f}");
        assert_eq!(doc["findings"].as_array().unwrap().len(), 8, "{t}: nothing else: {doc}");
    }
    // The text report says the same, and so does the PID table view.
    let o = vmscope(g, cache, &["--technique", "live-map", "check"]);
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("8 findings:") && text.contains(&format!("sys_call_table[{NR_GETPID}]")), "{text}");
    let pids: serde_json::Value =
        serde_json::from_str(&stdout_ok(&vmscope(g, cache, &["pids", "--json"]), "pids")).unwrap();
    let row = pids["pids"].as_array().unwrap().iter().find(|r| r["nr"] == p.pid).expect("the victim's pid");
    assert_eq!(row["task"], p.task.raw());
    assert_eq!(row["notes"], serde_json::json!(["task not on the task list"]), "{row}");
    let ps = stdout_ok(&vmscope(g, cache, &["ps"]), "ps");
    assert!(!ps.lines().any(|l| l.split_whitespace().next() == Some(&p.pid.to_string())), "ps still lists it:\n{ps}");
}

fn kallsyms(g: &mut Guest, cache: &Path) {
    // Every 499th line, the module's, and a few by name: a sample from the whole file.
    let sample = g.sh("awk 'NR % 499 == 1' /proc/kallsyms; grep -F '[dummy]' /proc/kallsyms; \
         grep -E ' (init_task|sys_call_table|x64_sys_call|idt_table|runqueues|module_kset)$' /proc/kallsyms");
    let lines: usize = g.sh("wc -l < /proc/kallsyms").trim().parse().unwrap();
    assert!(!sample.starts_with("0000000000000000 T"), "addresses are hidden from the agent");
    let ours = stdout_ok(&vmscope(g, cache, &["kallsyms"]), "kallsyms");
    let ours_set: BTreeSet<&str> = ours.lines().collect();
    let sampled: Vec<&str> = sample.lines().collect();
    assert!(sampled.len() > 100, "{sample}");
    for l in &sampled {
        assert!(ours_set.contains(l), "/proc/kallsyms has {l:?}; vmscope kallsyms does not");
    }
    assert!(sampled.iter().any(|l| l.ends_with("\t[dummy]")), "no module symbol in the sample");
    assert_eq!(ours.lines().count(), lines, "line count of /proc/kallsyms");
    // A pattern keeps the matching lines only, in order.
    let some = stdout_ok(&vmscope(g, cache, &["kallsyms", "sys_call_table"]), "kallsyms PATTERN");
    let want: Vec<&str> =
        ours.lines().filter(|l| l.split_whitespace().nth(2).unwrap().contains("sys_call_table")).collect();
    assert_eq!(some.lines().collect::<Vec<_>>(), want);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_ok(&vmscope(g, cache, &["kallsyms", "dummy", "--json"]), "kallsyms --json"))
            .unwrap();
    assert!(doc["symbols"].as_array().unwrap().iter().any(|s| s["module"] == "dummy"), "{doc}");
}

/// PIDs in the guest's /proc (thread-group leaders).
fn proc_pids(g: &mut Guest) -> BTreeSet<u64> {
    g.sh("ls /proc").split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn pids(g: &mut Guest, cache: &Path) {
    let before = proc_pids(g);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_ok(&vmscope(g, cache, &["pids", "--json"]), "pids")).unwrap();
    let after = proc_pids(g);
    let rows = doc["pids"].as_array().unwrap();
    let leaders: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r["tgid"].as_u64().is_some() && r["tgid"] == r["nr"])
        .map(|r| r["nr"].as_u64().unwrap())
        .collect();
    for pid in before.intersection(&after) {
        assert!(leaders.contains(pid), "/proc/{pid} is not in vmscope pids as a process");
    }
    for pid in &leaders {
        assert!(
            before.contains(pid) || after.contains(pid),
            "vmscope pids has process {pid}, the guest's /proc does not"
        );
    }
    for r in rows.iter().filter(|r| !r["task"].is_null()) {
        assert!(r["notes"].as_array().unwrap().is_empty(), "an untouched guest: {r}");
    }
}

fn run(id: &str) {
    let mut g = boot_with(id, |c| c.kaslr = true);
    let cache = tempfile::tempdir().unwrap();
    g.sh("insmod /lib/modules/dummy.ko");
    kallsyms(&mut g, cache.path());
    pids(&mut g, cache.path());
    // A busy process (on a run queue whenever the guest stops) and one of uid 1001.
    let victim: i32 = g.sh("(while :; do :; done) >/dev/null 2>&1 & echo $!").trim().parse().unwrap();
    let r = g
        .agent
        .exec(vmscope_agent::ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), "sleep 100000 >/dev/null 2>&1 & echo $!".into()],
            uid: Some(1001),
            ..Default::default()
        })
        .unwrap();
    assert!(r.success());
    let lowly: i32 = String::from_utf8_lossy(&r.stdout).trim().parse().unwrap();
    untouched(&mut g, cache.path(), victim);

    g.vm.hv().pause().unwrap();
    let planted = plant(&g, victim, lowly);
    rooted(&g, cache.path(), &planted);
    assert!(g.vm.hv().is_paused().unwrap(), "vmscope resumed a guest it had not paused");
}

#[test]
fn dkom_found_on_6_1() {
    run("6.1");
}

#[test]
fn dkom_found_on_6_12() {
    run("6.12");
}
