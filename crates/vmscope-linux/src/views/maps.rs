//! Memory maps: each process's memory areas (`vm_area_struct`s in the maple tree
//! `mm->mm_mt`, Linux 6.1+) with the fields and names `/proc/PID/maps` prints —
//! start, end, permissions, offset, device, inode, and the file path (`d_path`),
//! `[heap]`, `[stack]`, `[vdso]`, `[vvar]` or `[vsyscall]`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::path::{Paths, global_root};
use super::process::Leader;
use super::{Anomaly, maple, plausible, with_struct};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::MapsOffsets;

/// `vm_flags` bits `/proc/PID/maps` shows (`include/linux/mm.h`, unchanged since
/// Linux 2.6): `VM_READ`, `VM_WRITE`, `VM_EXEC`, `VM_MAYSHARE`.
const VM_READ: u64 = 0x1;
const VM_WRITE: u64 = 0x2;
const VM_EXEC: u64 = 0x4;
const VM_MAYSHARE: u64 = 0x80;
/// `PAGE_SHIFT` on x86-64: `vm_pgoff` counts pages.
const PAGE_SHIFT: u32 = 12;
/// `MINORBITS`: the kernel's `dev_t` is `major << 20 | minor`.
const MINORBITS: u32 = 20;
/// `MM_CONTEXT_HAS_VSYSCALL`: the bit of `mm->context.flags` that maps the
/// vsyscall page into a (64-bit) process.
const MM_CONTEXT_HAS_VSYSCALL: u64 = 1 << 1;
/// The most bytes of a special mapping's name read (`[vdso]`, `[vvar]`, ...).
const MAX_SPECIAL_NAME: usize = 64;
/// `/proc/PID/maps` pads the fields before a name to this many columns
/// (`25 + sizeof(void *) * 6 - 1`).
const NAME_COLUMN: usize = 72;

/// What the last column of a memory map line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmaKind {
    /// A mapped file: the name is its path.
    File,
    /// The initial heap (`[heap]`: it holds the program break).
    Heap,
    /// The initial stack (`[stack]`).
    Stack,
    /// An area named by its operations: `[vdso]`, `[vvar]`, `[vsyscall]`, ...
    Special,
    /// Anonymous memory: no name.
    Anonymous,
}

/// One memory area, as a line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// First address.
    pub start: Gva,
    /// One past the last address.
    pub end: Gva,
    /// `vm_flags`.
    pub flags: u64,
    /// `rwxp` as maps prints them: read, write, execute, then `s` (shared) or `p`.
    pub perms: String,
    /// Offset in the file, in bytes (0 without a file, as maps prints it).
    pub offset: u64,
    /// The file's device: major and minor number.
    pub major: u32,
    /// Minor device number.
    pub minor: u32,
    /// The file's inode number (0 without a file).
    pub inode: u64,
    /// The last column: a path, `[heap]`, `[stack]`, `[vdso]`, ... or empty.
    pub name: String,
    /// What the name is.
    pub kind: VmaKind,
    /// Address of the `vm_area_struct`.
    pub vma: Gva,
}

/// The memory map of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryMap {
    /// The process.
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// Its areas in address order (none for a kernel thread).
    pub vmas: Vec<Vma>,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

/// The memory maps of every process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryMaps {
    /// By process, in task-list order.
    pub processes: Vec<MemoryMap>,
    /// Anomalies of the task-list walk.
    pub anomalies: Vec<Anomaly>,
}

/// The permissions column for `vm_flags`.
pub fn perms(flags: u64) -> String {
    let bit = |b: u64, c: char| if flags & b != 0 { c } else { '-' };
    [bit(VM_READ, 'r'), bit(VM_WRITE, 'w'), bit(VM_EXEC, 'x'), if flags & VM_MAYSHARE != 0 { 's' } else { 'p' }]
        .into_iter()
        .collect()
}

/// Areas in `/proc/PID/maps` format, byte for byte (a newline in a path shown as
/// `\012`, as `seq_path` escapes it).
pub fn format_maps(vmas: &[Vma]) -> String {
    let mut out = String::with_capacity(vmas.len() * 100);
    for v in vmas {
        let line_start = out.len();
        let _ = write!(
            out,
            "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
            v.start, v.end, v.perms, v.offset, v.major, v.minor, v.inode
        );
        if !v.name.is_empty() {
            let width = out.len() - line_start;
            out.extend(std::iter::repeat_n(' ', NAME_COLUMN.saturating_sub(width)));
            out.push(' ');
            out.push_str(&v.name.replace('\n', "\\012"));
        }
        out.push('\n');
    }
    out
}

