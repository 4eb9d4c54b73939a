//! Arbitrary bytes as a QEMU migration stream: the parser must not panic and must
//! allocate by the caller's memory map only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmscope_mem::MemoryMap;
use vmscope_snap::live::parse_stream;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = Vec::new();
    if sel % 2 == 0 {
        bytes.extend_from_slice(b"QEVM\x00\x00\x00\x03");
    }
    bytes.extend_from_slice(rest);
    let _ = parse_stream(&bytes[..], &MemoryMap::flat(1 << 20));
});
