//! Sockets: TCP, UDP (IPv4 and IPv6) and unix sockets of every network namespace,
//! found in the kernel's own tables — for each namespace on `net_namespace_list`,
//! its TCP listening and established hashes (`inet_hashinfo.lhash2`, `.ehash`),
//! its UDP hash (`udp_table.hash`) and its unix socket hash (`net.unx.table`) —
//! with what `/proc/net/{tcp,tcp6,udp,udp6,unix}` and `ss` print of each, and the
//! processes that hold each one (their descriptor tables: `socket:[INODE]`).
//!
//! The two ways of reaching a socket are checked against each other: a TCP, UDP
//! or unix socket a process holds that its namespace's table should hold and does
//! not is an [`Anomaly::Unlisted`] (and listed all the same).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::{AddrMap, AddrSet, Anomaly, Bytes, Fields, follow, owner, plausible, with_struct};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::{NetOffsets, SockOffsets};

/// `AF_UNIX`, `AF_INET`, `AF_INET6`; `IPPROTO_TCP`, `IPPROTO_UDP`; `SOCK_STREAM`,
/// `SOCK_DGRAM`, `SOCK_SEQPACKET` (stable user ABI).
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

/// TCP states (`include/net/tcp_states.h`) this view tells apart.
const TCP_ESTABLISHED: u8 = 1;
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;
const TCP_NEW_SYN_RECV: u8 = 12;

/// `UNIX_HASH_SIZE`: buckets of a namespace's unix socket table (5.19+).
const UNIX_HASH_SIZE: u64 = 512;
/// `__SO_ACCEPTCON`: the flag `/proc/net/unix` shows for a listening socket.
pub const SO_ACCEPTCON: u32 = 1 << 16;
/// The most buckets of one hash table read (a larger mask is corrupt).
const MAX_BUCKETS: u64 = 1 << 24;
/// The longest unix socket address (`sizeof(struct sockaddr_un)`).
const SOCKADDR_UN: usize = 110;

/// Which table (and `/proc/net` file) a socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// TCP over IPv4 (`/proc/net/tcp`).
    Tcp,
    /// TCP over IPv6 (`/proc/net/tcp6`).
    Tcp6,
    /// UDP over IPv4 (`/proc/net/udp`).
    Udp,
    /// UDP over IPv6 (`/proc/net/udp6`).
    Udp6,
    /// A unix socket (`/proc/net/unix`).
    Unix,
}

impl Proto {
    /// The `Netid` column of `ss` (unix: by socket type).
    pub fn netid(self, sk_type: u16) -> &'static str {
        match (self, sk_type) {
            (Proto::Tcp | Proto::Tcp6, _) => "tcp",
            (Proto::Udp | Proto::Udp6, _) => "udp",
            (Proto::Unix, 1) => "u_str",
            (Proto::Unix, 2) => "u_dgr",
            (Proto::Unix, 5) => "u_seq",
            (Proto::Unix, _) => "unix",
        }
    }
}

/// `ss`'s name of a socket state (`tcp_state_name`), UDP and unix alike.
pub fn state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTAB",
        2 => "SYN-SENT",
        3 | TCP_NEW_SYN_RECV => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "UNCONN",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// A process that holds a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The process.
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// The descriptor.
    pub fd: u32,
}

/// What a unix socket adds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixInfo {
    /// Its address as `/proc/net/unix` prints it: a path, `@name` for an abstract
    /// one; `None` when unbound.
    pub path: Option<String>,
    /// The `Flags` column: [`SO_ACCEPTCON`] when listening.
    pub flags: u32,
    /// The `St` column (`SS_UNCONNECTED` 1 ... `SS_DISCONNECTING` 4).
    pub sock_state: u8,
    /// The inode of its peer, when connected.
    pub peer_inode: Option<u64>,
}

/// One socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    /// Its table.
    pub proto: Proto,
    /// The kernel's state (`TCP_*`; `/proc/net` prints it in hex, a request socket
    /// as `TCP_SYN_RECV`).
    pub state: u8,
    /// `sk_type` (`SOCK_STREAM` 1, `SOCK_DGRAM` 2, `SOCK_SEQPACKET` 5).
    pub sk_type: u16,
    /// Local address and port (unspecified for unix).
    pub local: IpAddr,
    /// Local port.
    pub local_port: u16,
    /// Remote address and port.
    pub remote: IpAddr,
    /// Remote port.
    pub remote_port: u16,
    /// The socket's inode (`socket:[INODE]`); 0 for one no file refers to (a
    /// TIME-WAIT or request socket, a kernel socket).
    pub inode: u64,
    /// `sk_uid`.
    pub uid: u32,
    /// Inode number of its network namespace (`/proc/PID/ns/net`).
    pub net_ns: u32,
    /// A unix socket's address, flags and peer.
    pub unix: Option<UnixInfo>,
    /// The processes that hold it, by descriptor.
    pub owners: Vec<Owner>,
    /// Whether the namespace's table holds it (else it was found only through a
    /// process's descriptors: see the anomalies).
    pub listed: bool,
    /// Address of the `struct sock`.
    pub sock: Gva,
}

