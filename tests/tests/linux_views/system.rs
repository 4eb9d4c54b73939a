//! Sockets, mounts, namespaces and cgroup, credentials and capabilities, against
//! the guest's `/proc/net/{tcp,tcp6,udp,udp6,unix}`, `/proc/PID/mountinfo`, the
//! `/proc/PID/ns/*` links, `/proc/PID/cgroup` and `/proc/PID/status`, field by
//! field. The workload holds TCP and UDP sockets on IPv4 and IPv6 loopback and one
//! connection; its child lives in mount, network and UTS namespaces of its own. Last,
//! one socket is unlinked from its hash chain on the paused guest (and linked back
//! before it runs): the view must report it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vmscope_linux::{Kernel, Proto};
use vmscope_mem::FileMem;
use vmscope_testbed::{Guest, eventually};

use super::per_pid;

/// The cgroup the workload is moved into.
pub const CGROUP: &str = "/vmscope-hold";

/// Every option cgroup2's mountinfo line can show (6.12 has them all), and those 6.1
/// has: the mounts view rebuilds each from `cgrp_dfl_root.flags`.
const CGROUP2_ALL: &str =
    "nsdelegate,favordynmods,memory_localevents,memory_recursiveprot,memory_hugetlb_accounting,pids_localevents";
const CGROUP2_6_1: &str = "nsdelegate,memory_localevents,memory_recursiveprot";

/// Mounts the unified cgroup hierarchy with every option the kernel has (the
/// mounts view's comparison with mountinfo covers them) and moves `pid` into
/// [`CGROUP`].
pub fn into_cgroup(g: &mut Guest, pid: i32) {
    let out = g.sh(&format!(
        "mkdir -p /sys/fs/cgroup && {{ mount -t cgroup2 -o {CGROUP2_ALL} none /sys/fs/cgroup 2>/dev/null \
         || mount -t cgroup2 -o {CGROUP2_6_1} none /sys/fs/cgroup; }} && mkdir /sys/fs/cgroup{CGROUP} \
         && echo {pid} > /sys/fs/cgroup{CGROUP}/cgroup.procs && echo moved; grep cgroup2 /proc/mounts"
    ));
    assert!(out.contains("moved") && out.contains("memory_localevents"), "cgroup2: {out}");
    eprintln!("cgroup2 mounted as: {}", out.lines().last().unwrap_or(""));
}

/// An address of `/proc/net/*`: the words of the address as the kernel's integers.
fn proc_addr(hex: &str) -> (IpAddr, u16) {
    let (a, p) = hex.split_once(':').expect("ADDR:PORT");
    let port = u16::from_str_radix(p, 16).expect("port");
    let words: Vec<[u8; 4]> = (0..a.len() / 8)
        .map(|i| u32::from_str_radix(&a[i * 8..i * 8 + 8], 16).expect("hex word").to_le_bytes())
        .collect();
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(*w)),
        ws => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ws.concat()).expect("16 bytes"))),
    };
    (ip, port)
}

/// `(proto, local, remote, state, uid, inode)` of a `/proc/net` socket line.
type Row = (Proto, (IpAddr, u16), (IpAddr, u16), u8, u32, u64);

fn inet_rows(text: &str, proto: Proto) -> BTreeSet<Row> {
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let st = u8::from_str_radix(f[3], 16).expect("st");
            (proto, proc_addr(f[1]), proc_addr(f[2]), st, f[7].parse().expect("uid"), f[9].parse().expect("inode"))
        })
        .collect()
}

/// The guest's TCP and UDP sockets as `/proc/PID/net` lists them (`PID`'s namespace).
fn guest_inet(g: &mut Guest, pid: &str) -> BTreeSet<Row> {
    let mut rows = BTreeSet::new();
    for (file, proto) in [("tcp", Proto::Tcp), ("tcp6", Proto::Tcp6), ("udp", Proto::Udp), ("udp6", Proto::Udp6)] {
        rows.extend(inet_rows(&g.sh(&format!("cat /proc/{pid}/net/{file}")), proto));
    }
    rows
}

