//! The module list rebuilt from guest RAM equals the guest's /proc/modules after
//! loading the kernel package's modules from the initramfs in their load order:
//! names, sizes, reference counts, states and load addresses, in list order.

use vmscope_linux::{Hints, Kernel};
use vmscope_testbed::{Guest, boot_with};

fn check(mut g: Guest) {
    let order = g.sh("cat /lib/modules/load-order");
    for m in order.split_whitespace() {
        // Some load at boot already; insmod of those fails, which is fine.
        g.sh(&format!("insmod /lib/modules/{m}.ko 2>/dev/null; true"));
    }
    // name size refcount deps state address
    let proc_modules = g.sh("cat /proc/modules");
    let want: Vec<(String, u64, i64, String, u64)> = proc_modules
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = u64::from_str_radix(f[5].trim_start_matches("0x"), 16).expect("an address (root sees it)");
            (f[0].to_owned(), f[1].parse().unwrap(), f[2].parse().unwrap(), f[4].to_owned(), addr)
        })
        .collect();
    assert!(want.len() >= order.split_whitespace().count(), "not every module loaded:\n{proc_modules}");
    let agent = g.agent.modules().expect("the agent's module list");
    assert_eq!(agent.len(), want.len());

    let kernel = Kernel::attach(g.ram(), Hints::none()).expect("attach");
    let list = kernel.modules();
    assert!(list.anomalies.is_empty(), "{:#?}", list.anomalies);
    let got: Vec<(String, u64, i64, String, u64)> =
        list.modules.iter().map(|m| (m.name.clone(), m.size, m.refcount, m.state.clone(), m.base.raw())).collect();
    assert_eq!(got, want);
    for m in &list.modules {
        assert_eq!(m.taints, 0, "{} is tainted", m.name);
        assert_eq!(m.taint_flags, "");
    }
    // Each module's symbols resolve into its own memory.
    let (syms, anomalies) = kernel.module_symbols();
    assert!(anomalies.is_empty(), "{anomalies:#?}");
    for m in &list.modules {
        assert!(
            syms.iter().any(|s| s.module == m.name && s.addr >= m.base && s.addr.raw() < m.base.raw() + m.size),
            "{}",
            m.name
        );
    }
}

#[test]
fn linux_6_1_modules() {
    check(boot_with("6.1", |c| c.kaslr = true));
}

#[test]
fn linux_6_12_modules() {
    check(boot_with("6.12", |c| c.kaslr = true));
}