impl Socket {
    /// Whether a table should hold it: every unix socket, a TCP socket past
    /// `CLOSE` (listening, connecting or connected), a UDP socket with a port.
    pub fn hashed(&self) -> bool {
        match self.proto {
            Proto::Unix => true,
            Proto::Tcp | Proto::Tcp6 => self.state != TCP_CLOSE,
            Proto::Udp | Proto::Udp6 => self.local_port != 0,
        }
    }
}

/// Every socket of every network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketTable {
    /// By namespace (in `net_namespace_list` order), then table: TCP listening,
    /// TCP established, UDP, unix; then those only descriptors reach.
    pub sockets: Vec<Socket>,
    /// Inode numbers of the network namespaces walked.
    pub namespaces: Vec<u32>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

/// The address `/proc/net/unix` prints for a `unix_address` of `len` bytes whose
/// `sockaddr_un` is `name` (family first): a path without its NUL, or `@` and an
/// abstract name whose NULs print as `@`.
pub fn unix_path(len: i32, name: &[u8]) -> Option<String> {
    let path = name.get(2..)?;
    let len = usize::try_from(len).ok()?.checked_sub(2)?.min(path.len());
    let (start, end, mut s) = match path.first() {
        Some(0) => (1, len, String::from("@")),
        Some(_) => (0, len.saturating_sub(1), String::new()),
        None => return Some(String::new()),
    };
    for &b in path.get(start..end.max(start))? {
        s.push(if b == 0 { '@' } else { b as char });
    }
    Some(s)
}

/// The four 32-bit words of an IPv6 address, in memory order, as an address.
fn ipv6(b: &[u8]) -> Option<Ipv6Addr> {
    Some(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))
}

/// Which tables one namespace's sockets are in.
struct NetTables {
    inum: u32,
    tcp: Option<Gva>,
    udp: Option<Gva>,
    unix: Option<Gva>,
}

/// One pass: what was read once.
struct Pass {
    /// Each socket met, by `struct sock`, with its index in `out`.
    found: AddrMap<Gva, usize>,
    /// Network namespace inode numbers, by `struct net`.
    nets: AddrMap<Gva, u32>,
    out: Vec<Socket>,
    /// Sockets visited in all (the bound of the whole pass).
    steps: usize,
}