fn ours_inet(k: &Kernel<FileMem>, net_ns: u32) -> BTreeSet<Row> {
    let t = k.sockets().expect("sockets supported");
    assert!(t.anomalies.is_empty(), "{:?}", t.anomalies);
    t.sockets
        .iter()
        .filter(|s| s.net_ns == net_ns && s.proto != Proto::Unix)
        // A request socket shows as SYN_RECV in /proc/net.
        .map(|s| {
            (
                s.proto,
                (s.local, s.local_port),
                (s.remote, s.remote_port),
                if s.state == 12 { 3 } else { s.state },
                s.uid,
                s.inode,
            )
        })
        .collect()
}

fn ns_inum(g: &mut Guest, pid: i32, ns: &str) -> u32 {
    let l = g.sh(&format!("readlink /proc/{pid}/ns/{ns}"));
    let inner = l.trim().strip_prefix(&format!("{ns}:[")).and_then(|r| r.strip_suffix(']'));
    inner.unwrap_or_else(|| panic!("readlink /proc/{pid}/ns/{ns}: {l:?}")).parse().expect("inode number")
}

pub fn check_sockets(g: &mut Guest, k: &Kernel<FileMem>, hold: i32, child: i32) {
    let net = ns_inum(g, 1, "net");
    let want = guest_inet(g, "1");
    assert_eq!(ours_inet(k, net), want, "TCP and UDP sockets of the initial network namespace");
    let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let has = |proto, local, state| want.iter().any(|r| r.0 == proto && r.1 == local && r.3 == state);
    assert!(has(Proto::Tcp, (lo4, 7701), 10) && has(Proto::Tcp6, (lo6, 7702), 10), "{want:?}");
    assert!(has(Proto::Udp, (lo4, 7703), 7) && has(Proto::Udp6, (lo6, 7704), 7), "{want:?}");
    assert!(want.iter().any(|r| r.2 == (lo4, 7701) && r.3 == 1), "the connection to 7701: {want:?}");

    // Unix sockets: flags, type, state, inode and path of /proc/net/unix.
    let t = k.sockets().expect("sockets");
    let unix_want: BTreeSet<(u32, u16, u8, u64, String)> = g
        .sh("cat /proc/1/net/unix")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = |s: &str| u32::from_str_radix(s, 16).expect("hex");
            let path = f.get(7).map_or(String::new(), |p| (*p).to_owned());
            (hex(f[3]), hex(f[4]) as u16, hex(f[5]) as u8, f[6].parse().expect("inode"), path)
        })
        .collect();
    let unix_ours: BTreeSet<(u32, u16, u8, u64, String)> = t
        .sockets
        .iter()
        .filter(|s| s.net_ns == net && s.proto == Proto::Unix)
        .map(|s| {
            let u = s.unix.as_ref().expect("unix info");
            (u.flags, s.sk_type, u.sock_state, s.inode, u.path.clone().unwrap_or_default())
        })
        .collect();
    assert_eq!(unix_ours, unix_want, "unix sockets");

    // Owners: each socket the workload holds names it, by descriptor.
    let links = per_pid(g, &[hold], "for f in 10 14 15 16 17 18 19; do echo \"$f $(readlink /proc/$p/fd/$f)\"; done");
    for l in links[&hold].lines() {
        let (fd, link) = l.split_once(' ').expect("FD LINK");
        let inode: u64 = link.trim_start_matches("socket:[").trim_end_matches(']').parse().expect("socket inode");
        let s = t.sockets.iter().find(|s| s.inode == inode).unwrap_or_else(|| panic!("fd {fd}: {link} not found"));
        assert!(
            s.owners.iter().any(|o| o.pid == hold && o.fd.to_string() == fd),
            "fd {fd} ({link}): owners {:?}",
            s.owners
        );
        assert!(s.listed, "fd {fd}: found only through the descriptor table");
    }

    if child != 0 {
        let cnet = ns_inum(g, child, "net");
        assert_ne!(cnet, net);
        let want = guest_inet(g, &child.to_string());
        assert_eq!(ours_inet(k, cnet), want, "sockets of the child's network namespace");
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert!(want.iter().any(|r| r.1 == (any, 7711) && r.3 == 10), "{want:?}");
        let s = t.sockets.iter().find(|s| s.net_ns == cnet && s.local_port == 7711).expect("7711");
        assert_eq!(s.owners.iter().map(|o| o.pid).collect::<Vec<_>>(), [child]);
    }
}

/// The file systems whose own super block options vmscope rebuilds (and those that
/// add none here).
const WHOLE_OPTIONS: [&str; 15] = [
    "tmpfs",
    "devtmpfs",
    "rootfs",
    "devpts",
    "proc",
    "sysfs",
    "cgroup2",
    "ext4",
    "debugfs",
    "tracefs",
    "ramfs",
    "hugetlbfs",
    "bpf",
    "mqueue",
    "securityfs",
];

