use std::hint::black_box;
use std::time::Duration;
use vmscope_hv::{Hypervisor, RamLocation};
use vmscope_linux::{Hints, Kernel};

#[inline(never)]
fn passes<M: vmscope_mem::PhysMem>(k: &Kernel<M>, n: usize) {
    for _ in 0..n {
        k.invalidate();
        let m = k.memory_maps().unwrap();
        let f = k.all_open_files().unwrap();
        black_box((m.processes.len(), f.processes.len()));
    }
}

fn main() {
    let mut g = vmscope_testbed::boot("6.1");
    g.sh("/sbin/vmscope-workload hold /tmp/hold </dev/null >/tmp/hold.out 2>&1 &");
    g.sh("/sbin/vmscope-workload spawn 42 1 </dev/null >/tmp/spawn.out 2>&1 &");
    assert!(vmscope_testbed::eventually(Duration::from_secs(60), || { let o = g.sh("cat /tmp/hold.out /tmp/spawn.out"); o.contains("hold: up") && o.contains("spawn: up") }));
    let hv = g.vm.hv();
    let mem = vmscope_map::Mapped::open(RamLocation::qemu(g.vm.pid(), hv.memory_map().unwrap()).unwrap()).unwrap();
    let regs = hv.vcpu_registers(0).unwrap();
    let k = Kernel::attach(&mem, Hints::from_registers(regs.cr3, regs.cr4)).unwrap();
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let t = std::time::Instant::now();
    passes(&k, n);
    eprintln!("{n} passes: {:.3} ms each", t.elapsed().as_secs_f64() * 1e3 / n as f64);
}
