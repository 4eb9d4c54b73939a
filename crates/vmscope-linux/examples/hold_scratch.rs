fn main() {
    let id = std::env::args().nth(1).unwrap_or("6.1".into());
    let mut g = vmscope_testbed::boot(&id);
    g.sh("mkdir -p /tmp/x && echo hi > /tmp/x/f && sh -c 'exec 3</tmp/x/f 4<>/tmp/x/g 5</dev/null; exec sleep 1000' </dev/null >/dev/null 2>&1 &");
    println!("QEMU {}", g.vm.pid());
    std::fs::write("/tmp/views-qemu.pid", g.vm.pid().to_string()).unwrap();
    let secs: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(120);
    std::thread::sleep(std::time::Duration::from_secs(secs));
}
