//! Integrity checks: the profile-free counterparts of Volatility 3's Linux
//! `malware` plugins. Each compares what the kernel uses with what it should be —
//! a system call handler with the kernel's text, a process on the PID table with
//! the task list — and reports every difference as a [`Finding`] with its evidence:
//! where the pointer was read, what it holds, what it should hold.
//!
//! Every check is bounded ([`Limits`](crate::Limits)), checks a pointer before it
//! follows it, and records what it could not read as an [`Anomaly`] rather than
//! failing; a check the kernel's types or symbols do not allow is listed as
//! skipped, with the reason, never dropped silently.

mod code;
mod creds;
mod dispatch;
mod hidden_modules;
mod hidden_tasks;
mod hooks;
mod idt;
mod syscalls;

use std::fmt;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use crate::SymbolTable;
use crate::kernel::Ctx;
use crate::offsets::CheckOffsets;
use crate::views::Anomaly;

pub use code::{CodeMap, Place};
pub use dispatch::{BranchTarget, branch_targets};
pub use idt::{Gate, parse_gates};

/// Which check found something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `sys_call_table` (and the ia32 and x32 tables): entries outside kernel text,
    /// in a module, or not at the start of a system call handler.
    SyscallTable,
    /// `x64_sys_call` (and `ia32_sys_call`, `x32_sys_call`), the compiled dispatch of
    /// Linux 6.9+: a branch to anything but a system call handler.
    SyscallDispatch,
    /// `idt_table`: a present gate whose handler lies outside kernel text.
    Idt,
    /// The line disciplines in `tty_ldiscs`: an operation outside kernel and module
    /// text.
    TtyHook,
    /// `keyboard_notifier_list`: a callback outside kernel and module text.
    KeyboardNotifier,
    /// A task on the PID table or a run queue but not on the task list.
    HiddenProcess,
    /// A module in `module_kset` or carved from the module area but not on the
    /// module list.
    HiddenModule,
    /// One `struct cred` used by tasks of different real uids.
    SharedCred,
}

impl CheckKind {
    /// Every check, in the order they run.
    pub const ALL: [CheckKind; 8] = [
        CheckKind::SyscallTable,
        CheckKind::SyscallDispatch,
        CheckKind::Idt,
        CheckKind::TtyHook,
        CheckKind::KeyboardNotifier,
        CheckKind::HiddenProcess,
        CheckKind::HiddenModule,
        CheckKind::SharedCred,
    ];

    /// Its name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::SyscallTable => "syscall_table",
            CheckKind::SyscallDispatch => "syscall_dispatch",
            CheckKind::Idt => "idt",
            CheckKind::TtyHook => "tty_hook",
            CheckKind::KeyboardNotifier => "keyboard_notifier",
            CheckKind::HiddenProcess => "hidden_process",
            CheckKind::HiddenModule => "hidden_module",
            CheckKind::SharedCred => "shared_cred",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something a check found wrong, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check.
    pub check: CheckKind,
    /// What is wrong, e.g. `sys_call_table[39]` or `task 4242 (sleep)`.
    pub subject: String,
    /// Where the evidence was read (the table slot, the task, the module).
    pub at: Option<Gva>,
    /// The value read there (a handler address), if one.
    pub value: Option<Gva>,
    /// What was found, e.g. `outside kernel text and every module`.
    pub found: String,
    /// What was expected, e.g. `__x64_sys_getpid in kernel text`.
    pub expected: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.subject)?;
        if let Some(at) = self.at {
            write!(f, " at {at:#x}")?;
        }
        if let Some(v) = self.value {
            write!(f, " = {v:#x}")?;
        }
        write!(f, ": {}; expected {}", self.found, self.expected)
    }
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// The check.
    pub check: CheckKind,
    /// How many things it examined (table entries, gates, tasks, modules).
    pub examined: usize,
    /// Why it could not run, if it could not (a symbol or type the kernel lacks).
    pub skipped: Option<String>,
}

/// Every check's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// What was found, by check.
    pub findings: Vec<Finding>,
    /// Each check: what it examined, or why it was skipped.
    pub checks: Vec<CheckStatus>,
    /// What could not be read on the way.
    pub anomalies: Vec<Anomaly>,
}

