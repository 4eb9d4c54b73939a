//! A deterministic writer of the `newc` cpio format the kernel unpacks as initramfs.
//!
//! Written here rather than shelling out to cpio: the host may lack it, and we want
//! device nodes without root and byte-identical output for identical input (so the
//! initramfs hash only changes when its contents do).

use std::io::Write;

/// One member of the archive.
pub enum Entry<'a> {
    Dir,
    File { data: &'a [u8], mode: u32 },
    Symlink { target: &'a str },
    CharDev { major: u32, minor: u32, mode: u32 },
}

pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self { out, ino: 1, written: 0 }
    }

    /// Appends `path` (relative, no leading `/`).
    pub fn add(&mut self, path: &str, entry: Entry<'_>) -> std::io::Result<()> {
        let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
            Entry::Dir => (0o040755, &[], (0, 0)),
            Entry::File { data, mode } => (0o100000 | mode, data, (0, 0)),
            Entry::Symlink { target } => (0o120777, target.as_bytes(), (0, 0)),
            Entry::CharDev { major, minor, mode } => (0o020000 | mode, &[], (major, minor)),
        };
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        self.header(path, mode, nlink, data.len() as u32, rdev)?;
        self.emit(data)?;
        self.pad()
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        // The kernel does not need it, but tools expect 512-byte alignment.
        while !self.written.is_multiple_of(512) {
            self.emit(&[0])?;
        }
        Ok(self.out)
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32, rdev: (u32, u32)) -> std::io::Result<()> {
        let ino = if name == "TRAILER!!!" { 0 } else { self.ino };
        self.ino += 1;
        let namesize = name.len() as u32 + 1;
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.emit(h.as_bytes())?;
        self.emit(name.as_bytes())?;
        self.emit(&[0])?;
        self.pad()
    }

    fn emit(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> std::io::Result<()> {
        while !self.written.is_multiple_of(4) {
            self.emit(&[0])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = Writer::new(Vec::new());
        w.add("dev", Entry::Dir).unwrap();
        w.add("dev/console", Entry::CharDev { major: 5, minor: 1, mode: 0o600 }).unwrap();
        w.add("init", Entry::File { data: b"#!/bin/sh\n", mode: 0o755 }).unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 512, 0);
        // Every header starts on a 4-byte boundary.
        let text = String::from_utf8_lossy(&out);
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
        assert!(text.contains("dev/console"));
        assert!(text.contains("TRAILER!!!"));
    }
}
