//! The one error type of this crate.

/// Why a guest could not be found, started or reached.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A guest image is missing or its manifest unreadable, or a guest did not start
    /// or reach its ready point; the message says what to do.
    #[error("{0}")]
    Launch(String),
    /// A part the test needs is not on this machine or cannot be started by this
    /// user (libvirt, for one); tests print the message as `SKIPPED:`.
    #[error("{0}")]
    Unavailable(String),
    /// A workload did not run, or printed no figure; the message has its output.
    #[error("{0}")]
    Workload(String),
    /// Talking to the guest's hypervisor failed.
    #[error(transparent)]
    Hv(#[from] vmscope_hv::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}
