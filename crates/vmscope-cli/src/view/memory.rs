//! `maps PID` and `env PID`: a process's memory areas and its environment.

use serde_json::json;
use vmscope_linux::{Kernel, format_maps};
use vmscope_mem::PhysMem;

use super::{Output, no_process};

/// `/proc/PID/maps`, byte for byte.
pub fn maps<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: i32) -> anyhow::Result<Output> {
    let m = k.memory_map(pid)?.ok_or_else(|| no_process(pid))?;
    let table = format_maps(&m.vmas);
    let doc = json!({
        "technique": technique, "pid": m.pid, "comm": m.comm, "vmas": m.vmas, "anomalies": m.anomalies,
    });
    Ok(Output { doc, table, anomalies: m.anomalies })
}

/// `/proc/PID/environ`, one string a line.
pub fn env<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: i32) -> anyhow::Result<Output> {
    let e = k.environment(pid).ok_or_else(|| no_process(pid))?;
    let mut table = String::new();
    for v in e.vars.iter().flatten() {
        table.push_str(v);
        table.push('\n');
    }
    let doc = json!({
        "technique": technique, "pid": e.pid, "comm": e.comm, "vars": e.vars, "truncated": e.truncated,
        "anomalies": e.anomalies,
    });
    Ok(Output { doc, table, anomalies: e.anomalies })
}
