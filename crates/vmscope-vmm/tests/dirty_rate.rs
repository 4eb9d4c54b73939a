//! `tk.dirty=N` makes the test kernel write N MB/s of pages (N × 256 page writes a
//! second), and the KVM dirty log sees exactly those pages: between two pauses, the
//! pages the guest says it wrote (its `struct tk_dirty` counter, page write `n` going to
//! a known page) are the pages the log names in the writer's range, up to the writes
//! claimed but not yet made when a vCPU stopped; and their number over the host's
//! clock is the asked rate.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::testkernel::wait_manifest;
use common::{Vm, live_memfd};
use vmscope_hv::Hypervisor;
use vmscope_mem::{Gpa, PhysMem};

const MB_PER_S: u64 = 10;
const SPAN_MIB: u64 = 64;

#[test]
fn the_dirty_log_sees_the_pages_tk_dirty_writes_at_its_rate() {
    let mut vm = Vm::testkernel(2, "memfd", &format!("tk.rate=1000 tk.dirty={MB_PER_S} tk.dirty_mib={SPAN_MIB}"));
    let (c, mem) = live_memfd(&mut vm);
    let m = wait_manifest(&mem, 2, Duration::from_secs(20));
    let d = m.dirty(&mem).unwrap().expect("a kernel with tk.dirty");
    assert_ne!(m.tsc_hz, 0, "the TSC could not be calibrated, so tk.dirty is off:\n{}", vm.console_text());
    assert_eq!(d.pages_per_s, MB_PER_S * 256);
    assert_eq!((d.start_pa, d.span), (64 << 20, SPAN_MIB << 20));
    let range = (d.start_pa >> 12)..((d.start_pa + d.span) >> 12);
    let log = c.dirty_log().expect("the built-in VMM has a dirty log");
    log.start().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // past the first writes of the span

    // Ground truth from the guest at two paused instants, the log's view in between.
    c.pause().unwrap();
    let _ = log.fetch().unwrap();
    let w0 = m.dirty(&mem).unwrap().unwrap().written;
    let t0 = Instant::now();
    c.resume().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    c.pause().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let seen: BTreeSet<u64> = log.fetch().unwrap().into_iter().filter(|p| range.contains(p)).collect();
    let after = m.dirty(&mem).unwrap().unwrap();
    // A page holds the number of the write that made it (a few writes back from the
    // last claim, which may not be made yet).
    let n = after.written - 3;
    let mut b = [0u8; 8];
    mem.read(Gpa::new(d.pfn_of(n).unwrap() << 12), &mut b).unwrap();
    c.resume().unwrap();
    assert_eq!(u64::from_le_bytes(b), n + 1, "the page of write {n}");
    log.stop().unwrap();

    let written = after.written - w0;
    // 3 s at 2560 pages a second do not wrap the 16384-page span: each write is a page.
    assert!(written < range.end - range.start, "{written} writes wrapped the span");
    let claimed: BTreeSet<u64> = (w0..after.written).map(|n| d.pfn_of(n).unwrap()).collect();
    let missing: Vec<u64> = claimed.difference(&seen).copied().collect();
    let extra: Vec<u64> = seen.difference(&claimed).copied().collect();
    let rate = written as f64 / 256.0 / secs;
    let logged = seen.len() as f64 / 256.0 / secs;
    eprintln!(
        "tk.dirty={MB_PER_S}: {written} page writes in {secs:.2} s = {rate:.2} MB/s by the guest's count, \
         {logged:.2} MB/s in the dirty log; {} missing, {} extra, {} dropped",
        missing.len(),
        extra.len(),
        after.dropped
    );
    // A vCPU stopped between claiming a write and making it, at most one per vCPU at
    // each end of the window: claimed before the first pause and made after it (extra),
    // or claimed before the second and made after it (missing).
    assert!(missing.len() <= 2, "claimed but not in the dirty log: {missing:x?}");
    assert!(extra.len() <= 2, "in the dirty log but never claimed: {extra:x?}");
    assert!(
        (0.85 * MB_PER_S as f64..=1.15 * MB_PER_S as f64).contains(&logged),
        "{logged:.2} MB/s in the dirty log with tk.dirty={MB_PER_S}"
    );
    assert!(vm.console_text().contains("tk: tk.dirty 10 MB/s"), "console:\n{}", vm.console_text());
}
