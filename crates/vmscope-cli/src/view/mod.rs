//! Each subcommand's view: built from an attached kernel into one JSON document
//! and one table.

pub(crate) mod files;
pub(crate) mod ids;
pub mod integrity;
mod log;
pub(crate) mod memory;
mod pids;
pub(crate) mod procs;
mod profile;
pub(crate) mod sockets;
pub(crate) mod symbols;

use anyhow::anyhow;
use serde_json::json;
use vmscope_linux::{Anomaly, Kernel};
use vmscope_mem::PhysMem;

use crate::Command;
use crate::output::{self, ModRow, PsRow};

/// What a command prints: one JSON document, or a table with a note of the
/// anomalies on stderr.
pub struct Output {
    pub doc: serde_json::Value,
    pub table: String,
    pub anomalies: Vec<Anomaly>,
    /// What `check` found (0 for every other view): the exit status says so.
    pub findings: usize,
}

/// Builds the view `cmd` asks for.
pub fn build<M: PhysMem>(cmd: &Command, technique: &str, k: &Kernel<M>) -> anyhow::Result<Output> {
    Ok(match *cmd {
        Command::Ps { threads: true, .. } => procs::threads(technique, k),
        Command::Ps { tree: true, .. } => procs::tree(technique, k),
        Command::Ps { .. } => {
            let list = k.processes();
            let doc = json!({ "technique": technique, "processes": list.processes, "anomalies": list.anomalies });
            let rows: Vec<PsRow> = list.processes.iter().map(PsRow::from).collect();
            Output { doc, table: output::ps_table(&rows), anomalies: list.anomalies, findings: 0 }
        }
        Command::Pstree => procs::pstree(technique, k),
        Command::Lsmod { .. } => {
            let list = k.modules();
            let doc = json!({ "technique": technique, "modules": list.modules, "anomalies": list.anomalies });
            let rows: Vec<ModRow> = list.modules.iter().map(ModRow::from).collect();
            Output { doc, table: output::lsmod_table(&rows), anomalies: list.anomalies, findings: 0 }
        }
        Command::Info => {
            let doc = json!({ "technique": technique, "kernel": k.info() });
            Output { doc, table: output::info_text(k.info()), anomalies: Vec::new(), findings: 0 }
        }
        Command::Maps { pid } => memory::maps(technique, k, pid)?,
        Command::Env { pid } => memory::env(technique, k, pid)?,
        Command::Lsof { pid } => files::lsof(technique, k, pid)?,
        Command::Dmesg { raw, caller } => log::dmesg(technique, k, raw, caller)?,
        Command::Check => integrity::check(technique, k)?,
        Command::Kallsyms { ref pattern } => symbols::kallsyms(technique, k, pattern.as_deref()),
        Command::Pids => pids::pids(technique, k)?,
        Command::Profile { ref isf } => profile::isf(technique, k, isf)?,
        Command::Sockets => sockets::sockets(technique, k)?,
        Command::Mounts { pid } => ids::mounts(technique, k, pid)?,
        Command::Ns { pid } => ids::ns(technique, k, pid)?,
        Command::Creds { pid } => ids::creds(technique, k, pid)?,
        Command::Dump { .. } | Command::Watch(_) => unreachable!("dump and watch are handled before attaching"),
    })
}

/// The error for a PID the task list does not have.
pub(crate) fn no_process(pid: i32) -> anyhow::Error {
    anyhow!("no process {pid} in the guest's task list")
}
