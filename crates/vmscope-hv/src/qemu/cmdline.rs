//! What a running QEMU was started with, read from `/proc/PID/cmdline`: where its QMP
//! socket is, where the agent's serial port goes, how its RAM is backed. This is how
//! `vmscope --qemu PID` finds everything from a PID alone.

use std::path::{Path, PathBuf};

use vmscope_mem::{Gpa, Hva, MemoryMap, Region};

use super::hmp::BlockSpan;
use super::process::{Vma, read_maps};
use super::{LayoutBlock, RamLayout};
use crate::{Error, Result};

/// A `-object memory-backend-*` of the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryBackend {
    /// `ram`, `memfd`, `file`, ... (the type without `memory-backend-`).
    pub kind: String,
    /// Its `id`, which names its RAM block.
    pub id: String,
    /// `size=` in bytes.
    pub size: Option<u64>,
    /// `share=on` (`None`: not given, which is off).
    pub share: Option<bool>,
    /// `mem-path=` of a file backend.
    pub mem_path: Option<PathBuf>,
}

/// The parts of a QEMU command line vmscope cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QemuCommandLine {
    /// QMP unix sockets, in command-line order (QEMU serves one client on each).
    pub qmp: Vec<PathBuf>,
    /// Each `-serial` in order (ttyS0, ttyS1, ...): the unix socket it goes to, if any.
    pub serial_sockets: Vec<Option<PathBuf>>,
    /// `-object memory-backend-*` with `share=on`.
    pub shared_backend: bool,
    /// The `-m` size argument as given.
    pub memory: Option<String>,
    /// Every `-object memory-backend-*`, in order.
    pub backends: Vec<MemoryBackend>,
    /// The machine type (`-machine TYPE,...`, `-M`), if given (QEMU's default is `pc`).
    pub machine: Option<String>,
    /// `-machine memory-backend=ID`: the backend that is all of guest RAM.
    pub machine_backend: Option<String>,
    /// `-numa node,memdev=ID`, in node order: the backends guest RAM is made of.
    pub numa_memdevs: Vec<String>,
    /// The legacy `-mem-path DIR` (RAM in a file there, mapped private).
    pub mem_path: Option<PathBuf>,
}

impl QemuCommandLine {
    /// Reads and parses the command line of process `pid`. Fails if it is not QEMU.
    pub fn of(pid: u32) -> Result<Self> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_err(|e| Error::io(format!("reading the command line of process {pid}"), e))?;
        let args: Vec<String> =
            raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let prog = args
            .first()
            .map(|a| Path::new(a).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
        if !prog.as_deref().is_some_and(|p| p.starts_with("qemu-system") || p.starts_with("qemu-kvm")) {
            return Err(Error::NotQemu { pid, runs: args.first().cloned().unwrap_or_else(|| "?".into()) });
        }
        // A relative socket path is relative to where QEMU started, which is its cwd
        // unless it daemonized (then "/"); the user's shell is likely still there.
        let mut dirs: Vec<PathBuf> = std::fs::read_link(format!("/proc/{pid}/cwd")).into_iter().collect();
        dirs.extend(std::env::current_dir());
        Ok(Self::parse(&args[1..], &dirs))
    }

