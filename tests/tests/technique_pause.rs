//! The technique layer leaves a guest it paused running after a pass that fails,
//! panics, or loses its QMP connection in the middle (it connects again to resume),
//! checked through the test's own QMP monitor.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vmscope_hv::Hypervisor;
use vmscope_mem::Gpa;
use vmscope_technique::{Options, Target, Technique};
use vmscope_testbed::{Guest, boot};

fn paused(g: &Guest) -> bool {
    g.vm.hv().is_paused().unwrap()
}

/// A unix-socket proxy in front of QEMU's spare QMP monitor that can cut every
/// connection through it, as a dying network filesystem or a restarted proxy would.
struct QmpProxy {
    path: PathBuf,
    open: Arc<Mutex<Vec<UnixStream>>>,
    accepted: Arc<AtomicUsize>,
}

impl QmpProxy {
    fn start(upstream: PathBuf, dir: &Path) -> Self {
        let path = dir.join("qmp-proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let open: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (o, a) = (open.clone(), accepted.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(up) = UnixStream::connect(&upstream) else { return };
                o.lock().unwrap().extend([client.try_clone().unwrap(), up.try_clone().unwrap()]);
                a.fetch_add(1, Ordering::SeqCst);
                for (mut from, mut to) in [(client.try_clone().unwrap(), up.try_clone().unwrap()), (up, client)] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { path, open, accepted }
    }

    /// Cuts every connection through the proxy.
    fn sever(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn guest_runs_after_failed_passes(id: &str) {
    let g = boot(id);
    let proxy = QmpProxy::start(g.vm.extra_qmp_socket(), g.vm.dir());
    let guest = Target::Qemu { pid: g.vm.pid(), qmp: Some(proxy.path.clone()) }.open().unwrap();
    for t in [Technique::HaltRead, Technique::HaltMap] {
        let access = guest.access(Some(t), &Options::default()).unwrap();

        // An error inside the pass.
        let r = access.pass(|mem| {
            assert!(paused(&g), "{t}: the guest runs during the pass");
            mem.read_u64(Gpa::new(1 << 50))
        });
        assert!(r.unwrap().is_err(), "{t}: an unbacked read fails");
        assert!(!paused(&g), "{t}: an error inside the pass left the guest paused");

        // A panic inside the pass.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| access.pass(|_| panic!("a walker bug"))));
        assert!(r.is_err());
        assert!(!paused(&g), "{t}: a panic inside the pass left the guest paused");

        // The QMP connection breaks while the guest is paused.
        let before = proxy.accepted.load(Ordering::SeqCst);
        let word = access
            .pass(|mem| {
                assert!(paused(&g));
                proxy.sever();
                mem.read_u64(Gpa::new(0x1000))
            })
            .unwrap_or_else(|e| panic!("{t}: the pass after a broken QMP connection: {e}"));
        assert!(word.is_ok());
        assert!(!paused(&g), "{t}: a broken QMP connection left the guest paused");
        assert_eq!(proxy.accepted.load(Ordering::SeqCst), before + 1, "{t}: resumed over a new connection");
    }
}

#[test]
fn guest_runs_after_failed_passes_on_6_1() {
    guest_runs_after_failed_passes("6.1");
}

#[test]
fn guest_runs_after_failed_passes_on_6_12() {
    guest_runs_after_failed_passes("6.12");
}
