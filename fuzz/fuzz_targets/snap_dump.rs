//! Arbitrary bytes as a dump file: the ELF, LiME and raw readers must not panic,
//! must not allocate by what the file claims, and reads of whatever map they build
//! must stay in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmscope_mem::PhysMem;
use vmscope_snap::DumpFile;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // Steer most inputs past the magic check into one parser.
    let mut bytes = match sel % 3 {
        0 => b"\x7fELF\x02\x01\x01\x00".to_vec(),
        1 => [0x45, 0x4d, 0x69, 0x4c, 1, 0, 0, 0].to_vec(),
        _ => Vec::new(),
    };
    bytes.extend_from_slice(rest);
    if let Ok(d) = DumpFile::from_bytes(bytes) {
        let _ = d.meta().vmcoreinfo_value("OSRELEASE");
        for r in d.memory_map().regions().iter().take(64) {
            let mut b = [0u8; 64];
            let n = (r.size as usize).min(64);
            let _ = d.read(r.gpa, &mut b[..n]);
            if let Some(last) = r.gpa.checked_add(r.size.saturating_sub(1)) {
                let _ = d.read(last, &mut b[..1]);
            }
        }
    }
});
