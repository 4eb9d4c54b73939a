//! live-snap against a real guest: QEMU's background snapshot (parsed from its
//! migration stream) and vmscope's pre-copy both hold what the guest wrote before
//! the snapshot and nothing it wrote after; timings are printed for the README.
//!
//! The markers are SHA-256 digests the guest computes (`sha256sum`) from a tag the
//! test sends: the digest's text is in guest memory only once the guest has written
//! it, never in the command the agent received.

use sha2::{Digest, Sha256};
use vmscope_hv::Hypervisor;
use vmscope_snap::live::{precopy_snap, qemu_background_snap};
use vmscope_snap::{SnapOptions, Snapshot, Source, halt_snap};
use vmscope_testbed::{Guest, boot};

fn holds(snap: &Snapshot, text: &str) -> bool {
    memchr::memmem::find(snap.backing(), text.as_bytes()).is_some()
}

/// Has the guest write the SHA-256 of `tag` (with its newline) to `file`, and returns
/// the digest as hex (what `sha256sum` prints).
fn guest_writes_digest(g: &mut Guest, tag: &str, file: &str) -> String {
    g.sh(&format!("echo {tag} | sha256sum > {file}"));
    Sha256::digest(format!("{tag}\n").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn live_snaps_hold_the_guests_writes(mut g: Guest) {
    let release = g.sh("uname -r").trim().to_owned();
    let tag = std::process::id();
    let before = guest_writes_digest(&mut g, &format!("VMSCOPE-LIVE-BEFORE-{tag}"), "/tmp/before");
    // Keep the guest writing memory meanwhile, so the snapshots race with it.
    g.sh("(while :; do dd if=/dev/urandom of=/tmp/churn bs=64k count=32 2>/dev/null; done) >/dev/null 2>&1 &");
    let hv = g.vm.hv();
    let ram = g.ram();

    let (snap, stats) = halt_snap(hv, Source::Backed(&ram), SnapOptions::default()).unwrap();
    eprintln!("MEASURE {stats:?}");
    assert!(holds(&snap, &before));
    drop(snap);

    let (snap, stats) = precopy_snap(hv, &ram, SnapOptions::default()).unwrap();
    eprintln!("MEASURE {stats:?}");
    let after = guest_writes_digest(&mut g, &format!("VMSCOPE-LIVE-AFTER-{tag}"), "/tmp/after");
    assert!(holds(&snap, &before), "pre-copy snapshot lacks the marker");
    assert!(!holds(&snap, &after), "pre-copy snapshot holds a write made after it");
    assert_eq!(snap.meta().vmcoreinfo_value("OSRELEASE"), Some(release.as_str()));
    assert!(stats.recopied_pages > 0, "the guest wrote during the live copy: {stats:?}");
    assert!(!vmscope_testbed::find_banners(&snap).is_empty());
    drop(snap);

    // Last: it allocates all of the memfd (see snap_harm.rs).
    let (snap, stats, info) = qemu_background_snap(g.vm.hv(), SnapOptions::default()).unwrap();
    eprintln!("MEASURE {stats:?} blocks={:?} pages={} zero_pages={}", info.blocks, info.pages, info.zero_pages);
    assert_eq!(info.ram_block, "ram", "the memory backend's block: {:?}", info.blocks);
    assert!(holds(&snap, &before), "background snapshot lacks the marker");
    assert_eq!(snap.meta().vmcoreinfo_value("OSRELEASE"), Some(release.as_str()));
    assert!(!g.vm.hv().is_paused().unwrap());
    assert!(stats.qemu_downtime.is_some());
    drop(snap);

    assert_eq!(g.sh("cat /tmp/before").split_whitespace().next(), Some(before.as_str()));
}

#[test]
fn linux_6_1_live_snaps() {
    live_snaps_hold_the_guests_writes(boot("6.1"));
}

#[test]
fn linux_6_12_live_snaps() {
    live_snaps_hold_the_guests_writes(boot("6.12"));
}
