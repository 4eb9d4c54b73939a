//! The system call tables: `sys_call_table`, and `ia32_sys_call_table` and
//! `x32_sys_call_table` where the kernel has them. Each entry must be the start of a
//! system call handler in the kernel's text. (From Linux 6.9 the kernel dispatches
//! through compiled code instead — see `dispatch` — but keeps the tables for
//! tracing, so writes to them are still tampering.)

use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome, Place, read_symbol};

/// The tables: symbol, and the prefix of the handlers' names in it.
const TABLES: [(&str, &str); 3] =
    [("sys_call_table", "__x64_sys_"), ("ia32_sys_call_table", "__ia32_"), ("x32_sys_call_table", "__x32_")];

/// More entries than any table has had (x86-64 has about 460).
const MAX_ENTRIES: u64 = 1024;

/// Why a handler at `place` is wrong: it must start a kernel-text symbol named like
/// a system call.
fn judge(place: &Place) -> Option<String> {
    place.wrong_handler(|s| s.contains("sys_"))
}

pub(super) fn tables<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let mut o = Outcome::default();
    let mut found_any = false;
    for (name, prefix) in TABLES {
        found_any |= c.symbols.addr(name).is_some();
        let Some((table, bytes)) = read_symbol(c, name, MAX_ENTRIES * 8, &mut o.anomalies) else { continue };
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
                at: Some(Gva::new(table.raw().wrapping_add(8 * i as u64))),
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
