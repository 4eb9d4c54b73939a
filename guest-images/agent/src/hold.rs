//! `vmscope-workload hold DIR`: a process whose open files, memory areas and
//! working directory the tests know, for the deeper views to find.
//!
//! In DIR (created if missing) it makes `data.bin` (three pages), `append.log` and
//! `gone.txt`, changes into DIR, and holds, by descriptor:
//!
//! | fd | what | flags |
//! | --- | --- | --- |
//! | 3 | `data.bin`, position 1234 | `O_RDONLY` |
//! | 4 | `append.log` after writing 6 bytes | `O_WRONLY \| O_APPEND` |
//! | 5 | `gone.txt`, then unlinked | `O_RDWR` |
//! | 6, 7 | a pipe | `O_CLOEXEC` |
//! | 8 | an eventfd | `O_RDWR \| O_NONBLOCK` |
//! | 9 | an epoll instance | `O_RDWR` |
//! | 10 | a unix socket listening on `DIR/sock` | `O_RDWR` |
//! | 11 | a memfd called `vmscope-memfd`, 8 KiB | `O_RDWR` |
//! | 12 | `/dev/null` | `O_WRONLY` |
//! | 13 | DIR itself | `O_RDONLY \| O_DIRECTORY` |
//! | 14 | TCP listening on 127.0.0.1:7701 | `O_RDWR` |
//! | 15 | TCP listening on \[::1\]:7702 (IPv6 only) | `O_RDWR` |
//! | 16 | UDP bound to 127.0.0.1:7703 | `O_RDWR` |
//! | 17 | UDP bound to \[::1\]:7704 | `O_RDWR` |
//! | 18, 19 | a TCP connection to 7701, both ends (ESTABLISHED) | `O_RDWR` |
//! | 100 | a duplicate of 3 (the descriptor table grows past 64) | |
//!
//! and maps the memfd shared, pages 1–2 of `data.bin` privately and three pages of
//! anonymous memory. It forks a child that closes those descriptors and moves into
//! mount, network and UTS namespaces of its own (where the guest allows it:
//! `unshare`), mounts a tmpfs `vmscope-ns` on /tmp there, names its host
//! `vmscope-ns` and listens on TCP port 7711 of its own network. Then it writes
//! `vmscope-hold: up in DIR` to `/dev/kmsg` (level 5), prints `hold: up pid=PID
//! ns=CHILD` on stdout (`ns=0` when the child could not unshare) and waits until
//! it is killed.

use std::ffi::CString;

use crate::workload::{Error, usage};

const PAGE: usize = 4096;

fn check(what: &str, r: i64) -> Result<i64, Error> {
    if r < 0 {
        return Err(Error::Failed(format!("hold: {what}: {}", std::io::Error::last_os_error())));
    }
    Ok(r)
}

fn path(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Failed(format!("hold: {s:?} has a NUL")))
}

/// `open(path, flags, 0644)`, which must give descriptor `fd`.
fn open_as(fd: i32, p: &str, flags: i32) -> Result<(), Error> {
    let c = path(p)?;
    // SAFETY: a NUL-terminated path and integer flags.
    let got = check(&format!("open {p}"), i64::from(unsafe { libc::open(c.as_ptr(), flags, 0o644) }))?;
    if got != i64::from(fd) {
        return Err(Error::Failed(format!("hold: open {p} gave fd {got}, not {fd}: are fds 0-2 open?")));
    }
    Ok(())
}