    /// Parses QEMU arguments. A relative socket path is resolved against the first of
    /// `dirs` where it exists (or the first of `dirs`).
    pub fn parse(args: &[String], dirs: &[PathBuf]) -> Self {
        let mut out = Self::default();
        let mut chardevs: Vec<(String, PathBuf)> = Vec::new();
        let mut monitors: Vec<String> = Vec::new();
        let mut serials: Vec<String> = Vec::new();
        let abs = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                return p.to_path_buf();
            }
            let found = dirs.iter().map(|d| d.join(p)).find(|c| c.exists());
            found.unwrap_or_else(|| dirs.first().map_or_else(|| p.to_path_buf(), |d| d.join(p)))
        };
        let mut it = args.iter().map(String::as_str);
        while let Some(a) = it.next() {
            let opt = a.trim_start_matches('-');
            let takes_value = matches!(
                opt,
                "qmp"
                    | "qmp-pretty"
                    | "chardev"
                    | "mon"
                    | "serial"
                    | "object"
                    | "m"
                    | "machine"
                    | "M"
                    | "numa"
                    | "mem-path"
            );
            if a.starts_with('-') && takes_value {
                let Some(v) = it.next() else { break };
                match opt {
                    "qmp" | "qmp-pretty" => {
                        if let Some(rest) = v.strip_prefix("unix:") {
                            out.qmp.push(abs(rest.split(',').next().unwrap_or(rest)));
                        }
                    }
                    "chardev" => {
                        let (kind, props) = v.split_once(',').unwrap_or((v, ""));
                        if kind == "socket"
                            && let (Some(id), Some(path)) = (prop(props, "id"), prop(props, "path"))
                        {
                            chardevs.push((id.to_owned(), abs(path)));
                        }
                    }
                    "mon" => {
                        let props = v;
                        if prop(props, "mode") == Some("control")
                            && let Some(c) = prop(props, "chardev")
                        {
                            monitors.push(c.to_owned());
                        }
                    }
                    "serial" => serials.push(v.to_owned()),
                    "object" if v.starts_with("memory-backend-") => {
                        let share = prop(v, "share").map(|s| s == "on" || s == "true");
                        out.shared_backend |= share == Some(true);
                        let (kind, props) = v.split_once(',').unwrap_or((v, ""));
                        out.backends.push(MemoryBackend {
                            kind: kind.trim_start_matches("memory-backend-").to_owned(),
                            id: prop(props, "id").unwrap_or("").to_owned(),
                            size: prop(props, "size").and_then(|s| parse_size(s, 1)),
                            share,
                            mem_path: prop(props, "mem-path").map(abs),
                        });
                    }
                    "m" => out.memory = Some(v.to_owned()),
                    "machine" | "M" => {
                        let first = v.split(',').next().unwrap_or("");
                        if !first.is_empty() && !first.contains('=') {
                            out.machine = Some(first.to_owned());
                        } else if let Some(t) = prop(v, "type") {
                            out.machine = Some(t.to_owned());
                        }
                        if let Some(b) = prop(v, "memory-backend") {
                            out.machine_backend = Some(b.to_owned());
                        }
                    }
                    "numa" if v.starts_with("node") => out.numa_memdevs.extend(prop(v, "memdev").map(str::to_owned)),
                    "mem-path" => out.mem_path = Some(abs(v)),
                    _ => {}
                }
            }
        }
        for m in &monitors {
            if let Some((_, p)) = chardevs.iter().find(|(id, _)| id == m) {
                out.qmp.push(p.clone());
            }
        }
        out.serial_sockets = serials
            .iter()
            .map(|s| {
                if let Some(id) = s.strip_prefix("chardev:") {
                    chardevs.iter().find(|(i, _)| i == id).map(|(_, p)| p.clone())
                } else {
                    s.strip_prefix("unix:").map(|rest| abs(rest.split(',').next().unwrap_or(rest)))
                }
            })
            .collect();
        out
    }

    /// The unix socket of ttyS1, where vmscope's guest agent listens.
    pub fn agent_socket(&self) -> Option<&Path> {
        self.serial_sockets.get(1).and_then(|s| s.as_deref())
    }

    /// The RAM blocks guest RAM is made of, in the order QEMU lays them out: the
    /// `-numa` nodes' backends, or `-machine memory-backend=`, or the implicit
    /// `pc.ram` of `-m` (with its kind: the backend's type, `ram` for plain `-m`).
    fn ram_blocks(&self) -> Result<Vec<(String, u64, MemoryBackend)>> {
        let backend = |id: &str| {
            self.backends.iter().find(|b| b.id == id).cloned().ok_or_else(|| {
                Error::Protocol(format!("QEMU's command line names memory backend {id:?} but defines none"))
            })
        };
        let ids: Vec<String> = if !self.numa_memdevs.is_empty() {
            self.numa_memdevs.clone()
        } else {
            self.machine_backend.iter().cloned().collect()
        };
        let m = self.memory.as_deref().unwrap_or("128M");
        let m = m.split(',').find(|p| !p.contains('=')).or_else(|| prop(m, "size")).unwrap_or(m);
        let dash_m = parse_size(m, 1 << 20).ok_or_else(|| Error::Protocol(format!("cannot read QEMU's -m {m}")))?;
        if ids.is_empty() {
            let kind = if self.mem_path.is_some() { "file" } else { "ram" };
            let b = MemoryBackend {
                kind: kind.into(),
                id: "pc.ram".into(),
                mem_path: self.mem_path.clone(),
                ..MemoryBackend::default()
            };
            return Ok(vec![("pc.ram".into(), dash_m, b)]);
        }
        let mut out = Vec::new();
        for id in ids {
            let b = backend(&id)?;
            let size = match (b.size, self.numa_memdevs.is_empty()) {
                (Some(s), _) => s,
                (None, true) => dash_m,
                (None, false) => return Err(Error::Protocol(format!("memory backend {id} has no size="))),
            };
            out.push((id, size, b));
        }
        Ok(out)
    }

    /// The memory map QEMU builds for this command line on a PC machine, for when no
    /// QMP is there to ask: RAM from 0, split at the PCI hole (q35: 2 GiB below 4 GiB
    /// once RAM reaches 2.75 GiB; pc/i440fx, QEMU's default: 3 GiB once it reaches
    /// 3.5 GiB), the rest from 4 GiB; the RAM blocks one after another (`-numa` nodes
    /// in order), as in QEMU's RAM container. `max-ram-below-4g` is not modelled.
    pub fn inferred_memory_map(&self) -> Result<(MemoryMap, Vec<BlockSpan>)> {
        let blocks = self.ram_blocks()?;
        let mut spans = Vec::new();
        let mut size = 0u64;
        for (name, s, _) in &blocks {
            spans.push(BlockSpan { name: name.clone(), offset: size, size: *s });
            size = size.checked_add(*s).ok_or_else(|| Error::Protocol("RAM sizes overflow".into()))?;
        }
        let q35 = self.machine.as_deref().is_some_and(|m| m.contains("q35"));
        let low = match (q35, size) {
            (true, s) if s >= 0xb000_0000 => 0x8000_0000,
            (false, s) if s >= 0xe000_0000 => 0xc000_0000,
            (_, s) => s,
        };
        // (GPA, container offset, length) of the two pieces of the RAM container.
        let pieces = [(0u64, 0u64, low), (1u64 << 32, low, size - low)];
        let mut regions = Vec::new();
        for (gpa, coff, len) in pieces.into_iter().filter(|p| p.2 > 0) {
            for s in &spans {
                let (a, b) = (coff.max(s.offset), (coff + len).min(s.offset + s.size));
                if a < b {
                    regions.push(Region::new(Gpa::new(gpa + (a - coff)), b - a, a, s.name.clone()));
                }
            }
        }
        Ok((MemoryMap::new(regions)?, spans))
    }

    /// The RAM layout inferred without QMP: [`inferred_memory_map`](Self::inferred_memory_map),
    /// and each block found in `/proc/PID/maps` of QEMU `pid` as the one mapping of
    /// its size and kind (anonymous, memfd, or its `mem-path` file). Fails, asking for
    /// QMP, when no mapping or more than one fits.
    pub fn inferred_layout(&self, pid: u32) -> Result<RamLayout> {
        let (map, spans) = self.inferred_memory_map()?;
        let vmas = read_maps(pid)?;
        let kinds = self.ram_blocks()?;
        let mut blocks = Vec::new();
        for (span, (_, _, backend)) in spans.into_iter().zip(kinds) {
            let found: Vec<&Vma> = vmas.iter().filter(|v| v.len() == span.size && fits(v, &backend)).collect();
            let hva = match found.as_slice() {
                [v] => Hva::new(v.start),
                [] => {
                    return Err(Error::Unsupported(format!(
                        "without QMP, RAM block {} ({} MiB, memory-backend-{}) must be one mapping of that size in                          /proc/{pid}/maps, and none is: give vmscope QEMU's QMP socket (--qmp PATH)",
                        span.name,
                        span.size >> 20,
                        backend.kind
                    )));
                }
                more => {
                    return Err(Error::Unsupported(format!(
                        "without QMP, RAM block {} ({} MiB) could be any of {} mappings in /proc/{pid}/maps: give                          vmscope QEMU's QMP socket (--qmp PATH)",
                        span.name,
                        span.size >> 20,
                        more.len()
                    )));
                }
            };
            blocks.push(LayoutBlock { span, hva });
        }
        Ok(RamLayout { map, blocks, source: "inferred from QEMU's command line and /proc/PID/maps (no QMP)" })
    }
}

