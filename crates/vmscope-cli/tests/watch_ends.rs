//! A watch whose guest goes away ends by itself, promptly, with exit status 1 and an
//! error that says what happened — never a signal, a panic or a hang (issue 14's
//! adversarial cases while passes repeat):
//!
//! - QMP's connection closes under a halting watch (a proxy between `vmscope` and
//!   QEMU's monitor closes after a pass, and no longer accepts);
//! - QEMU is killed under watches by every way of reading (mapping, pread of the
//!   memfd, process_vm_readv, and halted);
//! - the memfd of a guest started with `seal=off` is truncated to half under
//!   mapping and syscall watches.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::watch::Watching;
use vmscope_hv::Hypervisor;
use vmscope_testbed::{Guest, GuestImages, QemuConfig, RamBacking, boot_with};

/// Boots 6.1 with `n` more QMP sockets (QEMU serves one client per monitor, and
/// each watch holds one), in `dir`.
fn boot_with_monitors(dir: &Path, n: usize, tweak: impl FnOnce(&mut QemuConfig)) -> (Guest, Vec<PathBuf>) {
    let socks: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("qmp-{i}.sock"))).collect();
    let g = boot_with("6.1", |c| {
        for s in &socks {
            c.extra_args.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", s.display())]);
        }
        tweak(c);
    });
    (g, socks)
}

/// One watch per way of reading, each through its own QMP socket, once all run.
fn watch_each(g: &Guest, ways: &[&[&str]], socks: &[PathBuf], cache: &Path, hz: &str) -> Vec<Watching> {
    assert_eq!(ways.len(), socks.len(), "a QMP socket per watch");
    let mut watches: Vec<Watching> = ways
        .iter()
        .zip(socks)
        .map(|(args, qmp)| Watching::start(g.vm.pid(), qmp, cache, args, &["--hz", hz]))
        .collect();
    for w in &mut watches {
        w.wait_running();
    }
    watches
}

/// Asserts that a watch ended by itself within `within` with status 1 (not a
/// signal) and an error containing `says`.
fn ended_with_error(w: &mut Watching, what: &str, within: Duration, says: &str) {
    let start = Instant::now();
    let (status, err): (ExitStatus, String) = w.finish(within);
    eprintln!("{what}: ended after {:?} with {status:?}: {}", start.elapsed(), err.trim());
    assert_eq!(status.code(), Some(1), "{what}: exit status 1, not a signal or a panic: {err}");
    assert!(err.contains(says), "{what}: the error says {says:?}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let s = w.summary();
    assert!(s["ended"].as_str().unwrap().starts_with("on an error"), "{what}: {s}");
}

/// A QMP proxy: forwards one client to `upstream` until `closes_after` resumes
/// (a `RESUME` event and the reply after it) have passed, then closes both
/// connections and stops listening.
struct QmpProxy {
    path: PathBuf,
    closed: Arc<AtomicBool>,
}

impl QmpProxy {
    fn start(path: PathBuf, upstream: PathBuf, closes_after: usize) -> Self {
        let listener = UnixListener::bind(&path).unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let done = closed.clone();
        let at = path.clone();
        std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let server = UnixStream::connect(&upstream).unwrap();
            let (mut to_server, from_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &from_client, &mut to_server);
            });
            let mut to_client = client.try_clone().unwrap();
            let (mut resumed, mut seen) = (false, 0);
            for line in BufReader::new(server.try_clone().unwrap()).lines().map_while(Result::ok) {
                if to_client.write_all(format!("{line}\n").as_bytes()).is_err() {
                    break;
                }
                if line.contains("\"RESUME\"") {
                    resumed = true;
                } else if resumed && line.contains("\"return\"") {
                    resumed = false;
                    seen += 1;
                    if seen == closes_after {
                        break;
                    }
                }
            }
            drop(listener);
            let _ = std::fs::remove_file(&at);
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
            done.store(true, Ordering::SeqCst);
        });
        QmpProxy { path, closed }
    }
}

#[test]
fn watch_ends_when_qmp_closes_and_when_qemu_is_killed() {
    if !GuestImages::present_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (mut g, socks) = boot_with_monitors(dir.path(), 5, |_| {});

    // QMP's connection closes between two passes of a halting watch.
    let proxy = QmpProxy::start(dir.path().join("proxy.sock"), socks[0].clone(), 5);
    let mut w = Watching::start(g.vm.pid(), &proxy.path, cache.path(), &["-t", "halt-read"], &["--hz", "20"]);
    ended_with_error(&mut w, "halt-read, QMP closed", Duration::from_secs(20), "QMP");
    assert!(proxy.closed.load(Ordering::SeqCst), "the proxy closed");
    assert!(!g.vm.hv().is_paused().unwrap(), "the guest runs on after the watch lost QMP");
    assert_eq!(g.sh("echo alive"), "alive\n");

    // QEMU killed under a watch by each way of reading guest memory.
    let ways: [&[&str]; 4] = [
        &["-t", "live-map"],
        &["-t", "live-read", "--read-method", "pread"],
        &["-t", "live-read", "--read-method", "process_vm_readv"],
        &["-t", "halt-map"],
    ];
    let mut watches = watch_each(&g, &ways, &socks[1..], cache.path(), "100");
    g.vm.kill();
    for (w, args) in watches.iter_mut().zip(ways) {
        ended_with_error(w, &format!("{args:?}, QEMU killed"), Duration::from_secs(10), "has exited or was killed");
    }
}

#[test]
fn watch_ends_when_the_ram_memfd_is_truncated() {
    if !GuestImages::present_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (g, socks) = boot_with_monitors(dir.path(), 3, |c| {
        c.ram = RamBacking::Backend { kind: "memfd".into(), props: "share=on,seal=off".into() };
    });
    let ways: [&[&str]; 3] = [
        &["-t", "live-map"],
        &["-t", "live-read", "--read-method", "pread"],
        &["-t", "live-read", "--read-method", "process_vm_readv"],
    ];
    let mut watches = watch_each(&g, &ways, &socks, cache.path(), "200");
    // The memfd, as QEMU holds it: cut to half.
    let loc = g.ram_location();
    let vmscope_hv::Backing::File { path, .. } = &loc.blocks[0].backing else { panic!("a memfd guest: {loc:?}") };
    let memfd = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let size = memfd.metadata().unwrap().len();
    memfd.set_len(size / 2).unwrap();
    for (w, args) in watches.iter_mut().zip(ways) {
        ended_with_error(w, &format!("{args:?}, memfd truncated"), Duration::from_secs(10), "truncated");
    }
}
