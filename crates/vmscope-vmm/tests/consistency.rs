//! Consistency on the built-in VMM, against the test kernel's journal (which is
//! independent of the dirty log that validates a view): every view consistent-read
//! returns equals a state the journal records, and a live-read view that disagrees
//! with the journal is always one the dirty log reported torn.

mod common;

use std::time::Duration;

use common::Vm;
use common::testkernel::{Manifest, wait_manifest};
use vmscope_consistency::ReadSet;
use vmscope_consistency::validate::{self, Method, Recollect};
use vmscope_mem::PhysMem;
use vmscope_read::open_backing;
use vmscope_technique::{Guest, Options, ReadMethod, Target, Technique};

fn open(vm: &mut Vm) -> (Guest, Manifest) {
    vm.client();
    let guest = Target::Builtin { control: vm.control(), agent: None }.open().unwrap();
    let mem = open_backing(guest.ram_location().unwrap()).unwrap();
    let m = wait_manifest(&mem, 2, Duration::from_secs(20));
    (guest, m)
}

fn pread() -> Options {
    Options { read_method: Some(ReadMethod::Pread), ..Options::default() }
}

#[test]
fn consistent_read_views_equal_a_journal_state() {
    // The mutator at full speed tears most live tries: some validate, some after a
    // retry, some fall back to a halted read.
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (guest, m) = open(&mut vm);
    let (mut validated, mut fell_back, mut retried) = (0, 0, 0);
    // Three tries (the default), then one: one try falls back to a halted read often.
    for tries in [3, 1] {
        let access =
            guest.access(Some(Technique::ConsistentRead), &Options { consistent_tries: tries, ..pread() }).unwrap();
        for pass in 0..40 {
            let seen = access.observed_pass(|mem| m.check_lists(mem)).unwrap();
            let check = seen.value.unwrap();
            let c = &seen.consistency;
            assert!(!c.torn, "pass {pass}: a consistent technique returned a torn view: {c:?}");
            assert!(
                check.mismatches.is_empty(),
                "pass {pass}: validated by {} after {} tries, yet the lists differ from the journal:\n{}",
                c.verdict.method,
                c.tries,
                check.mismatches.join("\n")
            );
            assert!(c.verdict.read_pages > 0 && c.verdict.read_bytes > 0);
            assert!(c.tries <= tries);
            match (c.fell_back, c.verdict.method) {
                (true, Method::Halted) => fell_back += 1,
                (false, Method::DirtyLog) => validated += 1,
                other => panic!("pass {pass}: unexpected {other:?}"),
            }
            retried += u32::from(c.tries > 1 && !c.fell_back);
        }
    }
    eprintln!("consistent-read: {validated} validated live ({retried} after a retry), {fell_back} fell back");
    assert!(validated > 0 && fell_back > 0, "both paths taken");
    assert!(!guest.hypervisor().unwrap().is_paused().unwrap(), "the guest runs afterwards");
}

#[test]
fn live_read_disagrees_with_the_journal_only_when_reported_torn() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (guest, m) = open(&mut vm);
    let access = guest.access(Some(Technique::LiveRead), &pread()).unwrap();
    let (mut torn, mut disagreed) = (0, 0);
    for pass in 0..200 {
        let seen = access.observed_pass(|mem| m.check_lists(mem)).unwrap();
        let check = seen.value.unwrap();
        assert_eq!(seen.consistency.verdict.method, Method::DirtyLog);
        torn += u32::from(seen.consistency.torn);
        if !check.mismatches.is_empty() {
            disagreed += 1;
            assert!(
                seen.consistency.torn,
                "pass {pass}: the lists differ from the journal but the dirty log saw no write to the read set:\n{}",
                check.mismatches.join("\n")
            );
        }
    }
    eprintln!("live-read: {torn} of 200 passes torn, {disagreed} disagreed with the journal");
    assert!(torn > 0, "a running mutator tears some live passes");
}

#[test]
fn double_collect_sees_no_more_than_the_dirty_log() {
    let mut vm = Vm::testkernel(2, "memfd", "");
    let (guest, m) = open(&mut vm);
    let hv = guest.hypervisor().unwrap();
    let log = hv.dirty_log().expect("the built-in VMM has a dirty log");
    log.start().unwrap();
    let mem = open_backing(guest.ram_location().unwrap()).unwrap();
    let mut caught = 0;
    for pass in 0..100 {
        validate::clear_dirty_log(log).unwrap();
        let set = ReadSet::new(&mem);
        m.check_lists(&set).unwrap();
        let recorded = set.finish();
        // The second collect happens before the log is fetched: its window is inside
        // the log's.
        let dc = validate::by_double_collect(&recorded, &mem as &dyn PhysMem, Recollect::Pages).unwrap();
        let dl = validate::by_dirty_log(&recorded, &log.fetch().unwrap());
        assert!(
            dc.torn_pages.iter().all(|p| dl.torn_pages.contains(p)),
            "pass {pass}: double collect found pages the dirty log did not: {:?} vs {:?}",
            dc.torn_pages,
            dl.torn_pages
        );
        caught += u32::from(dc.torn());
    }
    log.stop().unwrap();
    eprintln!("double collect found {caught} of 100 passes torn");
    assert!(caught > 0, "a running mutator changes some lists between collects");
}
