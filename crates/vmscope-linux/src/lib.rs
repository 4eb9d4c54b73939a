//! wip
#![warn(missing_docs)]

pub mod discovery;
pub mod elf;
mod error;
pub mod kallsyms;
mod symbols;

pub use discovery::{Evidence, Hints, KernelInfo, discover};
pub use error::{Error, Result};
pub use symbols::{Symbol, SymbolSource, SymbolTable};
