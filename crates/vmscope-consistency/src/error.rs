//! The one error type of this crate.

/// Why a read set could not be validated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hypervisor's dirty log failed.
    #[error("the dirty log: {0}")]
    DirtyLog(#[from] vmscope_hv::Error),
    /// Re-reading the read set failed.
    #[error("re-reading the read set: {0}")]
    Reread(#[from] vmscope_mem::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
