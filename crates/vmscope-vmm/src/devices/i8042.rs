//! The part of the i8042 keyboard controller a guest uses to reboot: command 0xfe on
//! port 0x64 pulses the CPU reset line. Reads report an empty controller.

use super::Action;

/// Minimal i8042: no keyboard, no mouse, reset only.
#[derive(Debug, Default)]
pub struct I8042;

const CMD_RESET_CPU: u8 = 0xfe;

impl I8042 {
    /// A read of `offset` 0 (data, port 0x60) or 4 (status/command, port 0x64).
    pub fn read(&mut self, _offset: u8) -> u8 {
        0 // output buffer empty, input buffer empty: nothing to read, ready to write
    }

    /// A write of `value` at `offset`.
    pub fn write(&mut self, offset: u8, value: u8) -> Action {
        if offset == 4 && value == CMD_RESET_CPU { Action::Reset } else { Action::None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_fe_resets() {
        let mut k = I8042;
        assert_eq!(k.write(4, 0xfe), Action::Reset);
        assert_eq!(k.write(0, 0xfe), Action::None);
        assert_eq!(k.write(4, 0xd1), Action::None);
        assert_eq!(k.read(4), 0);
    }
}
