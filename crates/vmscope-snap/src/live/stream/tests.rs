use proptest::prelude::*;
use vmscope_mem::{Gpa, PhysMem, Region};

use super::*;

/// Builds streams the way QEMU 7.2 writes them.
#[derive(Default)]
pub(crate) struct W(pub(crate) Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn be32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn be64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str8(&mut self, s: &str) -> &mut Self {
        self.u8(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn header(&mut self, id: u32, t: u8, name: &str) -> &mut Self {
        self.u8(t).be32(id).str8(name).be32(0).be32(4)
    }
    fn page(&mut self, block: Option<&str>, off: u64, flags: u64) -> &mut Self {
        match block {
            Some(b) => self.be64(off | flags).str8(b),
            None => self.be64(off | flags | F_CONTINUE),
        }
    }
}

/// A stream of a 64 KiB "ram" block and an 8 KiB "pc.bios" block.
pub(crate) fn sample() -> Vec<u8> {
    let mut w = W::default();
    w.be32(MAGIC).be32(VERSION);
    w.u8(CONFIGURATION).be32(10);
    w.0.extend_from_slice(b"pc-q35-7.2");
    w.u8(SUBSECTION).str8("configuration/capabilities").be32(1).be32(1).str8("x-ignore-shared");
    // START: block list.
    w.header(2, SEC_START, "ram").be64((0x10000 + 0x2000) | F_MEM_SIZE);
    w.str8("pc.bios").be64(0x2000).str8("ram").be64(0x10000);
    w.be64(F_EOS).u8(FOOTER).be32(2);
    // PART: pages.
    w.u8(SEC_PART).be32(2);
    w.page(Some("pc.bios"), 0x1000, F_PAGE);
    w.0.extend(std::iter::repeat_n(0xbb, 4096));
    w.page(Some("ram"), 0x3000, F_PAGE);
    w.0.extend(std::iter::repeat_n(0x33, 4096));
    w.page(None, 0x4000, F_ZERO).u8(0);
    w.page(None, 0x5000, F_ZERO).u8(0x55);
    w.page(None, 0x6000, F_PAGE);
    w.0.extend((0..4096).map(|i| (i % 7) as u8));
    w.be64(F_EOS).u8(FOOTER).be32(2);
    // A page sent again as zero (plain pre-copy re-sends dirty pages).
    w.u8(SEC_END).be32(2).page(Some("ram"), 0x3000, F_ZERO).u8(0).be64(F_EOS).u8(FOOTER).be32(2);
    // Device state nobody here can parse, then EOF.
    w.header(3, SEC_FULL, "timer").be64(0x1234_5678).u8(FOOTER).be32(3).u8(SEC_EOF);
    w.0
}

fn map() -> MemoryMap {
    MemoryMap::new(vec![
        Region::new(Gpa::new(0), 0x8000, 0, "ram"),
        Region::new(Gpa::new(0x10_0000), 0x8000, 0x8000, "ram"),
    ])
    .unwrap()
}

#[test]
fn parses_ram_and_skips_the_rest() {
    let bytes = sample();
    let (snap, info) = parse_stream(&bytes[..], &map()).unwrap();
    assert_eq!(info.machine, "pc-q35-7.2");
    assert_eq!(info.blocks, vec![("pc.bios".to_owned(), 0x2000), ("ram".to_owned(), 0x10000)]);
    assert_eq!(info.ram_block, "ram");
    assert_eq!((info.pages, info.zero_pages), (2, 3));
    assert_eq!(info.bytes, bytes.len() as u64);
    let b = |gpa: u64| {
        let mut x = [0u8; 1];
        snap.read(Gpa::new(gpa), &mut x).unwrap();
        x[0]
    };
    assert_eq!(b(0x3000), 0, "re-sent as zero");
    assert_eq!(b(0x5fff), 0x55);
    assert_eq!(b(0x6003), 3);
    assert_eq!(snap.data_extents(), &[0x5000..0x7000]);
}

#[test]
fn truncations_and_damage_are_errors() {
    let bytes = sample();
    for cut in [0, 4, 8, 30, 100, 4200, bytes.len() / 2] {
        assert!(parse_stream(&bytes[..cut], &map()).is_err(), "cut at {cut}");
    }
    let mut bad = bytes.clone();
    bad[3] = b'X';
    assert!(parse_stream(&bad[..], &map()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn damaged_streams_never_panic(flips in proptest::collection::vec((0usize..9000, any::<u8>()), 1..6)) {
        let mut bytes = sample();
        for (at, v) in flips {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        let _ = parse_stream(&bytes[..], &map());
    }
}

#[test]
fn background_snapshot_streams_have_no_end_section() {
    // As QEMU 7.2's bg_migration_completion writes it: PART sections, then the
    // buffered device state right away.
    let mut w = W::default();
    w.be32(MAGIC).be32(VERSION);
    w.header(2, SEC_START, "ram").be64(0x10000 | F_MEM_SIZE).str8("ram").be64(0x10000).be64(F_EOS).u8(FOOTER).be32(2);
    w.u8(SEC_PART).be32(2).page(Some("ram"), 0x1000, F_PAGE);
    w.0.extend(std::iter::repeat_n(0x11, 4096));
    w.be64(F_EOS).u8(FOOTER).be32(2);
    w.header(0, SEC_FULL, "timer").be64(7).u8(FOOTER).be32(0);
    w.header(1, SEC_FULL, "cpu_common").u8(1);
    let (snap, info) = parse_stream(&w.0[..], &map()).unwrap();
    assert_eq!(info.pages, 1);
    assert_eq!(snap.data_extents(), &[0x1000..0x2000]);
    // Without any RAM section, a device section is an error.
    let mut w = W::default();
    w.be32(MAGIC).be32(VERSION).header(0, SEC_FULL, "timer").be64(7);
    assert!(parse_stream(&w.0[..], &map()).is_err());
}
