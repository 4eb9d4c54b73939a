//! Memory maps: each process's memory areas (`vm_area_struct`s in the maple tree
//! `mm->mm_mt`, Linux 6.1+) with the fields and names `/proc/PID/maps` prints —
//! start, end, permissions, offset, device, inode, and the file path (`d_path`),
//! `[heap]`, `[stack]`, `[vdso]`, `[vvar]` or `[vsyscall]`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::path::{Paths, global_root};
use super::process::Leader;
use super::{AddrMap, Anomaly, Fields, maple, plausible, with_struct};
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

/// What one pass over memory maps reads once and reuses: paths, and the names of
/// special mappings (every process has a `[vdso]` and a `[vvar]`).
struct Pass<'c, 'a, M> {
    paths: Option<Paths<'c, 'a, M>>,
    special: AddrMap<(Gva, Gva), Option<String>>,
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
                an.push(Anomaly::Unreadable {
                    what: "vm_special_mapping.name".into(),
                    addr: name,
                    error: e.to_string(),
                });
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
        pass: &mut Pass<'_, '_, M>,
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
            if let Some(info) = pass.paths.as_mut().and_then(|p| p.file(file, an)) {
                if let Some(i) = info.inode {
                    v.inode = i.ino;
                    let dev = i.dev.unwrap_or(0);
                    (v.major, v.minor) = (dev >> MINORBITS, dev & ((1 << MINORBITS) - 1));
                }
                v.name = info.path.unwrap_or_default();
            }
            return Some(v);
        }
        let named = if ops.raw() == 0 {
            None
        } else if let Some(n) = pass.special.get(&(ops, private)) {
            n.clone()
        } else {
            let n = self.ops_name(mo, vma, ops, private, an);
            pass.special.insert((ops, private), n.clone());
            n
        };
        if let Some(name) = named {
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

    fn map_of(&self, mo: &MapsOffsets, pass: &mut Pass<'_, '_, M>, leader: &Leader, vsyscall: bool) -> MemoryMap {
        let mut an = Vec::new();
        let mut vmas = Vec::new();
        if let Some(mm) = leader.mm.and_then(|mm| self.mm_info(mo, mm, &mut an)) {
            let entries = maple::entries(self, &mo.maple, "mm_mt", mm.root, mm.root_at, self.limits.max_vmas, &mut an);
            vmas.reserve_exact(entries.len() + 1);
            for e in entries {
                if self.meter.exhausted(self.k) {
                    break;
                }
                vmas.extend(self.vma(mo, &mm, pass, e.value, Some((e.min, e.max)), &mut an));
            }
            if vsyscall
                && mm.vsyscall
                && let Some(gate) = self.addrs.known.gate_vma
            {
                vmas.extend(self.vma(mo, &mm, pass, gate, None, &mut an));
            }
        }
        MemoryMap { pid: leader.pid, comm: leader.comm.clone(), vmas, anomalies: an }
    }

    fn pass(&self, an: &mut Vec<Anomaly>) -> Pass<'_, '_, M> {
        let paths = self.o.vfs.as_ref().map(|vo| Paths::new(self, vo, global_root(self, an)));
        Pass { paths, special: AddrMap::default() }
    }

    /// The memory map of process `pid`; `None` if there is no such process.
    /// (The caller checked that the offsets are there.)
    pub(crate) fn memory_map(&self, pid: i32) -> Option<MemoryMap> {
        let mo = self.o.maps.as_ref()?;
        let mut an = Vec::new();
        let leader = self.find_leader(pid, &mut an)?;
        let mut pass = self.pass(&mut an);
        let mut map = self.map_of(mo, &mut pass, &leader, self.vsyscall_on(mo));
        an.append(&mut map.anomalies);
        map.anomalies = an;
        Some(map)
    }

    /// Every process's memory map, paths shared between them.
    pub(crate) fn memory_maps(&self) -> MemoryMaps {
        let Some(mo) = self.o.maps.as_ref() else { return MemoryMaps::default() };
        let mut anomalies = Vec::new();
        let leaders = self.leaders(&mut anomalies);
        let mut pass = self.pass(&mut anomalies);
        let vsyscall = self.vsyscall_on(mo);
        let processes = leaders
            .iter()
            .take_while(|_| !self.meter.exhausted(self.k))
            .map(|l| self.map_of(mo, &mut pass, l, vsyscall))
            .collect();
        MemoryMaps { processes, anomalies }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::views::Limits;
    use crate::views::fixture::Fx;
    use crate::views::fixture::deep::{Pseudo, RecordSpec, VmaSpec, layout as dl};

    const R: u64 = VM_READ;
    const RW: u64 = VM_READ | VM_WRITE;
    const RX: u64 = VM_READ | VM_EXEC;
    /// `VM_SHARED | VM_MAYSHARE` with read and write.
    const RWS: u64 = RW | 0x8 | VM_MAYSHARE;

    fn spec(start: u64, end: u64, flags: u64) -> VmaSpec {
        VmaSpec { start, end, flags, ..VmaSpec::default() }
    }

    /// A process with a program and a library on a mount at /usr, a deleted file
    /// mapped shared, a heap, anonymous memory, a stack, [vvar] and [vdso]; in a
    /// tree of leaves of `per_leaf` slots.
    fn guest(per_leaf: usize) -> (Fx, u64) {
        let mut fx = Fx::new();
        let t = fx.process(1, fx.init_task, 0, "init", Some("/sbin/init"));
        fx.mount_at("/usr");
        let exe = fx.file("/usr/bin/prog", 0o100000, 0);
        let lib = fx.file("/usr/lib/x86_64-linux-gnu/libc.so.6", 0o100000, 0);
        let gone = fx.file("/tmp/gone", 0o100002, 0);
        fx.unlink("/tmp/gone");
        fx.mm_layout(t, Some(exe), (0x55_0000_2000, 0x55_0002_3000), 0x7ffd_0001_0abc);
        let specs = [
            VmaSpec { file: Some(exe), ..spec(0x55_0000_0000, 0x55_0000_1000, R) },
            VmaSpec { file: Some(exe), pgoff: 1, ..spec(0x55_0000_1000, 0x55_0000_2000, RX) },
            spec(0x55_0000_2000, 0x55_0002_3000, RW),
            VmaSpec { file: Some(lib), ..spec(0x7f00_0000_0000, 0x7f00_0002_8000, R) },
            VmaSpec { file: Some(lib), pgoff: 0x28, ..spec(0x7f00_0002_8000, 0x7f00_0019_d000, RX) },
            VmaSpec { file: Some(gone), ..spec(0x7f00_1000_0000, 0x7f00_1000_1000, RWS) },
            spec(0x7f00_2000_0000, 0x7f00_2000_3000, RW),
            spec(0x7ffd_0000_0000, 0x7ffd_0002_1000, RW),
            VmaSpec { special: Some("[vvar]"), ..spec(0x7ffd_0010_0000, 0x7ffd_0010_4000, R) },
            VmaSpec { special: Some("[vdso]"), ..spec(0x7ffd_0010_4000, 0x7ffd_0010_6000, RX) },
        ];
        fx.vmas(t, &specs, per_leaf);
        (fx, t)
    }

    fn expected(fx: &mut Fx) -> Vec<(u64, &'static str, u64, u64, String, VmaKind)> {
        let (prog, libc, gone) =
            (fx.ino_of("/usr/bin/prog"), fx.ino_of("/usr/lib/x86_64-linux-gnu/libc.so.6"), fx.ino_of("/tmp/gone"));
        vec![
            (0x55_0000_0000, "r--p", 0, prog, "/usr/bin/prog".into(), VmaKind::File),
            (0x55_0000_1000, "r-xp", 0x1000, prog, "/usr/bin/prog".into(), VmaKind::File),
            (0x55_0000_2000, "rw-p", 0, 0, "[heap]".into(), VmaKind::Heap),
            (0x7f00_0000_0000, "r--p", 0, libc, "/usr/lib/x86_64-linux-gnu/libc.so.6".into(), VmaKind::File),
            (0x7f00_0002_8000, "r-xp", 0x28000, libc, "/usr/lib/x86_64-linux-gnu/libc.so.6".into(), VmaKind::File),
            (0x7f00_1000_0000, "rw-s", 0, gone, "/tmp/gone (deleted)".into(), VmaKind::File),
            (0x7f00_2000_0000, "rw-p", 0, 0, String::new(), VmaKind::Anonymous),
            (0x7ffd_0000_0000, "rw-p", 0, 0, "[stack]".into(), VmaKind::Stack),
            (0x7ffd_0010_0000, "r--p", 0, 0, "[vvar]".into(), VmaKind::Special),
            (0x7ffd_0010_4000, "r-xp", 0, 0, "[vdso]".into(), VmaKind::Special),
        ]
    }

    fn got(m: &MemoryMap) -> Vec<(u64, &'static str, u64, u64, String, VmaKind)> {
        m.vmas
            .iter()
            .map(|v| {
                let perms: &'static str = Box::leak(v.perms.clone().into_boxed_str());
                (v.start.raw(), perms, v.offset, v.inode, v.name.clone(), v.kind)
            })
            .collect()
    }

    #[test]
    fn memory_maps_as_proc_shows_them_in_any_tree_shape() {
        for per_leaf in [16, 4, 2] {
            let (mut fx, _) = guest(per_leaf);
            let (k, addrs) = fx.finish();
            let m = fx.ctx(&k, &addrs, Limits::default()).memory_map(1).expect("pid 1");
            assert!(m.anomalies.is_empty(), "{per_leaf}: {:?}", m.anomalies);
            assert_eq!(got(&m), expected(&mut fx), "leaves of {per_leaf}");
            assert!(m.vmas.iter().filter(|v| v.kind == VmaKind::File).all(|v| (v.major, v.minor) == (8, 1)));
            assert!(
                m.vmas.iter().filter(|v| v.kind != VmaKind::File).all(|v| (v.major, v.minor, v.inode) == (0, 0, 0))
            );
        }
    }

    #[test]
    fn the_vsyscall_page_comes_last_when_it_is_on() {
        let (mut fx, _) = guest(4);
        fx.vsyscall_on();
        let (k, addrs) = fx.finish();
        let m = fx.ctx(&k, &addrs, Limits::default()).memory_map(1).expect("pid 1");
        let last = m.vmas.last().expect("areas");
        assert_eq!(
            (last.start.raw(), last.perms.as_str(), last.name.as_str()),
            (0xffff_ffff_ff60_0000, "--xp", "[vsyscall]")
        );
        assert_eq!(m.vmas.len(), 11);
    }

    #[test]
    fn format_is_byte_for_byte_proc_maps() {
        let v = |start: u64, end: u64, perms: &str, offset, (major, minor), inode, name: &str| Vma {
            start: Gva::new(start),
            end: Gva::new(end),
            flags: 0,
            perms: perms.into(),
            offset,
            major,
            minor,
            inode,
            name: name.into(),
            kind: VmaKind::File,
            vma: Gva::new(0),
        };
        let text = format_maps(&[
            v(0x7f3c_5e60_0000, 0x7f3c_5e62_8000, "r--p", 0, (8, 1), 1_835_050, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            v(0x7f3c_5e83_0000, 0x7f3c_5e83_3000, "rw-p", 0, (0, 0), 0, ""),
            v(0x7ffd_7f1e_4000, 0x7ffd_7f1e_6000, "r-xp", 0, (0, 0), 0, "[vdso]"),
            v(0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000, "--xp", 0, (0, 0), 0, "[vsyscall]"),
            v(0x1000, 0x2000, "r--p", 0x3000, (259, 65536), 7, "/a\nb"),
        ]);
        let want = "7f3c5e600000-7f3c5e628000 r--p 00000000 08:01 1835050                    /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                    7f3c5e830000-7f3c5e833000 rw-p 00000000 00:00 0 \n\
                    7ffd7f1e4000-7ffd7f1e6000 r-xp 00000000 00:00 0                          [vdso]\n\
                    ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n\
                    00001000-00002000 r--p 00003000 103:10000 7                              /a\\012b\n";
        assert_eq!(text, want);
    }

    #[test]
    fn kernel_threads_have_no_map_and_unknown_pids_none() {
        let mut fx = Fx::new();
        fx.kthread(2, fx.init_task, "kthreadd");
        let (k, addrs) = fx.finish();
        let ctx = fx.ctx(&k, &addrs, Limits::default());
        let m = ctx.memory_map(2).expect("pid 2");
        assert!(m.vmas.is_empty() && m.anomalies.is_empty(), "{m:?}");
        assert!(ctx.memory_map(77).is_none());
        let all = ctx.memory_maps();
        assert_eq!(all.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_dead_node_or_a_wrong_pivot_is_an_anomaly_and_the_rest_is_read() {
        let (mut fx, t) = guest(4);
        let mm = fx.r64(t + crate::views::fixture::layout::MM);
        let root = fx.r64(mm + dl::MA_ROOT) & !0xff;
        let second_leaf = fx.r64(root + dl::A64_SLOT + 8) & !0xff;
        fx.w64(second_leaf, second_leaf); // parent = itself: dead
        let third_leaf = fx.r64(root + dl::A64_SLOT + 16) & !0xff;
        fx.w64(third_leaf + dl::R64_PIVOT, 1); // below the node's minimum
        let (k, addrs) = fx.finish();
        let m = fx.ctx(&k, &addrs, Limits::default()).memory_map(1).expect("pid 1");
        let fields: Vec<&str> = m
            .anomalies
            .iter()
            .filter_map(|a| match a {
                Anomaly::InvalidField { field, .. } => Some(field.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(fields, ["parent", "pivot[0]"], "{:?}", m.anomalies);
        // The first leaf (two gaps and two areas) and the last leaves are still read.
        assert_eq!(m.vmas[0].start.raw(), 0x55_0000_0000);
        assert!(m.vmas.len() >= 4 && m.vmas.len() < 10, "{}", m.vmas.len());
    }

    #[test]
    fn an_area_the_tree_misplaces_is_an_anomaly() {
        let (mut fx, t) = guest(16);
        let mm = fx.r64(t + crate::views::fixture::layout::MM);
        // Seventeen slots: two leaves under an allocation-range node.
        let root = fx.r64(mm + dl::MA_ROOT) & !0xff;
        let leaf = fx.r64(root + dl::A64_SLOT) & !0xff;
        let vma = fx.r64(leaf + dl::R64_SLOT + 8);
        fx.w64(vma + dl::VM_START, 0x55_0000_0800);
        let (k, addrs) = fx.finish();
        let m = fx.ctx(&k, &addrs, Limits { max_vmas: 3, ..Limits::default() }).memory_map(1).expect("pid 1");
        assert!(
            m.anomalies.iter().any(|a| matches!(a, Anomaly::InvalidField { field, .. } if field == "vm_start..vm_end")),
            "{:?}",
            m.anomalies
        );
        assert!(m.anomalies.iter().any(|a| matches!(a, Anomaly::StepLimit { limit: 3, .. })));
        assert_eq!(m.vmas.len(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever the bytes of the mounts, dentries, files, descriptor tables,
        /// maple tree and log, the deeper views end and do not panic.
        #[test]
        fn arbitrary_bytes_never_panic(junk in prop::collection::vec((any::<u64>(), crate::views::fixture::hostile_u64()), 1..48)) {
            let (mut fx, t) = guest(4);
            let f = fx.file("/tmp/data", 0, 12);
            fx.open(t, 3, f, true);
            let (p, _) = fx.pseudo_file(Pseudo::Pipe, "", 0);
            fx.open(t, 70, p, false);
            fx.environ(t, 1, &["A=1", "B=2"]);
            fx.log(&[RecordSpec::new("one"), RecordSpec::new("two\nlines"), RecordSpec::new("")]);
            let (base, len) = fx.pool_span();
            for (off, v) in junk {
                fx.w64(base + ((off % len) & !7), v);
            }
            let (k, addrs) = fx.finish();
            let limits = Limits { max_list: 64, max_vmas: 64, max_fds: 256, max_path_steps: 32, max_environ: 4096, ..Limits::default() };
            let ctx = fx.ctx(&k, &addrs, limits);
            let maps = ctx.memory_maps();
            prop_assert!(maps.processes.iter().all(|p| p.vmas.len() <= 64 + 1));
            let _ = ctx.all_open_files();
            let _ = ctx.kernel_log();
            let _ = ctx.environment(1);
            let _ = ctx.all_threads();
        }
    }
}
