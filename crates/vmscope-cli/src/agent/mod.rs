//! The agent technique: the guest answers from its own /proc, through vmscope's
//! agent on its second serial port, and vmscope prints the answer in the tables and
//! JSON of the view it would read from memory. Fields /proc does not show are 0
//! (kernel addresses it hides, `vm_flags`, a unix socket's owner uid).
//!
//! Kernel structures that only memory shows are refused: `check` and `pids`
//! compare what the guest's kernel lists with what its memory holds, and `profile`
//! describes the kernel's memory.

mod procfs;

use std::collections::HashMap;

use anyhow::bail;
use serde::Serialize;
use serde_json::json;
use vmscope_agent::{Client, DirEntry, ExecRequest, ModuleInfo, ProcessInfo};
use vmscope_linux::{
    Anomaly, Environment, MemoryMap, Module, MountNamespace, MountTable, Namespaces, OpenFile, OpenFiles, Owner,
    PerProcess, Process, ProcessList, ProcessTree, Proto, SocketTable, Thread, ThreadList,
};
use vmscope_mem::Gva;

use crate::output::{self, ModRow, PsRow};
use crate::view::{self, Output, files, ids, memory, procs, sockets, symbols};
use crate::{Args, Command};

/// The most bytes read of one /proc file: `/proc/kallsyms` of a distribution
/// kernel is about 10 MiB.
const MAX_FILE: u64 = 64 << 20;

/// The view `args` asks for, as the guest's /proc shows it.
pub fn view(args: &Args, c: &mut Client) -> anyhow::Result<Output> {
    if args.command.verify() {
        bail!("--verify checks a view read from guest memory; the agent technique reads none");
    }
    Ok(match args.command {
        Command::Ps { threads: false, tree: false, .. } => {
            let rows: Vec<PsRow> = c.processes()?.iter().map(PsRow::from).collect();
            let doc = json!({ "technique": "agent", "processes": rows });
            Output { doc, table: output::ps_table(&rows), anomalies: vec![], findings: 0 }
        }
        Command::Lsmod { .. } => {
            let rows: Vec<ModRow> = c.modules()?.iter().map(ModRow::from).collect();
            let doc = json!({ "technique": "agent", "modules": rows });
            Output { doc, table: output::lsmod_table(&rows), anomalies: vec![], findings: 0 }
        }
        Command::Info => {
            let version = text(c, "/proc/version")?.trim_end().to_owned();
            let release = c.release().to_owned();
            let table = format!("release        {release}\nbanner         {version}\n");
            Output {
                doc: json!({ "technique": "agent", "release": release, "banner": version }),
                table,
                anomalies: vec![],
                findings: 0,
            }
        }
        Command::Maps { pid } => maps(c, pid)?,
        Command::Env { pid } => env(c, pid)?,
        Command::Lsof { pid } => lsof(c, pid)?,
        Command::Sockets => sockets::sockets_output("agent", socket_table(c)?),
        Command::Mounts { pid } => ids::mounts_output("agent", mounts(c, pid)?),
        Command::Ns { pid } => ids::ns_output("agent", per_process(c, pid, namespaces)?),
        Command::Creds { pid } => ids::creds_output("agent", per_process(c, pid, credentials)?),
        Command::Dmesg { raw, caller } => dmesg(c, raw, caller)?,
        Command::Kallsyms { ref pattern } => kallsyms(c, pattern.as_deref())?,
        Command::Check => return Err(memory_only("check")),
        Command::Pids => return Err(memory_only("pids")),
        Command::Profile { .. } => return Err(memory_only("profile")),
        Command::Ps { threads: true, .. } => {
            let ps = process_list(c)?;
            let threads = thread_lists(c, &ps)?;
            procs::threads_output("agent", &ps, threads, vec![])
        }
        Command::Ps { .. } => procs::tree_output("agent", process_tree(c)?),
        Command::Pstree => procs::pstree_output("agent", process_tree(c)?),
        Command::Dump { .. } | Command::Watch(_) => unreachable!("dump and watch are handled before the agent"),
    })
}

