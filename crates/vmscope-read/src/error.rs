//! The one error type of this crate.

/// Why a reader could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hypervisor process may not be read by us.
    #[error(
        "no permission to read process {pid}: run as root, or as its owner with \
         /proc/sys/kernel/yama/ptrace_scope set to 0 ({source})"
    )]
    Permission {
        /// The hypervisor process.
        pid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The hypervisor process does not exist (any more).
    #[error("process {pid} does not exist")]
    NoProcess {
        /// The process id given.
        pid: u32,
    },
    /// Opening something failed otherwise.
    #[error("{what}: {source}")]
    Io {
        /// What was opened.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Locating or opening the RAM backing failed.
    #[error(transparent)]
    Hv(#[from] vmscope_hv::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn open(pid: u32, what: String, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Error::Permission { pid, source },
            Some(libc::ESRCH) | Some(libc::ENOENT) => Error::NoProcess { pid },
            _ => Error::Io { what, source },
        }
    }
}