/// File systems whose own options the view does not rebuild, mounted so that it
/// must say so (`super_options_complete` false): pstore (`kmsg_bytes=`) and a named
/// cgroup v1 hierarchy (`name=`, controllers). mqueue and securityfs add no options
/// (no `show_options`): complete with the generic ones alone.
const NOT_REBUILT: [&str; 2] = ["pstore", "cgroup"];

/// Mount options for the three scratch disks (ext4), three more proc mounts and four
/// tmpfs mounts, so that
/// every option the mounts view rebuilds for them is shown by some mount: mount
/// option bits set and cleared against the defaults, tunables, `errors=` against
/// the disk's, `data=` modes, quota formats and files, `sb=`, `dax=`,
/// `mb_optimize_scan=`; proc's `gid=`, each `hidepid=` and `subset=pid`; tmpfs's
/// `mpol=`, `huge=` and (from 6.4) `noswap`.
const EXT4_OPTIONS: [&str; 3] = [
    "errors=remount-ro,commit=17,nodelalloc,noauto_da_alloc,data=journal,stripe=4,resuid=1,resgid=2,\
     min_batch_time=100,max_batch_time=9000,inode_readahead_blks=64,init_itable=20,max_dir_size_kb=1024,grpid,\
     nouid32,debug,jqfmt=vfsv1,usrjquota=aquota.user,grpjquota=aquota.group",
    "errors=panic,usrquota,grpquota,discard,nobarrier,noblock_validity,journal_checksum,journal_async_commit,\
     dioread_nolock,nombcache,no_prefetch_block_bitmaps,data_err=abort,data=writeback",
    "ro,errors=continue,sb=8193,norecovery,noinit_itable,mb_optimize_scan=1,dax=never,minixdf,nodiscard,\
     warn_on_error",
];
const PROC_OPTIONS: [&str; 3] = ["hidepid=invisible,gid=5,subset=pid", "hidepid=ptraceable", "hidepid=noaccess"];
/// tmpfs with memory policies (the guest has one NUMA node, 0): a mode with nodes,
/// each node flag, one without nodes.
const TMPFS_MPOL: [&str; 4] = ["mpol=bind:0", "mpol=interleave=static:0", "mpol=prefer=relative:0", "mpol=local"];

/// Starts a process chrooted into a tmpfs under which propagation has to be
/// traced past a master: `leaf` is a slave of peer group G1 (whose only peer, `mid`,
/// lies outside the root), G1's mount is a slave of G2, and G2 has a peer (`in`)
/// under the root — so the chrooted process sees `master:G1 propagate_from:G2`
/// (`get_dominating_id`) where every other process sees `master:G1` alone. Returns
/// its pid.
pub fn chrooted_slave(g: &mut Guest) -> i32 {
    let p = "/mnt/pr";
    g.sh(&format!(
        "mkdir -p {p} && mount -t tmpfs pr {p} && mkdir {p}/src {p}/mid {p}/root \
         && mount -t tmpfs src {p}/src && mount --make-shared {p}/src \
         && mount -t tmpfs root {p}/root && mkdir {p}/root/in {p}/root/leaf && cp /bin/busybox {p}/root/ \
         && mount --bind {p}/src {p}/root/in \
         && mount --bind {p}/src {p}/mid && mount --make-slave {p}/mid && mount --make-shared {p}/mid \
         && mount --bind {p}/mid {p}/root/leaf && mount --make-slave {p}/root/leaf"
    ));
    let pid: i32 = g
        .sh(&format!("chroot {p}/root /busybox sleep 100000 </dev/null >/dev/null 2>&1 & echo $!"))
        .trim()
        .parse()
        .expect("the chrooted process's pid");
    let chrooted = eventually(std::time::Duration::from_secs(10), || {
        g.sh(&format!("cat /proc/{pid}/mountinfo 2>/dev/null")).contains("propagate_from:")
    });
    let seen = g.sh(&format!("cat /proc/{pid}/mountinfo"));
    assert!(chrooted, "no propagate_from: for the chrooted process:\n{seen}");
    pid
}

