//! `maps PID` and `env PID`: a process's memory areas and its environment.

use serde_json::json;
use vmscope_linux::{Environment, Kernel, MemoryMap, format_maps};
use vmscope_mem::PhysMem;

use super::{Output, no_process};

/// `/proc/PID/maps`, byte for byte.
pub fn maps<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: i32) -> anyhow::Result<Output> {
    Ok(maps_output(technique, k.memory_map(pid)?.ok_or_else(|| no_process(pid))?))
}

/// The output of `maps` for one process's map.
pub(crate) fn maps_output(technique: &str, m: MemoryMap) -> Output {
    let table = format_maps(&m.vmas);
    let doc = json!({
        "technique": technique, "pid": m.pid, "comm": m.comm, "vmas": m.vmas, "anomalies": m.anomalies,
    });
    Output { doc, table, anomalies: m.anomalies, findings: 0 }
}

/// `/proc/PID/environ`, one string a line.
pub fn env<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: i32) -> anyhow::Result<Output> {
    Ok(env_output(technique, k.environment(pid).ok_or_else(|| no_process(pid))?))
}

/// The output of `env` for one process's environment.
pub(crate) fn env_output(technique: &str, e: Environment) -> Output {
    let mut table = String::new();
    for v in e.vars.iter().flatten() {
        table.push_str(v);
        table.push('\n');
    }
    let doc = json!({
        "technique": technique, "pid": e.pid, "comm": e.comm, "vars": e.vars, "truncated": e.truncated,
        "anomalies": e.anomalies,
    });
    Output { doc, table, anomalies: e.anomalies, findings: 0 }
}
