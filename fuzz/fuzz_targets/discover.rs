//! Arbitrary bytes as guest RAM, the first thing a dump file or a live guest goes
//! through: finding the kernel (banner, kallsyms, KASLR, paging) and attaching must
//! fail cleanly or succeed, never panic or hang. Byte 0 picks the hints (none, or a
//! CR3 and CR4 from bytes 1..17); the RAM is the rest, placed at 2 MiB so that the
//! search for a 2 MiB-aligned kernel start has somewhere to look.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmscope_linux::{Hints, Kernel, discover};
use vmscope_mem::{MemoryMap, SliceMem};

const AT: usize = 2 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let (hints, ram) = match (sel % 2, rest.len() >= 16) {
        (1, true) => {
            let cr3 = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
            let cr4 = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
            (Hints::from_registers(cr3, cr4), &rest[16..])
        }
        _ => (Hints::none(), rest),
    };
    let mut bytes = vec![0u8; AT + ram.len()];
    bytes[AT..].copy_from_slice(ram);
    let len = bytes.len() as u64;
    let mem = SliceMem::new(bytes, MemoryMap::flat(len));
    if discover(&mem, &hints).is_ok() {
        let _ = Kernel::attach(&mem, hints).map(|k| k.processes());
    }
});
