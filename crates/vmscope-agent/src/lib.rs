//! Guest cooperation: the protocol spoken by `vmscope-agent`, the small static program
//! that vmscope's guest images run on the second serial port (ttyS1), and the host
//! client for it.
//!
//! The one port carries two services on one protocol:
//! - a command channel, used by tests and the lab for ground truth from inside the
//!   guest: run a command and get its stdout, stderr and exit status, or read a file;
//! - the agent technique of the study: the guest answers the process and module lists
//!   itself, from its /proc.
//!
//! Frames are binary-safe (length-prefixed, CRC-checked, resynchronised by a magic),
//! carry a request id, and their payloads are [`postcard`]-encoded [`Request`]s and
//! [`Response`]s. See [`frame`] for the byte layout.
//!
//! ```no_run
//! # #[cfg(feature = "client")] {
//! use std::time::Duration;
//! let mut agent = vmscope_agent::Client::connect("agent.sock", Duration::from_secs(10)).unwrap();
//! let version = agent.sh("cat /proc/version").unwrap();
//! println!("the guest runs {version}");
//! # }
//! ```
//!
//! What this crate deliberately does not do: read guest memory. It is the one
//! technique that asks the guest instead.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "client")]
mod client;
mod error;
pub mod frame;
mod message;

#[cfg(feature = "client")]
pub use client::Client;
pub use error::{Error, Result};
pub use message::{
    DirEntry, ExecRequest, ExecResult, LIST_DIR_SINCE, ModuleInfo, PROTOCOL_VERSION, ProcessInfo, Request, Response,
    from_payload, to_payload,
};
