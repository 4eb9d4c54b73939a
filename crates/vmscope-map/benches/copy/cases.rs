//! The reads the copy benchmark makes, shared with `examples/copy_instructions.rs`,
//! which counts their instructions under callgrind.

use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use vmscope_hv::RamLocation;
use vmscope_map::Mapped;
use vmscope_mem::{Gpa, Hva, MemoryMap, PhysMem, ReadOp, Region};

/// Size of the memfd standing in for guest RAM.
pub const SIZE: usize = 64 << 20;
const KIB: usize = 1024;

/// A span the size of a Debian 6.1 `task_struct` read.
const TASK_SPAN: usize = 9 * KIB + 40;

/// Reads an introspection pass does, hot in cache (a fixed address each): name,
/// guest-physical address, length. The task span starts off any word boundary.
pub const READS: &[(&str, u64, usize)] = &[
    ("u64", 0x1008, 8),
    ("16", 0x2a18, 16),
    ("64", 0x3040, 64),
    ("256", 0x4100, 256),
    ("page", 0x5000, 4 * KIB),
    ("task_span_unaligned", 0x8_0d43, TASK_SPAN),
    ("bulk_2m", 0x20_0000, 2 * KIB * KIB),
];

/// How a read copies out of the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copier {
    /// The plain `copy_nonoverlapping` the crate used before: the baseline.
    Memcpy,
    /// The crate's read path as shipped.
    Volatile,
    /// Relaxed atomic loads, 8-byte words and single bytes at the edges.
    Atomic,
}

impl Copier {
    pub const ALL: [Copier; 3] = [Copier::Memcpy, Copier::Volatile, Copier::Atomic];

    pub fn name(self) -> &'static str {
        match self {
            Copier::Memcpy => "memcpy",
            Copier::Volatile => "volatile",
            Copier::Atomic => "atomic",
        }
    }
}

fn memcpy(src: *const u8, dst: &mut [u8]) {
    // SAFETY: `read_batch_with` passes `src` readable for `dst.len()` bytes; nothing
    // writes the memfd while the benchmark runs, so this is no data race here.
    unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) }
}

fn atomic(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let head = (src.addr().wrapping_neg() & 7).min(n);
    let words = (n - head) / 8;
    let byte = |i: usize| {
        // SAFETY: `i < n`, so `src + i` is readable; relaxed loads of at most 8 bytes
        // are allowed on read-only memory (std::sync::atomic, "Atomic accesses to
        // read-only memory").
        unsafe { (*src.add(i).cast::<AtomicU8>()).load(Ordering::Relaxed) }
    };
    for (i, d) in dst[..head].iter_mut().enumerate() {
        *d = byte(i);
    }
    for w in 0..words {
        let i = head + w * 8;
        // SAFETY: `src + i` is 8-aligned (past `head`) and readable for 8 bytes
        // (`i + 8 <= n`); a relaxed 8-byte load, allowed on read-only memory as above.
        let v = unsafe { (*src.add(i).cast::<AtomicU64>()).load(Ordering::Relaxed) };
        dst[i..i + 8].copy_from_slice(&v.to_ne_bytes());
    }
    for (i, d) in dst.iter_mut().enumerate().skip(head + words * 8) {
        *d = byte(i);
    }
}

/// One read of `buf.len()` bytes at `gpa`.
pub fn read(m: &Mapped, how: Copier, gpa: Gpa, buf: &mut [u8]) {
    let r = match how {
        Copier::Volatile => m.read(gpa, buf),
        Copier::Memcpy => m.read_batch_with(&mut [ReadOp::new(gpa, buf)], memcpy),
        Copier::Atomic => m.read_batch_with(&mut [ReadOp::new(gpa, buf)], atomic),
    };
    r.expect("the benchmark reads inside its memfd");
}

/// An 8-byte read, as the page walker's `read_u64` does it.
pub fn read_u64(m: &Mapped, how: Copier, gpa: Gpa) -> u64 {
    if how == Copier::Volatile {
        return m.read_u64(gpa).expect("the benchmark reads inside its memfd");
    }
    let mut b = [0u8; 8];
    read(m, how, gpa, &mut b);
    u64::from_le_bytes(b)
}

/// A memfd of `SIZE` patterned bytes mapped as a guest's RAM at GPA 0, and the bytes.
pub struct Ram {
    /// Keeps the memfd open while mapped.
    _file: std::fs::File,
    pub mapped: Mapped,
    pub bytes: Vec<u8>,
}

impl Ram {
    pub fn new() -> Self {
        // SAFETY: a NUL-terminated name and no flags; the result is checked below.
        let fd = unsafe { libc::memfd_create(c"vmscope-map-bench".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 131 + i / 4096) as u8).collect();
        std::io::Write::write_all(&mut &file, &bytes).expect("filling the memfd");
        let map = MemoryMap::new(vec![Region::new(Gpa::new(0), SIZE as u64, 0, "ram")]).expect("one region");
        let path = format!("/proc/self/fd/{}", file.as_raw_fd()).into();
        let loc = RamLocation::single(std::process::id(), map, Hva::new(0), Some(path));
        let mapped = Mapped::open(loc).expect("mapping the memfd");
        Self { _file: file, mapped, bytes }
    }
}

/// A process-list pass over 256 tasks spread over the memfd. Per task: a four-level
/// page walk (`read_u64`), the `task_struct` span, a 1 KiB `mm_struct` span, `comm`
/// (16 bytes) and one more 8-byte field read alone.
pub struct Pass {
    tasks: Vec<u64>,
    task_buf: Vec<u8>,
    mm_buf: Vec<u8>,
}

impl Pass {
    pub fn new() -> Self {
        // 64-byte aligned like slab objects, scattered (xorshift, fixed seed).
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let tasks = (0..256)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % (SIZE - 2 * TASK_SPAN) as u64) & !63
            })
            .collect();
        Self { tasks, task_buf: vec![0; TASK_SPAN], mm_buf: vec![0; KIB] }
    }

    /// Runs the pass; returns a sum of what it read, to compare copies and keep the
    /// reads from being optimised away.
    pub fn run(&mut self, m: &Mapped, how: Copier) -> u64 {
        let mut sum = 0u64;
        for &t in &self.tasks {
            for level in 0..4u64 {
                let pte = ((t ^ (level << 20)) % (SIZE as u64 - 8)) & !7;
                sum = sum.wrapping_add(read_u64(m, how, Gpa::new(pte)));
            }
            read(m, how, Gpa::new(t), &mut self.task_buf);
            read(m, how, Gpa::new((t + 0x3000) & !63), &mut self.mm_buf);
            let mut comm = [0u8; 16];
            read(m, how, Gpa::new(t + 0x7a8), &mut comm);
            sum = sum.wrapping_add(read_u64(m, how, Gpa::new(t + 0x590)));
            sum = sum.wrapping_add(u64::from(self.task_buf[0x40]) + u64::from(self.mm_buf[0x10]) + u64::from(comm[3]));
        }
        sum
    }
}
