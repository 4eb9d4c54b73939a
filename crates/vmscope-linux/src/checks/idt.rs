//! The interrupt descriptor table, `idt_table`: 256 gate descriptors of 16 bytes.
//! Every present gate's handler must lie in the kernel's text (Linux's entry code is
//! there; no module installs a gate) — or, for a reserved exception vector, on the
//! early boot handler Linux leaves it on.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome, Place};
use crate::views::Anomaly;

/// Gates in an x86-64 IDT.
pub const GATES: usize = 256;

/// Bytes of one gate descriptor.
const GATE_SIZE: usize = 16;

/// One gate descriptor, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// The vector.
    pub vector: u8,
    /// The handler (offset bits 0-15, 16-31 and 32-63 joined).
    pub handler: Gva,
    /// The code segment selector.
    pub selector: u16,
    /// The gate type (0xe interrupt gate, 0xf trap gate).
    pub kind: u8,
    /// The interrupt stack table index.
    pub ist: u8,
    /// Whether the present bit is set.
    pub present: bool,
}

/// The gates in `bytes` (as many whole descriptors as it holds, at most 256).
pub fn parse_gates(bytes: &[u8]) -> Vec<Gate> {
    bytes
        .chunks_exact(GATE_SIZE)
        .take(GATES)
        .enumerate()
        .map(|(v, g)| {
            let w16 = |i: usize| u64::from(u16::from_le_bytes([g[i], g[i + 1]]));
            let high = u64::from(u32::from_le_bytes([g[8], g[9], g[10], g[11]]));
            Gate {
                vector: v as u8,
                handler: Gva::new(w16(0) | w16(6) << 16 | high << 32),
                selector: w16(2) as u16,
                kind: g[5] & 0x1f,
                ist: g[4] & 7,
                present: g[5] & 0x80 != 0,
            }
        })
        .collect()
}

pub(super) fn check<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let Some(idt) = c.symbols.addr("idt_table") else {
        return Outcome::skipped("kallsyms has no idt_table");
    };
    let mut o = Outcome::default();
    let bytes = match c.ctx.k.read_vec(idt, GATES * GATE_SIZE) {
        Ok(b) => b,
        Err(e) => {
            o.anomalies.push(Anomaly::Unreadable { what: "idt_table".into(), addr: idt, error: e.to_string() });
            return o;
        }
    };
    // Linux leaves the reserved exception vectors (0x16-0x1f but 0x1d) on their
    // early boot handlers, in init text freed after boot: the kernel's own state.
    let early = c.symbols.lookup("early_idt_handler_array").and_then(|s| {
        let len = c.symbols.extent(s)?;
        Some(s.addr..Gva::new(s.addr.raw().checked_add(len)?))
    });
    for g in parse_gates(&bytes).into_iter().filter(|g| g.present) {
        o.examined += 1;
        let place = c.code.place(g.handler, c.symbols);
        let boot = g.vector < 32 && early.as_ref().is_some_and(|r| r.contains(&g.handler));
        if boot || matches!(place, Place::KernelText { .. }) {
            continue;
        }
        o.findings.push(Finding {
            check: CheckKind::Idt,
            subject: format!("IDT vector {:#04x}", g.vector),
            at: Some(Gva::new(idt.raw().wrapping_add(GATE_SIZE as u64 * u64::from(g.vector)))),
            value: Some(g.handler),
            found: place.describe(),
            expected: "a handler in kernel text".into(),
        });
    }
    o
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_gate_is_decoded_from_its_three_offset_pieces() {
        let mut g = [0u8; 32];
        let h: u64 = 0xffff_ffff_8160_1234;
        g[16..18].copy_from_slice(&(h as u16).to_le_bytes());
        g[18..20].copy_from_slice(&0x10u16.to_le_bytes());
        g[20] = 2;
        g[21] = 0x8e;
        g[22..24].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
        g[24..28].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
        let gates = parse_gates(&g);
        assert!(!gates[0].present);
        assert_eq!(
            gates[1],
            Gate { vector: 1, handler: Gva::new(h), selector: 0x10, kind: 0xe, ist: 2, present: true }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
            prop_assert!(parse_gates(&bytes).len() <= GATES);
        }
    }
}
