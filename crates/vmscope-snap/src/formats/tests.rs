use proptest::prelude::*;
use vmscope_hv::VcpuRegisters;
use vmscope_mem::{Gpa, MemoryMap, PhysMem, Region, SliceMem};

use super::*;

/// 0x0000-0x9ffff and 0x100000-0x2fffff, like a small q35 guest, with markers.
fn guest() -> SliceMem<Vec<u8>> {
    let map = MemoryMap::new(vec![
        Region::new(Gpa::new(0), 0xa_0000, 0, "ram"),
        Region::new(Gpa::new(0x10_0000), 0x20_0000, 0x10_0000, "ram"),
    ])
    .unwrap();
    let mut ram = vec![0u8; 0x30_0000];
    ram[0x1000..0x1008].copy_from_slice(b"LOW-MARK");
    ram[0x2f_fff8..0x30_0000].copy_from_slice(b"END-MARK");
    for (i, b) in ram[0x20_0000..0x20_4000].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    SliceMem::new(ram, map)
}

fn meta() -> DumpMeta {
    DumpMeta {
        vmcoreinfo: Some("OSRELEASE=6.1.0-test\nPAGESIZE=4096\n".into()),
        vcpus: vec![
            VcpuRegisters { rip: 0xffff_ffff_8100_0000, cr3: 0x1234_5000, cr4: 0x3406f0, rsp: 7, ..Default::default() },
            VcpuRegisters { rip: 1, cr3: 0x9000, r15: 15, gs_base: 0xffff_8880_0000_0000, ..Default::default() },
        ],
    }
}

fn same_memory(a: &dyn PhysMem, b: &dyn PhysMem) {
    for r in a.memory_map().regions() {
        let mut x = vec![0u8; r.size as usize];
        let mut y = vec![0u8; r.size as usize];
        a.read(r.gpa, &mut x).unwrap();
        b.read(r.gpa, &mut y).unwrap();
        assert!(x == y, "region {r:?} differs");
    }
}

#[test]
fn every_format_round_trips() {
    let g = guest();
    let dir = tempfile::tempdir().unwrap();
    for f in [Format::Raw, Format::Elf, Format::Lime] {
        let path = dir.path().join(format!("dump.{}", f.name()));
        let st = write_dump(&path, f, &g, &meta()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), st.file_bytes);
        assert_eq!(st.data_bytes, 2 * 4096 + 0x4000, "{f:?}: only non-zero pages are written");
        let d = DumpFile::open(&path).unwrap();
        assert_eq!(d.format(), f);
        same_memory(&g, &d);
        let mut b = [0u8; 8];
        d.read(Gpa::new(0x1000), &mut b).unwrap();
        assert_eq!(&b, b"LOW-MARK");
        assert!(d.read(Gpa::new(0xb_0000), &mut b).is_err(), "{f:?}: the hole is unbacked");
        match f {
            Format::Lime => assert_eq!(d.meta(), &DumpMeta::default()),
            _ => {
                assert_eq!(d.meta().vmcoreinfo_value("OSRELEASE"), Some("6.1.0-test"));
                assert_eq!(d.meta().vcpus.len(), 2);
                assert_eq!(d.meta().vcpus[0].cr3, 0x1234_5000);
                assert_eq!(d.meta().vcpus[0].rip, 0xffff_ffff_8100_0000);
                assert_eq!(d.meta().vcpus[1].r15, 15);
                assert_eq!(d.meta().vcpus[1].gs_base, 0xffff_8880_0000_0000);
            }
        }
    }
}

/// Written from known data extents, only those are read: a dump of memory that
/// fails outside them (as an 8 GiB guest's untouched RAM never needs reading) is the
/// same as one of all of it.
#[test]
fn extents_bound_what_is_read() {
    let g = guest();
    let faulty = vmscope_mem::FaultyMem::new(guest());
    faulty.poison(Gpa::new(0x28_0000), 0x1000); // zeros in `g`, outside the extents
    let data = [0x1000..0x2000, 0x20_0000..0x20_4000, 0x2f_f000..0x30_0000];
    let dir = tempfile::tempdir().unwrap();
    for f in [Format::Raw, Format::Elf, Format::Lime] {
        let path = dir.path().join(format!("sparse.{}", f.name()));
        assert!(write_dump(&path, f, &faulty, &meta()).is_err(), "{f:?}: the poisoned page is read without extents");
        let st = write_dump_from(&path, f, &DumpSource { mem: &faulty, data: Some(&data) }, &meta()).unwrap();
        assert_eq!(st.data_bytes, 2 * 4096 + 0x4000, "{f:?}");
        same_memory(&g, &DumpFile::open(&path).unwrap());
    }
}

#[test]
fn raw_without_sidecar_is_flat_and_elf_notes_parse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    write_dump(&path, Format::Raw, &guest(), &DumpMeta::default()).unwrap();
    std::fs::remove_file(raw::sidecar_path(&path)).unwrap();
    let d = DumpFile::open(&path).unwrap();
    assert_eq!(d.memory_map(), &MemoryMap::flat(0x30_0000));
    let mut b = [1u8; 4];
    d.read(Gpa::new(0xb_0000), &mut b).unwrap();
    assert_eq!(b, [0; 4]);

    let n = elf::notes(&meta());
    let parsed = elf::parse_notes(&n);
    assert_eq!(parsed.len(), 5);
    assert_eq!(parsed[4].0, b"VMCOREINFO");
}

#[test]
fn hostile_files_are_errors() {
    let cases: Vec<Vec<u8>> = vec![
        lime::header(0x2000, 0x1000).to_vec(),                 // backwards
        lime::header(0, u64::MAX).to_vec(),                    // too large
        lime::header(0, 0xfff).to_vec(),                       // truncated data
        [&lime::header(0, 0)[..], &[0], &[0xEu8; 8]].concat(), // trailing junk
        b"\x7fELF\x02\x01\x01".to_vec(),                       // short ELF header
        {
            let mut e = vec![0u8; 64];
            e[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
            e[54] = 56;
            e[56] = 0xff;
            e[57] = 0xff; // PN_XNUM, section header out of the file
            e[40] = 0xf0;
            e
        },
    ];
    for c in cases {
        assert!(DumpFile::from_bytes(c.clone()).is_err(), "{c:?}");
    }
    // Overlapping LiME ranges.
    let mut two = lime::header(0, 0xfff).to_vec();
    two.extend(vec![0u8; 0x1000]);
    two.extend(lime::header(0x800, 0x17ff));
    two.extend(vec![0u8; 0x1000]);
    assert!(matches!(DumpFile::from_bytes(two), Err(Error::Malformed { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), kind in 0u8..3) {
        let prefix: &[u8] = match kind {
            0 => b"\x7fELF\x02\x01\x01\x00",
            1 => &lime::header(0, 0x3f),
            _ => b"",
        };
        bytes.splice(0..0, prefix.iter().copied());
        if let Ok(d) = DumpFile::from_bytes(bytes) {
            for r in d.memory_map().regions().to_vec() {
                let mut b = vec![0u8; r.size.min(64) as usize];
                let _ = d.read(r.gpa, &mut b);
            }
        }
    }

    #[test]
    fn mutated_elf_dumps_never_panic(flips in proptest::collection::vec((0usize..1200, any::<u8>()), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e");
        write_dump(&path, Format::Elf, &guest(), &meta()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, v) in flips {
            bytes[at] = v;
        }
        if let Ok(d) = DumpFile::from_bytes(bytes) {
            let _ = d.read_u64(Gpa::new(0x1000));
        }
    }
}
