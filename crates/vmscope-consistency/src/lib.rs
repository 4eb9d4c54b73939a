//! Consistency of introspection views (DESIGN.md, "Consistency").
//!
//! A *pass* reads a *read set* of guest-physical byte ranges between its first read
//! (t0) and its last (t1); t1 − t0 is its *temporal window*. A view is *torn*
//! (extrinsic inconsistency) when the guest wrote a page of the read set inside the
//! window. An *invariant* is a rule of the kernel's own data; a violation that
//! involves a page changed during the pass is *extrinsic*, any other *intrinsic*.
//!
//! - [`ReadSet`] records what a pass reads, as a decorator of any `PhysMem`;
//! - [`validate`] decides whether a recorded pass was torn: exactly by a
//!   hypervisor's dirty log, or approximately by a double collect;
//! - [`invariants`] checks the kernel's rules on vmscope-linux views;
//! - [`diff`] compares two views;
//! - [`watch`] tells the views of pass after pass as events (a process started, a
//!   module unloaded).
//!
//! What this crate deliberately does not do: open guests, pause them or choose a
//! technique (that is `vmscope-technique`, whose `consistent-read` technique is built
//! on this crate), or print anything.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod diff;
mod error;
pub mod invariants;
mod readset;
pub mod validate;
pub mod watch;

pub use error::{Error, Result};
pub use readset::{Range, ReadSet, Recorded};
