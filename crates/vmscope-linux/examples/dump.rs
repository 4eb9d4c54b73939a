//! Attaches to a raw guest-RAM file (GPA 0 at offset 0) and prints what it finds.
//!
//! `cargo run --release -p vmscope-linux --example dump -- RAM.bin [ps|lsmod|info|kallsyms]`

use std::fs::File;

use vmscope_linux::{Hints, Kernel};
use vmscope_mem::{FileMem, MemoryMap};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: dump RAM.bin [info|ps|lsmod|kallsyms|tree]")?;
    let what = args.next().unwrap_or_else(|| "info".into());
    let file = File::open(&path)?;
    let size = file.metadata()?.len();
    let mem = FileMem::new(file, MemoryMap::flat(size));
    let t = std::time::Instant::now();
    let kernel = Kernel::attach(mem, Hints::none())?;
    eprintln!("attach: {:?}", t.elapsed());
    match what.as_str() {
        "kallsyms" => print!("{}", kernel.proc_kallsyms()),
        "ps" => {
            let t = std::time::Instant::now();
            let list = kernel.processes();
            eprintln!("processes: {:?}", t.elapsed());
            for p in &list.processes {
                let cmd = p.cmdline.as_ref().map_or("?".to_owned(), |c| c.join(" "));
                println!(
                    "{:>6} {:>6} {:>5} {:>5} {} {:>3} {:>6} {:<16} {}",
                    p.pid,
                    p.ppid,
                    p.uid,
                    p.gid,
                    p.state,
                    p.threads,
                    p.rss_pages.unwrap_or(0),
                    p.comm,
                    cmd
                );
            }
            for a in &list.anomalies {
                println!("anomaly: {a}");
            }
        }
        "tree" => {
            for (d, p) in kernel.process_tree().walk() {
                println!("{}{} {}", "  ".repeat(d), p.pid, p.comm);
            }
        }
        "lsmod" => {
            let list = kernel.modules();
            for m in &list.modules {
                println!("{} {} {} - {} {:#x} {}", m.name, m.size, m.refcount, m.state, m.base, m.taint_flags);
            }
            for a in &list.anomalies {
                println!("anomaly: {a}");
            }
        }
        _ => {
            let info = kernel.info();
            println!("{}", serde_json::to_string_pretty(info)?);
            for e in &info.evidence {
                println!("- {e}");
            }
        }
    }
    Ok(())
}
