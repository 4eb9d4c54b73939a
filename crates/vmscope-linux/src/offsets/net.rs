//! Sockets: the network namespaces (`net_namespace_list`), the tables each
//! namespace's TCP, UDP and unix sockets are hashed in, and what `ss` prints of a
//! socket (`struct sock_common`, `sock`, `socket`, `unix_sock`).

use serde::{Deserialize, Serialize};

use crate::{Profile, Result};

/// Where a network namespace's tables are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NetOffsets {
    /// `net.list` (on `net_namespace_list`), `net.ns.inum`.
    pub net_list: u64,
    pub net_inum: u64,
    /// `net.ipv4.tcp_death_row.hashinfo`: the TCP tables the namespace uses (the
    /// global `tcp_hashinfo` unless it has its own).
    pub tcp_hashinfo: u64,
    /// `net.ipv4.udp_table` (6.2+; before, every namespace uses the global `udp_table`).
    pub udp_table: Option<u64>,
    /// `net.unx.table.buckets` (5.19+; before, the global `unix_socket_table`).
    pub unix_buckets: Option<u64>,
    /// `inet_hashinfo`: `ehash`, `ehash_mask`, `lhash2`, `lhash2_mask`, and the
    /// bytes of an `inet_listen_hashbucket` and where its `nulls_head` is.
    pub ehash: u64,
    pub ehash_mask: u64,
    pub lhash2: u64,
    pub lhash2_mask: u64,
    pub lbucket_size: u64,
    pub lbucket_head: u64,
    /// `udp_table.hash`, `.mask`; the bytes of a `udp_hslot` (its `head` first).
    pub udp_hash: u64,
    pub udp_mask: u64,
    pub hslot_size: u64,
    pub sock: SockOffsets,
}

/// A socket's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SockOffsets {
    /// `sock_common`: the IPv4 addresses and ports, family, state, the
    /// `hlist_node` (UDP, unix) or `hlist_nulls_node` (TCP) it is hashed by, its
    /// namespace, its IPv6 addresses and reference count.
    pub daddr: u64,
    pub rcv_saddr: u64,
    pub dport: u64,
    pub num: u64,
    pub family: u64,
    pub state: u64,
    pub node: u64,
    pub net: u64,
    pub v6_daddr: u64,
    pub v6_rcv_saddr: u64,
    pub refcnt: u64,
    /// `sock`: `sk_type`, `sk_protocol` (each a `u16`), `sk_uid`, `sk_socket`.
    pub sk_type: u64,
    pub sk_protocol: u64,
    pub sk_uid: u64,
    pub sk_socket: u64,
    /// `socket.state`, `socket_alloc.vfs_inode` (the socket's inode follows it),
    /// `inode.i_ino`, `file.private_data`, `socket.sk`.
    pub socket_state: u64,
    pub socket_sk: u64,
    pub socket_inode: u64,
    pub i_ino: u64,
    pub file_private: u64,
    /// `unix_sock.addr`, `.peer`; `unix_address.len` (an `int`), `.name`.
    pub unix_addr: u64,
    pub unix_peer: u64,
    pub uaddr_len: u64,
    pub uaddr_name: u64,
}

impl SockOffsets {
    /// Bytes of `struct sock_common` read: every field of it used here.
    pub fn common_span(&self) -> u64 {
        [self.daddr, self.rcv_saddr, self.num, self.family, self.node, self.net, self.v6_rcv_saddr + 8, self.refcnt]
            .into_iter()
            .max()
            .unwrap_or(0)
            + 8
    }

    /// Bytes of a full socket read beyond its `sock_common` (a `struct sock`, or a
    /// `unix_sock` for a unix one).
    pub fn sock_span(&self, unix: bool) -> u64 {
        let base = [self.sk_type, self.sk_protocol, self.sk_uid, self.sk_socket].into_iter().max().unwrap_or(0);
        if unix { base.max(self.unix_addr).max(self.unix_peer) + 8 } else { base + 8 }
    }

    fn resolve(p: &Profile) -> Result<SockOffsets> {
        let sc = |f: &str| p.offset_of("sock_common", f);
        Ok(SockOffsets {
            daddr: sc("skc_daddr")?,
            rcv_saddr: sc("skc_rcv_saddr")?,
            dport: sc("skc_dport")?,
            num: sc("skc_num")?,
            family: sc("skc_family")?,
            state: sc("skc_state")?,
            node: sc("skc_node")?,
            net: sc("skc_net")?,
            v6_daddr: sc("skc_v6_daddr")?,
            v6_rcv_saddr: sc("skc_v6_rcv_saddr")?,
            refcnt: sc("skc_refcnt")?,
            sk_type: p.offset_of("sock", "sk_type")?,
            sk_protocol: p.offset_of("sock", "sk_protocol")?,
            sk_uid: p.offset_of("sock", "sk_uid.val")?,
            sk_socket: p.offset_of("sock", "sk_socket")?,
            socket_state: p.offset_of("socket", "state")?,
            socket_sk: p.offset_of("socket", "sk")?,
            socket_inode: p.offset_of("socket_alloc", "vfs_inode")?,
            i_ino: p.offset_of("inode", "i_ino")?,
            file_private: p.offset_of("file", "private_data")?,
            unix_addr: p.offset_of("unix_sock", "addr")?,
            unix_peer: p.offset_of("unix_sock", "peer")?,
            uaddr_len: p.offset_of("unix_address", "len")?,
            uaddr_name: p.offset_of("unix_address", "name")?,
        })
    }
}

impl NetOffsets {
    pub(crate) fn resolve(p: &Profile) -> Result<NetOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        let ipv4 = off("net", "ipv4")?;
        Ok(NetOffsets {
            net_list: off("net", "list")?,
            net_inum: off("net", "ns.inum")?,
            tcp_hashinfo: ipv4 + off("netns_ipv4", "tcp_death_row.hashinfo")?,
            udp_table: off("netns_ipv4", "udp_table").ok().map(|o| ipv4 + o),
            unix_buckets: off("net", "unx.table.buckets").ok(),
            ehash: off("inet_hashinfo", "ehash")?,
            ehash_mask: off("inet_hashinfo", "ehash_mask")?,
            lhash2: off("inet_hashinfo", "lhash2")?,
            lhash2_mask: off("inet_hashinfo", "lhash2_mask")?,
            lbucket_size: p.struct_size("inet_listen_hashbucket")?,
            lbucket_head: off("inet_listen_hashbucket", "nulls_head")?,
            udp_hash: off("udp_table", "hash")?,
            udp_mask: off("udp_table", "mask")?,
            hslot_size: p.struct_size("udp_hslot")?,
            sock: SockOffsets::resolve(p)?,
        })
    }
}
