//! The one error type of this crate.

/// Why the VMM failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A KVM ioctl failed.
    #[error("{what}: {source}")]
    Kvm {
        /// The ioctl or step.
        what: &'static str,
        /// The error KVM returned.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Loading the kernel or initramfs failed.
    #[error("loading {what}: {msg}")]
    Load {
        /// Kernel, initramfs, command line.
        what: &'static str,
        /// Why.
        msg: String,
    },
    /// A write to guest memory failed.
    #[error("guest memory at {gpa:#x}: {msg}")]
    GuestMemory {
        /// The guest-physical address.
        gpa: u64,
        /// Why.
        msg: String,
    },
    /// The VM configuration is not possible.
    #[error("setup: {0}")]
    Setup(String),
    /// Reading guest memory failed.
    #[error("guest memory: {0}")]
    Memory(#[from] vmscope_mem::Error),
    /// Guest data does not make sense (e.g. the test kernel's manifest).
    #[error("guest data: {0}")]
    Guest(String),
    /// A control request could not be carried out.
    #[error("{0}")]
    Control(String),
    /// A `vmscope-vmm` child process did not come up.
    #[error("vmscope-vmm: {0}")]
    Launch(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn os(what: impl Into<String>) -> Self {
        Error::Io { what: what.into(), source: std::io::Error::last_os_error() }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }

    pub(crate) fn guest(gpa: u64, e: impl std::fmt::Display) -> Self {
        Error::GuestMemory { gpa, msg: e.to_string() }
    }
}
