//! Fields of a kernel struct, from the bytes read of it: a bounds-checked reader
//! ([`Fields`]) over a contiguous read ([`Bytes`]) or over just the cache lines that
//! hold the fields a view names ([`Layout`], [`Parts`]).
//!
//! Why the second: a task's fields lie in a few cache lines spread over 3 KiB of
//! `task_struct`. Reading the whole span made a pass over 10,000 tasks copy 30 MiB,
//! about the host's last-level cache (32 MiB here), so each task cost more the more
//! tasks there were; the lines alone are about a quarter of that.

use vmscope_mem::{Gva, PhysMem};

use crate::kmem::{KernelMem, member};

/// The host's cache line: what a read of any byte brings in anyway.
const LINE: u64 = 64;

/// The longest field a [`Layout`] reads: no field a view reads is longer than a page,
/// so a longer one comes from corrupt types and is left unread (the view finds it
/// missing) rather than sized into every struct of a batch.
const FIELD_MAX: u64 = 4096;

/// Structs a view reads in one batch ([`Layout::read_each`]) when it knows where many
/// are: enough for the memory underneath to overlap their cache misses or fetch them
/// with one system call, few enough that a syscall reader's page cache (4,096 pages
/// by default) holds every page of a batch.
pub(crate) const BATCH: usize = 256;

/// Little-endian reads of a struct's fields by offset. A field not among the bytes
/// read yields `None`, never a panic.
pub(crate) trait Fields {
    /// The `len` bytes at offset `off`, if they were read.
    fn get(&self, off: u64, len: u64) -> Option<&[u8]>;

    fn u64(&self, off: u64) -> Option<u64> {
        Some(u64::from_le_bytes(*self.get(off, 8)?.first_chunk()?))
    }

    /// A pointer (a `u64`, whatever it holds: check it before following it).
    fn ptr(&self, off: u64) -> Option<Gva> {
        self.u64(off).map(Gva::new)
    }

    fn u32(&self, off: u64) -> Option<u32> {
        Some(u32::from_le_bytes(*self.get(off, 4)?.first_chunk()?))
    }

    fn i32(&self, off: u64) -> Option<i32> {
        self.u32(off).map(|v| v as i32)
    }

    fn uint(&self, off: u64, size: u64) -> Option<u64> {
        match size {
            8 => self.u64(off),
            4 => self.u32(off).map(u64::from),
            2 => Some(u64::from(u16::from_le_bytes(*self.get(off, 2)?.first_chunk()?))),
            1 => self.get(off, 1).map(|b| u64::from(b[0])),
            _ => None,
        }
    }

    /// The string in a fixed array of `len` bytes that the kernel NUL-terminates:
    /// `Ok` with the text before the NUL, `Err` with every byte of the array when
    /// it holds none (the caller records that: it is never cut short silently).
    fn cstr(&self, off: u64, len: u64) -> Option<Result<String, String>> {
        let s = self.get(off, len)?;
        Some(match s.iter().position(|&b| b == 0) {
            Some(end) => Ok(text(&s[..end])),
            None => Err(text(s)),
        })
    }
}

/// `bytes` as text, invalid UTF-8 replaced (`from_utf8` first: it is the fast check,
/// and names almost always pass it).
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A struct's bytes read in one piece from its start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl Fields for Bytes<'_> {
    fn get(&self, off: u64, len: u64) -> Option<&[u8]> {
        let o = usize::try_from(off).ok()?;
        self.0.get(o..o.checked_add(usize::try_from(len).ok()?)?)
    }
}

/// One run of whole cache lines of a struct: bytes `start..end` of it, kept at `at`
/// in the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: u64,
    end: u64,
    at: usize,
}

/// Which bytes of a struct a view reads: the cache lines that hold the fields it
/// names, no byte beyond the struct's size. Lines that touch, or have one line
/// between them, are one run (one read): that line costs less than a read more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    runs: Vec<Run>,
    len: usize,
}

