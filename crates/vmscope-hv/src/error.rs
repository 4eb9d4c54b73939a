//! The one error type of this crate.

/// Why a hypervisor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not talk to the hypervisor's control channel.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the deadline.
    #[error("{what}: no answer within {secs:.1} s")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// The deadline.
        secs: f64,
    },
    /// The peer said something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer closed the connection.
    #[error("{0}")]
    Disconnected(String),
    /// The connection broke while pausing, and the guest is paused now: whether by
    /// this command or by someone else cannot be told, so it is left paused.
    #[error(
        "the QMP connection broke while pausing the guest, which is paused now; if it ran \
         before, resume it by hand (QMP `cont`): {0}"
    )]
    PauseUncertain(Box<Error>),
    /// A guest this process paused could not be resumed.
    #[error(
        "the guest is still paused: resuming it failed ({0}); resume it by hand \
         (QMP `cont`, `virsh resume`, or the VMM's `resume`)"
    )]
    StillPaused(Box<Error>),
    /// The hypervisor answered with an error.
    #[error("{command} failed: {class}: {desc}")]
    Command {
        /// The command that failed.
        command: String,
        /// The error class (QMP `class`).
        class: String,
        /// The hypervisor's description.
        desc: String,
    },
    /// The operation is not offered by this hypervisor.
    #[error("not supported by this hypervisor: {0}")]
    Unsupported(String),
    /// A libvirt domain that cannot be introspected as named: unknown, not running,
    /// not a local QEMU, or virsh missing. The message says what to do.
    #[error("{0}")]
    Libvirt(String),
    /// The process named as the hypervisor is not one.
    #[error("process {pid} is not QEMU (it runs {runs:?}); pass the PID of qemu-system-x86_64")]
    NotQemu {
        /// The process id given.
        pid: u32,
        /// What it runs instead.
        runs: String,
    },
    /// The hypervisor process's memory map, pagemap or memory may not be read by us.
    #[error(
        "no permission to {what} of process {pid}: reading another process's memory (process_vm_readv, \
         /proc/PID/mem, /proc/PID/maps, /proc/PID/pagemap) needs ptrace rights over it; run vmscope as \
         root, give it CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep vmscope), or run it as the process's own \
         user with /proc/sys/kernel/yama/ptrace_scope at 0"
    )]
    Ptrace {
        /// The hypervisor process.
        pid: u32,
        /// What was refused (`read /proc/PID/maps`, `process_vm_readv`, ...).
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The hypervisor process exited (or was killed) while its guest was watched.
    #[error("the hypervisor process {pid} (QEMU) has exited or was killed: its guest is gone")]
    ProcessGone {
        /// The hypervisor process.
        pid: u32,
    },
    /// A file backing guest RAM became shorter than the RAM it backs (a memfd
    /// started with `seal=off` and truncated): what was cut off is gone.
    #[error(
        "the file backing guest RAM block {block} of process {pid} was truncated to {len} bytes, \
         but the block needs {needed}: that part of guest memory is gone"
    )]
    BackingTruncated {
        /// The hypervisor process.
        pid: u32,
        /// The RAM block.
        block: String,
        /// The file's length now.
        len: u64,
        /// The length the block needs.
        needed: u64,
    },
    /// A memory map from the hypervisor was not valid.
    #[error("memory map: {0}")]
    Map(#[from] vmscope_mem::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether the control connection itself failed (as opposed to the hypervisor
    /// refusing a command): a new connection may succeed.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Disconnected(_))
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }

    /// Reading `what` of process `pid` failed: for lack of ptrace rights
    /// ([`Error::Ptrace`], which says how to get them), or otherwise.
    pub fn of_process(pid: u32, what: impl Into<String>, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Error::Ptrace { pid, what: what.into(), source },
            _ => Error::Io { what: what.into(), source },
        }
    }
}
