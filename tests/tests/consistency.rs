//! The consistent techniques on real guests whose processes churn (`vmscope-workload
//! churn procs 50`): with the guest frozen by the test's own QMP monitor, a
//! `consistent-read` view is the halted view of the same moment — the same process
//! list (`ViewDiff` empty) and the same invariant violations, none more; with it
//! running, every `consistent-read` view is untorn, validated by double collect or a
//! halted fallback, and breaks no rule extrinsically. The guest's /proc, through the
//! agent, says the churn ran.

use std::collections::BTreeSet;

use vmscope_consistency::invariants::{self, Checked, Origin};
use vmscope_consistency::{diff, validate::Method};
use vmscope_hv::Hypervisor;
use vmscope_linux::{Hints, Kernel, ProcessList};
use vmscope_mem::PhysMem;
use vmscope_technique::{Access, Options, ReadMethod, Target, Technique};
use vmscope_testbed::{Guest, boot};

fn forks(g: &mut Guest) -> u64 {
    let stat = g.sh("cat /proc/stat");
    stat.lines().find_map(|l| l.strip_prefix("processes ")).expect("/proc/stat processes").trim().parse().unwrap()
}

/// The process list and the invariants in one observed pass, on a kernel attached
/// before (attaching reads what does not change; the view is what must be consistent).
fn view<K: PhysMem>(access: &Access<'_>, kernel: &Kernel<K>) -> (ProcessList, Checked, vmscope_technique::Consistency) {
    let seen = access
        .observed_pass(|mem: &dyn PhysMem| {
            let k = kernel.rebind(mem);
            (k.processes(), invariants::check(&k))
        })
        .unwrap();
    (seen.value.0, seen.value.1, seen.consistency)
}

fn rules(c: &Checked) -> BTreeSet<String> {
    c.violations.iter().map(|v| format!("{}: {}", v.rule.name(), v.detail)).collect()
}

fn consistent_under_churn(id: &str) {
    let mut g = boot(id);
    let before = forks(&mut g);
    // A rate at which some live tries of this (debug, slow) build validate.
    g.sh("/sbin/vmscope-workload churn procs 50 >/dev/null 2>&1 &");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let guest = Target::Qemu { pid: g.vm.pid(), qmp: Some(g.vm.extra_qmp_socket()) }.open().unwrap();
    let regs = guest.registers().unwrap();
    let hints = Hints::from_registers(regs.cr3, regs.cr4);
    let kernel = Kernel::attach(g.ram(), hints).expect("attach");
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    let consistent = guest.access(Some(Technique::ConsistentRead), &opts).unwrap();
    let halted = guest.access(Some(Technique::HaltRead), &opts).unwrap();

    // Running: untorn, every violation intrinsic.
    let (mut live_tries, mut fell_back) = (0, 0);
    for pass in 0..20 {
        let (list, checked, c) = view(&consistent, &kernel);
        assert!(!c.torn, "pass {pass}: torn: {c:?}");
        assert!(matches!(c.verdict.method, Method::DoubleCollect | Method::Halted), "{c:?}");
        assert!(list.processes.iter().any(|p| p.pid == 1), "pass {pass}: no init");
        for v in &checked.violations {
            assert_eq!(v.origin(&c.verdict.torn_pages), Origin::Intrinsic, "pass {pass}: {v:?}");
        }
        live_tries += c.tries;
        fell_back += u32::from(c.fell_back);
    }
    eprintln!("linux-{id}: 20 consistent-read passes, {live_tries} live tries, {fell_back} fell back");
    assert!(fell_back < 20, "no live try validated in 20 passes");

    // Frozen: the same moment through both techniques.
    let monitor = g.vm.hv();
    monitor.pause().unwrap();
    let (c_list, c_checked, c) = view(&consistent, &kernel);
    let (h_list, h_checked, h) = view(&halted, &kernel);
    assert!(monitor.is_paused().unwrap(), "neither technique resumed a guest it did not pause");
    monitor.resume().unwrap();
    assert_eq!(
        (c.verdict.method, c.tries, c.torn),
        (Method::DoubleCollect, 1, false),
        "a frozen guest validates at once"
    );
    assert_eq!(h.verdict.method, Method::Halted);
    let d = diff::processes(&c_list, &h_list);
    assert!(d.is_empty(), "consistent-read and halt-read saw different moments: {d:?}");
    let (cr, hr) = (rules(&c_checked), rules(&h_checked));
    assert!(cr.is_subset(&hr), "consistent-read broke rules the halted view does not: {cr:?} vs {hr:?}");
    assert_eq!(cr, hr);

    let after = forks(&mut g);
    assert!(after - before >= 40, "the guest forked {} times: no churn", after - before);
}

#[test]
fn consistent_read_under_churn_6_1() {
    consistent_under_churn("6.1");
}

#[test]
fn consistent_read_under_churn_6_12() {
    consistent_under_churn("6.12");
}
