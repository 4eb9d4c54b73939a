//! The one error type of this crate.

use crate::Technique;

/// Why a guest could not be opened by a technique, or a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to the hypervisor, or finding guest RAM, failed.
    #[error(transparent)]
    Hv(#[from] vmscope_hv::Error),
    /// Opening a syscall reader failed (permissions, a process gone).
    #[error(transparent)]
    Read(#[from] vmscope_read::Error),
    /// Taking a snapshot, or opening a dump, failed.
    #[error(transparent)]
    Snap(#[from] vmscope_snap::Error),
    /// The guest agent did not answer as asked.
    #[error("the guest agent: {0}")]
    Agent(#[from] vmscope_agent::Error),
    /// The technique pauses the guest, and no control channel was found.
    #[error(
        "technique {0} pauses the guest and needs QEMU's QMP socket: start QEMU with \
         -qmp unix:qmp.sock,server=on,wait=off, or pass --qmp PATH"
    )]
    NeedsHypervisor(Technique),
    /// The agent technique, and the guest has no agent channel.
    #[error(
        "technique agent needs the guest agent on QEMU's second serial port: start QEMU with \
         -chardev socket,id=agent,path=agent.sock,server=on,wait=off -serial chardev:agent"
    )]
    NoAgent,
    /// A technique was asked of a dump file.
    #[error("{0} introspects a live guest; a dump is read as it is (ask for no technique)")]
    DumpHasNoTechnique(Technique),
    /// What was asked does not apply to this technique.
    #[error("technique {technique} {why}")]
    NotApplicable {
        /// The technique.
        technique: Technique,
        /// What it cannot do.
        why: &'static str,
    },
    /// No QMP socket answered; the message names the socket and the fix.
    #[error(
        "QEMU's QMP socket {socket} does not answer ({source}); another client may hold it: add a second \
         -qmp unix:PATH,server=on,wait=off to QEMU, or pass --qmp PATH"
    )]
    QmpBusy {
        /// The last socket tried.
        socket: std::path::PathBuf,
        /// Why it failed.
        #[source]
        source: vmscope_hv::Error,
    },
    /// QEMU's QMP socket may not be connected to by us.
    #[error(
        "no permission to connect to QEMU's QMP socket {socket}: run vmscope as root or as QEMU's own \
         user, or pass --qmp PATH to a monitor socket you may use"
    )]
    QmpDenied {
        /// The socket.
        socket: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A mapping technique was asked of guest RAM that QEMU keeps private.
    #[error(
        "technique {technique} maps guest RAM, but QEMU {pid} keeps it private ({blocks}), and another \
         process cannot map a process's private memory. Choose live-read (the default for this guest), \
         halt-read, consistent-read, halt-snap or live-snap, which read it through QEMU's address space; \
         or, to map it, start QEMU with shared RAM: -object memory-backend-memfd,id=ram,size=SIZE,share=on \
         -machine memory-backend=ram (libvirt: <memoryBacking><source type='memfd'/><access mode='shared'/>)"
    )]
    PrivateRam {
        /// The technique asked for.
        technique: Technique,
        /// QEMU's process id.
        pid: u32,
        /// Which blocks are private, and how.
        blocks: String,
    },
    /// Validating a view failed (the dirty log, or re-reading the read set).
    #[error("validating the view: {0}")]
    Consistency(#[from] vmscope_consistency::Error),
    /// Every live try of a consistent technique was torn, and the guest cannot be
    /// paused for a last, halted try.
    #[error(
        "the view could not be validated: the guest wrote the pages read in each of {tries} tries \
         ({torn_pages} pages in the last), and it cannot be paused for a halted read; give vmscope \
         QEMU's QMP socket (--qmp PATH) or choose live-read to accept a possibly torn view"
    )]
    Unvalidated {
        /// Live tries made.
        tries: u32,
        /// Torn pages in the last.
        torn_pages: usize,
    },
    /// The process was asked to stop (a signal) while a pass held the guest paused;
    /// the pass was cut short and the guest left as it was found.
    #[error("interrupted by signal {signal}; the guest was left as it was found")]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
