//! kallsyms fixtures cut from real guests (Debian 6.1 and 6.12, KASLR on): the
//! tables of the first 2048 symbols — the kernel's own token table, compressed
//! names, offsets and relocated base, repacked in the kernel's own table order
//! with `kallsyms_seqs_of_names` recomputed for them — and the first 2048 lines of
//! the guest's /proc/kallsyms they must decode to.
//!
//! `make_fixtures` (ignored) rebuilds them from raw RAM dumps of such guests:
//! `VMSCOPE_DUMPS=dir cargo test -p vmscope-linux --test fixtures -- --ignored`
//! with `dir/{61k,612k5}/{ram.bin,kallsyms}`.

use std::path::{Path, PathBuf};

use vmscope_linux::kallsyms::{KallsymsLayout, TableOrder, TablesView, decode_window};
use vmscope_linux::{Hints, discover};
use vmscope_mem::{Gpa, MemoryMap, PhysMem, SliceMem};

const COUNT: usize = 2048;
/// Where the fixture windows claim to sit in guest-physical memory.
const BASE: u64 = 0x1a00_0000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn fixtures_decode_to_the_guests_kallsyms() {
    for (kernel, order) in [("6.1", TableOrder::OffsetsFirst), ("6.12", TableOrder::OffsetsLast)] {
        let bytes = std::fs::read(fixture(&format!("kallsyms-{kernel}.bin"))).unwrap();
        let want = std::fs::read_to_string(fixture(&format!("kallsyms-{kernel}.txt"))).unwrap();
        let k = decode_window(&bytes, Gpa::new(BASE)).unwrap();
        assert_eq!(k.layout.order, order, "{kernel}");
        assert!(k.layout.seqs_of_names.is_some(), "{kernel}");
        assert_eq!(k.symbols.len(), COUNT);
        assert_eq!(k.symbols.to_proc_kallsyms(), want, "{kernel}");
        // Lookups through seqs_of_names agree with the decoded table.
        let view = TablesView::new(&bytes, Gpa::new(BASE), k.layout);
        for s in k.symbols.iter().step_by(61) {
            let first = k.symbols.lookup(s.name).unwrap().index as u32;
            assert_eq!(view.lookup(s.name), Some(first), "{kernel}: {}", s.name);
            if !s.is_absolute() {
                assert_eq!(k.symbols.symbolize(s.addr).map(|(x, off)| (x.addr, off)), Some((s.addr, 0)));
            }
        }
        assert_eq!(view.lookup("no_such_symbol"), None);
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn pad8(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(8), 0);
}

/// The first `COUNT` symbols' tables, repacked as `l.order` lays them out.
fn cut(mem: &impl PhysMem, l: &KallsymsLayout, names: &[String]) -> Vec<u8> {
    let read = |gpa: Gpa, len: usize| {
        let mut v = vec![0u8; len];
        mem.read(gpa, &mut v).unwrap();
        v
    };
    let tokens_len = (l.token_index.raw() - l.token_table.raw()) as usize;
    let tokens = read(l.token_table, tokens_len + 512);
    let all_names = read(l.names, (l.markers.raw() - l.names.raw()) as usize);
    let mut end = 0;
    for _ in 0..COUNT {
        let b0 = all_names[end] as usize;
        end += if b0 & 0x80 == 0 { 1 + b0 } else { 2 + ((b0 & 0x7f) | (all_names[end + 1] as usize) << 7) };
    }
    let markers = read(l.markers, 4 * COUNT.div_ceil(256));
    let offsets = read(l.offsets, 4 * COUNT);
    let mut order: Vec<usize> = (0..COUNT).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]).then(a.cmp(&b)));
    let seqs: Vec<u8> = order.iter().flat_map(|&i| (i as u32).to_be_bytes()[1..].to_vec()).collect();

    let mut w = Vec::new();
    let offsets_and_base = |w: &mut Vec<u8>| {
        w.extend_from_slice(&offsets);
        pad8(w);
        w.extend_from_slice(&l.relative_base_value.raw().to_le_bytes());
    };
    if l.order == TableOrder::OffsetsFirst {
        offsets_and_base(&mut w);
    }
    w.extend_from_slice(&(COUNT as u32).to_le_bytes());
    pad8(&mut w);
    w.extend_from_slice(&all_names[..end]);
    pad8(&mut w);
    w.extend_from_slice(&markers);
    pad8(&mut w);
    if l.order == TableOrder::OffsetsFirst {
        w.extend_from_slice(&seqs);
        pad8(&mut w);
    }
    let table_at = w.len();
    w.extend_from_slice(&tokens);
    // The token index holds offsets from the table start: unchanged by the move.
    assert_eq!(u32_at(&w, table_at + tokens_len) & 0xffff, 0);
    if l.order == TableOrder::OffsetsLast {
        pad8(&mut w);
        offsets_and_base(&mut w);
        w.extend_from_slice(&seqs);
    }
    pad8(&mut w);
    w
}

#[test]
#[ignore = "rebuilds the committed fixtures from RAM dumps (VMSCOPE_DUMPS)"]
fn make_fixtures() {
    let dumps = PathBuf::from(std::env::var("VMSCOPE_DUMPS").expect("VMSCOPE_DUMPS=dir with 61k/ and 612k5/"));
    for (kernel, dir) in [("6.1", "61k"), ("6.12", "612k5")] {
        let ram = std::fs::read(dumps.join(dir).join("ram.bin")).unwrap();
        let size = ram.len() as u64;
        let mem = SliceMem::new(ram, MemoryMap::flat(size));
        let (_, k) = discover(&mem, &Hints::none()).unwrap();
        let names: Vec<String> = k.symbols.iter().take(COUNT).map(|s| s.name.to_owned()).collect();
        let bin = cut(&mem, &k.layout, &names);
        let proc = std::fs::read_to_string(dumps.join(dir).join("kallsyms")).unwrap();
        let txt: String = proc.lines().take(COUNT).map(|l| format!("{l}\n")).collect();
        std::fs::create_dir_all(fixture("")).unwrap();
        std::fs::write(fixture(&format!("kallsyms-{kernel}.bin")), bin).unwrap();
        std::fs::write(fixture(&format!("kallsyms-{kernel}.txt")), txt).unwrap();
    }
}
