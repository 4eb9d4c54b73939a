//! The serial port in raw mode: every byte passes unchanged in both directions.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

pub struct Port {
    file: File,
}

impl Port {
    pub fn open(path: &str) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(path)?;
        let fd = file.as_raw_fd();
        // SAFETY: termios is plain data; zeroed is a valid value for tcgetattr to fill.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open for the lifetime of `file`; `t` is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut t) } == 0 {
            // The line speed stays as it is: emulated UARTs do not pace by it.
            // SAFETY: `t` was filled by tcgetattr.
            unsafe { libc::cfmakeraw(&mut t) };
            t.c_cflag |= libc::CLOCAL | libc::CREAD;
            t.c_cflag &= !libc::CRTSCTS;
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            // SAFETY: as above; TCSAFLUSH drops whatever arrived before raw mode.
            if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &t) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { file })
    }

    /// Reads what is there, waiting at most `ms` milliseconds; 0 bytes on timeout.
    pub fn read_timeout(&mut self, buf: &mut [u8], ms: i32) -> io::Result<usize> {
        let mut pfd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        if n == 0 {
            return Ok(0);
        }
        self.file.read(buf)
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.flush()
    }
}
