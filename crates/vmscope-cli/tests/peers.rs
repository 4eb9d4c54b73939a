//! vmscope's dumps and profiles opened by the tools people use: drgn and Volatility 3.

#[test]
fn setup() {
    let t = vmscope_testbed::PeerTools::ensure().unwrap();
    eprintln!("{}", t.venv.display());
    let i = vmscope_testbed::GuestImages::locate().unwrap();
    let v = vmscope_testbed::peers::debug_vmlinux(i.kernel("6.1").unwrap()).unwrap();
    eprintln!("{}", v.display());
}
