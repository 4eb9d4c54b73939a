//! The guest's own /proc text, parsed into the types of the views vmscope builds
//! from memory, so that the agent technique prints the same tables and JSON. What
//! /proc does not show (kernel addresses it hides, `vm_flags`) is 0. Each parser
//! takes one line and returns `None` for one it cannot read; the caller counts
//! those as anomalies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vmscope_linux::{Credentials, FileKind, MountInfo, Proto, Socket, Thread, UnixInfo, Vma, VmaKind};
use vmscope_mem::Gva;

/// `__SO_ACCEPTCON`: the `Flags` of a listening unix socket in `/proc/net/unix`.
const SO_ACCEPTCON: u32 = 1 << 16;
/// `SS_CONNECTING` and `SS_CONNECTED`, the `St` of a unix socket with a peer.
const SS_CONNECTING: u8 = 2;
const SS_CONNECTED: u8 = 3;
/// The kernel's `TCP_ESTABLISHED`, `TCP_CLOSE` and `TCP_LISTEN`, which unix sockets
/// use as their `sk_state`.
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;

/// The next field of `rest` separated by spaces, and `rest` after it.
fn field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let t = rest.trim_start_matches(' ');
    let end = t.find(' ').unwrap_or(t.len());
    let (f, r) = t.split_at(end);
    *rest = r;
    (!f.is_empty()).then_some(f)
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// `MAJOR:MINOR` in base `radix`.
fn device(s: &str, radix: u32) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((u32::from_str_radix(a, radix).ok()?, u32::from_str_radix(b, radix).ok()?))
}

