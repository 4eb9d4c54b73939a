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
    /// A guest could not be started or reached its ready point.
    #[error("{0}")]
    Launch(String),
    /// A memory map from the hypervisor was not valid.
    #[error("memory map: {0}")]
    Map(#[from] vmscope_mem::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}