impl CheckReport {
    /// Whether nothing was found.
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// What one check hands back.
#[derive(Default)]
pub(crate) struct Outcome {
    pub examined: usize,
    pub skipped: Option<String>,
    pub findings: Vec<Finding>,
    pub anomalies: Vec<Anomaly>,
}

impl Outcome {
    pub(crate) fn skipped(why: impl Into<String>) -> Self {
        Outcome { skipped: Some(why.into()), ..Outcome::default() }
    }
}

/// What the checks share: the views' context, the offsets only checks read, the
/// symbols and the map of code.
pub(crate) struct CheckCtx<'c, 'a, M> {
    pub ctx: &'c Ctx<'a, M>,
    pub co: &'c CheckOffsets,
    pub symbols: &'c SymbolTable,
    pub code: &'c CodeMap,
}

/// The bytes of the object at symbol `name` — up to the next symbol, at most
/// `max` — and its address; `None` when kallsyms has no such symbol or it cannot be
/// read (recorded).
pub(crate) fn read_symbol<M: PhysMem>(
    c: &CheckCtx<'_, '_, M>,
    name: &str,
    max: u64,
    an: &mut Vec<Anomaly>,
) -> Option<(Gva, Vec<u8>)> {
    let sym = c.symbols.lookup(name)?;
    let len = c.symbols.extent(sym).unwrap_or(max).min(max);
    match c.ctx.k.read_vec(sym.addr, len as usize) {
        Ok(b) => Some((sym.addr, b)),
        Err(e) => {
            an.push(Anomaly::Unreadable { what: name.into(), addr: sym.addr, error: e.to_string() });
            None
        }
    }
}

/// Runs every check.
pub(crate) fn run<M: PhysMem>(ctx: &Ctx<'_, M>, co: &CheckOffsets, symbols: &SymbolTable) -> CheckReport {
    let mut report = CheckReport::default();
    let (code, an) = CodeMap::read(ctx, symbols);
    report.anomalies.extend(an);
    let c = CheckCtx { ctx, co, symbols, code: &code };
    for check in CheckKind::ALL {
        let o = match check {
            CheckKind::SyscallTable => syscalls::tables(&c),
            CheckKind::SyscallDispatch => dispatch::check(&c),
            CheckKind::Idt => idt::check(&c),
            CheckKind::TtyHook => hooks::tty(&c),
            CheckKind::KeyboardNotifier => hooks::keyboard(&c),
            CheckKind::HiddenProcess => hidden_tasks::check(&c),
            CheckKind::HiddenModule => hidden_modules::check(&c),
            CheckKind::SharedCred => creds::check(&c),
        };
        report.checks.push(CheckStatus { check, examined: o.examined, skipped: o.skipped });
        report.findings.extend(o.findings);
        report.anomalies.extend(o.anomalies);
    }
    report
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::offsets::{KsetOffsets, NotifierOffsets, SchedOffsets};
    use crate::views::Limits;
    use crate::views::fixture::Fx;
    use crate::views::fixture::layout::TASKS;
    use crate::{SymbolSource, SymbolTable};

    /// Where the fixture's module kobject sits in its 192-byte `struct module`.
    const MKOBJ: u64 = 144;
    const TEXT: u64 = 0xffff_ffff_8100_0000;

    /// A kernel with init, a victim process, a module with its kobject on
    /// `module_kset`, and a two-entry system call table; its symbols and the
    /// checks' offsets.
    struct Rig {
        fx: Fx,
        symbols: SymbolTable,
        co: CheckOffsets,
        victim: u64,
        module: u64,
        table: u64,
    }

    fn rig() -> Rig {
        let mut fx = Fx::new();
        let init = fx.process(1, fx.init_task, 0, "init", Some("/sbin/init"));
        let victim = fx.process(42, init, 1000, "victim", Some("victim"));
        let module = fx.module("dummy", 16384, 0, &[], &["dummy_local"]);
        let kset = fx.alloc(16);
        fx.w64(kset, kset);
        fx.w64(kset + 8, kset);
        let name = fx.alloc(16);
        fx.write_str(name, "dummy");
        fx.link_tail(kset, module + MKOBJ);
        fx.w64(module + MKOBJ + 16, name);
        fx.w64(module + MKOBJ + 24, module);
        let kset_var = fx.alloc(8);
        fx.w64(kset_var, kset);
        // CPU 0 runs the idle task (pid 0) and has the victim queued.
        let rq = fx.alloc(64);
        fx.w64(rq, fx.init_task);
        fx.w64(rq + 16, victim + SE);
        let table = fx.alloc(16);
        fx.w64(table, TEXT + 0x100);
        fx.w64(table + 8, TEXT + 0x200);
        let symbols = SymbolTable::from_iter(
            SymbolSource::Kallsyms,
            [
                ("_stext", Gva::new(TEXT), 'T'),
                ("__x64_sys_read", Gva::new(TEXT + 0x100), 'T'),
                ("__x64_sys_getpid", Gva::new(TEXT + 0x200), 'T'),
                ("_etext", Gva::new(TEXT + 0x100_0000), 'T'),
                ("sys_call_table", Gva::new(table), 'D'),
                ("after_the_table", Gva::new(table + 16), 'D'),
                ("module_kset", Gva::new(kset_var), 'D'),
                ("runqueues", Gva::new(rq), 'D'),
            ],
        );
        let kset = KsetOffsets {
            kset_list: 0,
            kobj_entry: 0,
            kobj_name: 16,
            mkobj_kobj: 0,
            mkobj_mod: 24,
            module_mkobj: MKOBJ,
        };
        let co =
            CheckOffsets { task_cred: Some(80), sched: Some(SCHED), kset: Some(kset), notifier: None, ldisc: None };
        Rig { fx, symbols, co, victim, module, table }
    }

    impl Rig {
        /// The checks over the fixture's memory, with one CPU whose per-CPU area
        /// starts at 0.
        fn report(&self, limits: Limits) -> CheckReport {
            let (k, mut addrs) = self.fx.finish();
            addrs.per_cpu_offsets = vec![0];
            run(&self.fx.ctx(&k, &addrs, limits), &self.co, &self.symbols)
        }

        /// `list_del` of the node at `node`, as a rootkit does it.
        fn unlink(&mut self, node: u64) {
            let (next, prev) = (self.fx.r64(node), self.fx.r64(node + 8));
            self.fx.w64(prev, next);
            self.fx.w64(next + 8, prev);
        }
    }

    #[test]
    fn a_rootkits_three_moves_are_found_and_nothing_else() {
        let mut r = rig();
        let clean = r.report(Limits::default());
        assert!(clean.clean(), "{:?}", clean.findings);
        let ran: Vec<CheckKind> = clean.checks.iter().filter(|c| c.skipped.is_none()).map(|c| c.check).collect();
        assert_eq!(
            ran,
            [CheckKind::SyscallTable, CheckKind::HiddenProcess, CheckKind::HiddenModule, CheckKind::SharedCred]
        );

        r.unlink(r.victim + TASKS);
        let list = r.fx.offsets.module.list;
        r.unlink(r.module + list);
        r.fx.w64(r.table + 8, 0xffff_ffff_c0ff_ee00);
        let report = r.report(Limits::default());
        let got: Vec<(CheckKind, Option<Gva>, Option<Gva>)> =
            report.findings.iter().map(|f| (f.check, f.at, f.value)).collect();
        assert_eq!(
            got,
            [
                (CheckKind::SyscallTable, Some(Gva::new(r.table + 8)), Some(Gva::new(0xffff_ffff_c0ff_ee00))),
                (CheckKind::HiddenProcess, Some(Gva::new(r.victim)), None),
                (CheckKind::HiddenModule, Some(Gva::new(r.module)), None),
            ]
        );
        assert!(report.findings[1].subject.contains("42 (victim)"), "{}", report.findings[1]);
        assert_eq!(report.findings[1].found, "on the PID table as pid 42 and queued on CPU 0, not on the task list");
        assert!(report.findings[2].subject.contains("dummy"), "{}", report.findings[2]);
    }

    /// `task_struct.se` in the fixture's free bytes, `rb_node` as the kernel lays
    /// it out (parent and colour, right, left), and `sched_entity.my_q`.
    const SE: u64 = 152;
    const MY_Q: u64 = 32;
    const SCHED: SchedOffsets = SchedOffsets {
        rq_curr: 0,
        rq_cfs: 16,
        cfs_root: 0,
        rb_left: 16,
        rb_right: 8,
        task_se: SE,
        se_run_node: 0,
        se_my_q: Some(MY_Q),
    };

    #[test]
    fn a_task_queued_only_in_a_group_run_queue_is_found() {
        let mut r = rig();
        // A task on no list and no PID table: queued in a group's queue, whose
        // entity is on CPU 0's CFS tree beside the victim.
        let ghost = r.fx.alloc(384);
        r.fx.w32(ghost + 16, 77);
        r.fx.write_str(ghost + 24, "ghost");
        let group_q = r.fx.alloc(16);
        r.fx.w64(group_q, ghost + SE);
        let group_se = r.fx.alloc(64);
        r.fx.w64(group_se + MY_Q, group_q);
        r.fx.w64(r.victim + SE + 16, group_se); // left of the victim's node
        let report = r.report(Limits::default());
        let got: Vec<(CheckKind, Option<Gva>, &str)> =
            report.findings.iter().map(|f| (f.check, f.at, f.found.as_str())).collect();
        assert_eq!(got, [(CheckKind::HiddenProcess, Some(Gva::new(ghost)), "queued on CPU 0, not on the task list")]);
        assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);

        // A tree that loops back on itself ends, with the loop recorded.
        r.fx.w64(ghost + SE + 8, r.victim + SE);
        let report = r.report(Limits::default());
        assert!(report.anomalies.iter().any(|a| matches!(a, Anomaly::ListCycle { .. })), "{:?}", report.anomalies);
    }