/// `hold DIR` (the arguments after `hold`).
pub fn run(args: &[String]) -> Result<(), Error> {
    let [dir] = args else { return Err(usage()) };
    std::fs::create_dir_all(dir).map_err(|e| Error::Failed(format!("hold: mkdir {dir}: {e}")))?;
    let data = format!("{dir}/data.bin");
    std::fs::write(&data, vec![0x5a; 3 * PAGE]).map_err(|e| Error::Failed(format!("hold: {data}: {e}")))?;
    std::env::set_current_dir(dir).map_err(|e| Error::Failed(format!("hold: cd {dir}: {e}")))?;

    open_as(3, &data, libc::O_RDONLY)?;
    // SAFETY: lseek on an fd we opened.
    check("lseek", unsafe { libc::lseek(3, 1234, libc::SEEK_SET) })?;
    open_as(4, &format!("{dir}/append.log"), libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND)?;
    // SAFETY: writing 6 bytes from a static buffer.
    check("write", unsafe { libc::write(4, b"hello\n".as_ptr().cast(), 6) } as i64)?;
    let gone = format!("{dir}/gone.txt");
    open_as(5, &gone, libc::O_RDWR | libc::O_CREAT)?;
    let c = path(&gone)?;
    // SAFETY: a NUL-terminated path.
    check("unlink", i64::from(unsafe { libc::unlink(c.as_ptr()) }))?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a two-element array.
    check("pipe2", i64::from(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }))?;
    // SAFETY: integer arguments only.
    check("eventfd", i64::from(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) }))?;
    // SAFETY: integer arguments only.
    check("epoll_create1", i64::from(unsafe { libc::epoll_create1(0) }))?;
    listen_unix(&format!("{dir}/sock"))?;
    let name = path("vmscope-memfd")?;
    // SAFETY: a NUL-terminated name and integer flags.
    let memfd = check("memfd_create", i64::from(unsafe { libc::memfd_create(name.as_ptr(), 0) }))? as i32;
    // SAFETY: integer arguments only.
    check("ftruncate", i64::from(unsafe { libc::ftruncate(memfd, 2 * PAGE as i64) }))?;
    open_as(12, "/dev/null", libc::O_WRONLY)?;
    open_as(13, dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
    inet_sockets()?;
    // SAFETY: integer arguments only.
    check("dup2", i64::from(unsafe { libc::dup2(3, 100) }))?;

    // SAFETY: new mappings at addresses the kernel picks; nothing else refers to them.
    unsafe {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        for (len, prot, flags, fd, off) in [
            (2 * PAGE, rw, libc::MAP_SHARED, memfd, 0),
            (2 * PAGE, libc::PROT_READ, libc::MAP_PRIVATE, 3, PAGE as i64),
            (3 * PAGE, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
        ] {
            if libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) == libc::MAP_FAILED {
                return Err(Error::Failed(format!("hold: mmap: {}", std::io::Error::last_os_error())));
            }
        }
    }
    let marker = format!("<5>vmscope-hold: up in {dir}\n");
    std::fs::write("/dev/kmsg", marker).map_err(|e| Error::Failed(format!("hold: /dev/kmsg: {e}")))?;
    let child = namespaced_child()?;
    // SAFETY: getpid has no arguments.
    println!("hold: up pid={} ns={child}", unsafe { libc::getpid() });
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

/// TCP and UDP ports on IPv4 and IPv6 loopback, and one TCP
/// connection: descriptors 14 to 19.
fn inet_sockets() -> Result<(), Error> {
    let v4 = |port: u16| {
        // SAFETY: sockaddr_in is plain data; all zeroes is a valid value.
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_port = port.to_be();
        a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        a
    };
    let v6 = |port: u16| {
        // SAFETY: sockaddr_in6 is plain data; all zeroes is a valid value.
        let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        a.sin6_port = port.to_be();
        a.sin6_addr.s6_addr = std::net::Ipv6Addr::LOCALHOST.octets();
        a
    };
    let (a1, a2, a3, a4) = (v4(7701), v6(7702), v4(7703), v6(7704));
    bound(libc::SOCK_STREAM, &a1, true)?;
    bound(libc::SOCK_STREAM, &a2, true)?;
    bound(libc::SOCK_DGRAM, &a3, false)?;
    bound(libc::SOCK_DGRAM, &a4, false)?;
    // SAFETY: integer arguments only.
    let c = check("socket", i64::from(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }))? as i32;
    let len = std::mem::size_of_val(&a1) as libc::socklen_t;
    // SAFETY: a valid sockaddr_in of the length passed.
    check("connect", i64::from(unsafe { libc::connect(c, (&raw const a1).cast(), len) }))?;
    // SAFETY: no address wanted back.
    check("accept", i64::from(unsafe { libc::accept(14, std::ptr::null_mut(), std::ptr::null_mut()) }))?;
    Ok(())
}

