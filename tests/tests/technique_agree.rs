//! Same answer everywhere: on an idle guest, every technique's process list (pid,
//! ppid, comm, uid) equals what the guest's own /proc says through the agent, on
//! both kernels.

use std::collections::BTreeMap;

use vmscope_agent::{Client, ProcessInfo};
use vmscope_linux::{Hints, Kernel};
use vmscope_technique::{Options, ReadMethod, Target, Technique};
use vmscope_testbed::{Guest, boot};

type Row = (i32, String, u32);

fn from_agent(p: &[ProcessInfo]) -> BTreeMap<i32, Row> {
    p.iter().map(|p| (p.pid, (p.ppid, task_name(&p.comm), p.uid))).collect()
}

/// /proc shows the workqueue a kworker last served after its name
/// (`kworker/0:1-events`), which changes from moment to moment; the task's own
/// comm is the part before it.
fn task_name(comm: &str) -> String {
    match comm.strip_prefix("kworker/") {
        Some(rest) => format!("kworker/{}", rest.split('-').next().unwrap_or(rest)),
        None => comm.to_owned(),
    }
}

fn agree(id: &str) {
    let mut g = boot(id);
    // A few dozen user processes, as on a real idle machine.
    g.sh("i=0; while [ $i -lt 30 ]; do sh -c \"exec -a busybox-idle-$i /bin/busybox sleep 100000\" >/dev/null 2>&1 & i=$((i+1)); done");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = from_agent(&g.agent.processes().unwrap());
    let Guest { agent, vm, .. } = g;
    drop(agent); // QEMU serves one client on the agent's socket: the agent technique reconnects.

    let guest = Target::Qemu { pid: vm.pid(), qmp: Some(vm.extra_qmp_socket()) }.open().unwrap();
    let regs = guest.registers().expect("vCPU 0 registers over QMP");
    let ram = vmscope_read::open_backing(guest.ram_location().unwrap()).unwrap();
    let kernel = Kernel::attach(ram, Hints::from_registers(regs.cr3, regs.cr4)).unwrap();
    let mut seen: Vec<(String, BTreeMap<i32, Row>)> = Vec::new();
    for t in Technique::ALL {
        let methods: &[ReadMethod] = if t == Technique::LiveRead { &ReadMethod::ALL } else { &[ReadMethod::Pread] };
        for &m in methods {
            let opts = Options { read_method: Some(m), ..Options::default() };
            let access = guest.access(Some(t), &opts).unwrap_or_else(|e| panic!("{t}: {e}"));
            let rows: BTreeMap<i32, Row> = match access.agent() {
                Some(mut a) => from_agent(&a.processes().unwrap()),
                None => access
                    .pass(|mem| kernel.rebind(mem).processes())
                    .unwrap()
                    .processes
                    .iter()
                    .map(|p| (p.pid, (p.ppid, task_name(p.full_name.as_deref().unwrap_or(&p.comm)), p.uid)))
                    .collect(),
            };
            seen.push((format!("{t} ({})", m.name()), rows));
        }
    }
    let after = from_agent(
        &Client::connect(vm.agent_socket(), std::time::Duration::from_secs(10)).unwrap().processes().unwrap(),
    );

    // Processes present throughout: everyone must report them identically.
    let stable: Vec<(&i32, &Row)> = before.iter().filter(|(pid, row)| after.get(pid) == Some(row)).collect();
    assert!(stable.len() >= 80, "only {} stable processes", stable.len());
    for (name, rows) in &seen {
        for (pid, (ppid, comm, uid)) in &stable {
            let got = rows.get(pid).unwrap_or_else(|| panic!("{name}: pid {pid} ({comm}) missing"));
            assert!(
                got.0 == *ppid && got.2 == *uid && got.1 == *comm,
                "{name}: pid {pid}: got {got:?}, /proc says {:?}",
                (ppid, comm, uid)
            );
        }
        // Nothing invented: every pid seen is one /proc showed at some point.
        for pid in rows.keys() {
            assert!(before.contains_key(pid) || after.contains_key(pid), "{name}: pid {pid} unknown to /proc");
        }
    }
}

#[test]
fn every_technique_agrees_with_the_agent_on_6_1() {
    agree("6.1");
}

#[test]
fn every_technique_agrees_with_the_agent_on_6_12() {
    agree("6.12");
}