    #[test]
    fn keyboard_notifiers_outside_all_code_are_found_and_a_loop_ends() {
        let mut r = rig();
        // keyboard_notifier_list: a lock, then the head; blocks: call, next.
        let head = r.fx.alloc(16);
        let (good, bad) = (r.fx.alloc(24), r.fx.alloc(24));
        r.fx.w64(head + 8, good);
        r.fx.w64(good, TEXT + 0x100);
        r.fx.w64(good + 8, bad);
        r.fx.w64(bad, 0xffff_8880_dead_0000);
        r.symbols = SymbolTable::from_iter(
            SymbolSource::Kallsyms,
            r.symbols.iter().map(|s| (s.name, s.addr, s.kind)).chain([("keyboard_notifier_list", Gva::new(head), 'd')]),
        );
        r.co.notifier = Some(NotifierOffsets { head: 8, call: 0, next: 8 });
        let report = r.report(Limits::default());
        let got: Vec<(CheckKind, Option<Gva>, Option<Gva>)> =
            report.findings.iter().map(|f| (f.check, f.at, f.value)).collect();
        assert_eq!(got, [(CheckKind::KeyboardNotifier, Some(Gva::new(bad)), Some(Gva::new(0xffff_8880_dead_0000)))]);
        let status = report.checks.iter().find(|c| c.check == CheckKind::KeyboardNotifier).unwrap();
        assert_eq!((status.examined, status.skipped.as_deref()), (2, None));

        r.fx.w64(bad + 8, good);
        let report = r.report(Limits::default());
        assert!(report.anomalies.iter().any(|a| matches!(a, Anomaly::ListCycle { .. })), "{:?}", report.anomalies);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the bytes of the tasks, the module, its kobject, the run queue
        /// and the table, the checks end and do not panic.
        #[test]
        fn arbitrary_kernel_bytes_never_panic(junk in prop::collection::vec((0u64..0x8000, any::<u64>()), 1..64)) {
            let mut r = rig();
            let base = r.fx.init_task;
            for (off, v) in junk {
                r.fx.w64(base + (off & !7), v);
            }
            let report = r.report(Limits { max_list: 64, ..Limits::default() });
            prop_assert_eq!(report.checks.len(), CheckKind::ALL.len());
        }
    }
}
