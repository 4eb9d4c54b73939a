//! Just enough ELF64 (little-endian) to take a vmlinux apart: sections by name
//! (`.BTF`, `.notes`), loadable segments, and the GNU build-ID note.

use crate::{Error, Result};

/// A section of an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    /// Its virtual address.
    pub addr: u64,
    /// Its bytes (empty for NOBITS).
    pub data: &'a [u8],
}

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Virtual address.
    pub vaddr: u64,
    /// Physical (load) address.
    pub paddr: u64,
    /// Size in memory (`p_memsz`; bytes past `data` are zero).
    pub memsz: u64,
    /// The file bytes (`p_filesz`).
    pub data: &'a [u8],
}

/// A parsed ELF64 little-endian file.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
}

fn rd<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N]> {
    b.get(at..at.checked_add(N).ok_or_else(|| Error::Elf("offset overflow".into()))?)
        .and_then(|s| s.first_chunk::<N>().copied())
        .ok_or_else(|| Error::Elf(format!("truncated at {at:#x}")))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    rd::<2>(b, at).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    rd::<4>(b, at).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    rd::<8>(b, at).map(u64::from_le_bytes)
}

fn slice(b: &[u8], off: u64, len: u64) -> Result<&[u8]> {
    let (off, len) = (usize::try_from(off).ok(), usize::try_from(len).ok());
    off.zip(len)
        .and_then(|(o, l)| b.get(o..o.checked_add(l)?))
        .ok_or_else(|| Error::Elf("a section or segment runs past the end of the file".into()))
}

impl<'a> Elf<'a> {
    /// Checks the identification: ELF, 64-bit, little-endian.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
            return Err(Error::Elf("not a 64-bit little-endian ELF file".into()));
        }
        Ok(Elf { bytes })
    }

    /// Every section, with its name.
    pub fn sections(&self) -> Result<Vec<(String, Section<'a>)>> {
        let b = self.bytes;
        let shoff = u64_at(b, 0x28)? as usize;
        let shentsize = u16_at(b, 0x3a)? as usize;
        let shnum = u16_at(b, 0x3c)? as usize;
        let shstrndx = u16_at(b, 0x3e)? as usize;
        if shentsize < 0x40 {
            return Err(Error::Elf("section headers too small".into()));
        }
        let hdr = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
        let strtab_at = hdr(shstrndx).ok_or_else(|| Error::Elf("bad shstrndx".into()))?;
        let strtab = slice(b, u64_at(b, strtab_at + 0x18)?, u64_at(b, strtab_at + 0x20)?)?;
        let mut out = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let h = hdr(i).ok_or_else(|| Error::Elf("bad section header offset".into()))?;
            let name_off = u32_at(b, h)? as usize;
            let kind = u32_at(b, h + 4)?;
            let addr = u64_at(b, h + 0x10)?;
            let data = if kind == 8 { &[][..] } else { slice(b, u64_at(b, h + 0x18)?, u64_at(b, h + 0x20)?)? };
            let name = strtab
                .get(name_off..)
                .and_then(|s| s.split(|&c| c == 0).next())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            out.push((name, Section { addr, data }));
        }
        Ok(out)
    }

    /// The section called `name`.
    pub fn section(&self, name: &str) -> Result<Option<Section<'a>>> {
        Ok(self.sections()?.into_iter().find(|(n, _)| n == name).map(|(_, s)| s))
    }

    /// Every `PT_LOAD` segment.
    pub fn load_segments(&self) -> Result<Vec<Segment<'a>>> {
        let b = self.bytes;
        let phoff = u64_at(b, 0x20)? as usize;
        let phentsize = u16_at(b, 0x36)? as usize;
        let phnum = u16_at(b, 0x38)? as usize;
        let mut out = Vec::new();
        for i in 0..phnum {
            let h = phoff + i * phentsize;
            if u32_at(b, h)? != 1 {
                continue;
            }
            out.push(Segment {
                vaddr: u64_at(b, h + 0x10)?,
                paddr: u64_at(b, h + 0x18)?,
                memsz: u64_at(b, h + 0x28)?,
                data: slice(b, u64_at(b, h + 0x08)?, u64_at(b, h + 0x20)?)?,
            });
        }
        Ok(out)
    }

    /// The GNU build ID, from the `.notes` section (Linux) or `.note.gnu.build-id`.
    pub fn build_id(&self) -> Result<Option<Vec<u8>>> {
        for name in [".notes", ".note.gnu.build-id"] {
            if let Some(s) = self.section(name)?
                && let Some(id) = gnu_build_id(s.data)
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

/// The descriptor of the first `NT_GNU_BUILD_ID` note named `GNU` in a notes blob.
pub fn gnu_build_id(notes: &[u8]) -> Option<Vec<u8>> {
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at).ok()? as usize;
        let descsz = u32_at(notes, at + 4).ok()? as usize;
        let kind = u32_at(notes, at + 8).ok()?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(namesz.next_multiple_of(4))?;
        let next = desc_at.checked_add(descsz.next_multiple_of(4))?;
        if next > notes.len() {
            return None;
        }
        if kind == 3 && notes.get(name_at..name_at + namesz) == Some(b"GNU\0") {
            return notes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
        }
        at = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_note() {
        let mut n = Vec::new();
        // A Xen note first, then the build ID.
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&6u32.to_le_bytes());
        n.extend_from_slice(b"Xen\0\x01\x02\x03\x04");
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(b"GNU\0\xaa\xbb\xcc\0");
        assert_eq!(gnu_build_id(&n), Some(vec![0xaa, 0xbb, 0xcc]));
        assert_eq!(gnu_build_id(&n[..20]), None);
        assert!(Elf::parse(b"not an elf").is_err());
    }
}