/// What one `mm_struct` says about its areas' names.
struct MmInfo {
    mm: Gva,
    root: u64,
    root_at: Gva,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    vsyscall: bool,
}

impl<M: PhysMem> Ctx<'_, M> {
    fn mm_info(&self, mo: &MapsOffsets, mm: Gva, an: &mut Vec<Anomaly>) -> Option<MmInfo> {
        let root_at = member(mm, mo.mm_root).ok()?;
        with_struct(self.k, mm, mo.mm_span(), "mm_struct", an, |b| {
            Some(MmInfo {
                mm,
                root: b.u64(mo.mm_root)?,
                root_at,
                start_brk: b.u64(mo.start_brk)?,
                brk: b.u64(mo.brk)?,
                start_stack: b.u64(mo.start_stack)?,
                vsyscall: mo.context_flags.is_none_or(|f| b.u64(f).is_some_and(|v| v & MM_CONTEXT_HAS_VSYSCALL != 0)),
            })
        })?
    }

    /// The name `vm_ops->name` gives an area (`special_mapping_name`,
    /// `gate_vma_name`), if it has one.
    fn ops_name(&self, mo: &MapsOffsets, vma: Gva, ops: Gva, private: Gva, an: &mut Vec<Anomaly>) -> Option<String> {
        let k = self.k;
        if !plausible(k, ops, 8) {
            an.push(Anomaly::BadPointer { what: "vm_area_struct.vm_ops".into(), at: vma, value: ops });
            return None;
        }
        let f = member(ops, mo.ops_name).and_then(|at| k.read_ptr(at)).ok().filter(|f| f.raw() != 0)?;
        let known = &self.addrs.known;
        if Some(f) == known.gate_vma_name {
            return Some("[vsyscall]".into());
        }
        if Some(f) != known.special_mapping_name {
            an.push(Anomaly::InvalidField {
                what: "vm_operations_struct".into(),
                addr: ops,
                field: "name".into(),
                value: format!("{f:#x} (not a name function vmscope knows)"),
            });
            return None;
        }
        if !plausible(k, private, 8) {
            an.push(Anomaly::BadPointer { what: "vm_area_struct.vm_private_data".into(), at: vma, value: private });
            return None;
        }
        let name = member(private, mo.special_name).and_then(|at| k.read_ptr(at)).ok()?;
        if name.raw() == 0 {
            return None;
        }
        match k.read_cstr(name, MAX_SPECIAL_NAME) {
            Ok(s) => Some(String::from_utf8_lossy(&s).into_owned()),
            Err(e) => {
                an.push(Anomaly::Unreadable { what: "vm_special_mapping.name".into(), addr: name, error: e.to_string() });
                None
            }
        }
    }

    /// The area `vma`, which the tree says covers `range` (`None` for the gate
    /// area, which is in no tree).
    fn vma(
        &self,
        mo: &MapsOffsets,
        mm: &MmInfo,
        paths: &mut Option<Paths<'_, '_, M>>,
        vma: Gva,
        range: Option<(u64, u64)>,
        an: &mut Vec<Anomaly>,
    ) -> Option<Vma> {
        if !plausible(self.k, vma, 8) {
            an.push(Anomaly::BadPointer { what: "vm_area_struct".into(), at: mm.root_at, value: vma });
            return None;
        }
        let (start, end, vm_mm, flags, pgoff, file, ops, private) =
            with_struct(self.k, vma, mo.vma_span(), "vm_area_struct", an, |b| {
                Some((
                    b.u64(mo.vm_start)?,
                    b.u64(mo.vm_end)?,
                    b.ptr(mo.vm_mm)?,
                    b.u64(mo.vm_flags)?,
                    b.u64(mo.vm_pgoff)?,
                    b.ptr(mo.vm_file)?,
                    b.ptr(mo.vm_ops)?,
                    b.ptr(mo.vm_private_data)?,
                ))
            })??;
        let bad = |field: &str, value: String, an: &mut Vec<Anomaly>| {
            an.push(Anomaly::InvalidField { what: "vm_area_struct".into(), addr: vma, field: field.into(), value });
        };
        if end <= start {
            bad("vm_end", format!("{end:#x} <= vm_start {start:#x}"), an);
            return None;
        }
        if let Some((lo, hi)) = range {
            if (lo, hi) != (start, end - 1) {
                bad("vm_start..vm_end", format!("{start:#x}..{end:#x}, the tree says {lo:#x}..={hi:#x}"), an);
            }
            if vm_mm != mm.mm {
                bad("vm_mm", format!("{vm_mm:#x}, not its mm {:#x}", mm.mm), an);
            }
        }
        let mut v = Vma {
            start: Gva::new(start),
            end: Gva::new(end),
            flags,
            perms: perms(flags),
            offset: 0,
            major: 0,
            minor: 0,
            inode: 0,
            name: String::new(),
            kind: VmaKind::Anonymous,
            vma,
        };
        if file.raw() != 0 {
            v.kind = VmaKind::File;
            v.offset = pgoff.checked_shl(PAGE_SHIFT).unwrap_or(0);
            if !plausible(self.k, file, 8) {
                an.push(Anomaly::BadPointer { what: "vm_area_struct.vm_file".into(), at: vma, value: file });
                return Some(v);
            }
            if let Some(info) = paths.as_mut().and_then(|p| p.file(file, an)) {
                if let Some(i) = info.inode {
                    v.inode = i.ino;
                    let dev = i.dev.unwrap_or(0);
                    (v.major, v.minor) = (dev >> MINORBITS, dev & ((1 << MINORBITS) - 1));
                }
                v.name = info.path.unwrap_or_default();
            }
            return Some(v);
        }
        if ops.raw() != 0
            && let Some(name) = self.ops_name(mo, vma, ops, private, an)
        {
            (v.name, v.kind) = (name, VmaKind::Special);
        } else if vm_mm.raw() == 0 {
            (v.name, v.kind) = ("[vdso]".into(), VmaKind::Special);
        } else if start <= mm.brk && end >= mm.start_brk {
            (v.name, v.kind) = ("[heap]".into(), VmaKind::Heap);
        } else if start <= mm.start_stack && end >= mm.start_stack {
            (v.name, v.kind) = ("[stack]".into(), VmaKind::Stack);
        }
        Some(v)
    }

    /// Whether the vsyscall page is on (`vsyscall_mode` is not `NONE`).
    fn vsyscall_on(&self, mo: &MapsOffsets) -> bool {
        match (self.addrs.known.vsyscall_mode, mo.vsyscall_none) {
            (Some(at), Some(none)) => self.k.read_u32(at).is_ok_and(|m| i64::from(m) != none),
            _ => false,
        }
    }

    fn map_of(
        &self,
        mo: &MapsOffsets,
        paths: &mut Option<Paths<'_, '_, M>>,
        leader: &Leader,
        vsyscall: bool,
    ) -> MemoryMap {
        let mut an = Vec::new();
        let mut vmas = Vec::new();
        if let Some(mm) = leader.mm.and_then(|mm| self.mm_info(mo, mm, &mut an)) {
            let entries = maple::entries(self, &mo.maple, "mm_mt", mm.root, mm.root_at, self.limits.max_vmas, &mut an);
            for e in entries {
                vmas.extend(self.vma(mo, &mm, paths, e.value, Some((e.min, e.max)), &mut an));
            }
            if vsyscall
                && mm.vsyscall
                && let Some(gate) = self.addrs.known.gate_vma
            {
                vmas.extend(self.vma(mo, &mm, paths, gate, None, &mut an));
            }
        }
        MemoryMap { pid: leader.pid, comm: leader.comm.clone(), vmas, anomalies: an }
    }

    fn paths(&self, an: &mut Vec<Anomaly>) -> Option<Paths<'_, '_, M>> {
        let vo = self.o.vfs.as_ref()?;
        Some(Paths::new(self, vo, global_root(self, an)))
    }

    /// The memory map of process `pid`; `None` if there is no such process.
    /// (The caller checked that the offsets are there.)
    pub(crate) fn memory_map(&self, pid: i32) -> Option<MemoryMap> {
        let mo = self.o.maps.as_ref()?;
        let mut an = Vec::new();
        let leader = self.find_leader(pid, &mut an)?;
        let mut paths = self.paths(&mut an);
        let mut map = self.map_of(mo, &mut paths, &leader, self.vsyscall_on(mo));
        an.append(&mut map.anomalies);
        map.anomalies = an;
        Some(map)
    }

    /// Every process's memory map, paths shared between them.
    pub(crate) fn memory_maps(&self) -> MemoryMaps {
        let Some(mo) = self.o.maps.as_ref() else { return MemoryMaps::default() };
        let mut anomalies = Vec::new();
        let leaders = self.leaders(&mut anomalies);
        let mut paths = self.paths(&mut anomalies);
        let vsyscall = self.vsyscall_on(mo);
        let processes = leaders.iter().map(|l| self.map_of(mo, &mut paths, l, vsyscall)).collect();
        MemoryMaps { processes, anomalies }
    }
}
