//! Every view over arbitrary kernel memory: the synthetic kernel of vmscope-linux's
//! unit tests (fixed symbols and offsets: tasks, threads, a module, files, memory
//! areas in a maple tree, an environment, a printk ring buffer) with the fuzz input
//! written over its objects. Every view must end within its limits and budget and
//! never panic, whatever the pointers, lengths, counts and offsets hold.
//!
//! Input: pairs of (a little-endian u16 position, a little-endian u64 value); the
//! position, scaled to the objects' span, says which 8 bytes the value replaces.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vmscope_linux::views::fixture::Fx;
use vmscope_linux::views::fixture::deep::{Pseudo, RecordSpec, VmaSpec};
use vmscope_linux::{Budget, Limits};

const VM_READ: u64 = 1;
const VM_WRITE: u64 = 2;

fn guest() -> Fx {
    let mut fx = Fx::new();
    let init = fx.process(1, fx.init_task, 0, "init", Some("/sbin/init splash"));
    fx.thread(init, 7, "worker");
    fx.kthread(2, fx.init_task, "kthreadd");
    fx.process(100, init, 1001, "sleep", Some("sleep 999"));
    fx.module("dummy", 16384, 0, &["dummy_export"], &["dummy_local"]);
    let exe = fx.file("/usr/bin/prog", 0o100000, 0);
    fx.mm_layout(init, Some(exe), (0x55_0000_2000, 0x55_0002_3000), 0x7ffd_0001_0abc);
    let area = |start, end, file| VmaSpec { start, end, flags: VM_READ | VM_WRITE, pgoff: 0, file, special: None };
    let specs = [
        area(0x55_0000_0000, 0x55_0000_1000, Some(exe)),
        area(0x55_0000_2000, 0x55_0002_3000, None),
        area(0x7ffd_0000_0000, 0x7ffd_0002_1000, None),
    ];
    fx.vmas(init, &specs, 2);
    fx.open(init, 3, exe, true);
    let (pipe, _) = fx.pseudo_file(Pseudo::Pipe, "", 0);
    fx.open(init, 4, pipe, false);
    fx.environ(init, 1, &["A=1", "B=2"]);
    fx.log(&[RecordSpec::new("one"), RecordSpec::new("two\nlines")]);
    fx
}

/// The guest, built once (building it costs more than a run of every view).
static GUEST: OnceLock<Fx> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let mut fx = GUEST.get_or_init(guest).clone();
    let (base, len) = fx.pool_span();
    for w in data.chunks_exact(10) {
        let at = u64::from(u16::from_le_bytes([w[0], w[1]])) * 8 % len;
        let v = u64::from_le_bytes(w[2..10].try_into().expect("8 bytes"));
        fx.w64(base + at, v);
    }
    let budget = Budget { max_bytes: 16 << 20, max_nodes: 4096, max_time: Duration::from_secs(2) };
    let limits = Limits {
        max_list: 64,
        max_cmdline: 4096,
        max_module_symbols: 64,
        max_vmas: 64,
        max_fds: 256,
        max_path_steps: 32,
        max_environ: 4096,
        budget,
    };
    let k = fx.kernel(limits);
    let list = k.processes();
    assert!(list.processes.len() <= 64);
    let _ = k.process_tree();
    let _ = k.threads(1);
    let (threads, _) = k.all_threads();
    assert!(threads.iter().all(|t| t.threads.len() <= 64));
    let _ = k.modules();
    let _ = k.proc_kallsyms();
    if let Ok(m) = k.memory_maps() {
        assert!(m.processes.iter().all(|p| p.vmas.len() <= 65));
    }
    let _ = k.memory_map(1);
    let _ = k.all_open_files();
    let _ = k.open_files(1);
    let _ = k.environment(1);
    let _ = k.kernel_log();
    let _ = k.task_graph();
    let _ = k.pid_table();
    let _ = k.module_graph();
});