/// Whether mapping `v` can be the RAM of `backend`.
fn fits(v: &Vma, backend: &MemoryBackend) -> bool {
    if !v.is_ram_like() {
        return false;
    }
    match backend.kind.as_str() {
        "memfd" => v.path.starts_with("/memfd:memory-backend-memfd"),
        "file" => backend.mem_path.as_ref().is_some_and(|p| {
            let p = p.to_string_lossy();
            let path = v.path.trim_end_matches(" (deleted)");
            path == p || path.strip_prefix(p.as_ref()).is_some_and(|rest| rest.starts_with('/'))
        }),
        _ => v.is_anonymous() && !v.is_shared(),
    }
}

/// `1G`, `512M`, `2048k`, or a bare number of `unit`s (MiB for `-m`, bytes for a
/// backend's `size=`), as QEMU takes them.
fn parse_size(s: &str, unit: u64) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, unit),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// The value of `key=` in a comma-separated property list.
fn prop<'a>(props: &'a str, key: &str) -> Option<&'a str> {
    props.split(',').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn readme_flags() {
        let c = QemuCommandLine::parse(
            &args(
                "-accel tcg -machine q35,memory-backend=ram -m 1G \
                 -object memory-backend-memfd,id=ram,size=1G,share=on \
                 -serial file:console.log \
                 -chardev socket,id=agent,path=agent.sock,server=on,wait=off -serial chardev:agent \
                 -qmp unix:qmp.sock,server=on,wait=off",
            ),
            &[PathBuf::from("/run/vm")],
        );
        assert_eq!(c.qmp, vec![Path::new("/run/vm/qmp.sock")]);
        assert_eq!(c.agent_socket(), Some(Path::new("/run/vm/agent.sock")));
        assert!(c.shared_backend);
        assert_eq!(c.memory.as_deref(), Some("1G"));
    }

    #[test]
    fn sizes_and_the_inferred_split() {
        assert_eq!(parse_size("1G", 1 << 20), Some(1 << 30));
        assert_eq!(parse_size("512", 1 << 20), Some(512 << 20));
        assert_eq!(parse_size("4096", 1), Some(4096));
        assert_eq!(parse_size("99999999999T", 1), None);
        let c = QemuCommandLine::parse(&args("-machine q35 -m 4G"), &[]);
        let (m, spans) = c.inferred_memory_map().unwrap();
        assert_eq!(m.regions().len(), 2);
        assert_eq!(m.regions()[1].offset, 0x8000_0000);
        assert_eq!(m.ram_size(), 4 << 30);
        assert_eq!(spans, [BlockSpan { name: "pc.ram".into(), offset: 0, size: 4 << 30 }]);
        // pc (the default machine) keeps 3 GiB below 4 GiB.
        let c = QemuCommandLine::parse(&args("-m 8G"), &[]);
        let (m, _) = c.inferred_memory_map().unwrap();
        assert_eq!(m.regions()[0].size, 0xc000_0000);
        assert_eq!(m.regions()[1].gpa.raw(), 1 << 32);
        let c = QemuCommandLine::parse(&args("-M pc -m 3G"), &[]);
        assert_eq!(c.inferred_memory_map().unwrap().0.regions().len(), 1, "under 3.5 GiB all fits below");
    }

    #[test]
    fn numa_nodes_fill_the_container_in_order() {
        let c = QemuCommandLine::parse(
            &args(
                "-machine pc -m 4G -object memory-backend-ram,id=m0,size=1G \
                 -object memory-backend-file,id=m1,size=3G,mem-path=/dev/hugepages,share=on \
                 -numa node,memdev=m0 -numa node,nodeid=1,memdev=m1",
            ),
            &[PathBuf::from("/")],
        );
        assert_eq!(c.numa_memdevs, ["m0", "m1"]);
        assert_eq!(c.backends[1].mem_path.as_deref(), Some(Path::new("/dev/hugepages")));
        let (m, spans) = c.inferred_memory_map().unwrap();
        let r: Vec<_> = m.regions().iter().map(|r| (r.gpa.raw(), r.size, r.offset, r.name.as_str())).collect();
        assert_eq!(
            r,
            [(0, 1 << 30, 0, "m0"), (1 << 30, 0x8000_0000, 1 << 30, "m1"), (1 << 32, 1 << 30, 0xc000_0000, "m1")]
        );
        assert_eq!(spans[1], BlockSpan { name: "m1".into(), offset: 1 << 30, size: 3 << 30 });
        let file = MemoryBackend { kind: "file".into(), mem_path: Some("/dev/hugepages".into()), ..Default::default() };
        let vma = |path: &str, perms: &str| Vma {
            start: 0,
            end: 1,
            perms: perms.into(),
            offset: 0,
            inode: 1,
            path: path.into(),
        };
        assert!(fits(&vma("/dev/hugepages/qemu_back_mem.m1.Xa2 (deleted)", "rw-s"), &file));
        assert!(!fits(&vma("/dev/hugepages2/x", "rw-s"), &file));
        let ram = MemoryBackend { kind: "ram".into(), ..Default::default() };
        assert!(fits(&vma("", "rw-p"), &ram) && !fits(&vma("", "rwxp"), &ram), "not the TCG code buffer");
    }

    #[test]
    fn monitor_on_a_chardev() {
        let c = QemuCommandLine::parse(
            &args("-chardev socket,id=mon0,path=/tmp/m.sock,server=on -mon chardev=mon0,mode=control -m 512"),
            &[PathBuf::from("/")],
        );
        assert_eq!(c.qmp, vec![Path::new("/tmp/m.sock")]);
        assert!(!c.shared_backend);
        assert_eq!(c.agent_socket(), None);
    }
}
