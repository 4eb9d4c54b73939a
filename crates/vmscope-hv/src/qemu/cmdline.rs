//! What a running QEMU was started with, read from `/proc/PID/cmdline`: where its QMP
//! socket is, where the agent's serial port goes, how its RAM is backed. This is how
//! `vmscope --qemu PID` finds everything from a PID alone.

use std::path::{Path, PathBuf};

use vmscope_mem::{Gpa, MemoryMap, Region};

use crate::{Error, Result};

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
            if a.starts_with('-') && matches!(opt, "qmp" | "qmp-pretty" | "chardev" | "mon" | "serial" | "object" | "m")
            {
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
                        out.shared_backend |= prop(v, "share").is_some_and(|s| s == "on" || s == "true");
                    }
                    "m" => out.memory = Some(v.to_owned()),
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

    /// The memory map QEMU builds for `-m SIZE` on a PC machine, for when no QMP is
    /// there to ask: RAM from 0, split at the PCI hole (q35: 2 GiB below 4 GiB once
    /// RAM reaches 2.75 GiB, i440fx: 3 GiB once it reaches 3.5 GiB — q35 is assumed,
    /// the machine the README's flags use), the rest from 4 GiB.
    pub fn inferred_memory_map(&self) -> Result<MemoryMap> {
        let m = self.memory.as_deref().unwrap_or("128M");
        let size = parse_size(m.split(',').next().unwrap_or(m).trim_start_matches("size="))
            .ok_or_else(|| Error::Protocol(format!("cannot read QEMU's -m {m}")))?;
        let low = if size >= 0xb000_0000 { 0x8000_0000 } else { size };
        let mut regions = vec![Region::new(Gpa::new(0), low, 0, "ram-below-4g")];
        if size > low {
            regions.push(Region::new(Gpa::new(1 << 32), size - low, low, "ram-above-4g"));
        }
        Ok(MemoryMap::new(regions)?)
    }
}

/// `1G`, `512M`, `1024` (MiB), `2048k`, as QEMU's `-m` takes them.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1 << 20),
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
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512 << 20));
        assert_eq!(parse_size("99999999999T"), None);
        let c = QemuCommandLine { memory: Some("4G".into()), ..Default::default() };
        let m = c.inferred_memory_map().unwrap();
        assert_eq!(m.regions().len(), 2);
        assert_eq!(m.regions()[1].offset, 0x8000_0000);
        assert_eq!(m.ram_size(), 4 << 30);
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
