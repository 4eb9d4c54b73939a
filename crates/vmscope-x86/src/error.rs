//! The one error type of this crate.

use vmscope_mem::{Gpa, Gva};

use crate::{Level, PagingMode};

/// Why a translation (or part of a mapping walk) failed. Each variant names the
/// virtual address and, where there is one, the paging level that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address is not sign-extended from the top virtual-address bit of the mode.
    #[error("{gva} is not canonical under {mode}")]
    NonCanonical {
        /// The address.
        gva: Gva,
        /// The paging mode whose width it violates.
        mode: PagingMode,
    },
    /// The entry at `level` has its present bit clear.
    #[error("{gva}: {level} entry not present")]
    NotPresent {
        /// The address.
        gva: Gva,
        /// Where the walk stopped.
        level: Level,
    },
    /// The entry at `level` sets bits the architecture reserves (physical-address
    /// bits at or above MAXPHYADDR, the low bits of a large-page frame, NX without
    /// EFER.NXE).
    #[error("{gva}: reserved bits set in {level} entry {entry:#x}")]
    ReservedBits {
        /// The address.
        gva: Gva,
        /// The level of the entry.
        level: Level,
        /// The raw entry.
        entry: u64,
    },
    /// The page-size bit is set at a level that cannot map a page (PML5, PML4).
    #[error("{gva}: page-size bit set in {level} entry {entry:#x}, where large pages are illegal")]
    IllegalLargePage {
        /// The address.
        gva: Gva,
        /// The level of the entry.
        level: Level,
        /// The raw entry.
        entry: u64,
    },
    /// The table of `level` (the root, or where the entry above points) is not in
    /// guest RAM.
    #[error("{gva}: {level} table at {table} is outside guest RAM")]
    OutsideRam {
        /// The address.
        gva: Gva,
        /// The level of the table that could not be read.
        level: Level,
        /// Where the table would be.
        table: Gpa,
    },
    /// Reading the table of `level` failed for another reason than a hole.
    #[error("{gva}: reading the {level} table at {table}: {source}")]
    Read {
        /// The address.
        gva: Gva,
        /// The level of the table.
        level: Level,
        /// Where the table is.
        table: Gpa,
        /// What the memory said (boxed: keeps `Result<Translation>` small on the
        /// hot path).
        #[source]
        source: Box<vmscope_mem::Error>,
    },
    /// Mapping walks only: an entry points back at a table on the path from the root
    /// to itself (a self-reference or a loop across levels). The subtree is skipped.
    #[error("{gva}: {level} entry points back at the table at {table} on its own path")]
    TableLoop {
        /// Start of the virtual range the entry covers.
        gva: Gva,
        /// The level of the entry.
        level: Level,
        /// The ancestor table it points at.
        table: Gpa,
    },
    /// Mapping walks only: the walk read as many tables as its limit allows and
    /// stopped; what it yielded before is valid.
    #[error("mapping walk stopped at {gva} after reading {tables} tables (the limit)")]
    Budget {
        /// Where the walk stopped.
        gva: Gva,
        /// Tables read.
        tables: usize,
    },
}

impl Error {
    /// The virtual address the error is about.
    pub fn gva(&self) -> Gva {
        match self {
            Error::NonCanonical { gva, .. }
            | Error::NotPresent { gva, .. }
            | Error::ReservedBits { gva, .. }
            | Error::IllegalLargePage { gva, .. }
            | Error::OutsideRam { gva, .. }
            | Error::Read { gva, .. }
            | Error::TableLoop { gva, .. }
            | Error::Budget { gva, .. } => *gva,
        }
    }

    /// Whether the guest's page tables say "no mapping here" (not present, or not
    /// canonical), as opposed to a broken or unreadable table.
    pub fn is_unmapped(&self) -> bool {
        matches!(self, Error::NotPresent { .. } | Error::NonCanonical { .. })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
