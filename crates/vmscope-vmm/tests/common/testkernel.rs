//! Test helpers over `vmscope_vmm::testkernel`: waiting for the manifest and asserting
//! that the lists equal the journal.

use std::time::{Duration, Instant};

use vmscope_mem::PhysMem;
pub use vmscope_vmm::testkernel::Manifest;

/// Waits until the manifest is there and `cpus` cpus run the mutator.
pub fn wait_manifest<M: PhysMem + ?Sized>(mem: &M, cpus: u64, timeout: Duration) -> Manifest {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(m)) = Manifest::read(mem)
            && m.cpus_online(mem).unwrap_or(0) >= cpus
        {
            return m;
        }
        assert!(Instant::now() < deadline, "no test kernel manifest with {cpus} cpus online");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks every list whose seq is even against the journal; returns how many matched.
/// Panics with the differences on a mismatch.
pub fn assert_lists_match_journal<M: PhysMem + ?Sized>(m: &Manifest, mem: &M) -> usize {
    let check = m.check_lists(mem).expect("reading lists and journal");
    assert!(check.mismatches.is_empty(), "lists differ from the journal:\n{}", check.mismatches.join("\n"));
    assert!(check.mid_update.len() <= m.nr_cpus as usize, "more lists mid-update than cpus: {check:?}");
    check.matching
}
