//! A QEMU domain that libvirt runs. libvirtd holds QEMU's only monitor, so vmscope
//! never connects to it: pause and resume go through libvirt (`virsh suspend` and
//! `resume`, so that libvirt's idea of the domain's state stays true), and what needs
//! the monitor — the memory map, vCPU registers — goes through libvirt's passthrough
//! (`virsh qemu-monitor-command`). Guest memory is read from QEMU's process as for any
//! QEMU; this type only finds that process.
//!
//! Through `virsh`, not the libvirt C library: no build-time dependency, one process
//! per call (about 30 ms here, paid only by halting passes), and it is the tool a
//! libvirt user already has.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use vmscope_mem::MemoryMap;

use crate::qemu::{Monitor, RamLayout, map_and_blocks, parse_registers, ram_layout};
use crate::{Error, Hypervisor, Result, VcpuRegisters};

/// The connection URI when none is given and `LIBVIRT_DEFAULT_URI` is unset: the
/// system daemon, where `virsh` as root finds its domains.
pub const DEFAULT_URI: &str = "qemu:///system";

/// A running libvirt domain, driven through `virsh`.
#[derive(Debug, Clone)]
pub struct Libvirt {
    domain: String,
    uri: String,
}

impl Libvirt {
    /// The running domain `domain` (a name, UUID or id) of the libvirt daemon at `uri`
    /// (`None`: `LIBVIRT_DEFAULT_URI`, else [`DEFAULT_URI`]). Fails with what to do when
    /// virsh is missing, the domain is unknown, or it does not run.
    pub fn connect(domain: &str, uri: Option<&str>) -> Result<Self> {
        let uri = uri
            .map(str::to_owned)
            .or_else(|| std::env::var("LIBVIRT_DEFAULT_URI").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_URI.to_owned());
        let mut lv = Self { domain: domain.to_owned(), uri };
        // virsh accepts a name, UUID or id; the rest of this type wants the name.
        let info = lv.virsh(&["dominfo", domain]).map_err(|e| match e {
            Error::Command { desc, .. } => Error::Libvirt(format!(
                "libvirt domain {domain}: {desc} (`virsh -c {} list --all` lists the domains there; \
                 --connect URI names another libvirt)",
                lv.uri
            )),
            e => e,
        })?;
        lv.domain =
            field(&info, "Name").ok_or_else(|| Error::Protocol(format!("virsh dominfo: no name in {info:?}")))?;
        let state = field(&info, "State").unwrap_or_default();
        if !matches!(state.as_str(), "running" | "paused" | "in shutdown" | "pmsuspended") {
            return Err(Error::Libvirt(format!(
                "libvirt domain {} is {state}, not running: start it (virsh -c {} start {})",
                lv.domain, lv.uri, lv.domain
            )));
        }
        Ok(lv)
    }

    /// The domain's name.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The connection URI in use.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The domain's QEMU process: the `qemu-system-*` whose `-name` is
    /// `guest=NAME,...` (libvirt escapes a comma in a name as two).
    pub fn qemu_pid(&self) -> Result<u32> {
        let want = format!("guest={}", self.domain.replace(',', ",,"));
        let dir = std::fs::read_dir("/proc").map_err(|e| Error::io("listing /proc", e))?;
        let found = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|&pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let mut args = raw.split(|&b| b == 0);
            let prog = args.next().unwrap_or_default();
            let is_qemu = prog.rsplit(|&b| b == b'/').next().is_some_and(|p| p.starts_with(b"qemu-"));
            is_qemu && has_name(args, want.as_bytes())
        });
        found.ok_or_else(|| {
            Error::Libvirt(format!(
                "no QEMU process of libvirt domain {} is visible from here (is it a QEMU domain \
                 on this host, and does this process see the host's /proc?)",
                self.domain
            ))
        })
    }

    /// The unix socket that the domain's serial port `port` (0: ttyS0) is bound to,
    /// from its live XML; `None` when that port is not a unix socket.
    pub fn serial_socket(&self, port: u32) -> Result<Option<PathBuf>> {
        let xpath = format!("//serial[@type='unix'][target/@port='{port}']/source/@path");
        let out = self.virsh(&["dumpxml", &self.domain, "--xpath", &xpath])?;
        Ok(attribute(&out, "path").map(PathBuf::from))
    }

    /// libvirt's state of the domain (`running`, `paused`, `shut off`, ...).
    pub fn state(&self) -> Result<String> {
        Ok(self.virsh(&["domstate", &self.domain])?.trim().to_owned())
    }

    /// A QMP command through libvirt's passthrough; its `return` value.
    pub fn monitor(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut req = json!({ "execute": command });
        if let Some(a) = arguments {
            req["arguments"] = a;
        }
        let out = self.virsh(&["qemu-monitor-command", &self.domain, &req.to_string()])?;
        let reply: Value = serde_json::from_str(out.trim())
            .map_err(|e| Error::Protocol(format!("virsh qemu-monitor-command {command}: {e}: {out:?}")))?;
        if let Some(err) = reply.get("error") {
            return Err(Error::Command {
                command: command.to_owned(),
                class: err.get("class").and_then(Value::as_str).unwrap_or("?").to_owned(),
                desc: err.get("desc").and_then(Value::as_str).unwrap_or("?").to_owned(),
            });
        }
        reply.get("return").cloned().ok_or_else(|| Error::Protocol(format!("no return in {out:?}")))
    }

    /// Guest RAM as the domain's QEMU lays it out (see [`ram_layout`]), asked
    /// through libvirt's monitor passthrough.
    pub fn ram_layout(&self) -> Result<RamLayout> {
        ram_layout(&mut Passthrough(self), None, "libvirt monitor passthrough (query-memdev, info mtree -f, gpa2hva)")
    }

    /// Runs `virsh -c URI ARGS`; its standard output, or an error carrying its message.
    fn virsh(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("virsh").arg("-q").arg("-c").arg(&self.uri).args(args).output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Libvirt("virsh is not installed: install libvirt-clients".into())
            } else {
                Error::io("running virsh", e)
            }
        })?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            let msg = msg.trim().trim_start_matches("error: ").replace("\nerror: ", "; ");
            return Err(Error::Command {
                command: format!("virsh {}", args.join(" ")),
                class: "libvirt".into(),
                desc: msg,
            });
        }
        String::from_utf8(out.stdout).map_err(|_| Error::Protocol(format!("virsh {}: output is not UTF-8", args[0])))
    }
}