/// The guest's processes as the memory views' type.
fn process_list(c: &mut Client) -> anyhow::Result<Vec<Process>> {
    Ok(c.processes()?.iter().map(process).collect())
}

/// A process the agent lists as the memory views' type: what the agent does not
/// send is 0 or absent (effective ids, times, task address; without a start time a
/// reused PID is the same process to it), the arguments are its command line split
/// at spaces, a process without one is a kernel thread.
pub(crate) fn process(p: &ProcessInfo) -> Process {
    Process {
        pid: p.pid,
        tid: p.pid,
        ppid: p.ppid,
        comm: p.comm.clone(),
        full_name: None,
        full_name_truncated: false,
        state: p.state,
        uid: p.uid,
        gid: p.gid,
        euid: 0,
        egid: 0,
        start_time_ns: 0,
        start_boottime_ns: None,
        utime_ns: 0,
        stime_ns: 0,
        rss_pages: None,
        threads: p.threads,
        kernel_thread: p.cmdline.is_empty(),
        cmdline: Some(p.cmdline.split(' ').filter(|a| !a.is_empty()).map(str::to_owned).collect()),
        task: Gva::new(0),
    }
}

/// A module the agent lists as the memory views' type (no addresses, no taints).
pub(crate) fn module(m: &ModuleInfo) -> Module {
    Module {
        name: m.name.clone(),
        base: Gva::new(0),
        size: m.size,
        state: m.state.clone(),
        state_value: 0,
        refcount: m.refcount,
        taints: 0,
        taint_flags: String::new(),
        addr: Gva::new(0),
    }
}

fn process_tree(c: &mut Client) -> anyhow::Result<ProcessTree> {
    Ok(ProcessTree::from_list(ProcessList { processes: process_list(c)?, anomalies: vec![] }))
}

/// Each process's threads from `/proc/PID/task/TID/stat`; a process with one thread
/// is its leader alone (no more reads). A process or thread that exits meanwhile is
/// left out, as /proc leaves it out.
fn thread_lists(c: &mut Client, ps: &[Process]) -> anyhow::Result<Vec<ThreadList>> {
    let mut lists = Vec::with_capacity(ps.len());
    for p in ps {
        let leader =
            Thread { tid: p.pid, comm: p.comm.clone(), state: p.state, utime_ns: 0, stime_ns: 0, task: Gva::new(0) };
        if p.threads <= 1 {
            lists.push(ThreadList { pid: p.pid, threads: vec![leader], anomalies: vec![] });
            continue;
        }
        let Ok(dir) = c.list_dir(&format!("/proc/{}/task", p.pid)) else { continue };
        let mut threads = Vec::with_capacity(dir.len());
        for tid in dir.iter().filter_map(|e| e.name.parse::<i32>().ok()) {
            let Ok(stat) = c.read_file(&format!("/proc/{}/task/{tid}/stat", p.pid), 4096) else { continue };
            if let Some(t) = procfs::thread(tid, &String::from_utf8_lossy(&stat)) {
                threads.push(t);
            }
        }
        // Leader first, as the memory view lists them.
        threads.sort_by_key(|t| (t.tid != p.pid, t.tid));
        lists.push(ThreadList { pid: p.pid, threads, anomalies: vec![] });
    }
    Ok(lists)
}

/// The error for a subcommand only guest memory answers.
fn memory_only(cmd: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the agent technique asks the guest itself, and `{cmd}` looks at what the guest's kernel keeps in memory \
         (where a rootkit cannot answer for it): choose a technique that reads memory, e.g. --technique live-map"
    )
}

/// A file of the guest, as text.
fn text(c: &mut Client, path: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&c.read_file(path, MAX_FILE)?).into_owned())
}

/// The comm of process `pid`; a process the guest does not have is the same error
/// as a memory view gives.
fn comm(c: &mut Client, pid: i32) -> anyhow::Result<String> {
    match c.read_file(&format!("/proc/{pid}/comm"), 64) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).trim_end_matches('\n').to_owned()),
        Err(vmscope_agent::Error::Remote(_)) => Err(view::no_process(pid)),
        Err(e) => Err(e.into()),
    }
}

