//! kallsyms decoded from guest RAM equals the guest's own /proc/kallsyms, read as
//! root, byte for byte: every kernel symbol and address, then every symbol of every
//! loaded module (from each module's own symbol table in memory), in the order the
//! kernel prints them.

use std::time::Duration;

use vmscope_linux::{Hints, Kernel};
use vmscope_testbed::{Guest, boot_with};

fn load_modules(g: &mut Guest) {
    // Some load at boot already; insmod of those fails, which is fine.
    g.sh("for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m.ko 2>/dev/null; done; true");
}

fn check(mut g: Guest) {
    load_modules(&mut g);
    let modules = g.sh("cat /proc/modules");
    assert!(modules.lines().count() >= 5, "modules did not load: {modules}");
    g.agent.timeout = Duration::from_secs(600);
    let want = g.agent.read_file("/proc/kallsyms", 64 << 20).expect("/proc/kallsyms");
    let want = String::from_utf8(want).expect("kallsyms is text");
    assert!(!want.starts_with("0000000000000000 T"), "addresses are hidden: the agent is not root");

    let kernel = Kernel::attach(g.ram(), Hints::none()).expect("attach");
    let got = kernel.proc_kallsyms();
    // Lines the kernel adds for BPF programs and ftrace/kprobe trampolines are not
    // rebuilt; these guests have none, so the whole file must match.
    if got != want {
        let (w, o): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let first = w.iter().zip(&o).position(|(a, b)| a != b).unwrap_or(w.len().min(o.len()));
        panic!(
            "kallsyms differ: guest {} lines, vmscope {} lines; first difference at line {}:\n guest:   {:?}\n vmscope: {:?}",
            w.len(),
            o.len(),
            first + 1,
            w.get(first),
            o.get(first)
        );
    }
    let core = want.lines().filter(|l| !l.ends_with(']')).count();
    assert_eq!(kernel.symbols().len(), core);
    assert!(want.lines().count() > core, "module symbols are part of the comparison");
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
fn linux_6_12_five_level_nokaslr() {
    check(boot_with("6.12", |c| {
        c.kaslr = false;
        c.la57 = true;
    }));
}
