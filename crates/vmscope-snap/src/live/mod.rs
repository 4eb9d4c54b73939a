//! live-snap: copy guest RAM while the guest runs, pausing it only briefly.
//!
//! Two ways, measured side by side in the crate README:
//!
//! - [`qemu_background_snap`]: QEMU's own background snapshot (`migrate` with the
//!   `background-snapshot` capability, QEMU ≥ 6.0): QEMU pauses the guest to save
//!   device state and write-protect RAM with userfaultfd, resumes it, and streams
//!   every page, copying a page before the guest's first write to it. vmscope reads
//!   the stream through a FIFO (`exec:cat > FIFO`; QEMU 7.2 has no `file:` URI) and
//!   keeps the RAM ([`parse_stream`]). **It does harm on shared (memfd) RAM**: before
//!   write-protecting, QEMU 7.2 reads one byte of every page
//!   (`ram_write_tracking_prepare`), which allocates every page of a memfd the guest
//!   never touched — the QEMU process's RSS grows to the full RAM size.
//! - [`precopy_snap`]: vmscope's own pre-copy without dirty tracking (soft-dirty is
//!   off on these hosts): copy the RAM file's data extents while the guest runs,
//!   then pause, re-read every data extent, compare and re-copy the pages that
//!   changed, resume. Harmless (`pread` of data extents only); its pause is a read
//!   and compare of the used RAM instead of a copy.
//! - [`dirtylog_precopy_snap`]: the same pre-copy where the hypervisor has a dirty
//!   log (the built-in VMM): the pause copies only the pages written since the last
//!   live round.

mod dirtylog;
mod precopy;
mod qemu;
mod stream;

pub use dirtylog::{LIVE_ROUNDS, dirtylog_precopy_snap};
pub use precopy::precopy_snap;
pub use qemu::{MigrationTiming, qemu_background_save, qemu_background_snap};
pub use stream::{StreamInfo, parse_stream};