/// A line of guest text that did not parse.
fn unparsed(file: &str, n: usize, line: &str) -> Anomaly {
    Anomaly::InvalidField { what: file.into(), addr: Gva::new(0), field: format!("line {}", n + 1), value: line.into() }
}

/// Parses each line of `file` with `parse`, counting those it cannot read.
fn lines<'a, T>(
    body: &'a str,
    file: &str,
    skip: usize,
    parse: impl Fn(&'a str) -> Option<T>,
    an: &mut Vec<Anomaly>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (n, l) in body.lines().enumerate().skip(skip) {
        match parse(l) {
            Some(v) => out.push(v),
            None => an.push(unparsed(file, n, l)),
        }
    }
    out
}

fn maps(c: &mut Client, pid: i32) -> anyhow::Result<Output> {
    let comm = comm(c, pid)?;
    let file = format!("/proc/{pid}/maps");
    let mut anomalies = Vec::new();
    let vmas = lines(&text(c, &file)?, &file, 0, procfs::vma, &mut anomalies);
    Ok(memory::maps_output("agent", MemoryMap { pid, comm, vmas, anomalies }))
}

fn env(c: &mut Client, pid: i32) -> anyhow::Result<Output> {
    let comm = comm(c, pid)?;
    let vars = procfs::environ(&c.read_file(&format!("/proc/{pid}/environ"), MAX_FILE)?);
    Ok(memory::env_output("agent", Environment { pid, comm, vars: Some(vars), truncated: false, anomalies: vec![] }))
}

/// The processes a view covers: `pid` alone, or every process the guest lists.
fn processes(c: &mut Client, pid: Option<i32>) -> anyhow::Result<Vec<ProcessInfo>> {
    Ok(match pid {
        Some(pid) => vec![ProcessInfo { pid, comm: comm(c, pid)?, ..ProcessInfo::default() }],
        None => c.processes()?,
    })
}

/// `view` of `pid`, or of every process (one that exits meanwhile is left out).
fn per_process<T>(
    c: &mut Client,
    pid: Option<i32>,
    view: fn(&mut Client, &ProcessInfo) -> anyhow::Result<T>,
) -> anyhow::Result<PerProcess<T>> {
    let mut out = Vec::new();
    for p in processes(c, pid)? {
        match view(c, &p) {
            Ok(v) => out.push(v),
            Err(e) if pid.is_some() => return Err(e),
            Err(_) => {}
        }
    }
    Ok(PerProcess { processes: out, anomalies: vec![] })
}

fn namespaces(c: &mut Client, p: &ProcessInfo) -> anyhow::Result<Namespaces> {
    let ns = c
        .list_dir(&format!("/proc/{}/ns", p.pid))?
        .into_iter()
        .filter_map(|e| {
            // `pid_for_children` links to a `pid:[...]`.
            let link = e.link?;
            let inum = procfs::link_inode(&link, link.split_once(':')?.0)?;
            Some((e.name, u32::try_from(inum).ok()?))
        })
        .collect();
    let cgroup = procfs::unified_cgroup(&text(c, &format!("/proc/{}/cgroup", p.pid))?);
    Ok(Namespaces { pid: p.pid, comm: p.comm.clone(), ns, cgroup, anomalies: vec![] })
}

fn credentials(c: &mut Client, p: &ProcessInfo) -> anyhow::Result<vmscope_linux::Credentials> {
    let file = format!("/proc/{}/status", p.pid);
    procfs::credentials(p.pid, &p.comm, &text(c, &file)?)
        .ok_or_else(|| anyhow::anyhow!("{file}: no Uid, Gid, Groups and Cap lines in it"))
}

