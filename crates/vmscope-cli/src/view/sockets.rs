//! `sockets`: TCP, UDP and unix sockets of every network namespace, as `ss -tuxanp`.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::json;
use vmscope_linux::{Kernel, Proto, Socket, SocketTable, state_name};
use vmscope_mem::PhysMem;

use super::Output;

/// `ADDR:PORT` as `ss` prints it: IPv6 in brackets, `*` for the unspecified
/// address and port.
fn endpoint(addr: IpAddr, port: u16) -> String {
    let a = match addr {
        a if a.is_unspecified() => "*".to_owned(),
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    };
    let p = if port == 0 { "*".to_owned() } else { port.to_string() };
    format!("{a}:{p}")
}

fn row(s: &Socket, out: &mut String) {
    let (local, peer) = match (&s.unix, s.proto) {
        (Some(u), Proto::Unix) => (
            u.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "*".into()),
            u.peer_inode.map_or_else(|| "*".to_owned(), |i| format!("* {i}")),
        ),
        _ => (endpoint(s.local, s.local_port), endpoint(s.remote, s.remote_port)),
    };
    let users: Vec<String> = s.owners.iter().map(|o| format!("(\"{}\",pid={},fd={})", o.comm, o.pid, o.fd)).collect();
    let state = if s.proto == Proto::Unix && s.state == 7 { "UNCONN" } else { state_name(s.state) };
    let _ = writeln!(
        out,
        "{:<6} {:<10} {:>10} {:<28} {:<28} {:>8} {}{}",
        s.proto.netid(s.sk_type),
        state,
        s.net_ns,
        local,
        peer,
        s.inode,
        if users.is_empty() { String::new() } else { format!("users:({})", users.join(",")) },
        if s.listed { "" } else { " (not in the kernel's tables)" }
    );
}

/// Like `ss -tuxanp`, with each socket's network namespace and inode.
pub fn sockets<M: PhysMem>(technique: &str, k: &Kernel<M>) -> anyhow::Result<Output> {
    Ok(sockets_output(technique, k.sockets()?))
}

/// The output of `sockets` for this table.
pub(crate) fn sockets_output(technique: &str, t: SocketTable) -> Output {
    let mut table = format!(
        "{:<6} {:<10} {:>10} {:<28} {:<28} {:>8} {}\n",
        "NETID", "STATE", "NETNS", "LOCAL", "PEER", "INODE", "PROCESS"
    );
    for s in &t.sockets {
        row(s, &mut table);
    }
    let doc = json!({
        "technique": technique, "namespaces": t.namespaces, "sockets": t.sockets, "anomalies": t.anomalies,
    });
    Output { doc, table, anomalies: t.anomalies, findings: 0 }
}
