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
//! | 100 | a duplicate of 3 (the descriptor table grows past 64) | |
//!
//! and maps the memfd shared, pages 1–2 of `data.bin` privately and three pages of
//! anonymous memory. Then it writes `vmscope-hold: up in DIR` to `/dev/kmsg` (level
//! 5), prints `hold: up pid=PID` on stdout and waits until it is killed.

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
    // SAFETY: getpid has no arguments.
    println!("hold: up pid={}", unsafe { libc::getpid() });
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
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
