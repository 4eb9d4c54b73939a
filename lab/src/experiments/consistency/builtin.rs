//! The consistency experiment on the built-in VMM: the test kernel's lists, judged
//! by its journal.

use std::time::Instant;

use anyhow::Context;
use vmscope_mem::{FileMem, PhysMem};
use vmscope_technique::{Access, Guest, Options, ReadMethod, Target, Technique};
use vmscope_vmm::testkernel::{JournalEntry, ListView, Manifest};

use super::{Samples, budget, techniques};
use crate::experiments::Ctx;
use crate::guests;
use crate::table::Table;

/// List operations per second across the guest's CPUs (`max`: unlimited).
const CHURN: &[&str] = &["10", "100", "1000", "max"];
const CHURN_QUICK: &[&str] = &["100", "1000", "max"];

pub fn run(ctx: &mut Ctx, table: &mut Table) -> anyhow::Result<()> {
    let levels = ctx.levels(CHURN, CHURN_QUICK);
    let ts = techniques(ctx, false);
    let pb = ctx.bar((levels.len() * ts.len()) as u64, "consistency (built-in VMM)");
    for &level in levels {
        let rate = if level == "max" { "0" } else { level };
        let vm = guests::testkernel(&ctx.images, 2, "1G", &format!("tk.rate={rate}"))?;
        let guest = Target::Builtin { control: vm.control(), agent: None }.open()?;
        let ram = vmscope_read::open_backing(guest.ram_location().context("live RAM")?)?;
        let m = guests::wait_for_manifest(&ram, 1)?;
        let (ops0, t0) = (m.ops(&ram)?, Instant::now());
        for &t in &ts {
            pb.set_message(format!("consistency: {t}, test kernel at {level} ops/s"));
            let mut s = measure(ctx, &guest, &ram, &m, t)?;
            let achieved = m.ops(&ram)?.saturating_sub(ops0) as f64 / t0.elapsed().as_secs_f64();
            table.push(s.row("builtin", "testkernel", (level, achieved), t));
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(())
}

fn measure(ctx: &Ctx, guest: &Guest, ram: &FileMem, m: &Manifest, t: Technique) -> anyhow::Result<Samples> {
    let opts = Options { read_method: Some(ReadMethod::Pread), ..Options::default() };
    let access = guest.access(Some(t), &opts).with_context(|| format!("opening {t}"))?;
    let (budget, max) = budget(ctx, t);
    let mut s = Samples::default();
    let t0 = Instant::now();
    while (t0.elapsed() < budget || s.passes + s.failed < 3) && s.passes + s.failed < max {
        match pass(&access, ram, m) {
            Ok((c, intrinsic, extrinsic)) => s.add(Some(&c), intrinsic, extrinsic),
            Err(e) => s.fail(&e),
        }
    }
    s.wall = t0.elapsed();
    Ok(s)
}

/// One pass over every list; judged against the journal read (by a reader of its
/// own, outside the pass's read set) right after. The op counter read just before
/// and just after brackets the pass's window.
fn pass(
    access: &Access<'_>,
    ram: &FileMem,
    m: &Manifest,
) -> anyhow::Result<(vmscope_technique::Consistency, bool, bool)> {
    let before = m.ops(ram)?;
    let seen = access.observed_pass(|mem: &dyn PhysMem| m.lists(mem))?;
    let after = m.ops(ram)?;
    let journal = m.journal(ram)?;
    let lists = seen.value?;
    let intrinsic = lists.iter().any(|l| l.seq % 2 == 1);
    let extrinsic = lists
        .iter()
        .enumerate()
        .any(|(i, l)| l.seq % 2 == 0 && judge(l, i as u64, &journal, (before, after)) == Some(false));
    Ok((seen.consistency, intrinsic, extrinsic))
}

/// Whether list `l`'s view equals a state the journal says it passed through
/// while ops `before..after` ran (the state after the last op before them, or after
/// one of them); `None` where the journal no longer holds what is needed.
fn judge(view: &ListView, l: u64, journal: &[JournalEntry], (before, after): (u64, u64)) -> Option<bool> {
    let oldest = journal.iter().map(|e| e.op_no).min().unwrap_or(u64::MAX);
    let mine: Vec<&JournalEntry> = journal.iter().filter(|e| u64::from(e.list) == l).collect();
    let at_start = mine.iter().filter(|e| e.op_no < before).max_by_key(|e| e.op_no);
    let start_state: Vec<u8> = match at_start {
        Some(e) => e.order.clone(),
        // No op on the list yet: it starts empty — if the journal reaches back to op 1.
        None if oldest <= 1 => Vec::new(),
        None => return None,
    };
    if view.broken {
        return Some(false);
    }
    Some(view.ids == start_state || mine.iter().any(|e| (before..after).contains(&e.op_no) && e.order == view.ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op_no: u64, list: u8, order: &[u8]) -> JournalEntry {
        JournalEntry { op_no, op: 1, list, node: 0, prev: 0, len: order.len() as u8, cpu: 0, order: order.to_vec() }
    }

    fn view(ids: &[u8]) -> ListView {
        ListView { seq: 2, last_op: 0, len: ids.len() as u64, ids: ids.to_vec(), broken: false }
    }

    #[test]
    fn a_view_is_right_when_it_equals_a_state_of_its_window() {
        let j = vec![entry(1, 0, &[1]), entry(2, 1, &[7]), entry(3, 0, &[1, 2]), entry(4, 0, &[2])];
        assert_eq!(judge(&view(&[1]), 0, &j, (2, 3)), Some(true), "the state at the start");
        assert_eq!(judge(&view(&[1, 2]), 0, &j, (2, 5)), Some(true), "a state inside the window");
        assert_eq!(judge(&view(&[2]), 0, &j, (2, 4)), Some(false), "op 4 began after the window");
        assert_eq!(judge(&view(&[2, 1]), 0, &j, (1, 5)), Some(false), "never a state of the list");
        assert_eq!(judge(&view(&[]), 0, &j, (1, 2)), Some(true), "empty before its first op");
        let wrapped = vec![entry(40000, 0, &[3])];
        assert_eq!(judge(&view(&[3]), 1, &wrapped, (40001, 40002)), None, "the journal no longer reaches back");
    }
}