impl Hypervisor for Libvirt {
    fn pause(&self) -> Result<()> {
        self.virsh(&["suspend", &self.domain]).map(drop)
    }

    fn resume(&self) -> Result<()> {
        self.virsh(&["resume", &self.domain]).map(drop)
    }

    fn is_paused(&self) -> Result<bool> {
        Ok(self.state()? == "paused")
    }

    fn vcpu_count(&self) -> Result<usize> {
        Ok(self.monitor("query-cpus-fast", None)?.as_array().map_or(0, Vec::len))
    }

    fn vcpu_registers(&self, index: usize) -> Result<VcpuRegisters> {
        parse_registers(&Passthrough(self).hmp("info registers", Some(index))?)
    }

    fn memory_map(&self) -> Result<MemoryMap> {
        Ok(map_and_blocks(&mut Passthrough(self), None)?.0)
    }
}

/// libvirt's monitor passthrough as a QEMU [`Monitor`].
struct Passthrough<'a>(&'a Libvirt);

impl Monitor for Passthrough<'_> {
    fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.0.monitor(command, arguments)
    }
}

/// Whether QEMU arguments `args` hold `-name` whose value is `want` or starts with
/// `want,` (`want` as libvirt writes it, commas doubled).
fn has_name<'a>(mut args: impl Iterator<Item = &'a [u8]>, want: &[u8]) -> bool {
    while let Some(a) = args.next() {
        if a == b"-name" {
            let Some(v) = args.next() else { return false };
            if let Some(rest) = v.strip_prefix(want) {
                // `guest=a,,b` must not match `guest=a`: after the name comes the end,
                // or a single comma (an option), never a doubled one.
                return rest.is_empty() || (rest.starts_with(b",") && !rest.starts_with(b",,"));
            }
        }
    }
    false
}

/// The value of `Key:   value` in virsh's `dominfo` output.
fn field(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// The value of `name="..."` (or `name='...'`) in virsh's xpath output.
fn attribute(out: &str, name: &str) -> Option<String> {
    let at = out.find(&format!("{name}="))? + name.len() + 1;
    let rest = &out[at..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    let end = value.find(quote)?;
    Some(xml_unescape(&value[..end]))
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&'static str]) -> impl Iterator<Item = &'static [u8]> {
        s.iter().map(|a| a.as_bytes()).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn finds_the_domain_by_its_qemu_name() {
        let a = ["-name", "guest=web,debug-threads=on", "-S"];
        assert!(has_name(args(&a), b"guest=web"));
        assert!(!has_name(args(&a), b"guest=we"));
        assert!(has_name(args(&["-name", "guest=web"]), b"guest=web"));
        // A domain called "a,b" is written guest=a,,b; "a" must not match it.
        assert!(!has_name(args(&["-name", "guest=a,,b,debug-threads=on"]), b"guest=a"));
        assert!(has_name(args(&["-name", "guest=a,,b,debug-threads=on"]), b"guest=a,,b"));
        assert!(!has_name(args(&["-name"]), b"guest=web"));
        assert!(!has_name(args(&["-m", "guest=web"]), b"guest=web"));
    }

    #[test]
    fn reads_an_attribute_from_xpath_output() {
        assert_eq!(attribute(" path=\"/tmp/a b.sock\"\n", "path").as_deref(), Some("/tmp/a b.sock"));
        assert_eq!(attribute(" path='/x&amp;y'\n", "path").as_deref(), Some("/x&y"));
        assert_eq!(attribute("", "path"), None);
        assert_eq!(attribute(" path=\"unterminated", "path"), None);
        assert_eq!(attribute(" path=", "path"), None);
    }

    #[test]
    fn reads_dominfo_fields() {
        let out = "Id:             2\nName:           vmscope-try\nUUID:           fe72\nState:          running\n";
        assert_eq!(field(out, "Name").as_deref(), Some("vmscope-try"));
        assert_eq!(field(out, "State").as_deref(), Some("running"));
        assert_eq!(field(out, "Nope"), None);
    }
}