/// A socket of `kind` bound to `addr` (a `sockaddr_in` or `sockaddr_in6`), and
/// listening when `listen`; an IPv6 one only for IPv6.
fn bound<A>(kind: i32, addr: &A, listen: bool) -> Result<i32, Error> {
    let len = std::mem::size_of::<A>() as libc::socklen_t;
    let family = if len as usize == std::mem::size_of::<libc::sockaddr_in6>() { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: integer arguments only.
    let s = check("socket", i64::from(unsafe { libc::socket(family, kind, 0) }))? as i32;
    let one: libc::c_int = 1;
    let int = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let mut options = vec![("SO_REUSEADDR", libc::SOL_SOCKET, libc::SO_REUSEADDR)];
    if family == libc::AF_INET6 {
        options.push(("IPV6_V6ONLY", libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
    }
    for (name, level, option) in options {
        // SAFETY: an int option of the length passed.
        let r = unsafe { libc::setsockopt(s, level, option, (&raw const one).cast(), int) };
        check(name, i64::from(r))?;
    }
    // SAFETY: a valid socket address of the length passed.
    check("bind", i64::from(unsafe { libc::bind(s, (addr as *const A).cast(), len) }))?;
    if listen {
        // SAFETY: integer arguments only.
        check("listen", i64::from(unsafe { libc::listen(s, 4) }))?;
    }
    Ok(s)
}

/// Forks the child in namespaces of its own; its pid once it is ready, or 0 where
/// the guest does not allow `unshare`.
fn namespaced_child() -> Result<i32, Error> {
    let mut ready = [0; 2];
    // SAFETY: pipe2 writes two fds into a two-element array.
    check("pipe2", i64::from(unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) }))?;
    // SAFETY: the child only makes system calls and exits or pauses.
    let pid = check("fork", i64::from(unsafe { libc::fork() }))? as i32;
    if pid == 0 {
        let ok = in_namespaces(ready);
        // SAFETY: one byte from a local, to the pipe's write end.
        unsafe { libc::write(ready[1], [u8::from(ok)].as_ptr().cast(), 1) };
        if !ok {
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(0) };
        }
        loop {
            // SAFETY: pause has no arguments.
            unsafe { libc::pause() };
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into a local.
    let n = unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) };
    // SAFETY: closing the pipe's two ends, ours.
    unsafe {
        libc::close(ready[0]);
        libc::close(ready[1]);
    }
    Ok(if n == 1 && b[0] == 1 { pid } else { 0 })
}

/// In the child: drop the parent's descriptors, enter new mount, network and UTS
/// namespaces, mount a tmpfs, name the host, listen on port 7711.
fn in_namespaces(keep: [i32; 2]) -> bool {
    for fd in (3..=100).filter(|fd| !keep.contains(fd)) {
        // SAFETY: closing descriptors this process may hold, not the pipe's.
        unsafe { libc::close(fd) };
    }
    let (root, tmp, fs, name) = (c"/", c"/tmp", c"tmpfs", c"vmscope-ns");
    // SAFETY: integer flags; NUL-terminated strings; a host name of the length passed.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWUTS) != 0 {
            eprintln!("hold: unshare: {}", std::io::Error::last_os_error());
            return false;
        }
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        libc::mount(name.as_ptr(), tmp.as_ptr(), fs.as_ptr(), 0, std::ptr::null());
        libc::sethostname(name.as_ptr(), name.to_bytes().len());
    }
    // SAFETY: sockaddr_in is plain data; all zeroes (INADDR_ANY) is a valid value.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = 7711u16.to_be();
    bound(libc::SOCK_STREAM, &a, true).is_ok()
}

/// A unix stream socket listening on `at`.
fn listen_unix(at: &str) -> Result<(), Error> {
    let _ = std::fs::remove_file(at);
    // SAFETY: integer arguments only.
    let s = check("socket", i64::from(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) }))? as i32;
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if at.len() >= addr.sun_path.len() {
        return Err(Error::Failed(format!("hold: {at} is too long for a socket path")));
    }
    for (d, b) in addr.sun_path.iter_mut().zip(at.bytes()) {
        *d = b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: a valid sockaddr_un of the length passed.
    check("bind", i64::from(unsafe { libc::bind(s, (&raw const addr).cast(), len) }))?;
    // SAFETY: integer arguments only.
    check("listen", i64::from(unsafe { libc::listen(s, 4) }))?;
    Ok(())
}

/// `vmscope-workload kmsg`: prints every record `/dev/kmsg` still holds, in its
/// format (`PRI,SEQ,USEC,FLAGS[,caller=...];TEXT`, then ` KEY=VALUE` lines), and
/// returns at the end of the log instead of waiting for more.
pub fn kmsg() -> Result<(), Error> {
    use std::io::Write as _;
    let c = path("/dev/kmsg")?;
    // SAFETY: a NUL-terminated path and integer flags.
    let fd = check("open /dev/kmsg", i64::from(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) }))?
        as i32;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        // SAFETY: reading into a buffer of the length passed.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => break,
                // A record overwritten while we read: go on from the next one.
                Some(libc::EPIPE) => continue,
                _ => return Err(Error::Failed(format!("kmsg: read: {}", std::io::Error::last_os_error()))),
            }
        }
        if n == 0 {
            break;
        }
        let _ = out.write_all(&buf[..n as usize]);
    }
    Ok(())
}
