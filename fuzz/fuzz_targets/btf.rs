//! Arbitrary bytes as a kernel's BTF (which vmscope reads out of guest memory, so a
//! hostile guest writes it): parsing, resolving every offset the views use, and
//! looking up the types by name never panic. Byte 0 even: the rest after a valid
//! BTF header (magic, version 1, header length 24, and the type and string sections
//! as the next bytes say), so that the fuzzer starts inside the type section.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vmscope_linux::types::btf::BtfTypes;
use vmscope_linux::types::TypeSource;
use vmscope_linux::{Offsets, Profile, SymbolSource, SymbolTable};

fn with_header(rest: &[u8]) -> Vec<u8> {
    // type_off, type_len, str_off, str_len after the 24-byte header.
    let (head, body) = rest.split_at(rest.len().min(4));
    let mut split = [0u8; 4];
    split[..head.len()].copy_from_slice(head);
    let body_len = body.len() as u32;
    let type_len = u32::from_le_bytes(split) % (body_len + 1);
    let mut b = vec![0x9f, 0xeb, 1, 0];
    b.extend_from_slice(&24u32.to_le_bytes());
    for v in [0, type_len, type_len, body_len - type_len] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(body);
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let blob = if sel % 2 == 0 { with_header(rest) } else { rest.to_vec() };
    let Ok(types) = BtfTypes::parse(&blob) else { return };
    for name in ["task_struct", "mm_struct", "list_head", "module", "file", "dentry", "maple_node"] {
        let _ = types.struct_def(name);
    }
    let _ = types.enumerator("MODULE_STATE_LIVE");
    let types: Arc<dyn TypeSource> = Arc::new(types);
    let profile = Profile::new(SymbolTable::new(SymbolSource::Kallsyms), types);
    let _ = Offsets::resolve(&profile);
});