impl Layout {
    /// The lines holding `fields` (offset, length) of a struct of `size` bytes. A
    /// field that starts past `size` or is longer than [`FIELD_MAX`] (offsets that
    /// cannot be right) is not read, one that runs past `size` is read as far as the
    /// struct goes: the view finds them missing rather than reading past the object.
    pub fn new(size: u64, fields: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut lines: Vec<(u64, u64)> = fields
            .into_iter()
            .filter(|&(off, len)| len > 0 && len <= FIELD_MAX && off < size)
            .map(|(off, len)| {
                let end = off.saturating_add(len).min(size);
                (off / LINE * LINE, end.checked_next_multiple_of(LINE).unwrap_or(end))
            })
            .collect();
        lines.sort_unstable();
        let mut runs: Vec<Run> = Vec::new();
        let mut len = 0usize;
        for (start, end) in lines {
            let end = end.min(size);
            match runs.last_mut() {
                Some(r) if start <= r.end.saturating_add(LINE) => {
                    if end > r.end {
                        len += (end - r.end) as usize;
                        r.end = end;
                    }
                }
                _ => {
                    runs.push(Run { start, end, at: len });
                    len += (end - start) as usize;
                }
            }
        }
        Layout { runs, len }
    }

    /// Reads the struct at each of `bases`, all in one batch (see
    /// [`KernelMem::read_each`]).
    pub fn read_each<M: PhysMem>(&self, k: &KernelMem<M>, bases: &[Gva]) -> Read<'_> {
        let mut bytes = vec![0u8; self.len * bases.len()];
        let mut failed: Vec<Option<crate::Error>> = bases.iter().map(|_| None).collect();
        let mut pieces = Vec::with_capacity(bases.len() * self.runs.len());
        // The struct each piece belongs to.
        let mut of = Vec::with_capacity(pieces.capacity());
        for (i, (&base, buf)) in bases.iter().zip(bytes.chunks_exact_mut(self.len.max(1))).enumerate() {
            let mut rest = buf;
            for r in &self.runs {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut((r.end - r.start) as usize);
                rest = tail;
                match member(base, r.start) {
                    Ok(at) => {
                        pieces.push((at, head));
                        of.push(i);
                    }
                    Err(e) => failed[i] = failed[i].take().or(Some(e)),
                }
            }
        }
        for (r, i) in k.read_each(&mut pieces).into_iter().zip(of) {
            if let Err(e) = r {
                failed[i] = failed[i].take().or(Some(e));
            }
        }
        Read { layout: self, bytes, failed }
    }

    /// The fields in `bytes`, one struct's share of a [`Read`].
    fn parts<'a>(&'a self, bytes: &'a [u8]) -> Parts<'a> {
        Parts { layout: self, bytes }
    }
}

/// Structs read as one batch ([`Layout::read_each`]): each one's lines, one after
/// another in one buffer, or why they could not be read.
#[derive(Debug)]
pub(crate) struct Read<'l> {
    layout: &'l Layout,
    bytes: Vec<u8>,
    failed: Vec<Option<crate::Error>>,
}

impl Read<'_> {
    /// Struct `i`'s fields (`i` below the number of bases read), or the error that
    /// names the first of its runs that could not be read.
    pub fn get(&self, i: usize) -> Result<Parts<'_>, &crate::Error> {
        if let Some(e) = &self.failed[i] {
            return Err(e);
        }
        let n = self.layout.len;
        Ok(self.layout.parts(&self.bytes[i * n..(i + 1) * n]))
    }
}

/// A struct's fields as a [`Layout`] read them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    layout: &'a Layout,
    bytes: &'a [u8],
}

