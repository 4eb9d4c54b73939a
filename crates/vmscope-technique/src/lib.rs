//! The techniques of *Exploring VM Introspection: Techniques and Trade-offs*
//! (Suneja et al., VEE 2015) as one layer: name a guest ([`Target`]: a QEMU process,
//! a guest of vmscope's built-in VMM, a dump file), open it ([`Guest`]), open a
//! [`Technique`] on it with explicit [`Options`], and run introspection passes on
//! guest memory as that technique sees it ([`Access::pass`]).
//!
//! ```no_run
//! use vmscope_mem::{Gpa, PhysMem};
//! use vmscope_technique::{Options, Target, Technique};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let guest = Target::Qemu { pid: 4242, qmp: None }.open()?;
//! let halted = guest.access(Some(Technique::HaltRead), &Options::default())?;
//! // The guest is paused for the pass, and left as it was found afterwards.
//! let word = halted.pass(|mem| mem.read_u64(Gpa::new(0x1000)))??;
//! # Ok(()) }
//! ```
//!
//! | technique | cooperation | snapshot | liveness | access |
//! | --- | --- | --- | --- | --- |
//! | `live-map` | none | no | live | read-only mmap of the RAM backing (`vmscope-map`) |
//! | `live-read` | none | no | live | pread of the RAM file, process_vm_readv or /proc/PID/mem (`vmscope-read`, [`ReadMethod`]) |
//! | `halt-map`, `halt-read` | none | no | halt | the same, the guest paused once per pass |
//! | `halt-snap` | none | yes | halt | pause, copy the used RAM, resume (`vmscope-snap`) |
//! | `live-snap` | none | yes | live | copy running, pause, re-copy what changed |
//! | `consistent-read`, `consistent-map` | none | no | live | live passes recording their read set, validated (dirty log or double collect), retried, else read once halted ([`Access::observed_pass`]) |
//! | `agent` | guest agent | – | live | the agent answers from the guest's /proc (`vmscope-agent`) |
//!
//! A QEMU target is opened however QEMU was started: its RAM blocks are found over QMP
//! (or, without QMP, from its command line and `/proc/PID/maps`), and what backs them
//! decides what opens — every technique where all of guest RAM is shared files; on
//! private RAM (plain `-m`, `memory-backend-ram`, `share=off`) the syscall and snapshot
//! techniques, while the mapping ones fail with [`Error::PrivateRam`], which says why
//! and what works. [`Guest::default_technique`] is the fastest the RAM allows.
//!
//! Halting does no harm to a guest's state: a technique pauses only a running
//! guest and resumes only a guest it paused, also on errors, panics, a QMP
//! connection that breaks mid-pass (it connects again to resume), and — once the
//! program calls [`stop::on_signals`] — SIGINT, SIGTERM and SIGHUP.
//!
//! What this crate deliberately does not do: interpret guest memory (that is
//! `vmscope-linux`, given the `&dyn PhysMem` of a pass), print anything, or start
//! guests. New techniques are added here alone; the technique crates below it know
//! nothing of each other.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod access;
mod consistent;
mod error;
mod guest;
mod reader;
pub mod stop;
mod technique;

pub use access::Access;
pub use consistent::{Consistency, Observed};
pub use error::{Error, Result};
pub use guest::{Guest, Target};
pub use reader::{Options, ReadMethod};
pub use technique::{Axes, Cooperation, Liveness, MemoryAccess, Technique};
pub use vmscope_consistency::validate::{Method, Verdict};
pub use vmscope_hv::RamLocation;
