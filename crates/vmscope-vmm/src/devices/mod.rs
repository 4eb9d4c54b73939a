//! Device models. They know nothing of KVM: each takes port reads and writes and
//! reports what the machine should do, so they are unit-tested against plain buffers.

pub mod i8042;
pub mod serial;

/// What a device asks of the machine after an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// The guest asked for a reset (i8042 command 0xfe).
    Reset,
    /// The guest wrote `status` to the debug-exit port.
    Exit(u8),
}