/// The scratch disks a guest needs for [`own_option_mounts`].
pub fn scratch_disks() -> Vec<vmscope_testbed::Disk> {
    vec![vmscope_testbed::Disk::Scratch { size_mib: 64 }; EXT4_OPTIONS.len()]
}

/// Mounts the scratch disks (which /init stacked on /mnt/scratch), proc and tmpfs
/// with the options above.
pub fn own_option_mounts(g: &mut Guest) {
    g.sh("while umount /mnt/scratch 2>/dev/null; do :; done");
    for (i, o) in EXT4_OPTIONS.iter().enumerate() {
        let dev = format!("/dev/vd{}", char::from(b'a' + i as u8));
        let out = g.sh(&format!(
            "mkdir -p /mnt/e{i} && mount -t ext4 -o {o} {dev} /mnt/e{i} 2>&1; grep ' /mnt/e{i} ' /proc/mounts; true"
        ));
        assert!(out.contains(&format!(" /mnt/e{i} ext4 ")), "mount -o {o} {dev}: {out}");
    }
    for (i, o) in PROC_OPTIONS.iter().enumerate() {
        g.sh(&format!("mkdir -p /mnt/p{i} && mount -t proc -o {o} proc /mnt/p{i}"));
    }
    for (i, o) in TMPFS_MPOL.iter().enumerate() {
        g.sh(&format!("mkdir -p /mnt/m{i} && mount -t tmpfs -o {o},huge=within_size,noswap mpol{i} /mnt/m{i} 2>/dev/null || mount -t tmpfs -o {o},huge=within_size mpol{i} /mnt/m{i}"));
    }
    // debugfs and tracefs have one super block each (not mounted by /init): owner
    // and mode set; ramfs with a mode and one at its defaults.
    g.sh("mkdir -p /mnt/dbg /mnt/trc /mnt/ram0 /mnt/ram1 && mount -t debugfs -o uid=5,gid=6,mode=755 none /mnt/dbg \
          && mount -t tracefs -o gid=7,mode=750 none /mnt/trc && mount -t ramfs -o mode=711 ram0 /mnt/ram0 \
          && mount -t ramfs ram1 /mnt/ram1");
    // hugetlbfs at its defaults and with every option (min_size reserves pages:
    // the pool gets four); bpf at its defaults and with an owner (6.7+) and mode.
    g.sh("echo 4 > /proc/sys/vm/nr_hugepages && mkdir -p /mnt/h0 /mnt/h1 /mnt/bpf0 /mnt/bpf1 \
          && mount -t hugetlbfs none /mnt/h0 \
          && mount -t hugetlbfs -o uid=3,gid=4,mode=1770,nr_inodes=10,size=4M,min_size=2M none /mnt/h1 \
          && mount -t bpf bpf /mnt/bpf0 \
          && { mount -t bpf -o uid=5,gid=6,mode=750 bpf /mnt/bpf1 2>/dev/null || mount -t bpf -o mode=750 bpf /mnt/bpf1; }");
    g.sh("mkdir -p /mnt/ps /mnt/cg1 /mnt/mq /mnt/sec && mount -t pstore pstore /mnt/ps \
          && mount -t cgroup -o none,name=vmscope cgroup /mnt/cg1 && mount -t mqueue mq /mnt/mq \
          && mount -t securityfs sec /mnt/sec");
    let m = g.sh("grep ' /mnt/m' /proc/mounts");
    assert_eq!(m.matches("mpol=").count(), TMPFS_MPOL.len(), "{m}");
}

/// One `/proc/PID/mountinfo` line, split at ` - `: everything before it, type and
/// source, and the super block options.
fn mountinfo_line(l: &str) -> (String, String, String) {
    let (head, tail) = l.split_once(" - ").expect("separator");
    let t: Vec<&str> = tail.split(' ').collect();
    (head.to_owned(), format!("{} {}", t[0], t[1]), t[2].to_owned())
}

/// The generic part of super block options (`rw`/`ro`, `sync`, `dirsync`, `mand`).
fn generic(options: &str) -> String {
    options.split(',').filter(|o| matches!(*o, "rw" | "ro" | "sync" | "dirsync" | "mand")).collect::<Vec<_>>().join(",")
}