impl<M: PhysMem> Ctx<'_, M> {
    fn net_tables(&self, no: &NetOffsets, net: Gva, an: &mut Vec<Anomaly>) -> Option<NetTables> {
        let inum = member(net, no.net_inum).and_then(|at| self.k.read_u32(at)).ok()?;
        let tcp = follow(self.k, net, no.tcp_hashinfo, "net.ipv4.tcp_death_row.hashinfo", an);
        let udp = match no.udp_table {
            Some(off) => follow(self.k, net, off, "net.ipv4.udp_table", an),
            None => self.addrs.udp_table,
        };
        let unix = no.unix_buckets.and_then(|off| follow(self.k, net, off, "net.unx.table.buckets", an));
        Some(NetTables { inum, tcp, udp, unix })
    }

    /// The `n` words of a bucket array at `at`, each a list head (`stride` bytes
    /// apart, the head `head` bytes into each).
    fn buckets(&self, at: Gva, n: u64, stride: u64, head: u64, what: &str, an: &mut Vec<Anomaly>) -> Vec<Gva> {
        if n == 0 || n > MAX_BUCKETS || !plausible(self.k, at, 8) {
            an.push(Anomaly::InvalidField {
                what: what.into(),
                addr: at,
                field: "buckets".into(),
                value: n.to_string(),
            });
            return Vec::new();
        }
        let Some(len) = n.checked_mul(stride).and_then(|l| usize::try_from(l).ok()) else { return Vec::new() };
        match self.k.read_vec(at, len) {
            Ok(b) => {
                let b = Bytes(&b);
                (0..n).filter_map(|i| b.ptr(i * stride + head)).collect()
            }
            Err(e) => {
                an.push(Anomaly::Unreadable { what: what.into(), addr: at, error: e.to_string() });
                Vec::new()
            }
        }
    }

    /// The sockets of one hash chain starting at `first` (an `hlist_node` or
    /// `hlist_nulls_node` of each `sock_common`), ended by NULL or a nulls marker.
    fn chain(&self, so: &SockOffsets, first: Gva, what: &str, pass: &mut Pass, an: &mut Vec<Anomaly>) -> Vec<Gva> {
        let mut out = Vec::new();
        let mut seen = AddrSet::default();
        let mut node = first;
        while node.raw() != 0 && node.raw() & 1 == 0 {
            if pass.steps >= self.limits.max_list {
                an.push(Anomaly::StepLimit { list: what.into(), limit: self.limits.max_list });
                break;
            }
            pass.steps += 1;
            if !plausible(self.k, node, 8) {
                an.push(Anomaly::BadPointer { what: format!("{what} next"), at: node, value: node });
                break;
            }
            if !seen.insert(node) {
                an.push(Anomaly::ListCycle { list: what.into(), node });
                break;
            }
            let Some(sk) = owner(node, so.node, "sock_common", an) else { break };
            out.push(sk);
            match self.k.read_ptr(node) {
                Ok(n) => node = n,
                Err(e) => {
                    an.push(Anomaly::Unreadable { what: what.into(), addr: node, error: e.to_string() });
                    break;
                }
            }
        }
        out
    }

    fn net_inum(&self, no: &NetOffsets, net: Gva, pass: &mut Pass) -> u32 {
        if let Some(&i) = pass.nets.get(&net) {
            return i;
        }
        let i = member(net, no.net_inum).and_then(|at| self.k.read_u32(at)).unwrap_or(0);
        pass.nets.insert(net, i);
        i
    }

    /// Reads socket `sk` (a `sock_common` first) and adds it to the pass, once.
    fn describe(
        &self,
        no: &NetOffsets,
        sk: Gva,
        listed: bool,
        pass: &mut Pass,
        an: &mut Vec<Anomaly>,
    ) -> Option<usize> {
        if let Some(&i) = pass.found.get(&sk) {
            return Some(i);
        }
        let so = &no.sock;
        let unix = with_struct(self.k, sk, so.common_span(), "sock_common", an, |b| b.uint(so.family, 2))??
            == u64::from(AF_UNIX);
        let span = so.common_span().max(if unix { so.sock_span(true) } else { 0 });
        let common = with_struct(self.k, sk, span, "sock_common", an, |b| {
            let v4 = |off| b.get(off, 4).map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            Some((
                b.uint(so.family, 2)? as u16,
                b.get(so.state, 1)?[0],
                v4(so.rcv_saddr)?,
                v4(so.daddr)?,
                b.uint(so.num, 2)? as u16,
                u16::from_be(b.uint(so.dport, 2)? as u16),
                b.ptr(so.net)?,
                ipv6(b.get(so.v6_rcv_saddr, 16)?)?,
                ipv6(b.get(so.v6_daddr, 16)?)?,
                if unix { Some((b.ptr(so.unix_addr)?, b.ptr(so.unix_peer)?)) } else { None },
            ))
        })??;
        let (family, state, saddr, daddr, num, dport, net, saddr6, daddr6, unix_ptrs) = common;
        // TIME-WAIT and request sockets are only a `sock_common` and a little more.
        let full = !matches!(state, TCP_TIME_WAIT | TCP_NEW_SYN_RECV) || unix;
        let (sk_type, protocol, uid, socket) = if full {
            with_struct(self.k, sk, so.sock_span(false), "struct sock", an, |b| {
                Some((
                    b.uint(so.sk_type, 2)? as u16,
                    b.uint(so.sk_protocol, 2)? as u16,
                    b.u32(so.sk_uid)?,
                    b.ptr(so.sk_socket)?,
                ))
            })??
        } else {
            (1, IPPROTO_TCP, 0, Gva::new(0))
        };
        let proto = match (family, protocol) {
            (AF_UNIX, _) => Proto::Unix,
            (AF_INET, IPPROTO_TCP) => Proto::Tcp,
            (AF_INET6, IPPROTO_TCP) => Proto::Tcp6,
            (AF_INET, IPPROTO_UDP) => Proto::Udp,
            (AF_INET6, IPPROTO_UDP) => Proto::Udp6,
            // A netlink, packet, raw or other socket a process holds is not one this
            // view lists; one in a TCP, UDP or unix table is corrupt.
            _ if !listed => return None,
            _ => {
                an.push(Anomaly::InvalidField {
                    what: "sock".into(),
                    addr: sk,
                    field: "family/protocol".into(),
                    value: format!("{family}/{protocol}"),
                });
                return None;
            }
        };
        let inode = self.socket_inode(so, socket, an);
        let (local, remote) = match family {
            AF_INET6 => (IpAddr::V6(saddr6), IpAddr::V6(daddr6)),
            AF_INET => (IpAddr::V4(saddr), IpAddr::V4(daddr)),
            _ => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        };
        let unix = unix_ptrs.map(|(addr, peer)| self.unix_info(so, state, socket, addr, peer, an));
        let net_ns = if plausible(self.k, net, 8) { self.net_inum(no, net, pass) } else { 0 };
        let (local_port, remote_port) = if unix.is_some() { (0, 0) } else { (num, dport) };
        pass.found.insert(sk, pass.out.len());
        pass.out.push(Socket {
            proto,
            state,
            sk_type,
            local,
            local_port,
            remote,
            remote_port,
            inode,
            uid,
            net_ns,
            unix,
            owners: Vec::new(),
            listed,
            sock: sk,
        });
        Some(pass.out.len() - 1)
    }

    /// `sock_i_ino`: the inode number of the socket's inode (which follows its
    /// `struct socket`), 0 without one.
    fn socket_inode(&self, so: &SockOffsets, socket: Gva, an: &mut Vec<Anomaly>) -> u64 {
        if socket.raw() == 0 {
            return 0;
        }
        if !plausible(self.k, socket, 8) {
            an.push(Anomaly::BadPointer { what: "sock.sk_socket".into(), at: socket, value: socket });
            return 0;
        }
        member(socket, so.socket_inode + so.i_ino).and_then(|at| self.k.read_u64(at)).unwrap_or(0)
    }

    fn unix_info(
        &self,
        so: &SockOffsets,
        state: u8,
        socket: Gva,
        addr: Gva,
        peer: Gva,
        an: &mut Vec<Anomaly>,
    ) -> UnixInfo {
        let established = state == TCP_ESTABLISHED;
        // The `St` column as unix_seq_show computes it.
        let sock_state = match (socket.raw() != 0, established) {
            (true, true) => 3,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 4,
        };
        let mut info = UnixInfo {
            path: None,
            flags: if state == TCP_LISTEN { SO_ACCEPTCON } else { 0 },
            sock_state,
            peer_inode: None,
        };
        if addr.raw() != 0 {
            if plausible(self.k, addr, 4) {
                let mut name = [0u8; SOCKADDR_UN];
                let len = member(addr, so.uaddr_len).and_then(|at| self.k.read_u32(at)).map(|v| v as i32);
                let read = member(addr, so.uaddr_name).and_then(|at| self.k.read(at, &mut name));
                match (len, read) {
                    (Ok(len), Ok(())) => info.path = unix_path(len, &name),
                    (Err(e), _) | (_, Err(e)) => {
                        an.push(Anomaly::Unreadable { what: "unix_address".into(), addr, error: e.to_string() })
                    }
                }
            } else {
                an.push(Anomaly::BadPointer { what: "unix_sock.addr".into(), at: addr, value: addr });
            }
        }
        if plausible(self.k, peer, 8) {
            let socket = follow(self.k, peer, so.sk_socket, "peer sk_socket", an);
            info.peer_inode = Some(socket.map_or(0, |s| self.socket_inode(so, s, an)));
        }
        info
    }

    /// Every socket a process's descriptor refers to: `(struct sock, owner)`.
    fn held_sockets(&self, so: &SockOffsets, an: &mut Vec<Anomaly>) -> Vec<(Gva, Owner)> {
        if self.o.files.is_none() || self.o.vfs.is_none() {
            return Vec::new();
        }
        let all = self.all_open_files();
        an.extend(all.anomalies);
        let mut out = Vec::new();
        for p in all.processes {
            for f in p.files.iter().filter(|f| f.kind == super::files::FileKind::Socket) {
                let Some(socket) = follow(self.k, f.file, so.file_private, "file.private_data", an) else { continue };
                let Some(sk) = follow(self.k, socket, so.socket_sk, "socket.sk", an) else { continue };
                out.push((sk, Owner { pid: p.pid, comm: p.comm.clone(), fd: f.fd }));
            }
        }
        out
    }

    /// Every socket of every network namespace. The caller checked the offsets.
    pub(crate) fn sockets(&self) -> SocketTable {
        let Some(no) = self.o.net.as_ref() else { return SocketTable::default() };
        let so = &no.sock;
        let mut an = Vec::new();
        let mut pass = Pass { found: AddrMap::default(), nets: AddrMap::default(), out: Vec::new(), steps: 0 };
        let mut namespaces = Vec::new();
        let nets: Vec<Gva> = match self.addrs.net_namespace_list {
            Some(head) => self
                .walk_list(head, "net_namespace_list", &mut an)
                .into_iter()
                .filter_map(|n| owner(n, no.net_list, "struct net", &mut an))
                .collect(),
            None => Vec::new(),
        };
        let mut done = AddrSet::default();
        for net in nets {
            let Some(t) = self.net_tables(no, net, &mut an) else { continue };
            namespaces.push(t.inum);
            pass.nets.insert(net, t.inum);
            if let Some(h) = t.tcp.filter(|h| done.insert(*h)) {
                self.tcp_tables(no, h, &mut pass, &mut an);
            }
            if let Some(u) = t.udp.filter(|u| done.insert(*u)) {
                let read = with_struct(self.k, u, no.udp_mask.max(no.udp_hash) + 8, "udp_table", &mut an, |b| {
                    Some((b.ptr(no.udp_hash)?, b.u32(no.udp_mask)?))
                });
                if let Some(Some((hash, mask))) = read {
                    for head in self.buckets(hash, u64::from(mask) + 1, no.hslot_size, 0, "udp_table.hash", &mut an) {
                        for sk in self.chain(so, head, "udp hash chain", &mut pass, &mut an) {
                            self.describe(no, sk, true, &mut pass, &mut an);
                        }
                    }
                }
            }
            if let Some(b) = t.unix.filter(|b| done.insert(*b)) {
                for head in self.buckets(b, UNIX_HASH_SIZE, 8, 0, "net.unx.table.buckets", &mut an) {
                    for sk in self.chain(so, head, "unix hash chain", &mut pass, &mut an) {
                        self.describe(no, sk, true, &mut pass, &mut an);
                    }
                }
            }
        }
        for (sk, o) in self.held_sockets(so, &mut an) {
            let Some(i) = self.describe(no, sk, false, &mut pass, &mut an) else { continue };
            let s = &mut pass.out[i];
            if !s.listed && s.owners.is_empty() && s.hashed() {
                an.push(Anomaly::Unlisted {
                    what: format!("{:?} socket:[{}] of pid {}", s.proto, s.inode, o.pid),
                    addr: sk,
                    table: "its network namespace's socket tables".into(),
                });
            }
            s.owners.push(o);
        }
        // Sockets no table holds yet (a TCP socket not listening nor connected, a UDP
        // one without a port) are left out, as `/proc/net` leaves them out.
        pass.out.retain(|s| s.listed || s.hashed());
        SocketTable { sockets: pass.out, namespaces, anomalies: an }
    }

    fn tcp_tables(&self, no: &NetOffsets, h: Gva, pass: &mut Pass, an: &mut Vec<Anomaly>) {
        let span = [no.ehash, no.ehash_mask, no.lhash2, no.lhash2_mask].into_iter().max().unwrap_or(0) + 8;
        let Some(Some((ehash, emask, lhash, lmask))) = with_struct(self.k, h, span, "inet_hashinfo", an, |b| {
            Some((b.ptr(no.ehash)?, b.u32(no.ehash_mask)?, b.ptr(no.lhash2)?, b.u32(no.lhash2_mask)?))
        }) else {
            return;
        };
        let so = &no.sock;
        let listening =
            self.buckets(lhash, u64::from(lmask) + 1, no.lbucket_size, no.lbucket_head, "inet_hashinfo.lhash2", an);
        let established = self.buckets(ehash, u64::from(emask) + 1, 8, 0, "inet_hashinfo.ehash", an);
        for head in listening.into_iter().chain(established) {
            for sk in self.chain(so, head, "tcp hash chain", pass, an) {
                self.describe(no, sk, true, pass, an);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unix_paths_as_proc_net_unix_prints_them() {
        let mut name = vec![1, 0];
        name.extend_from_slice(b"/tmp/s\0");
        assert_eq!(unix_path(2 + 7, &name).as_deref(), Some("/tmp/s"));
        let abs = [1, 0, 0, b'a', 0, b'b'];
        assert_eq!(unix_path(6, &abs).as_deref(), Some("@a@b"));
        assert_eq!(unix_path(2, &[1, 0]).as_deref(), Some(""));
        assert_eq!(unix_path(-5, &abs), None);
    }

    proptest! {
        #[test]
        fn unix_path_never_panics(len in any::<i32>(), name in prop::collection::vec(any::<u8>(), 0..130)) {
            if let Some(p) = unix_path(len, &name) {
                prop_assert!(p.chars().count() <= name.len());
            }
        }
    }
}
