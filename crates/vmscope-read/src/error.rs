//! The one error type of this crate.

/// Why a reader could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// Locating or opening the RAM backing failed, or we may not read the process
    /// (`vmscope_hv::Error::Ptrace`, which says how to get the rights).
    #[error(transparent)]
    Hv(#[from] vmscope_hv::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The hole guard of `loc`: opening its files and QEMU's pagemap fails like opening
/// QEMU's memory does.
pub(crate) fn guard(loc: &vmscope_hv::RamLocation) -> Result<vmscope_hv::HoleGuard> {
    vmscope_hv::HoleGuard::new(loc).map_err(|e| match e {
        vmscope_hv::Error::Io { what, source } => Error::open(loc.pid, what, source),
        other => other.into(),
    })
}

/// A read of the backing at `offset` that failed, as the I/O error a bulk copy
/// reports.
pub(crate) fn at_offset(e: vmscope_mem::Error, offset: u64) -> std::io::Error {
    match e {
        vmscope_mem::Error::Io { source, .. } => source,
        other => std::io::Error::other(format!("backing offset {offset:#x}: {other}")),
    }
}

impl Error {
    pub(crate) fn open(pid: u32, what: String, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Error::Hv(vmscope_hv::Error::Ptrace { pid, what, source }),
            Some(libc::ESRCH) | Some(libc::ENOENT) => Error::NoProcess { pid },
            _ => Error::Io { what, source },
        }
    }
}
