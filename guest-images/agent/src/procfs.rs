//! The agent technique's answers, from the guest's own /proc.

use std::io::Read;

use std::os::unix::fs::MetadataExt;

use vmscope_agent::{DirEntry, ModuleInfo, ProcessInfo};

/// The most entries of one directory listed (the answer must fit a frame).
const MAX_DIR_ENTRIES: usize = 1 << 16;

pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

pub fn read_file(path: &str, max: u64) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(path)?.take(max).read_to_end(&mut v)?;
    Ok(v)
}

/// The entries of `path`, sorted by name: each one's link target, and the mode and
/// inode of what it leads to. An entry that vanishes meanwhile keeps only its name.
pub fn list_dir(path: &str) -> std::io::Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(path)?.take(MAX_DIR_ENTRIES) {
        let Ok(e) = e else { continue };
        let at = e.path();
        let meta = std::fs::metadata(&at).ok();
        out.push(DirEntry {
            name: e.file_name().to_string_lossy().into_owned(),
            link: std::fs::read_link(&at).ok().map(|t| t.to_string_lossy().into_owned()),
            mode: meta.as_ref().map(MetadataExt::mode),
            ino: meta.as_ref().map(MetadataExt::ino),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every process (thread-group leader). A process that exits while we read it is
/// left out.
pub fn processes() -> Vec<ProcessInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<ProcessInfo> =
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(process).collect();
    out.sort_by_key(|p| p.pid);
    out
}

fn process(pid: i32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ..." — comm may hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 2..)?.split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Some(ProcessInfo {
        pid,
        ppid,
        uid: field("Uid:")?,
        gid: field("Gid:")?,
        comm,
        state,
        threads: field("Threads:").unwrap_or(1),
        cmdline,
    })
}

pub fn modules() -> std::io::Result<Vec<ModuleInfo>> {
    let text = std::fs::read_to_string("/proc/modules")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(ModuleInfo {
                name: f.first()?.to_string(),
                size: f.get(1)?.parse().ok()?,
                refcount: f.get(2)?.parse().unwrap_or(-1),
                state: f.get(4)?.to_string(),
            })
        })
        .collect())
}
