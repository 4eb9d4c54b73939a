use vmscope_hv::Hypervisor;
use vmscope_linux::{Hints, Kernel};
fn main() {
    let id = std::env::args().nth(1).unwrap_or("6.1".into());
    let mut g = vmscope_testbed::boot(&id);
    let pid: i32 = g.sh("mkdir -p /tmp/x && echo hi > /tmp/x/f && sh -c 'exec 3</tmp/x/f 4<>/tmp/x/g 5</dev/null; exec sleep 1000' </dev/null >/dev/null 2>&1 & echo $!").trim().parse().unwrap();
    g.sh("echo '<5>vmscope-marker hello' > /dev/kmsg");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let regs = g.vm.hv().vcpu_registers(0).unwrap();
    let k = Kernel::attach(g.ram(), Hints::from_registers(regs.cr3, regs.cr4)).unwrap();
    for p in [1, pid] {
        let m = k.memory_map(p).unwrap().unwrap();
        let ours = vmscope_linux::format_maps(&m.vmas);
        let theirs = g.sh(&format!("cat /proc/{p}/maps"));
        println!("== maps {p}: equal={} anomalies={:?}", ours == theirs, m.anomalies);
        if ours != theirs { println!("OURS:\n{ours}\nTHEIRS:\n{theirs}"); }
        let f = k.open_files(p).unwrap().unwrap();
        println!("== files {p}: cwd {:?} root {:?} exe {:?} an {:?}", f.cwd, f.root, f.exe, f.anomalies);
        for x in &f.files { println!("  {} {:?} {:?} {:o} pos {} ino {} mnt {:?}", x.fd, x.path, x.kind, x.flags, x.pos, x.inode, x.mnt_id); }
        println!("{}", g.sh(&format!("ls -l /proc/{p}/fd; for f in /proc/{p}/fdinfo/*; do echo $f; cat $f; done")));
        let e = k.environment(p).unwrap();
        println!("env {:?}", e.vars);
        println!("{:?}", g.sh(&format!("cat /proc/{p}/environ | tr '\\0' '\\n'")));
    }
    let t = std::time::Instant::now();
    let log = k.kernel_log().unwrap();
    println!("log in {:?}: {} records, time {}, anomalies {:?}", t.elapsed(), log.records.len(), log.printk_time, log.anomalies);
    let ours = vmscope_linux::format_log(&log.records, vmscope_linux::LogFormat::raw(log.printk_time));
    let theirs = g.sh("dmesg -r");
    println!("dmesg equal: {} ours {} theirs {}", ours.ends_with(&theirs), ours.len(), theirs.len());
    if !ours.ends_with(&theirs) {
        std::fs::write("/tmp/views-ours.txt", &ours).unwrap();
        std::fs::write("/tmp/views-theirs.txt", &theirs).unwrap();
    }
    println!("last: {:?}", log.records.last());
    let t = std::time::Instant::now();
    let all = k.memory_maps().unwrap();
    let files = k.all_open_files().unwrap();
    println!("all maps+files in {:?}: {} procs, {} vmas", t.elapsed(), all.processes.len(), all.processes.iter().map(|p| p.vmas.len()).sum::<usize>());
    let an: Vec<_> = all.processes.iter().flat_map(|p| &p.anomalies).chain(files.processes.iter().flat_map(|p| &p.anomalies)).collect();
    println!("anomalies: {an:?}");
}