/// The namespace link `kind` of process `pid`.
fn ns_inode(c: &mut Client, pid: i32, kind: &str) -> Option<u32> {
    let dir = c.list_dir(&format!("/proc/{pid}/ns")).ok()?;
    let link = dir.into_iter().find(|e| e.name == kind)?.link?;
    u32::try_from(procfs::link_inode(&link, kind)?).ok()
}

/// Each mount namespace (`pid`'s, or every process's), as its first process sees it.
fn mounts(c: &mut Client, pid: Option<i32>) -> anyhow::Result<MountTable> {
    let mut seen = Vec::new();
    let mut namespaces = Vec::new();
    for p in processes(c, pid)? {
        let Some(inum) = ns_inode(c, p.pid, "mnt") else { continue };
        if seen.contains(&inum) {
            continue;
        }
        seen.push(inum);
        let file = format!("/proc/{}/mountinfo", p.pid);
        let Ok(body) = text(c, &file) else { continue };
        let mut anomalies = Vec::new();
        let mounts = lines(&body, &file, 0, procfs::mount, &mut anomalies);
        namespaces.push(MountNamespace { inum, pid: p.pid, comm: p.comm, mounts, anomalies });
    }
    if let (Some(pid), true) = (pid, namespaces.is_empty()) {
        return Err(view::no_process(pid));
    }
    Ok(MountTable { namespaces, anomalies: vec![] })
}

/// What `/proc/PID/fd` and `fdinfo` say of one descriptor.
fn open_file(c: &mut Client, pid: i32, e: &DirEntry) -> Option<OpenFile> {
    let fd = e.name.parse().ok()?;
    let path = e.link.clone()?;
    let info = procfs::fdinfo(&text(c, &format!("/proc/{pid}/fdinfo/{fd}")).ok()?)?;
    Some(OpenFile {
        fd,
        kind: procfs::file_kind(e.mode, &path),
        path,
        flags: info.flags,
        pos: info.pos,
        inode: e.ino.or(info.ino).unwrap_or(0),
        mnt_id: info.mnt_id,
        file: Gva::new(0),
    })
}

fn open_files(c: &mut Client, p: &ProcessInfo) -> anyhow::Result<OpenFiles> {
    let top = c.list_dir(&format!("/proc/{}", p.pid))?;
    let link = |name: &str| top.iter().find(|e| e.name == name).and_then(|e| e.link.clone());
    let (cwd, root, exe) = (link("cwd"), link("root"), link("exe"));
    // A process that exits meanwhile has no descriptors left to list.
    let fds = c.list_dir(&format!("/proc/{}/fd", p.pid)).unwrap_or_default();
    let mut files: Vec<OpenFile> = fds.iter().filter_map(|e| open_file(c, p.pid, e)).collect();
    files.sort_by_key(|f| f.fd);
    Ok(OpenFiles { pid: p.pid, comm: p.comm.clone(), cwd, root, exe, files, anomalies: vec![] })
}

fn lsof(c: &mut Client, pid: Option<i32>) -> anyhow::Result<Output> {
    let all = per_process(c, pid, open_files)?;
    Ok(files::lsof_output("agent", all.processes, all.anomalies))
}

/// The tables of `/proc/net` and the files that hold them.
const NET_FILES: [(Proto, &str); 5] =
    [(Proto::Tcp, "tcp"), (Proto::Tcp6, "tcp6"), (Proto::Udp, "udp"), (Proto::Udp6, "udp6"), (Proto::Unix, "unix")];

