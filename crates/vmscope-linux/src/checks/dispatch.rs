//! The compiled system call dispatch of Linux 6.9+ (`x64_sys_call`, and
//! `ia32_sys_call` and `x32_sys_call` where present): a `switch` on the number,
//! compiled into compares and direct branches to the handlers. Its code is decoded
//! (iced-x86) and every branch that leaves the function must reach the start of a
//! system call handler in the kernel's text — or one of the kernel's own return and
//! indirect-branch thunks.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::{CheckCtx, CheckKind, Finding, Outcome, Place, read_symbol};

/// The dispatch functions.
const DISPATCHERS: [&str; 3] = ["x64_sys_call", "ia32_sys_call", "x32_sys_call"];

/// The names of system call handlers (`ia32_sys_call` reaches the `__x64_sys_`
/// handlers of system calls without arguments, which serve both).
const HANDLERS: [&str; 3] = ["__x64_sys_", "__ia32_", "__x32_"];

/// The most bytes of one function decoded (`x64_sys_call` is about 10 KiB).
const MAX_CODE: u64 = 64 << 10;

/// Kernel thunks a compiled `switch` may branch to besides the handlers: the
/// return thunk of the retbleed/SRSO mitigations and the retpolines.
const THUNKS: [&str; 3] = ["__x86_return_thunk", "__x86_indirect_thunk_", "srso_"];

/// A direct branch that leaves the decoded code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchTarget {
    /// The branch instruction.
    pub at: Gva,
    /// Where it goes.
    pub target: Gva,
    /// Whether it is a call (else a jump).
    pub call: bool,
}

/// Every direct near call or jump in `code` (loaded at `ip`) whose target lies
/// outside `code`. Decodes linearly; bytes that are no instruction are skipped one
/// at a time, so any bytes end and never panic.
pub fn branch_targets(code: &[u8], ip: u64) -> Vec<BranchTarget> {
    let end = ip.saturating_add(code.len() as u64);
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        // Direct calls, jumps and conditional jumps (and loops) take their target
        // as a near-branch operand.
        if i.op_count() == 0 || i.op0_kind() != OpKind::NearBranch64 {
            continue;
        }
        let call = i.mnemonic() == Mnemonic::Call;
        let target = i.near_branch64();
        if target != 0 && !(ip..end).contains(&target) {
            out.push(BranchTarget { at: Gva::new(i.ip()), target: Gva::new(target), call });
        }
    }
    out
}

/// Why a branch to `place` is wrong for a system call dispatcher.
fn judge(place: &Place) -> Option<String> {
    place.wrong_handler(|s| HANDLERS.iter().chain(&THUNKS).any(|p| s.starts_with(p)))
}

pub(super) fn check<M: PhysMem>(c: &CheckCtx<'_, '_, M>) -> Outcome {
    let mut o = Outcome::default();
    let mut found_any = false;
    for name in DISPATCHERS {
        found_any |= c.symbols.addr(name).is_some();
        let Some((start, code)) = read_symbol(c, name, MAX_CODE, &mut o.anomalies) else { continue };
        for b in branch_targets(&code, start.raw()) {
            o.examined += 1;
            let place = c.code.place(b.target, c.symbols);
            let Some(found) = judge(&place) else { continue };
            let offset = b.at.offset_from(start).unwrap_or(0);
            o.findings.push(Finding {
                check: CheckKind::SyscallDispatch,
                subject: format!("{} in {name}+{offset:#x}", if b.call { "call" } else { "jump" }),
                at: Some(b.at),
                value: Some(b.target),
                found,
                expected: "a system call handler (__x64_sys_*, __ia32_*, __x32_*) in kernel text".into(),
            });
        }
    }
    if !found_any {
        return Outcome::skipped("no x64_sys_call (kernels before 6.9 dispatch through sys_call_table only)");
    }
    o
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn branches_leaving_the_code_are_found() {
        let ip = 0xffff_ffff_8100_0000u64;
        // cmp esi,0x27; je +5 (inside); jmp rel32 to ip+0x1000; call rel32 to ip-0x10; ret
        let mut code = vec![0x83, 0xfe, 0x27, 0x74, 0x05];
        code.push(0xe9);
        code.extend_from_slice(&(0x1000i32 - 10).to_le_bytes());
        code.push(0xe8);
        code.extend_from_slice(&(-0x10i32 - 15).to_le_bytes());
        code.push(0xc3);
        let got = branch_targets(&code, ip);
        assert_eq!(
            got,
            [
                BranchTarget { at: Gva::new(ip + 5), target: Gva::new(ip + 0x1000), call: false },
                BranchTarget { at: Gva::new(ip + 10), target: Gva::new(ip - 0x10), call: true },
            ]
        );
    }

    #[test]
    fn only_handlers_and_thunks_are_expected() {
        let text = |s: &str| Place::KernelText { symbol: Some(s.into()), offset: 0 };
        assert_eq!(judge(&text("__x64_sys_read")), None);
        assert_eq!(judge(&text("__ia32_compat_sys_ioctl")), None);
        assert_eq!(judge(&text("__x86_return_thunk")), None);
        assert!(judge(&text("commit_creds")).is_some());
        assert!(judge(&Place::KernelText { symbol: Some("__x64_sys_read".into()), offset: 4 }).is_some());
        assert!(judge(&Place::Outside).is_some());
    }

    proptest! {
        #[test]
        fn arbitrary_code_never_panics(code in prop::collection::vec(any::<u8>(), 0..512), ip in any::<u64>()) {
            for b in branch_targets(&code, ip) {
                prop_assert!(b.target.raw() < ip || b.target.raw() >= ip.saturating_add(code.len() as u64));
            }
        }
    }
}
