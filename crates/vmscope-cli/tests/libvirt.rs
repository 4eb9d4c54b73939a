//! `vmscope --libvirt DOMAIN` against domains a real libvirtd runs (Debian's
//! libvirt-daemon-system, started by the test set-up as root), with libvirt's default
//! private RAM and with a shared memfd; every view is checked against the guest's own
//! /proc through its agent on serial port 1.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use vmscope_testbed::libvirt::{LibvirtDomain, Memory};
use vmscope_testbed::{Error, GuestImages};

/// PID -> (PPID, UID, COMM).
type Ps = BTreeMap<i32, (i32, u32, String)>;

fn domain(kernel: &str, memory: Memory) -> Option<LibvirtDomain> {
    let images = GuestImages::locate().unwrap_or_else(|e| panic!("{e}"));
    match LibvirtDomain::start(images.kernel(kernel).unwrap(), memory, 512) {
        Ok(d) => Some(d),
        Err(Error::Unavailable(why)) => {
            eprintln!("SKIPPED: libvirt on {kernel}: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn vmscope(d: &LibvirtDomain, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmscope")).args(["--libvirt", d.name()]).args(args).output().unwrap()
}

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh").args(["-q", "-c", vmscope_testbed::libvirt::URI]).args(args).output().unwrap();
    assert!(out.status.success(), "virsh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn truth(d: &LibvirtDomain) -> Ps {
    let mut agent = vmscope_agent::Client::connect(d.agent_socket(), Duration::from_secs(30)).unwrap();
    agent.processes().unwrap().into_iter().map(|p| (p.pid, (p.ppid, p.uid, p.comm))).collect()
}

/// `ps --json` under `technique` (`None`: the default); the technique that ran, and
/// the rows.
fn ps(d: &LibvirtDomain, technique: Option<&str>) -> (String, Ps) {
    let mut args = vec!["ps", "--json"];
    if let Some(t) = technique {
        args.extend(["--technique", t]);
    }
    let out = vmscope(d, &args);
    assert!(out.status.success(), "{technique:?}: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = doc["processes"].as_array().unwrap_or_else(|| panic!("{technique:?}: no processes in {doc}"));
    let rows = rows
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_i64().unwrap_or_else(|| panic!("{technique:?}: {k} in {r}"));
            (n("pid") as i32, (n("ppid") as i32, n("uid") as u32, r["comm"].as_str().unwrap().to_owned()))
        })
        .collect();
    (doc["technique"].as_str().unwrap_or_default().to_owned(), rows)
}

/// Every process the guest listed before and after `technique`'s pass is in it,
/// alike; the technique that ran.
fn agrees(d: &LibvirtDomain, technique: Option<&str>) -> String {
    let before = truth(d);
    let (ran, ours) = ps(d, technique);
    let after = truth(d);
    let stable: Vec<_> = before.iter().filter(|(p, w)| after.get(p) == Some(w)).collect();
    assert!(stable.len() > 5, "the guest lists too few processes: {before:?}");
    for (pid, want) in stable {
        let got = ours.get(pid).unwrap_or_else(|| panic!("{ran}: pid {pid} {want:?} missing"));
        // The kernel keeps 15 bytes of a name; /proc shows kernel threads' full names
        // (and a kworker's current workqueue).
        let truncated = (got.2.len() == 15 || got.2.starts_with("kworker/")) && want.2.starts_with(&got.2);
        let comm_ok = got.2 == want.2 || truncated;
        assert!(got.0 == want.0 && got.1 == want.1 && comm_ok, "{ran}: pid {pid}: vmscope {got:?}, /proc {want:?}");
    }
    ran
}

/// Techniques that map guest RAM: only where it is shared.
const MAPPING: [&str; 3] = ["live-map", "halt-map", "consistent-map"];

/// Every technique `memory` allows agrees with the guest; the others say why not.
fn every_technique(kernel: &str, memory: Memory) {
    let Some(d) = domain(kernel, memory) else { return };
    let mut allowed = vec!["live-read", "halt-read", "halt-snap", "live-snap", "consistent-read", "agent"];
    if memory == Memory::SharedMemfd {
        allowed.extend(MAPPING);
    } else {
        for t in MAPPING {
            let out = vmscope(&d, &["--technique", t, "ps"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{t} on private RAM: {err}");
            assert!(err.contains("private") && err.contains("memoryBacking"), "{t}: {err}");
        }
    }
    for t in allowed {
        assert_eq!(agrees(&d, Some(t)), t);
        assert_eq!(virsh(&["domstate", d.name()]), "running", "{t} left the domain not running");
    }
    // With no --technique: the fastest the domain allows.
    let fastest = if memory == Memory::SharedMemfd { "live-map" } else { "live-read" };
    assert_eq!(agrees(&d, None), fastest);
    // A domain the user paused stays paused after a halting pass (resume only what
    // you paused), and libvirt still knows it as paused.
    virsh(&["suspend", d.name()]);
    let out = vmscope(&d, &["--technique", "halt-read", "ps"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(virsh(&["domstate", d.name()]), "paused");
    virsh(&["resume", d.name()]);
    // `info`: the release the guest reports.
    let mut agent = vmscope_agent::Client::connect(d.agent_socket(), Duration::from_secs(30)).unwrap();
    let release = agent.sh("uname -r").unwrap();
    let out = vmscope(&d, &["info"]);
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.lines().next().is_some_and(|l| l.ends_with(release.trim())),
        "{info}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn libvirt_shared_memfd_domain_6_1() {
    every_technique("6.1", Memory::SharedMemfd);
}

#[test]
fn libvirt_shared_memfd_domain_6_12() {
    every_technique("6.12", Memory::SharedMemfd);
}

#[test]
fn libvirt_default_private_domain_6_1() {
    every_technique("6.1", Memory::Default);
}

#[test]
fn libvirt_default_private_domain_6_12() {
    every_technique("6.12", Memory::Default);
}

#[test]
fn libvirt_unknown_domain_says_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmscope"))
        .args(["--libvirt", "vmscope-no-such-domain", "ps"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    if err.contains("virsh is not installed") {
        eprintln!("SKIPPED: libvirt_unknown_domain_says_what_to_do: {err}");
        return;
    }
    assert!(err.contains("vmscope-no-such-domain") && err.contains("list --all"), "{err}");
}
