//! `lsof [PID]`: open files.

use std::fmt::Write as _;

use serde_json::json;
use vmscope_linux::{Anomaly, FileKind, Kernel, OpenFiles};
use vmscope_mem::PhysMem;

use super::{Output, no_process};

/// `O_ACCMODE` and its values (`fcntl.h`): the letter lsof adds to a descriptor.
const O_ACCMODE: u32 = 0o3;

fn header() -> String {
    format!(
        "{:<16} {:>7} {:>5} {:<7} {:>10} {:>10} {:>10} {}\n",
        "COMMAND", "PID", "FD", "TYPE", "FLAGS", "POS", "INODE", "NAME"
    )
}

fn rows(p: &OpenFiles, out: &mut String) {
    let mut row = |fd: &str, kind: &str, flags: &str, pos: &str, inode: &str, name: &str| {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>5} {:<7} {:>10} {:>10} {:>10} {}",
            p.comm, p.pid, fd, kind, flags, pos, inode, name
        );
    };
    for (fd, path) in [("cwd", &p.cwd), ("rtd", &p.root)] {
        if let Some(path) = path {
            row(fd, FileKind::Directory.lsof_type(), "-", "-", "-", path);
        }
    }
    if let Some(exe) = &p.exe {
        row("txt", FileKind::Regular.lsof_type(), "-", "-", "-", exe);
    }
    for f in &p.files {
        let mode = match f.flags & O_ACCMODE {
            0 => 'r',
            1 => 'w',
            _ => 'u',
        };
        row(
            &format!("{}{mode}", f.fd),
            f.kind.lsof_type(),
            &format!("0{:o}", f.flags),
            &f.pos.to_string(),
            &f.inode.to_string(),
            &f.path,
        );
    }
}

/// Like `lsof`: one line per working directory, root, executable and descriptor.
pub fn lsof<M: PhysMem>(technique: &str, k: &Kernel<M>, pid: Option<i32>) -> anyhow::Result<Output> {
    let (processes, anomalies) = match pid {
        Some(pid) => {
            let mut p = k.open_files(pid)?.ok_or_else(|| no_process(pid))?;
            let an = std::mem::take(&mut p.anomalies);
            (vec![p], an)
        }
        None => {
            let all = k.all_open_files()?;
            let mut an = all.anomalies;
            let mut ps = all.processes;
            for p in &mut ps {
                an.append(&mut p.anomalies);
            }
            (ps, an)
        }
    };
    Ok(lsof_output(technique, processes, anomalies))
}

/// The output of `lsof` for these processes' files.
pub(crate) fn lsof_output(technique: &str, processes: Vec<OpenFiles>, anomalies: Vec<Anomaly>) -> Output {
    let mut table = header();
    for p in &processes {
        rows(p, &mut table);
    }
    let doc = json!({ "technique": technique, "processes": processes, "anomalies": anomalies });
    Output { doc, table, anomalies, findings: 0 }
}
