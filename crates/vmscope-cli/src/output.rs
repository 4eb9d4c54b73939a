//! What the `vmscope` command prints.

use std::fmt::Write as _;

use vmscope_agent::{ModuleInfo, ProcessInfo};
use vmscope_consistency::invariants::{Checked, Origin, Rule};
use vmscope_linux::{Anomaly, KernelInfo, Module, Process};
use vmscope_technique::Consistency;

/// One row of `ps`, from either the kernel's memory or the agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs)]
pub struct PsRow {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub state: char,
    pub comm: String,
    pub cmd: String,
}

impl From<&Process> for PsRow {
    fn from(p: &Process) -> Self {
        let cmd = match &p.cmdline {
            Some(a) if !a.is_empty() => a.join(" "),
            Some(_) => format!("[{}]", p.comm),
            None => format!("[{}] (arguments not in memory)", p.comm),
        };
        // /proc names a kernel thread by its full name when its comm is truncated.
        let comm = p.full_name.clone().unwrap_or_else(|| p.comm.clone());
        let cmd = if p.kernel_thread { format!("[{comm}]") } else { cmd };
        PsRow { pid: p.pid, ppid: p.ppid, uid: p.uid, state: p.state, comm, cmd }
    }
}

impl From<&ProcessInfo> for PsRow {
    fn from(p: &ProcessInfo) -> Self {
        let cmd = if p.cmdline.is_empty() { format!("[{}]", p.comm) } else { p.cmdline.clone() };
        PsRow { pid: p.pid, ppid: p.ppid, uid: p.uid, state: p.state, comm: p.comm.clone(), cmd }
    }
}

/// `ps -ef`-like: PID PPID UID STATE COMM CMD.
pub fn ps_table(rows: &[PsRow]) -> String {
    let mut s = format!("{:>7} {:>7} {:>6} {:5} {:16} {}\n", "PID", "PPID", "UID", "STATE", "COMM", "CMD");
    for r in rows {
        let _ = writeln!(s, "{:>7} {:>7} {:>6} {:5} {:16} {}", r.pid, r.ppid, r.uid, r.state, r.comm, r.cmd);
    }
    s
}

/// One row of `lsmod`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs)]
pub struct ModRow {
    pub name: String,
    pub size: u64,
    pub refcount: i64,
    pub state: String,
    pub base: Option<u64>,
    pub taint: String,
}

impl From<&Module> for ModRow {
    fn from(m: &Module) -> Self {
        ModRow {
            name: m.name.clone(),
            size: m.size,
            refcount: m.refcount,
            state: m.state.clone(),
            base: Some(m.base.raw()),
            taint: m.taint_flags.clone(),
        }
    }
}

impl From<&ModuleInfo> for ModRow {
    fn from(m: &ModuleInfo) -> Self {
        ModRow {
            name: m.name.clone(),
            size: m.size,
            refcount: m.refcount,
            state: m.state.clone(),
            base: None,
            taint: String::new(),
        }
    }
}

