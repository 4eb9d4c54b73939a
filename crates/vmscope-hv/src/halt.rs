//! Halting techniques: the guest is paused once per pass, not per read.

use crate::{Hypervisor, Result};

/// Any memory, read with the guest paused for the length of a pass.
///
/// ```no_run
/// # fn demo(mem: impl vmscope_mem::PhysMem, hv: &impl vmscope_hv::Hypervisor) -> vmscope_hv::Result<()> {
/// let halted = vmscope_hv::Halted::new(mem, hv);
/// let first = halted.pass(|m| m.read_u64(vmscope_mem::Gpa::new(0x1000)))?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Halted<'h, M, H: ?Sized> {
    mem: M,
    hv: &'h H,
}

impl<'h, M, H: Hypervisor + ?Sized> Halted<'h, M, H> {
    /// Wraps `mem`; `hv` pauses and resumes the guest it belongs to.
    pub fn new(mem: M, hv: &'h H) -> Self {
        Self { mem, hv }
    }

    /// Pauses the guest, runs `f`, resumes the guest — also when `f` panics.
    pub fn pass<R>(&self, f: impl FnOnce(&M) -> R) -> Result<R> {
        self.hv.pause()?;
        let guard = Resume { hv: self.hv, armed: true };
        let r = f(&self.mem);
        guard.finish()?;
        Ok(r)
    }

    /// The memory, for reads outside a pass (the guest runs).
    pub fn inner(&self) -> &M {
        &self.mem
    }
}

/// Resumes on drop unless `finish` did it (and reported its error).
struct Resume<'h, H: Hypervisor + ?Sized> {
    hv: &'h H,
    armed: bool,
}

impl<H: Hypervisor + ?Sized> Resume<'_, H> {
    fn finish(mut self) -> Result<()> {
        self.armed = false;
        self.hv.resume()
    }
}

impl<H: Hypervisor + ?Sized> Drop for Resume<'_, H> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.hv.resume();
        }
    }
}
