//! Which pages of another process's address space are resident, from
//! `/proc/PID/pagemap`: how private guest RAM tells pages the guest touched from
//! pages it never did, without touching either.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::extents::{PAGE, union};
use crate::{Error, Result};

/// Page present in RAM (pagemap bit 63).
const PRESENT: u64 = 1 << 63;
/// Page swapped out (bit 62): it holds data, and reading it swaps it back in.
const SWAPPED: u64 = 1 << 62;
/// Entries read per `pread` (512 KiB of pagemap, 256 MiB of address space).
const CHUNK: usize = 64 << 10;

/// `/proc/PID/pagemap`, open.
#[derive(Debug)]
pub(crate) struct Pagemap {
    file: File,
}

impl Pagemap {
    /// Opens the pagemap of `pid` (needs the ptrace read right over it, as reading
    /// its memory does).
    pub(crate) fn open(pid: u32) -> Result<Self> {
        let path = format!("/proc/{pid}/pagemap");
        let file = File::open(&path).map_err(|e| Error::of_process(pid, format!("open {path}"), e))?;
        Ok(Self { file })
    }

    /// The resident byte ranges of `hva..hva+len` in the process, relative to `hva`
    /// (which is page aligned), merged, clipped to `len`.
    pub(crate) fn resident(&self, hva: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let first = hva / PAGE;
        let pages = len.div_ceil(PAGE);
        let mut out = Vec::new();
        let mut buf = vec![0u64; CHUNK.min(pages as usize).max(1)];
        let mut done = 0u64;
        let mut run: Option<u64> = None;
        while done < pages {
            let n = (pages - done).min(buf.len() as u64) as usize;
            let bytes: &mut [u8] = bytemuck_u64s(&mut buf[..n]);
            let at = (first + done).checked_mul(8).ok_or_else(|| Error::Protocol(format!("HVA {hva:#x}")))?;
            self.file.read_exact_at(bytes, at).map_err(|e| Error::io(format!("reading pagemap at HVA {hva:#x}"), e))?;
            for (i, &entry) in buf[..n].iter().enumerate() {
                let page = done + i as u64;
                let resident = entry & (PRESENT | SWAPPED) != 0;
                match (resident, run) {
                    (true, None) => run = Some(page),
                    (false, Some(s)) => {
                        out.push((s * PAGE, page * PAGE));
                        run = None;
                    }
                    _ => {}
                }
            }
            done += n as u64;
        }
        if let Some(s) = run {
            out.push((s * PAGE, pages * PAGE));
        }
        for r in &mut out {
            r.1 = r.1.min(len);
        }
        Ok(union(out))
    }
}

/// The bytes of `v`, to read pagemap entries into (native endian, as the kernel
/// writes them).
fn bytemuck_u64s(v: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(v);
    // SAFETY: `v` is a live, exclusively borrowed slice of u64, `len` bytes long; u8
    // has no alignment or validity requirement, and every byte pattern is a valid
    // u64, so writes through the returned slice keep `v` valid. The borrow of the
    // result is tied to that of `v`.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own anonymous memory: pages written are resident, pages never touched are not.
    #[test]
    fn sees_which_pages_are_touched() {
        const N: usize = 64;
        // SAFETY: a fresh anonymous private mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                N * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: no transparent huge page may fill the untouched pages in.
        unsafe { libc::madvise(p, N * 4096, libc::MADV_NOHUGEPAGE) };
        let base = p.cast::<u8>();
        for page in [3usize, 4, 40] {
            // SAFETY: inside the mapping, which is writable.
            unsafe { base.add(page * 4096).write_volatile(1) };
        }
        let pm = Pagemap::open(std::process::id()).unwrap();
        let r = pm.resident(base as u64, (N * 4096) as u64).unwrap();
        assert_eq!(r, vec![(3 * 4096, 5 * 4096), (40 * 4096, 41 * 4096)]);
        let r = pm.resident(base as u64 + 4 * 4096, 100).unwrap();
        assert_eq!(r, vec![(0, 100)]);
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(p, N * 4096) };
    }
}