impl Fields for Parts<'_> {
    fn get(&self, off: u64, len: u64) -> Option<&[u8]> {
        let end = off.checked_add(len)?;
        let r = self.layout.runs.iter().find(|r| r.start <= off && end <= r.end)?;
        let at = r.at + usize::try_from(off - r.start).ok()?;
        self.bytes.get(at..at.checked_add(usize::try_from(len).ok()?)?)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    impl Layout {
        /// The runs, as `(offset, length)` within the struct.
        fn ranges(&self) -> Vec<(u64, u64)> {
            self.runs.iter().map(|r| (r.start, r.end - r.start)).collect()
        }
    }

    #[test]
    fn fields_become_merged_lines() {
        // Two fields in one line, two in touching lines, one a line further, one two
        // lines further, one past the end.
        let fields = [(0x10, 8), (0x30, 4), (0x7c, 8), (0x80, 4), (0x100, 8), (0x800, 16), (0x8c0, 8), (0x2000, 8)];
        let l = Layout::new(0x1000, fields);
        assert_eq!(l.ranges(), [(0, 0x140), (0x800, 0x40), (0x8c0, 0x40)]);
        assert_eq!(l.len, 0x1c0);
        // A field that runs past the struct is cut at its end; one longer than a page
        // (corrupt types) is not read at all.
        let l = Layout::new(0x90, [(0x88, 16)]);
        assert_eq!(l.ranges(), [(0x80, 0x10)]);
        let l = Layout::new(u64::MAX, [(0x10, 8), (0x20, 1 << 40)]);
        assert_eq!((l.ranges(), l.len), (vec![(0, 0x40)], 0x40));
    }

    #[test]
    fn parts_answer_for_the_lines_read_only() {
        let l = Layout::new(0x1000, [(0x10, 8), (0x800, 16)]);
        let mut bytes = vec![0u8; l.len];
        bytes[0x10] = 7;
        bytes[0x40..0x44].copy_from_slice(b"abc\0");
        let p = l.parts(&bytes);
        assert_eq!(p.u64(0x10), Some(7));
        assert_eq!(p.cstr(0x800, 16), Some(Ok("abc".into())));
        // In the struct but not read, across two runs, and past the end: missing.
        assert_eq!(p.u64(0x400), None);
        assert_eq!(p.get(0x3c, 0x800), None);
        assert_eq!(p.u64(u64::MAX - 3), None);
    }

    #[test]
    fn a_batch_reads_each_struct_and_fails_only_the_unreadable() {
        let mut fx = crate::views::fixture::Fx::new();
        let (a, b) = (fx.alloc(0x1000), fx.alloc(0x1000));
        for (base, v) in [(a, 1), (b, 2)] {
            fx.w64(base + 0x10, v);
            fx.w64(base + 0x800, 10 * v);
        }
        let (k, _) = fx.finish();
        let l = Layout::new(0x1000, [(0x10, 8), (0x800, 8)]);
        let outside = Gva::new(crate::views::fixture::DIRECT + (1 << 40));
        let read = l.read_each(&k, &[Gva::new(a), outside, Gva::new(b)]);
        let got = |i: usize| read.get(i).map(|p| (p.u64(0x10), p.u64(0x800)));
        assert_eq!(got(0).unwrap(), (Some(1), Some(10)));
        assert!(got(1).is_err(), "a struct outside RAM is an error, not zeros");
        assert_eq!(got(2).unwrap(), (Some(2), Some(20)));
    }

    proptest! {
        /// Every field named is readable, at the bytes a contiguous read would hold.
        #[test]
        fn parts_equal_a_contiguous_read(
            size in 1u64..0x3000,
            fields in prop::collection::vec((0u64..0x3000, 1u64..24), 0..12),
        ) {
            let whole: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            let l = Layout::new(size, fields.iter().copied());
            let mut bytes = vec![0u8; l.len];
            for (r, (start, len)) in l.runs.iter().zip(l.ranges()) {
                bytes[r.at..r.at + len as usize].copy_from_slice(&whole[start as usize..(start + len) as usize]);
            }
            let (p, whole) = (l.parts(&bytes), Bytes(&whole));
            for (off, len) in fields {
                prop_assert_eq!(p.get(off, len), whole.get(off, len));
            }
            prop_assert!(l.len as u64 <= size.div_ceil(LINE) * LINE);
        }
    }
}