pub fn check_mounts(g: &mut Guest, k: &Kernel<FileMem>, pids: &[i32]) {
    let truth = per_pid(g, pids, "cat /proc/$p/mountinfo");
    for &pid in pids {
        let t = k.mounts(Some(pid)).expect("mounts supported").unwrap_or_else(|| panic!("pid {pid} missing"));
        assert!(t.anomalies.is_empty(), "pid {pid}: {:?}", t.anomalies);
        let [ns] = t.namespaces.as_slice() else { panic!("pid {pid}: {} namespaces", t.namespaces.len()) };
        assert!(ns.anomalies.is_empty(), "pid {pid}: {:?}", ns.anomalies);
        assert_eq!(ns.inum, ns_inum(g, pid, "mnt"), "pid {pid}: mount namespace");
        // Every line the guest has, in its order; the super block options whole
        // where the view says they are complete (and it must say so for the file
        // systems it rebuilds), else their generic part.
        let want: Vec<(String, String, String)> = truth[&pid].lines().map(mountinfo_line).collect();
        assert_eq!(ns.mounts.len(), want.len(), "pid {pid}: mount count");
        for (m, (head, ty, options)) in ns.mounts.iter().zip(&want) {
            let (h, t, o) = mountinfo_line(&m.line());
            assert_eq!((&h, &t), (head, ty), "pid {pid}: /proc/{pid}/mountinfo");
            let fs = ty.split(' ').next().unwrap();
            assert!(m.super_options_complete || !WHOLE_OPTIONS.contains(&fs), "pid {pid}: {fs} not complete: {h}");
            if m.super_options_complete {
                assert_eq!(&o, options, "pid {pid}: super block options of {h} ({fs})");
            } else {
                assert_eq!(generic(&o), generic(options), "pid {pid}: generic options of {h} ({fs})");
                assert!(NOT_REBUILT.contains(&fs), "pid {pid}: {fs} ({h}) reported incomplete");
            }
        }
        if pid == 1 {
            let incomplete: Vec<&str> =
                ns.mounts.iter().filter(|m| !m.super_options_complete).map(|m| m.fs_type.as_str()).collect();
            assert_eq!(incomplete, NOT_REBUILT, "pid 1: the mounts said to lack their own options");
        }
    }
    let all = k.mounts(None).expect("mounts").expect("every namespace");
    let inums: BTreeSet<u32> = all.namespaces.iter().map(|n| n.inum).collect();
    let guest: BTreeSet<u32> = pids.iter().map(|&p| ns_inum(g, p, "mnt")).collect();
    assert!(guest.is_subset(&inums), "namespaces {inums:?} lack some of {guest:?}");
}

pub fn check_ns(g: &mut Guest, k: &Kernel<FileMem>, pids: &[i32], hold: i32) {
    let truth = per_pid(
        g,
        pids,
        "for f in /proc/$p/ns/*; do echo \"${f##*/} $(readlink $f)\"; done; grep '^0::' /proc/$p/cgroup",
    );
    let all = k.namespaces(None).expect("ns supported").expect("every process");
    for &pid in pids {
        let n = k.namespaces(Some(pid)).expect("ns").expect("the process").processes.remove(0);
        assert!(n.anomalies.is_empty(), "pid {pid}: {:?}", n.anomalies);
        let mut want = Vec::new();
        let mut cgroup = None;
        for l in truth[&pid].lines() {
            if let Some(c) = l.strip_prefix("0::") {
                cgroup = Some(c.to_owned());
                continue;
            }
            let (name, link) = l.split_once(' ').expect("NAME LINK");
            let inum = link.split_once(":[").and_then(|(_, r)| r.strip_suffix(']')).expect("TYPE:[INODE]");
            want.push((name.to_owned(), inum.parse::<u32>().expect("inode")));
        }
        want.sort();
        assert_eq!(n.ns, want, "pid {pid}: /proc/{pid}/ns");
        assert_eq!(n.cgroup, cgroup, "pid {pid}: /proc/{pid}/cgroup");
        let walked = all.processes.iter().find(|p| p.pid == pid).expect("in the walk of all");
        assert_eq!(walked, &n);
    }
    let hold_ns = k.namespaces(Some(hold)).expect("ns").expect("hold").processes.remove(0);
    assert_eq!(hold_ns.cgroup.as_deref(), Some(CGROUP));
}

pub fn check_creds(g: &mut Guest, k: &Kernel<FileMem>, pids: &[i32]) {
    let truth = per_pid(g, pids, "grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)):' /proc/$p/status");
    for &pid in pids {
        let c = k.credentials(Some(pid)).expect("creds supported").expect("the process").processes.remove(0);
        assert!(c.anomalies.is_empty(), "pid {pid}: {:?}", c.anomalies);
        assert_eq!(c.status_lines(), truth[&pid], "pid {pid}: /proc/{pid}/status");
    }
}

