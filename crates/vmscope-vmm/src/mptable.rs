//! The Intel MultiProcessor Specification 1.4 table: how the guest learns the number
//! of CPUs, their APIC ids and the I/O APIC routing without ACPI. Built as bytes, so it
//! is unit-tested without KVM.

use crate::layout::{APIC_ADDR, IOAPIC_ADDR};

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const MP_INT: u8 = 0;
const MP_NMI: u8 = 1;
const MP_EXTINT: u8 = 3;
const HEADER_LEN: usize = 44;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)).wrapping_neg()
}

/// The MP floating pointer followed by the configuration table, to be written at
/// guest-physical `base` (which must be below 1 MiB), for `cpus` vCPUs whose APIC ids
/// are 0..cpus. The I/O APIC gets id `cpus`.
pub fn build(base: u64, cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[0, id, APIC_VERSION, flags]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // FPU | APIC
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for irq in 0..16u8 {
        // ISA IRQ n -> I/O APIC pin n, default polarity and trigger.
        entries.extend_from_slice(&[3, MP_INT, 0, 0, 0, irq, ioapic_id, irq]);
    }
    entries.extend_from_slice(&[4, MP_EXTINT, 0, 0, 0, 0, 0, 0]); // LINT0 of the BSP
    entries.extend_from_slice(&[4, MP_NMI, 0, 0, 0, 0, 0xff, 1]); // LINT1 of all
    let count = u16::from(cpus) + 1 + 1 + 16 + 2;

    let table_addr = base + 16;
    let mut table = Vec::with_capacity(HEADER_LEN + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((HEADER_LEN + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"VMSCOPE ");
    table.extend_from_slice(b"VMSCOPE-VMM ");
    table.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_ADDR.to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]); // no extended table
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut out = Vec::with_capacity(16 + table.len());
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(&(table_addr as u32).to_le_bytes());
    out.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // length 16 bytes, rev 1.4
    out[10] = checksum(&out);
    out.extend_from_slice(&table);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_counts() {
        let t = build(0x9fc00, 3);
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 3 + 20);
        // The first processor is the enabled BSP with APIC id 0.
        assert_eq!(&table[44..48], &[0, 0, APIC_VERSION, CPU_ENABLED | CPU_BSP]);
        assert!(t.len() < 1024, "fits the first KiB of the EBDA");
    }
}
