//! The one error type of this crate.

/// Why talking to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket or port failed.
    #[error("agent channel: {0}")]
    Io(#[from] std::io::Error),
    /// No (valid) answer within the deadline.
    #[error("no answer from the guest agent within {secs:.1} s ({what})")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The deadline in seconds.
        secs: f64,
    },
    /// A frame or payload could not be decoded.
    #[error("bad frame from the agent: {0}")]
    Protocol(String),
    /// The agent could not do what was asked.
    #[error("the guest agent says: {0}")]
    Remote(String),
    /// A command ran but failed.
    #[error("`{command}` failed in the guest ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, as text.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
