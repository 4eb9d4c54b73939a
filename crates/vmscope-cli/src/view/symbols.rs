//! `kallsyms`: the guest's symbols as its `/proc/kallsyms` lists them to root — the
//! kernel's, then every module's — optionally only those whose name holds a pattern.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::json;
use vmscope_linux::{Anomaly, Kernel};
use vmscope_mem::{Gva, PhysMem};

use super::Output;

/// One symbol.
#[derive(Debug, Serialize)]
pub(crate) struct Row<'a> {
    pub addr: Gva,
    pub kind: char,
    pub name: &'a str,
    pub module: Option<&'a str>,
}

/// `/proc/kallsyms`, each line `ADDRESS TYPE NAME` and `\t[MODULE]` for a module's.
pub fn kallsyms<M: PhysMem>(technique: &str, k: &Kernel<M>, pattern: Option<&str>) -> Output {
    let (module_syms, anomalies) = k.module_symbols();
    let keep = |name: &str| !name.is_empty() && pattern.is_none_or(|p| name.contains(p));
    let kernel = k.symbols().iter().filter(|s| keep(s.name)).map(|s| Row {
        addr: s.addr,
        kind: s.kind,
        name: s.name,
        module: None,
    });
    let modules = module_syms.iter().filter(|s| keep(&s.name)).map(|s| Row {
        addr: s.addr,
        kind: s.kind,
        name: &s.name,
        module: Some(&s.module),
    });
    kallsyms_output(technique, &kernel.chain(modules).collect::<Vec<_>>(), anomalies)
}

/// The output of `kallsyms` for these symbols.
pub(crate) fn kallsyms_output(technique: &str, rows: &[Row<'_>], anomalies: Vec<Anomaly>) -> Output {
    let mut table = String::with_capacity(rows.len() * 48);
    for r in rows {
        let _ = write!(table, "{:016x} {} {}", r.addr, r.kind, r.name);
        if let Some(m) = r.module {
            let _ = write!(table, "\t[{m}]");
        }
        table.push('\n');
    }
    let doc = json!({ "technique": technique, "symbols": rows, "anomalies": anomalies });
    Output { doc, table, anomalies, findings: 0 }
}
