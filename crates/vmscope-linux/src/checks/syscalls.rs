//! The system call tables: `sys_call_table`, and `ia32_sys_call_table` and
//! `x32_sys_call_table` where the kernel has them. Each entry must be the start of a
//! system call handler in the kernel's text. (From Linux 6.9 the kernel dispatches
//! through compiled code instead — see `dispatch` — but keeps the tables for
//! tracing, so writes to them are still tampering.)

use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome, Place};
use crate::views::Anomaly;

/// The tables: symbol, and the prefix of the handlers' names in it.
const TABLES: [(&str, &str); 3] =
    [("sys_call_table", "__x64_sys_"), ("ia32_sys_call_table", "__ia32_"), ("x32_sys_call_table", "__x32_")];

/// More entries than any table has had (x86-64 has about 460).
const MAX_ENTRIES: u64 = 1024;

/// Why a handler at `place` is wrong for a table of `prefix` handlers; `None` when
/// it is right: the start of a symbol in kernel text named like a system call.
pub(crate) fn judge(place: &Place) -> Option<String> {
    match place {
        Place::KernelText { symbol: Some(s), offset: 0 } if s.contains("sys_") => None,
        Place::KernelText { symbol: Some(s), offset: 0 } => Some(format!("{s} in kernel text, not a system call")),
        Place::KernelText { .. } => Some(format!("{}: not the start of a function", place.describe())),
        Place::Module { name } => Some(format!("in module {name}")),
        Place::Outside => Some(place.describe()),
    }
}

pub(super) fn tables<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let mut o = Outcome::default();
    let mut found_any = false;
    for (name, prefix) in TABLES {
        let Some(sym) = c.symbols.lookup(name) else { continue };
        found_any = true;
        // The table ends where the next symbol starts.
        let next = c.symbols.iter().skip(sym.index + 1).find(|n| n.addr > sym.addr).map(|n| n.addr);
        let n = next.and_then(|e| e.offset_from(sym.addr)).map_or(MAX_ENTRIES, |b| b / 8).min(MAX_ENTRIES);
        let bytes = match c.ctx.k.read_vec(sym.addr, (n * 8) as usize) {
            Ok(b) => b,
            Err(e) => {
                o.anomalies.push(Anomaly::Unreadable { what: name.into(), addr: sym.addr, error: e.to_string() });
                continue;
            }
        };
        // The symbol after the table may start past padding: zero words at its
        // end are not entries.
        let words = bytes.chunks_exact(8).rposition(|w| w != [0; 8]).map_or(0, |last| last + 1);
        for (i, w) in bytes.chunks_exact(8).take(words).enumerate() {
            let value = Gva::new(u64::from_le_bytes(w.try_into().expect("chunks of 8")));
            o.examined += 1;
            let place = c.code.place(value, c.symbols);
            let Some(found) = judge(&place) else { continue };
            o.findings.push(Finding {
                check: CheckKind::SyscallTable,
                subject: format!("{name}[{i}]"),
                at: Some(Gva::new(sym.addr.raw().wrapping_add(8 * i as u64))),
                value: Some(value),
                found,
                expected: format!("a {prefix}* handler in kernel text"),
            });
        }
    }
    if !found_any {
        return Outcome::skipped("kallsyms has no sys_call_table");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_judged_by_place_and_name() {
        let text = |s: &str, offset| Place::KernelText { symbol: Some(s.into()), offset };
        assert_eq!(judge(&text("__x64_sys_read", 0)), None);
        assert_eq!(judge(&text("__x64_sys_ni_syscall", 0)), None);
        assert!(judge(&text("__x64_sys_read", 5)).unwrap().contains("not the start"));
        assert!(judge(&text("commit_creds", 0)).unwrap().contains("not a system call"));
        assert!(judge(&Place::Module { name: "rk".into() }).unwrap().contains("module rk"));
        assert!(judge(&Place::Outside).unwrap().contains("outside"));
    }
}
