//! The one error type of this crate.

use vmscope_mem::{Gpa, Gva};

/// Why discovery, profile building or a view failed as a whole. (Trouble with one
/// object during a walk is an [`Anomaly`](crate::Anomaly) in the view, not an error.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A guest-physical read failed.
    #[error("reading guest-physical {gpa}: {source}")]
    Phys {
        /// Where.
        gpa: Gpa,
        /// What the memory said.
        #[source]
        source: vmscope_mem::Error,
    },
    /// A kernel-virtual address could not be translated.
    #[error("translating {gva}: {source}")]
    Translate {
        /// The address.
        gva: Gva,
        /// What the walker said.
        #[source]
        source: vmscope_x86::Error,
    },
    /// A pointer plus a member offset passes the top of the address space: a
    /// corrupt pointer or offset (guest data never leads there otherwise).
    #[error("{base} + {offset:#x} passes the top of the address space")]
    AddressOverflow {
        /// The pointer.
        base: Gva,
        /// The offset added.
        offset: u64,
    },
    /// A member's address minus its offset (`container_of`) passes below 0.
    #[error("{base} - {offset:#x} passes below address 0")]
    AddressUnderflow {
        /// The member's address.
        base: Gva,
        /// The offset taken off.
        offset: u64,
    },
    /// A string has no NUL within the `max` bytes it was allowed (never cut short
    /// silently: the same as [`vmscope_mem::Error::Unterminated`] for a
    /// guest-physical read).
    #[error("no NUL within {max} bytes of the string at {gva}")]
    Unterminated {
        /// Where the string starts.
        gva: Gva,
        /// The bytes searched.
        max: usize,
    },
    /// No Linux kernel image was found in guest memory.
    #[error("no Linux kernel found in guest memory ({0})")]
    KernelNotFound(String),
    /// The kallsyms tables were not found or did not validate.
    #[error("kallsyms: {0}")]
    Kallsyms(String),
    /// A symbol the step needs is missing from the profile.
    #[error("symbol `{0}` is not in the profile")]
    SymbolMissing(String),
    /// The BTF blob is missing or does not parse.
    #[error("BTF: {0}")]
    Btf(String),
    /// A type the step needs is missing from the profile.
    #[error("type `{0}` is not in the profile")]
    TypeMissing(String),
    /// A field the step needs is missing from its type.
    #[error("field `{field}` is not in `{ty}`")]
    FieldMissing {
        /// The struct or union.
        ty: String,
        /// The member path asked for.
        field: String,
    },
    /// An enumerator the step needs is missing from the profile.
    #[error("enumerator `{0}` is not in the profile")]
    EnumMissing(String),
    /// A type has a shape this crate does not know how to read.
    #[error("unexpected layout of `{what}`: {why}")]
    Layout {
        /// The type or field.
        what: String,
        /// What was expected.
        why: String,
    },
    /// A Volatility 3 ISF file could not be read or written.
    #[error("ISF: {0}")]
    Isf(String),
    /// A System.map file could not be parsed.
    #[error("System.map line {line}: {why}")]
    SystemMap {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// An ELF file could not be parsed.
    #[error("ELF: {0}")]
    Elf(String),
    /// The kernel's types or symbols lack what a view reads (e.g. memory maps before
    /// the maple tree of Linux 6.1).
    #[error("{view} cannot be read from this kernel: {why}")]
    Unsupported {
        /// The view.
        view: &'static str,
        /// What is missing.
        why: String,
    },
    /// A profile belongs to another kernel than the one in memory.
    #[error("profile mismatch: {0}")]
    ProfileMismatch(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn phys(gpa: Gpa, source: vmscope_mem::Error) -> Self {
        Error::Phys { gpa, source }
    }

    pub(crate) fn field(ty: &str, field: &str) -> Self {
        Error::FieldMissing { ty: ty.into(), field: field.into() }
    }

    pub(crate) fn layout(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Layout { what: what.into(), why: why.into() }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
