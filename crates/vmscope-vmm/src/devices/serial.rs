//! 16550 UARTs (vm-superio) with their outputs: a file, stdout, or a unix-socket
//! client; the interrupt is any [`Trigger`] (an eventfd bound to an IRQ by the VMM, or
//! a counter in tests).

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Interrupt line of a UART: an eventfd that KVM turns into an IRQ (irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Where a UART's output goes.
#[derive(Debug, Clone)]
pub enum SerialOut {
    /// Discard.
    Sink,
    /// Standard output.
    Stdout,
    /// A file.
    File(Arc<Mutex<std::fs::File>>),
    /// The connected client of a unix socket, if any (output is dropped otherwise).
    Socket(Arc<Mutex<Option<UnixStream>>>),
    /// A buffer (tests).
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Write for SerialOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SerialOut::Sink => Ok(buf.len()),
            SerialOut::Stdout => io::stdout().write(buf),
            SerialOut::File(f) => lock(f).write(buf),
            SerialOut::Socket(s) => {
                let mut guard = lock(s);
                if let Some(stream) = guard.as_mut()
                    && stream.write_all(buf).is_err()
                {
                    *guard = None; // the client went away
                }
                Ok(buf.len())
            }
            SerialOut::Buffer(b) => {
                lock(b).extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SerialOut::Stdout => io::stdout().flush(),
            SerialOut::File(f) => lock(f).flush(),
            _ => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A UART as the VMM uses it.
pub type Uart<T> = Serial<T, vm_superio::serial::NoEvents, SerialOut>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Count(AtomicUsize);
    impl Trigger for Count {
        type E = io::Error;
        fn trigger(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn transmit_goes_to_the_buffer() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mut uart: Uart<Count> = Serial::new(Count::default(), SerialOut::Buffer(buf.clone()));
        for b in b"hi\n" {
            uart.write(0, *b).unwrap();
        }
        assert_eq!(&*buf.lock().unwrap(), b"hi\n");
    }
}
