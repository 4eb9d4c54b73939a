//! `mounts [PID]`, `ns [PID]`, `creds [PID]`: a process's mounts, namespaces and
//! cgroup, credentials and capabilities.

use std::fmt::Write as _;

use serde_json::json;
use vmscope_linux::{Anomaly, Credentials, Kernel, MountTable, Namespaces, PerProcess};
use vmscope_mem::PhysMem;

use super::{Output, no_process};

/// One process's view or every process's; `pid` must exist when given.
fn each<T>(got: Option<PerProcess<T>>, pid: Option<i32>) -> anyhow::Result<PerProcess<T>> {
    got.ok_or_else(|| no_process(pid.unwrap_or(0)))
}

/// The anomalies of the walk and of each process, together.
fn all_anomalies<T>(p: &PerProcess<T>, of: impl Fn(&T) -> &[Anomaly]) -> Vec<Anomaly> {
    let mut an = p.anomalies.clone();
    for x in &p.processes {
        an.extend_from_slice(of(x));
    }
    an
}

/// Like `/proc/PID/mountinfo`, a block per mount namespace.
pub fn mounts<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: Option<i32>) -> anyhow::Result<Output> {
    Ok(mounts_output(technique, k.mounts(pid)?.ok_or_else(|| no_process(pid.unwrap_or(0)))?))
}

/// The output of `mounts` for these mount namespaces.
pub(crate) fn mounts_output(technique: &str, t: MountTable) -> Output {
    let mut table = String::new();
    let mut anomalies = t.anomalies.clone();
    for ns in &t.namespaces {
        let _ = writeln!(table, "# mnt:[{}] as pid {} ({}) sees it", ns.inum, ns.pid, ns.comm);
        for m in &ns.mounts {
            let _ = writeln!(table, "{}", m.line());
        }
        let partial: Vec<String> = ns
            .mounts
            .iter()
            .filter(|m| !m.super_options_complete)
            .map(|m| format!("{} on {}", m.fs_type, m.mount_point))
            .collect();
        if !partial.is_empty() {
            let _ = writeln!(table, "# generic super block options only (not rebuilt): {}", partial.join(", "));
        }
        anomalies.extend_from_slice(&ns.anomalies);
    }
    let doc = json!({ "technique": technique, "namespaces": t.namespaces, "anomalies": t.anomalies });
    Output { doc, table, anomalies, findings: 0 }
}

/// The namespaces each process is in (as `ls -l /proc/PID/ns` shows them) and
/// its cgroup: one line per process, one column per namespace.
pub fn ns<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: Option<i32>) -> anyhow::Result<Output> {
    Ok(ns_output(technique, each(k.namespaces(pid)?, pid)?))
}

/// The output of `ns` for these processes' namespaces.
pub(crate) fn ns_output(technique: &str, p: PerProcess<Namespaces>) -> Output {
    let cols = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];
    let mut table = format!("{:>7} {:<16}", "PID", "COMM");
    for c in cols {
        let _ = write!(table, " {:>10}", c.to_uppercase());
    }
    table.push_str(" CGROUP\n");
    for n in &p.processes {
        let _ = write!(table, "{:>7} {:<16}", n.pid, n.comm);
        for c in cols {
            let _ = write!(table, " {:>10}", n.get(c).map_or_else(|| "-".to_owned(), |i| i.to_string()));
        }
        let _ = writeln!(table, " {}", n.cgroup.as_deref().unwrap_or("-"));
    }
    let anomalies = all_anomalies(&p, |n| &n.anomalies);
    let doc = json!({ "technique": technique, "processes": p.processes, "anomalies": p.anomalies });
    Output { doc, table, anomalies, findings: 0 }
}

/// Credentials and capabilities, one line per process (ids as real/effective/
/// saved/filesystem, capabilities in hex as `/proc/PID/status` prints them).
pub fn creds<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: Option<i32>) -> anyhow::Result<Output> {
    Ok(creds_output(technique, each(k.credentials(pid)?, pid)?))
}

/// The output of `creds` for these processes' credentials.
pub(crate) fn creds_output(technique: &str, p: PerProcess<Credentials>) -> Output {
    let mut table = format!(
        "{:>7} {:<16} {:<23} {:<23} {:>16} {:>16} {:>16} {:>16} {:>16} {}\n",
        "PID", "COMM", "UID r/e/s/fs", "GID r/e/s/fs", "CAPINH", "CAPPRM", "CAPEFF", "CAPBND", "CAPAMB", "GROUPS"
    );
    for c in &p.processes {
        let ids = |v: &[u32; 4]| v.map(|i| i.to_string()).join("/");
        let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        let _ = write!(table, "{:>7} {:<16} {:<23} {:<23}", c.pid, c.comm, ids(&c.uid), ids(&c.gid));
        for (_, set) in c.caps() {
            let _ = write!(table, " {set:016x}");
        }
        let _ = writeln!(table, " {}", if groups.is_empty() { "-".to_owned() } else { groups.join(",") });
    }
    let anomalies = all_anomalies(&p, |c| &c.anomalies);
    let doc = json!({ "technique": technique, "processes": p.processes, "anomalies": p.anomalies });
    Output { doc, table, anomalies, findings: 0 }
}