/// Writes `v` at kernel address `va` of the paused guest, through QEMU's RAM file.
fn poke(g: &Guest, k: &Kernel<FileMem>, va: vmscope_mem::Gva, v: u64) {
    use std::os::unix::fs::FileExt;
    let (gpa, _) = k.kernel_mem().translate(va).expect("mapped");
    let loc = g.ram_location();
    let (off, _) = loc.map.lookup(gpa).expect("backed");
    let b = loc.blocks.iter().find(|b| b.offset <= off && off < b.offset + b.size).expect("in a block");
    let vmscope_hv::Backing::File { path, offset, .. } = &b.backing else { panic!("not a file: {b:?}") };
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open the RAM file for writing");
    f.write_all_at(&v.to_le_bytes(), offset + off - b.offset).expect("write guest RAM");
}

/// A socket unlinked from its hash chain, as a rootkit hides one, is still found
/// through the descriptor that holds it, and reported: on the paused guest, the
/// link to the workload's UDP socket on port 7703 is made to skip it, the view read,
/// and the link put back before the guest runs again.
pub fn check_hidden_socket(g: &mut Guest, k: &Kernel<FileMem>, hold: i32) {
    use vmscope_hv::Hypervisor;
    let t = k.sockets().expect("sockets");
    let s = t.sockets.iter().find(|s| s.proto == Proto::Udp && s.local_port == 7703).expect("UDP 7703").clone();
    let node = s.sock.checked_add(k.offsets().net.as_ref().expect("net offsets").sock.node).expect("node");
    let km = k.kernel_mem();
    let next = km.read_u64(node).expect("node.next");
    let pprev = km.read_ptr(node.checked_add(8).expect("pprev")).expect("node.pprev");
    assert_eq!(km.read_u64(pprev).expect("*pprev"), node.raw(), "the chain leads to the socket");
    g.vm.hv().pause().expect("pause");
    poke(g, k, pprev, next);
    k.invalidate();
    let hidden = k.sockets().expect("sockets");
    poke(g, k, pprev, node.raw());
    g.vm.hv().resume().expect("resume");
    k.invalidate();
    let h = hidden.sockets.iter().find(|x| x.sock == s.sock).expect("found through the descriptor");
    assert!(!h.listed && h.owners.iter().any(|o| o.pid == hold && o.fd == 16), "{h:?}");
    assert!(
        matches!(hidden.anomalies.as_slice(), [vmscope_linux::Anomaly::Unlisted { addr, .. }] if *addr == s.sock),
        "{:?}",
        hidden.anomalies
    );
    let again = k.sockets().expect("sockets");
    assert!(again.anomalies.is_empty() && again.sockets.iter().any(|x| x.sock == s.sock && x.listed));
}

/// A BPF file system with token delegation (6.9+): the view does not rebuild its
/// `delegate_*` options, so the mount must say it is incomplete and the namespace
/// must carry an anomaly naming them. A kernel without delegation ignores the option
/// (6.1): the line is then whole and complete.
pub fn check_bpf_delegation(g: &mut Guest, k: &Kernel<FileMem>) {
    let guest = g.sh("mkdir -p /mnt/bpfd && mount -t bpf -o delegate_cmds=any bpf /mnt/bpfd \
                      && grep ' /mnt/bpfd ' /proc/1/mountinfo");
    let t = k.mounts(Some(1)).expect("mounts").expect("pid 1");
    let ns = &t.namespaces[0];
    let m = ns.mounts.iter().find(|m| m.mount_point == "/mnt/bpfd").expect("the bpf mount in the view");
    let (_, _, options) = mountinfo_line(guest.trim());
    if options.contains("delegate_cmds") {
        assert!(!m.super_options_complete, "delegation shown as complete: {}", m.line());
        assert_eq!(generic(&m.super_options), generic(&options));
        let noted = ns.anomalies.iter().any(|a| format!("{a:?}").contains("delegate_*"));
        assert!(noted, "no anomaly for the delegation options: {:?}", ns.anomalies);
    } else {
        assert!(m.super_options_complete && m.super_options == options, "{} vs {guest}", m.line());
    }
    g.sh("umount /mnt/bpfd");
}
