//! `dmesg`: the kernel log.

use serde_json::json;
use vmscope_linux::{Kernel, LogFormat, format_log};
use vmscope_mem::PhysMem;

use super::Output;

/// The log as `dmesg` prints it (`dmesg -r` with `raw`): time stamps when the
/// kernel prints them.
pub fn dmesg<M: PhysMem>(technique: &str, k: &Kernel<M>, raw: bool, caller: bool) -> anyhow::Result<Output> {
    let log = k.kernel_log()?;
    let table = format_log(&log.records, LogFormat { priority: raw, time: log.printk_time, caller });
    let doc = json!({
        "technique": technique, "printk_time": log.printk_time, "records": log.records, "anomalies": log.anomalies,
    });
    Ok(Output { doc, table, anomalies: log.anomalies, findings: 0 })
}
