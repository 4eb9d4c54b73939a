//! `pread(2)` on the RAM backing file: no ptrace rights needed beyond opening it, and
//! holes read as zeros without allocating anything. The reader is
//! [`vmscope_mem::FileMem`], the one pread-by-memory-map reader of the project; this
//! module only opens it the way the syscall technique must (errors that say what to do).

use vmscope_hv::RamLocation;
use vmscope_mem::FileMem;

/// Guest RAM read with `pread` on `loc`'s RAM files (`/proc/PID/fd/N` of QEMU's
/// memfd, a `mem-path` file; one per RAM block). Fails for private RAM, which has no
/// file that holds it, and on hugetlbfs, whose file cannot say where its holes are.
pub fn open_backing(loc: &RamLocation) -> crate::Result<FileMem> {
    loc.open_files().map_err(|e| match e {
        vmscope_hv::Error::Io { what, source } => crate::Error::open(loc.pid, what, source),
        other => other.into(),
    })
}
