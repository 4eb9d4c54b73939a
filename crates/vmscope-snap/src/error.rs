//! The one error type of this crate.

use std::path::PathBuf;

/// Why taking, writing or reading a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or the RAM backing could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (names the path).
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The hypervisor refused or failed a command (pause, resume, migrate, ...).
    #[error("hypervisor: {0}")]
    Hypervisor(#[from] vmscope_hv::Error),
    /// Reading guest memory through the caller's `PhysMem` failed.
    #[error("reading guest memory: {0}")]
    Mem(#[from] vmscope_mem::Error),
    /// A dump file is not in the format it claims, or is damaged.
    #[error("{path}: {format} file is malformed at byte {offset:#x}: {why}")]
    Malformed {
        /// The file (or `<bytes>` for an in-memory image).
        path: PathBuf,
        /// `ELF`, `LiME`, `raw`, `migration stream`.
        format: &'static str,
        /// Where in the file.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A dump file in a format this crate does not read.
    #[error("{path}: {why}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What it is and what to do instead.
        why: String,
    },
    /// QEMU's migration reported failure or never finished.
    #[error("live snapshot: {0}")]
    Migration(String),
    /// The snapshot's memory map does not fit the RAM it was taken from.
    #[error("memory map: {0}")]
    Map(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}
