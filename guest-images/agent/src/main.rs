//! `vmscope-agent` as it runs inside the guest: reads framed requests from a serial
//! port (default /dev/ttyS1), answers each, and never exits on bad input.
//!
//! Built statically by `cargo xtask images` (the guest has no libc) and started by the
//! initramfs's /init. Prints `VMSCOPE-READY` on its stdout (the console) once the port
//! is set up, which is what the host waits for.

mod churn;
mod dirty;
mod exec;
mod hold;
mod pace;
mod port;
mod procfs;
mod spawn;
mod workload;

use std::io::Write;

use vmscope_agent::frame::{self, Decoder, Kind};
use vmscope_agent::{PROTOCOL_VERSION, Request, Response, from_payload, to_payload};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| a.ends_with("vmscope-workload")) {
        match workload::run(&args[1..]) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("vmscope-workload: {e}");
                std::process::exit(e.exit_code());
            }
        }
    }
    let path = args.get(1).cloned().unwrap_or_else(|| "/dev/ttyS1".into());
    let mut port = match port::Port::open(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vmscope-agent: cannot open {path}: {e}");
            std::process::exit(1);
        }
    };
    // Orphans of commands we ran become our children; reap them between requests.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    println!("VMSCOPE-READY protocol={PROTOCOL_VERSION} port={path}");
    let _ = std::io::stdout().flush();

    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match port.read_timeout(&mut buf, 1000) {
            Ok(0) => exec::reap_orphans(),
            Ok(n) => decoder.feed(&buf[..n]),
            Err(e) => {
                eprintln!("vmscope-agent: read {path}: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        }
        while let Some(f) = decoder.next_frame() {
            if f.kind != Kind::Request {
                continue;
            }
            let response = match from_payload::<Request>(&f.payload) {
                Ok(req) => handle(req),
                Err(e) => Response::Error(e.to_string()),
            };
            if let Err(e) = port.write_all(&frame::encode(Kind::Response, f.id, &to_payload(&response))) {
                eprintln!("vmscope-agent: write {path}: {e}");
            }
        }
    }
}

fn handle(req: Request) -> Response {
    match req {
        Request::Ping { nonce } => Response::Pong { nonce, protocol: PROTOCOL_VERSION, release: procfs::release() },
        Request::Exec(e) => match exec::run(&e) {
            Ok(r) => Response::Exec(r),
            Err(err) => Response::Error(format!("cannot run {:?}: {err}", e.argv)),
        },
        Request::ReadFile { path, max } => match procfs::read_file(&path, max) {
            Ok(b) => Response::File(b),
            Err(err) => Response::Error(format!("{path}: {err}")),
        },
        Request::Processes => Response::Processes(procfs::processes()),
        Request::Modules => match procfs::modules() {
            Ok(m) => Response::Modules(m),
            Err(err) => Response::Error(format!("/proc/modules: {err}")),
        },
        Request::ListDir { path } => match procfs::list_dir(&path) {
            Ok(d) => Response::Dir(d),
            Err(err) => Response::Error(format!("{path}: {err}")),
        },
    }
}
