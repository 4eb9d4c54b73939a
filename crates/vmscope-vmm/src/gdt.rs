//! GDT entries for the 64-bit boot entry, and the segment registers KVM derives from
//! them (the hidden part of each segment register must match its descriptor).

use kvm_bindings::kvm_segment;

/// A flat GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18).
pub fn boot_gdt() -> [u64; 4] {
    [
        gdt_entry(0, 0, 0),
        gdt_entry(0xa09b, 0, 0xfffff), // code: L=1, present, DPL 0, execute/read
        gdt_entry(0xc093, 0, 0xfffff), // data: G=1, D/B=1, present, read/write
        gdt_entry(0x808b, 0, 0xfffff), // TSS: present, busy 64-bit TSS
    ]
}

/// The PVH entry's GDT: "CS: 32-bit read/execute code segment with base 0 and
/// limit 4 GiB", DS/ES/SS flat data, and a TSS; same selectors as [`boot_gdt`].
pub fn pvh_gdt() -> [u64; 4] {
    [
        gdt_entry(0, 0, 0),
        gdt_entry(0xc09b, 0, 0xfffff), // code: D=1, G=1, present, execute/read
        gdt_entry(0xc093, 0, 0xfffff), // data
        gdt_entry(0x008b, 0, 0x67),    // TSS: present, busy 32-bit TSS
    ]
}

/// Packs a descriptor from flags (access byte in bits 0..8, flags nibble 12..16),
/// base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

fn get_base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn get_limit(entry: u64) -> u32 {
    let limit = (((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0x0000_0000_0000_ffff)) as u32;
    // With G=1 the limit counts 4 KiB pages.
    if entry & (1 << 55) != 0 { (limit << 12) | 0xfff } else { limit }
}

fn bit(entry: u64, n: u32) -> u8 {
    ((entry >> n) & 1) as u8
}

/// The `kvm_segment` a selector loaded from `entry` at `table_index` would hold.
pub fn kvm_segment_from_gdt(entry: u64, table_index: u8) -> kvm_segment {
    kvm_segment {
        base: get_base(entry),
        limit: get_limit(entry),
        selector: u16::from(table_index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: bit(entry, 47),
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(entry, 54),
        s: bit(entry, 44),
        l: bit(entry, 53),
        g: bit(entry, 55),
        avl: bit(entry, 52),
        padding: 0,
        unusable: u8::from(bit(entry, 47) == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_long_mode() {
        let gdt = boot_gdt();
        let cs = kvm_segment_from_gdt(gdt[1], 1);
        assert_eq!((cs.l, cs.db, cs.present, cs.selector, cs.type_), (1, 0, 1, 8, 0xb));
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = kvm_segment_from_gdt(gdt[2], 2);
        assert_eq!((ds.l, ds.db, ds.type_, ds.selector), (0, 1, 3, 0x10));
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
    }
}
