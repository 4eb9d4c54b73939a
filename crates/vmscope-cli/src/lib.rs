//! The library behind the `vmscope` command, shared with the lab: the techniques by
//! name ([`Technique`]), and a guest found from a QEMU process id ([`Target`]) on
//! which any technique opens as an [`Access`] that runs introspection passes.
//!
//! This is the one crate (with the lab) that knows every technique; the technique
//! crates know nothing of each other.

#![warn(missing_docs)]

pub mod output;
pub mod source;
mod target;
mod technique;

pub use target::{Access, Hv, ReadMethod, Reader, Target};
pub use technique::Technique;
