//! The one error type of this crate.

use crate::Gpa;

/// Why a guest-physical read failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No region of the memory map backs this address.
    #[error("guest-physical address {gpa} is not backed by guest RAM")]
    Unbacked {
        /// The first address of the read that no region backs.
        gpa: Gpa,
    },
    /// The read runs past the end of the address space.
    #[error("read of {len} bytes at {gpa} overflows the address space")]
    Overflow {
        /// Start of the read.
        gpa: Gpa,
        /// Its length.
        len: usize,
    },
    /// The backend returned fewer bytes than asked for.
    #[error("short read at {gpa}: wanted {wanted} bytes, got {got}")]
    Short {
        /// Start of the read.
        gpa: Gpa,
        /// Bytes asked for.
        wanted: usize,
        /// Bytes delivered.
        got: usize,
    },
    /// The backend failed with an operating-system error.
    #[error("reading {gpa}: {source}")]
    Io {
        /// Start of the read.
        gpa: Gpa,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A string did not end within its bound.
    #[error("no NUL within {max} bytes of the string at {gpa}")]
    Unterminated {
        /// Start of the string.
        gpa: Gpa,
        /// The bound.
        max: usize,
    },
    /// A memory map was rejected: regions overlap or wrap.
    #[error("invalid memory map: {0}")]
    BadMap(String),
    /// A fault was injected on purpose (tests).
    #[error("injected fault at {gpa}")]
    Injected {
        /// Where.
        gpa: Gpa,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Cloning keeps every field; an [`Error::Io`] is rebuilt from its OS error code
/// (or its kind and message), since `std::io::Error` itself is not `Clone`.
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::Unbacked { gpa } => Error::Unbacked { gpa: *gpa },
            Error::Overflow { gpa, len } => Error::Overflow { gpa: *gpa, len: *len },
            Error::Short { gpa, wanted, got } => Error::Short { gpa: *gpa, wanted: *wanted, got: *got },
            Error::Io { gpa, source } => Error::Io {
                gpa: *gpa,
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Unterminated { gpa, max } => Error::Unterminated { gpa: *gpa, max: *max },
            Error::BadMap(s) => Error::BadMap(s.clone()),
            Error::Injected { gpa } => Error::Injected { gpa: *gpa },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_keeps_io_errors() {
        let e = Error::Io { gpa: Gpa::new(8), source: std::io::Error::from_raw_os_error(14) };
        let c = e.clone();
        assert_eq!(c.to_string(), e.to_string());
        let e = Error::Io { gpa: Gpa::new(8), source: std::io::Error::other("gone") };
        assert_eq!(e.clone().to_string(), e.to_string());
    }
}