/// Undoes the kernel's `\ooo` escapes (mountinfo's space, tab, newline and
/// backslash; maps' newline).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'))) {
            Some(v) if v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/PID/maps`.
pub fn vma(line: &str) -> Option<Vma> {
    let mut rest = line;
    let (start, end) = field(&mut rest)?.split_once('-')?;
    let perms = field(&mut rest)?;
    let offset = hex(field(&mut rest)?)?;
    let (major, minor) = device(field(&mut rest)?, 16)?;
    let inode = field(&mut rest)?.parse().ok()?;
    let name = unescape(rest.trim_start_matches(' '));
    let kind = match name.as_str() {
        "" => VmaKind::Anonymous,
        "[heap]" => VmaKind::Heap,
        "[stack]" => VmaKind::Stack,
        n if n.starts_with('[') => VmaKind::Special,
        _ => VmaKind::File,
    };
    Some(Vma {
        start: Gva::new(hex(start)?),
        end: Gva::new(hex(end)?),
        flags: 0,
        perms: perms.to_owned(),
        offset,
        major,
        minor,
        inode,
        name,
        kind,
        vma: Gva::new(0),
    })
}

/// `/proc/PID/environ`: its NUL-terminated strings.
pub fn environ(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// One line of `/proc/PID/mountinfo`.
pub fn mount(line: &str) -> Option<MountInfo> {
    let f: Vec<&str> = line.split(' ').collect();
    let dash = f.iter().position(|&x| x == "-")?;
    if dash < 6 || f.len() != dash + 4 {
        return None;
    }
    let (major, minor) = device(f[2], 10)?;
    Some(MountInfo {
        id: f[0].parse().ok()?,
        parent: f[1].parse().ok()?,
        major,
        minor,
        root: unescape(f[3]),
        mount_point: unescape(f[4]),
        options: f[5].to_owned(),
        optional: f[6..dash].iter().map(|s| (*s).to_owned()).collect(),
        fs_type: unescape(f[dash + 1]),
        source: unescape(f[dash + 2]),
        super_options: f[dash + 3].to_owned(),
        super_options_complete: true,
        mount: Gva::new(0),
    })
}

/// The ids, groups and capabilities of `/proc/PID/status`.
pub fn credentials(pid: i32, comm: &str, status: &str) -> Option<Credentials> {
    let line = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'));
    let ids = |name: &str| -> Option<[u32; 4]> {
        let v: Vec<u32> = line(name)?.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
        v.try_into().ok()
    };
    let cap = |name: &str| hex(line(name)?.trim());
    Some(Credentials {
        pid,
        comm: comm.to_owned(),
        uid: ids("Uid")?,
        gid: ids("Gid")?,
        groups: line("Groups")?.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?,
        cap_inheritable: cap("CapInh")?,
        cap_permitted: cap("CapPrm")?,
        cap_effective: cap("CapEff")?,
        cap_bounding: cap("CapBnd")?,
        cap_ambient: cap("CapAmb").unwrap_or(0),
        cred: Gva::new(0),
        anomalies: Vec::new(),
    })
}

/// The inode number in a namespace link (`net:[4026531840]`) or a descriptor's
/// (`socket:[123]`), if it has the prefix `kind`.
pub fn link_inode(link: &str, kind: &str) -> Option<u64> {
    link.strip_prefix(kind)?.strip_prefix(":[")?.strip_suffix(']')?.parse().ok()
}

/// The `0::` line of `/proc/PID/cgroup`: the cgroup on the unified hierarchy.
pub fn unified_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
}

/// What a descriptor refers to, from `stat` of it and its link.
pub fn file_kind(mode: Option<u32>, link: &str) -> FileKind {
    match mode.and_then(FileKind::from_mode) {
        Some(k) => k,
        None if link.starts_with("anon_inode:") => FileKind::AnonInode,
        None => FileKind::Unknown,
    }
}

/// `USER_HZ`: the clock ticks `/proc/PID/stat` counts CPU time in.
const NS_PER_USER_TICK: u64 = 10_000_000;

/// A thread from its `/proc/PID/task/TID/stat` line: the name in parentheses (which
/// may hold spaces and parentheses itself: it ends at the last `)`), the state,
/// `utime` and `stime` (fields 14 and 15, in ticks of `USER_HZ`).
pub fn thread(tid: i32, stat: &str) -> Option<Thread> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let state = rest.first()?.chars().next()?;
    // `rest` starts at field 3 (state): utime is field 14.
    let ticks = |i: usize| rest.get(i - 3)?.parse::<u64>().ok();
    Some(Thread {
        tid,
        comm,
        state,
        utime_ns: ticks(14)?.saturating_mul(NS_PER_USER_TICK),
        stime_ns: ticks(15)?.saturating_mul(NS_PER_USER_TICK),
        task: Gva::new(0),
    })
}

/// `pos`, `flags` (octal), `mnt_id` and `ino` of `/proc/PID/fdinfo/FD`.
pub struct FdInfo {
    pub pos: i64,
    pub flags: u32,
    pub mnt_id: Option<i32>,
    pub ino: Option<u64>,
}

pub fn fdinfo(text: &str) -> Option<FdInfo> {
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim);
    Some(FdInfo {
        pos: value("pos")?.parse().ok()?,
        flags: u32::from_str_radix(value("flags")?, 8).ok()?,
        mnt_id: value("mnt_id").and_then(|v| v.parse().ok()),
        ino: value("ino").and_then(|v| v.parse().ok()),
    })
}

/// An address as `/proc/net/{tcp,udp}{,6}` prints it: the 32-bit words of the
/// network-order address as the (little-endian) machine loads them, in hex.
fn inet_addr(s: &str) -> Option<IpAddr> {
    let word = |i: usize| Some(u32::from_str_radix(s.get(i * 8..i * 8 + 8)?, 16).ok()?.to_le_bytes());
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    Some((inet_addr(a)?, u16::from_str_radix(p, 16).ok()?))
}

/// One line of `/proc/net/{tcp,tcp6,udp,udp6}` of network namespace `net_ns`.
pub fn inet_socket(proto: Proto, net_ns: u32, line: &str) -> Option<Socket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (local, local_port) = endpoint(f.get(1)?)?;
    let (remote, remote_port) = endpoint(f.get(2)?)?;
    Some(Socket {
        proto,
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        sk_type: if matches!(proto, Proto::Tcp | Proto::Tcp6) { 1 } else { 2 },
        local,
        local_port,
        remote,
        remote_port,
        uid: f.get(7)?.parse().ok()?,
        inode: f.get(9)?.parse().ok()?,
        net_ns,
        unix: None,
        owners: Vec::new(),
        listed: true,
        sock: Gva::new(f.get(11).and_then(|p| hex(p)).unwrap_or(0)),
    })
}

/// One line of `/proc/net/unix` of network namespace `net_ns`.
pub fn unix_socket(net_ns: u32, line: &str) -> Option<Socket> {
    let mut rest = line;
    // `%pK`: the address, zeros, or `(____ptrval____)` before the kernel can hash it.
    let sock = hex(field(&mut rest)?.strip_suffix(':')?).unwrap_or(0);
    let _refs = field(&mut rest)?;
    let _protocol = field(&mut rest)?;
    let flags = u32::try_from(hex(field(&mut rest)?)?).ok()?;
    let sk_type = u16::try_from(hex(field(&mut rest)?)?).ok()?;
    let sock_state = u8::try_from(hex(field(&mut rest)?)?).ok()?;
    let inode = field(&mut rest)?.parse().ok()?;
    let path = rest.strip_prefix(' ').filter(|p| !p.is_empty()).map(str::to_owned);
    let state = match sock_state {
        _ if flags & SO_ACCEPTCON != 0 => TCP_LISTEN,
        SS_CONNECTING | SS_CONNECTED => TCP_ESTABLISHED,
        _ => TCP_CLOSE,
    };
    let none = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    Some(Socket {
        proto: Proto::Unix,
        state,
        sk_type,
        local: none,
        local_port: 0,
        remote: none,
        remote_port: 0,
        inode,
        uid: 0,
        net_ns,
        unix: Some(UnixInfo { path, flags, sock_state, peer_inode: None }),
        owners: Vec::new(),
        listed: true,
        sock: Gva::new(sock),
    })
}

/// One line of `/proc/kallsyms`: address, type, name and module.
pub fn symbol(line: &str) -> Option<(u64, char, &str, Option<&str>)> {
    let (line, module) = match line.split_once('\t') {
        Some((l, m)) => (l, Some(m.strip_prefix('[')?.strip_suffix(']')?)),
        None => (line, None),
    };
    let mut rest = line;
    let addr = hex(field(&mut rest)?)?;
    let mut kind = field(&mut rest)?.chars();
    let (Some(kind), None) = (kind.next(), kind.next()) else { return None };
    let name = field(&mut rest)?;
    rest.is_empty().then_some((addr, kind, name, module))
}

/// One line of `dmesg -r`: `<PRIORITY>[SECONDS.MICROS] TEXT`, the time stamp only
/// when the kernel prints them.
pub fn log_line(line: &str) -> Option<(u32, Option<u64>, &str)> {
    let (prio, rest) = line.strip_prefix('<')?.split_once('>')?;
    let prio = prio.parse().ok()?;
    let Some(stamped) = rest.strip_prefix('[') else { return Some((prio, None, rest)) };
    let (time, text) = stamped.split_once("] ")?;
    let (s, us) = time.trim_start().split_once('.')?;
    let usec = s.parse::<u64>().ok()?.checked_mul(1_000_000)?.checked_add(us.parse().ok()?)?;
    Some((prio, Some(usec), text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_from_its_stat_line() {
        let t = thread(812, "812 (a (b) c) S 1 812 1 0 -1 4194560 90 0 0 0 7 3 0 0 20 0 3 0 250 0 0").unwrap();
        assert_eq!(
            (t.tid, t.comm.as_str(), t.state, t.utime_ns, t.stime_ns),
            (812, "a (b) c", 'S', 70_000_000, 30_000_000)
        );
        assert_eq!(thread(1, "1 (x) S 0"), None);
    }

    use super::*;
    use proptest::prelude::*;
    use vmscope_linux::format_maps;

    const MAPS: &str = "\
55d0c3a00000-55d0c3a0a000 r--p 00000000 00:02 1045                       /bin/busybox
55d0c3c0b000-55d0c3c2c000 rw-p 00000000 00:00 0                          [heap]
7f2d4c000000-7f2d4c021000 rw-p 00000000 00:00 0 
7ffd8f9e1000-7ffd8fa02000 rw-p 00000000 00:00 0                          [stack]
7ffd8fbd4000-7ffd8fbd6000 r-xp 00000000 00:00 0                          [vdso]
7ffd8fbd6000-7ffd8fbd7000 r--p 00001000 fe:01 12                         /tmp/a\\012b (deleted)
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn maps_round_trip_byte_for_byte() {
        let vmas: Vec<Vma> = MAPS.lines().map(|l| vma(l).unwrap()).collect();
        assert_eq!(format_maps(&vmas), MAPS);
        assert_eq!(vmas[1].kind, VmaKind::Heap);
        assert_eq!(vmas[2].kind, VmaKind::Anonymous);
        assert_eq!(vmas[4].kind, VmaKind::Special);
        assert_eq!((vmas[5].major, vmas[5].minor, vmas[5].offset), (0xfe, 1, 0x1000));
        assert_eq!(vmas[5].name, "/tmp/a\nb (deleted)");
    }

    #[test]
    fn mountinfo_round_trip() {
        let text = "\
22 1 0:21 / / rw,relatime shared:1 - rootfs rootfs rw,size=233416k,nr_inodes=58354
25 22 0:5 / /dev rw,nosuid,relatime - devtmpfs dev rw,size=233416k,mode=755
31 22 0:27 /a\\040b /mnt/x\\134y rw master:3 propagate_from:1 - tmpfs none rw";
        for l in text.lines() {
            let m = mount(l).unwrap();
            assert_eq!(m.line(), l);
        }
        let m = mount(text.lines().nth(2).unwrap()).unwrap();
        assert_eq!((m.root.as_str(), m.mount_point.as_str()), ("/a b", "/mnt/x\\y"));
        assert_eq!(m.optional, ["master:3", "propagate_from:1"]);
        assert!(mount("22 1 0:21 / / rw - rootfs").is_none());
    }

    #[test]
    fn status_credentials() {
        let status = "Name:\tsleep\nUid:\t1001\t1001\t1001\t1001\nGid:\t100\t100\t100\t100\nGroups:\t10 100 \n\
                      CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
                      CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let c = credentials(7, "sleep", status).unwrap();
        assert_eq!((c.uid, c.gid, c.groups.as_slice()), ([1001; 4], [100; 4], &[10, 100][..]));
        assert_eq!(c.cap_bounding, 0x1ff_ffff_ffff);
        assert_eq!(c.status_lines(), status.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>());
        assert!(credentials(7, "x", "Uid:\t1\t2\n").is_none());
    }

    #[test]
    fn inet_lines() {
        let tcp = "   0: 0100007F:1E15 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 \
                   ffff888003a8c000 100 0 0 10 0";
        let s = inet_socket(Proto::Tcp, 9, tcp).unwrap();
        assert_eq!(
            (s.local, s.local_port, s.state, s.inode, s.net_ns),
            ("127.0.0.1".parse().unwrap(), 7701, 10, 4242, 9)
        );
        assert_eq!(s.sock, Gva::new(0xffff_8880_03a8_c000));
        let tcp6 = "   1: 00000000000000000000000001000000:1E16 00000000000000000000000000000000:0000 0A 00000000:00000000 \
                    00:00000000 00000000  1001        0 77 1 0000000000000000 100 0 0 10 0";
        let s = inet_socket(Proto::Tcp6, 9, tcp6).unwrap();
        assert_eq!((s.local, s.local_port, s.uid, s.sock), ("::1".parse().unwrap(), 7702, 1001, Gva::new(0)));
        assert!(inet_socket(Proto::Udp, 9, "  sl  local_address rem_address   st tx_queue").is_none());
    }

    #[test]
    fn unix_lines() {
        let listening = "0000000000000000: 00000002 00000000 00010000 0001 01 1234 /run/agent.sock";
        let s = unix_socket(3, listening).unwrap();
        assert_eq!((s.state, s.sk_type, s.inode), (TCP_LISTEN, 1, 1234));
        assert_eq!(s.unix.as_ref().unwrap().path.as_deref(), Some("/run/agent.sock"));
        let connected = "ffff888004b1e400: 00000003 00000000 00000000 0001 03 99";
        let s = unix_socket(3, connected).unwrap();
        assert_eq!((s.state, s.unix.unwrap().path), (TCP_ESTABLISHED, None));
        let early = "(____ptrval____): 00000002 00000000 00010000 0001 01 11349 /tmp/hold/sock";
        assert_eq!(unix_socket(3, early).unwrap().sock, Gva::new(0));
        let dgram = "0000000000000000: 00000002 00000000 00000000 0002 01 5 @abstract name";
        assert_eq!(unix_socket(3, dgram).unwrap().unix.unwrap().path.as_deref(), Some("@abstract name"));
    }

    #[test]
    fn small_parsers() {
        assert_eq!(link_inode("net:[4026531840]", "net"), Some(4_026_531_840));
        assert_eq!(link_inode("socket:[12]", "net"), None);
        assert_eq!(unified_cgroup("0::/vmscope/hold\n"), Some("/vmscope/hold".into()));
        assert_eq!(environ(b"A=1\0B=\0"), ["A=1", "B="]);
        assert!(environ(b"").is_empty());
        let f = fdinfo("pos:\t12\nflags:\t02100002\nmnt_id:\t15\nino:\t7\n").unwrap();
        assert_eq!((f.pos, f.flags, f.mnt_id, f.ino), (12, 0o2100002, Some(15), Some(7)));
        assert_eq!(file_kind(Some(0o140_777), "socket:[1]"), FileKind::Socket);
        assert_eq!(file_kind(Some(0o600), "anon_inode:[eventfd]"), FileKind::AnonInode);
        assert_eq!(
            symbol("ffffffffc0201000 t dummy_setup\t[dummy]"),
            Some((0xffff_ffff_c020_1000, 't', "dummy_setup", Some("dummy")))
        );
        assert_eq!(symbol("ffffffff81000000 T _text"), Some((0xffff_ffff_8100_0000, 'T', "_text", None)));
        assert_eq!(log_line("<6>[    1.500020] hello world"), Some((6, Some(1_500_020), "hello world")));
        assert_eq!(log_line("<14>no time"), Some((14, None, "no time")));
        assert_eq!(unescape("a\\040b\\1"), "a b\\1");
    }

    proptest! {
        /// Whatever the guest writes, the parsers return without panicking.
        #[test]
        fn parsers_never_panic(line in ".{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = vma(&line);
            let _ = mount(&line);
            let _ = credentials(1, "x", &line);
            let _ = fdinfo(&line);
            let _ = inet_socket(Proto::Tcp6, 1, &line);
            let _ = unix_socket(1, &line);
            let _ = symbol(&line);
            let _ = log_line(&line);
            let _ = unescape(&line);
            let _ = environ(&bytes);
        }
    }
}
