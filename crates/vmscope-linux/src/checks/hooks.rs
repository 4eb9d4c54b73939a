//! Hooks a keylogger or a tty sniffer installs: the operations of the line
//! disciplines in `tty_ldiscs` (`n_tty_ops` and any registered later), and the
//! callbacks on `keyboard_notifier_list`. Each must lie in the kernel's text or in
//! a listed module's memory.

use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome, Place, read_symbol};
use crate::kmem::member;
use crate::views::{AddrSet, Anomaly, Fields, plausible, with_struct};

/// More line disciplines than the kernel allows (`NR_LDISCS` is 30).
const MAX_LDISCS: u64 = 64;

/// A finding for callback `value`, read at `at`, when it lies outside all code.
fn outside(check: CheckKind, subject: String, at: Gva, value: Gva, place: &Place) -> Option<Finding> {
    matches!(place, Place::Outside).then(|| Finding {
        check,
        subject,
        at: Some(at),
        value: Some(value),
        found: place.describe(),
        expected: "code in kernel text or a listed module".into(),
    })
}

pub(super) fn tty<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let Some(lo) = &c.co.ldisc else {
        return Outcome::skipped("the kernel's types have no struct tty_ldisc_ops");
    };
    let mut o = Outcome::default();
    let Some((table, slots)) = read_symbol(c, "tty_ldiscs", MAX_LDISCS * 8, &mut o.anomalies) else {
        return Outcome { skipped: Some("kallsyms has no tty_ldiscs, or it is unreadable".into()), ..o };
    };
    let k = c.ctx.k;
    for (i, w) in slots.chunks_exact(8).enumerate() {
        let ops = Gva::new(u64::from_le_bytes(w.try_into().expect("chunks of 8")));
        if ops.raw() == 0 {
            continue;
        }
        let at = Gva::new(table.raw().wrapping_add(8 * i as u64));
        if !plausible(k, ops, 8) {
            o.anomalies.push(Anomaly::BadPointer { what: "tty_ldiscs entry".into(), at, value: ops });
            continue;
        }
        let mut an = Vec::new();
        let found = with_struct(k, ops, lo.size, "struct tty_ldisc_ops", &mut an, |b| {
            let mut found = Vec::new();
            for (name, off) in &lo.ops {
                let Some(f) = b.ptr(*off).filter(|f| f.raw() != 0) else { continue };
                let place = c.code.place(f, c.symbols);
                let slot = Gva::new(ops.raw().wrapping_add(*off));
                found.extend(outside(CheckKind::TtyHook, format!("tty_ldiscs[{i}]->{name}"), slot, f, &place));
            }
            found
        });
        o.anomalies.extend(an);
        o.examined += 1;
        o.findings.extend(found.unwrap_or_default());
    }
    o
}

pub(super) fn keyboard<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let Some(no) = c.co.notifier else {
        return Outcome::skipped("the kernel's types have no struct notifier_block");
    };
    let Some(head) = c.symbols.addr("keyboard_notifier_list") else {
        return Outcome::skipped("kallsyms has no keyboard_notifier_list");
    };
    let k = c.ctx.k;
    let mut o = Outcome::default();
    let mut seen = AddrSet::default();
    let mut at = match member(head, no.head) {
        Ok(a) => a,
        Err(e) => {
            o.anomalies.push(Anomaly::Unreadable {
                what: "keyboard_notifier_list".into(),
                addr: head,
                error: e.to_string(),
            });
            return o;
        }
    };
    loop {
        let nb = match k.read_ptr(at) {
            Ok(p) => p,
            Err(e) => {
                o.anomalies.push(Anomaly::Unreadable { what: "notifier chain".into(), addr: at, error: e.to_string() });
                break;
            }
        };
        if nb.raw() == 0 {
            break;
        }
        if !plausible(k, nb, 8) {
            o.anomalies.push(Anomaly::BadPointer { what: "notifier_block".into(), at, value: nb });
            break;
        }
        if o.examined >= c.ctx.limits.max_list {
            let limit = c.ctx.limits.max_list;
            o.anomalies.push(Anomaly::StepLimit { list: "keyboard_notifier_list".into(), limit });
            break;
        }
        if !seen.insert(nb) {
            o.anomalies.push(Anomaly::ListCycle { list: "keyboard_notifier_list".into(), node: nb });
            break;
        }
        o.examined += 1;
        let (Ok(call_at), Ok(next_at)) = (member(nb, no.call), member(nb, no.next)) else { break };
        match k.read_ptr(call_at) {
            Ok(f) => {
                let place = c.code.place(f, c.symbols);
                let subject = format!("keyboard_notifier_list: notifier_block {nb:#x}->notifier_call");
                o.findings.extend(outside(CheckKind::KeyboardNotifier, subject, call_at, f, &place));
            }
            Err(e) => o.anomalies.push(Anomaly::Unreadable {
                what: "notifier_call".into(),
                addr: call_at,
                error: e.to_string(),
            }),
        }
        at = next_at;
    }
    o
}