/// Every socket of every network namespace a process is in: each namespace's
/// `/proc/PID/net` tables, owners from every process's descriptors.
fn socket_table(c: &mut Client) -> anyhow::Result<SocketTable> {
    let mut owners: HashMap<u64, Vec<Owner>> = HashMap::new();
    let mut nets: Vec<(u32, i32)> = Vec::new();
    for p in c.processes()? {
        let Some(net) = ns_inode(c, p.pid, "net") else { continue };
        if !nets.iter().any(|&(n, _)| n == net) {
            nets.push((net, p.pid));
        }
        for e in c.list_dir(&format!("/proc/{}/fd", p.pid)).unwrap_or_default() {
            if let (Some(ino), Ok(fd)) =
                (e.link.as_deref().and_then(|l| procfs::link_inode(l, "socket")), e.name.parse())
            {
                owners.entry(ino).or_default().push(Owner { pid: p.pid, comm: p.comm.clone(), fd });
            }
        }
    }
    for o in owners.values_mut() {
        o.sort_by_key(|o| (o.pid, o.fd));
    }
    let mut t = SocketTable { namespaces: nets.iter().map(|&(n, _)| n).collect(), ..SocketTable::default() };
    for &(net, pid) in &nets {
        for (proto, name) in NET_FILES {
            let file = format!("/proc/{pid}/net/{name}");
            let Ok(body) = text(c, &file) else { continue };
            let parse = |l: &str| match proto {
                Proto::Unix => procfs::unix_socket(net, l),
                _ => procfs::inet_socket(proto, net, l),
            };
            for mut s in lines(&body, &file, 1, parse, &mut t.anomalies) {
                if s.inode != 0 {
                    s.owners = owners.get(&s.inode).cloned().unwrap_or_default();
                }
                t.sockets.push(s);
            }
        }
    }
    Ok(t)
}

/// One line of the guest's `dmesg -r`.
#[derive(Debug, Serialize)]
struct LogLine<'a> {
    facility: u32,
    level: u32,
    /// Microseconds since boot, when the kernel prints time stamps.
    usec: Option<u64>,
    text: &'a str,
}

/// The guest's `dmesg` (`dmesg -r` with `raw`).
fn dmesg(c: &mut Client, raw: bool, caller: bool) -> anyhow::Result<Output> {
    if caller {
        bail!("the guest's dmesg prints no caller; read the log from memory for it (e.g. --technique live-map)");
    }
    let out = c.sh("dmesg -r")?;
    let mut anomalies = Vec::new();
    let records = lines(&out, "dmesg -r", 0, procfs::log_line, &mut anomalies);
    let table = if raw {
        out.clone()
    } else {
        out.lines()
            .map(|l| l.strip_prefix('<').and_then(|p| p.split_once('>')).map_or(l, |(_, rest)| rest))
            .flat_map(|l| [l, "\n"])
            .collect()
    };
    let records: Vec<LogLine<'_>> = records
        .into_iter()
        .map(|(prio, usec, text)| LogLine { facility: prio >> 3, level: prio & 7, usec, text })
        .collect();
    let doc = json!({ "technique": "agent", "records": records, "anomalies": anomalies });
    Ok(Output { doc, table, anomalies, findings: 0 })
}

/// The guest's `/proc/kallsyms`, only names holding `pattern` if given (the lines
/// holding it are picked in the guest: the whole file is about 10 MiB).
fn kallsyms(c: &mut Client, pattern: Option<&str>) -> anyhow::Result<Output> {
    let body = match pattern {
        None => text(c, "/proc/kallsyms")?,
        Some(p) => {
            let argv = ["grep", "-F", "--", p, "/proc/kallsyms"].map(str::to_owned).to_vec();
            let r = c.exec(ExecRequest { argv, ..ExecRequest::default() })?;
            // grep exits 1 when no line matches.
            if !matches!(r.code, Some(0 | 1)) {
                bail!("grep in the guest: {}: {}", r.status_text(), String::from_utf8_lossy(&r.stderr).trim());
            }
            String::from_utf8_lossy(&r.stdout).into_owned()
        }
    };
    let mut anomalies = Vec::new();
    let all = lines(&body, "/proc/kallsyms", 0, procfs::symbol, &mut anomalies);
    let rows: Vec<symbols::Row<'_>> = all
        .into_iter()
        .filter(|(_, _, name, _)| pattern.is_none_or(|p| name.contains(p)))
        .map(|(addr, kind, name, module)| symbols::Row { addr: Gva::new(addr), kind, name, module })
        .collect();
    Ok(symbols::kallsyms_output("agent", &rows, anomalies))
}
