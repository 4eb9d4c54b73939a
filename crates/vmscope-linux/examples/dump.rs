//! Attaches to a raw guest-RAM file (GPA 0 at offset 0) and prints what it finds.
//!
//! `cargo run --release -p vmscope-linux --example dump -- RAM.bin [ps|lsmod|info|kallsyms]`

use std::fs::File;
use std::os::unix::fs::FileExt;

use vmscope_mem::{Error as MemError, MemoryMap, PhysMem, ReadOp};

/// Guest RAM in a file: pread per chunk.
struct FileMem {
    file: File,
    map: MemoryMap,
}

impl PhysMem for FileMem {
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> vmscope_mem::Result<()> {
        for op in ops {
            let mut done = 0usize;
            for c in self.map.chunks(op.gpa, op.buf.len() as u64) {
                let (_, off, n) = c.map_err(|gpa| MemError::Unbacked { gpa })?;
                let n = n as usize;
                self.file.read_exact_at(&mut op.buf[done..done + n], off).map_err(|source| MemError::Io { gpa: op.gpa, source })?;
                done += n;
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &MemoryMap {
        &self.map
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: dump RAM.bin [info|kallsyms]")?;
    let what = args.next().unwrap_or_else(|| "info".into());
    let file = File::open(&path)?;
    let size = file.metadata()?.len();
    let mem = FileMem { file, map: MemoryMap::flat(size) };
    if what == "time" {
        let start: u64 = u64::from_str_radix(&args.next().unwrap(), 16).unwrap();
        time_decode(&mem, start, 18 << 20);
        return Ok(());
    }
    let t = std::time::Instant::now();
    let (info, k) = vmscope_linux::discover(&mem, &vmscope_linux::Hints::none())?;
    eprintln!("discovery: {:?}", t.elapsed());
    match what.as_str() {
        "kallsyms" => print!("{}", k.symbols.to_proc_kallsyms()),
        _ => {
            println!("{}", serde_json::to_string_pretty(&info)?);
            for e in &info.evidence {
                println!("- {e}");
            }
        }
    }
    Ok(())
}