/// Like `lsmod`, with state, base and taint.
pub fn lsmod_table(rows: &[ModRow]) -> String {
    let mut s = format!("{:24} {:>9} {:>5} {:9} {:18} {}\n", "Module", "Size", "Used", "State", "Base", "Taint");
    for r in rows {
        let base = r.base.map(|b| format!("{b:#x}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(s, "{:24} {:>9} {:>5} {:9} {:18} {}", r.name, r.size, r.refcount, r.state, base, r.taint);
    }
    s
}

/// `info`: what discovery found and from what evidence.
pub fn info_text(i: &KernelInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "release        {}", i.release);
    let _ = writeln!(s, "banner         {}", i.banner.trim_end());
    let _ = writeln!(s, "build id       {}", i.build_id.as_deref().unwrap_or("-"));
    let _ = writeln!(s, "paging         {}", i.paging);
    let _ = writeln!(s, "page tables    {} (init_top_pgt)", i.kernel_root);
    let _ = writeln!(s, "kernel text    va {:#x}  pa {}", i.text_va, i.text_pa);
    let _ =
        writeln!(s, "KASLR          virtual {:+#x}  physical {:+#x}", i.kaslr_virtual_offset, i.kaslr_physical_offset);
    let _ = writeln!(s, "direct map     {:#x}", i.page_offset_base);
    if let Some((gpa, len)) = i.btf {
        let _ = writeln!(s, "BTF            {len} bytes at {gpa}");
    }
    for e in &i.evidence {
        let _ = writeln!(s, "evidence       {e}");
    }
    s
}

/// Where guest RAM lives, for `info`: each RAM block and what backs it, and how the
/// layout was learnt.
pub fn add_ram(doc: &mut serde_json::Value, table: &mut String, loc: &vmscope_technique::RamLocation, source: &str) {
    let blocks: Vec<serde_json::Value> = loc
        .blocks
        .iter()
        .map(|b| {
            serde_json::json!({
                "name": b.name, "size": b.size, "hva": b.hva.raw(), "page_size": b.page_size,
                "shared": b.is_shared(), "backing": b.describe(),
            })
        })
        .collect();
    doc["ram"] = serde_json::json!({ "pid": loc.pid, "layout_from": source, "blocks": blocks });
    for b in &loc.blocks {
        let _ =
            writeln!(table, "ram block      {} MiB at {} in QEMU {}: {}", b.size >> 20, b.hva, loc.pid, b.describe());
    }
    let _ = writeln!(table, "ram layout     from {source}");
}

/// Anomalies as a short note for stderr.
pub fn anomalies_note(a: &[Anomaly]) -> Option<String> {
    if a.is_empty() {
        return None;
    }
    let mut s = format!("vmscope: {} anomal{} while reading:\n", a.len(), if a.len() == 1 { "y" } else { "ies" });
    for x in a.iter().take(5) {
        let _ = writeln!(s, "  {x}");
    }
    if a.len() > 5 {
        let _ = writeln!(s, "  ... (--json shows all)");
    }
    Some(s)
}

/// What `--verify` reports: how consistent the view is and the kernel rules it
/// breaks, each violation told intrinsic or extrinsic by the pages the guest wrote
/// during the pass.
#[derive(Debug, serde::Serialize)]
pub struct Verified<'a> {
    #[serde(flatten)]
    consistency: &'a Consistency,
    /// Rules checked, and on how much.
    rules_checked: usize,
    tasks_checked: usize,
    modules_checked: usize,
    violations: Vec<ViolationRow<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct ViolationRow<'a> {
    rule: Rule,
    origin: Origin,
    detail: &'a str,
    pages: &'a [u64],
}

impl<'a> Verified<'a> {
    pub fn new(consistency: &'a Consistency, checked: &'a Checked) -> Self {
        let torn = &consistency.verdict.torn_pages;
        let violations = checked
            .violations
            .iter()
            .map(|v| ViolationRow { rule: v.rule, origin: v.origin(torn), detail: &v.detail, pages: &v.pages })
            .collect();
        Verified {
            consistency,
            rules_checked: Rule::ALL.len(),
            tasks_checked: checked.tasks,
            modules_checked: checked.modules,
            violations,
        }
    }

    /// What `--verify` adds below a table: whether the view was torn, how that was
    /// decided, the window and the read set, then the rules broken.
    pub fn text(&self) -> String {
        let c = self.consistency;
        let v = &c.verdict;
        let state = if c.torn {
            format!("TORN: the guest wrote {} of the pages read while they were read", v.torn_pages.len())
        } else {
            "not torn".to_owned()
        };
        let how = match (c.fell_back, c.tries) {
            (true, n) => format!("{} after {n} torn live tr{}", v.method, if n == 1 { "y" } else { "ies" }),
            (false, 1) => v.method.to_string(),
            (false, n) => format!("{} on try {n} ({} torn before)", v.method, c.torn_tries),
        };
        let mut s = format!(
            "\nconsistency: {state} ({how}); window {:.2} ms; read set {} pages, {} reads, {} KiB\n",
            v.window.as_secs_f64() * 1e3,
            v.read_pages,
            v.read_ranges,
            v.read_bytes.div_ceil(1024)
        );
        let _ = writeln!(
            s,
            "invariants: {} violation{} of {} rules on {} tasks and {} modules",
            self.violations.len(),
            if self.violations.len() == 1 { "" } else { "s" },
            self.rules_checked,
            self.tasks_checked,
            self.modules_checked
        );
        for v in &self.violations {
            let origin = match v.origin {
                Origin::Intrinsic => "intrinsic",
                Origin::Extrinsic => "extrinsic",
            };
            let _ = writeln!(s, "  {} ({origin}): {}", v.rule.name(), v.detail);
        }
        s
    }
}
