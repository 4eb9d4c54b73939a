//! `vmscope`: introspect a running QEMU guest (or a guest of the built-in VMM, or a
//! dump file) from outside: processes, modules, the kernel, a memory dump.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use vmscope_cli::output::{self, ModRow, PsRow};
use vmscope_cli::source::{self, dump_hints, with_kernel};
use vmscope_cli::{Target, Technique};
use vmscope_linux::Anomaly;
use vmscope_mem::PhysMem;
use vmscope_snap::{DumpFile, Format};

/// Introspect a Linux guest from outside: no agent, no profile, no guest changes.
///
/// The guest is a running QEMU (--qemu PID; its RAM must be a shared memfd, see the
/// README), a guest of vmscope's built-in VMM (--vmm SOCKET), or a dump file
/// (--dump FILE: ELF core as QEMU's dump-guest-memory writes it, LiME, or raw).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// The QEMU process to introspect.
    #[arg(long, value_name = "PID", global = true, conflicts_with_all = ["dump", "vmm"])]
    qemu: Option<u32>,
    /// QEMU's QMP socket (default: found in QEMU's command line).
    #[arg(long, value_name = "SOCKET", global = true)]
    qmp: Option<PathBuf>,
    /// The control socket of a `vmscope-vmm` guest.
    #[arg(long, value_name = "SOCKET", global = true, conflicts_with = "dump")]
    vmm: Option<PathBuf>,
    /// A memory dump to introspect instead of a live guest.
    #[arg(long, value_name = "FILE", global = true)]
    dump: Option<PathBuf>,
    /// How to reach guest memory: live-read, halt-read, live-map, halt-map, halt-snap,
    /// live-snap, agent (default: the fastest that works, live-map).
    #[arg(long, short, value_name = "NAME", global = true)]
    technique: Option<Technique>,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Processes, like `ps -ef`: PID, PPID, UID, STATE, COMM, CMD.
    Ps,
    /// Loaded kernel modules, like /proc/modules.
    Lsmod,
    /// The kernel: release, banner, build ID, paging mode, KASLR offsets, and the
    /// evidence each was found from.
    Info,
    /// Write guest memory to a file (the guest is paused while it is copied).
    Dump {
        /// raw (with a FILE.vmscope.json memory map), elf (QEMU dump-guest-memory
        /// layout, with VMCOREINFO and registers) or lime.
        #[arg(long, value_name = "FORMAT", default_value = "elf")]
        format: Format,
        /// The file to write.
        out: PathBuf,
    },
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("vmscope: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(path) = &args.dump {
        if args.technique.is_some() {
            bail!("--technique applies to live guests, not to --dump");
        }
        let dump = DumpFile::open(path).with_context(|| format!("opening dump {}", path.display()))?;
        if let Command::Dump { .. } = args.command {
            bail!("`dump` writes a live guest's memory; this is already a dump");
        }
        let hints = dump_hints(&dump);
        return with_kernel(&dump as &dyn PhysMem, hints, |k| view(args, "dump", k));
    }
    let target = match (args.qemu, &args.vmm) {
        (Some(pid), _) => Target::qemu(pid, args.qmp.as_deref())?,
        (None, Some(sock)) => Target::builtin(sock, None)?,
        (None, None) => bail!("say which guest: --qemu PID, --vmm SOCKET or --dump FILE"),
    };
    let technique = args.technique.unwrap_or_else(|| source::default_technique(&target));
    if let Command::Dump { format, out } = &args.command {
        return dump(&target, technique, *format, out);
    }
    if technique == Technique::Agent {
        return agent(args, &target);
    }
    source::live(&target, technique, |k| view(args, technique.name(), k))
}

/// Prints `doc` as one JSON document, or else `table` with a note of the
/// `anomalies` on stderr.
fn emit(
    json: bool,
    doc: serde_json::Value,
    table: impl FnOnce() -> String,
    anomalies: &[Anomaly],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        out.write_all(table().as_bytes())?;
        if let Some(n) = output::anomalies_note(anomalies) {
            eprint!("{n}");
        }
    }
    Ok(())
}

/// Prints the requested view of an attached kernel.
fn view(args: &Args, technique: &str, k: &vmscope_linux::Kernel<&dyn PhysMem>) -> anyhow::Result<()> {
    match args.command {
        Command::Ps => {
            let list = k.processes();
            let doc = json!({ "technique": technique, "processes": list.processes, "anomalies": list.anomalies });
            let rows: Vec<PsRow> = list.processes.iter().map(PsRow::from).collect();
            emit(args.json, doc, || output::ps_table(&rows), &list.anomalies)
        }
        Command::Lsmod => {
            let list = k.modules();
            let doc = json!({ "technique": technique, "modules": list.modules, "anomalies": list.anomalies });
            let rows: Vec<ModRow> = list.modules.iter().map(ModRow::from).collect();
            emit(args.json, doc, || output::lsmod_table(&rows), &list.anomalies)
        }
        Command::Info => {
            let doc = json!({ "technique": technique, "kernel": k.info() });
            emit(args.json, doc, || output::info_text(k.info()), &[])
        }
        Command::Dump { .. } => unreachable!("dump is handled before attaching"),
    }
}

/// The agent technique: the guest answers from its own /proc.
fn agent(args: &Args, target: &Target) -> anyhow::Result<()> {
    let access = target.open(Technique::Agent)?;
    let mut client = access.agent().expect("the agent technique opens a client");
    match args.command {
        Command::Ps => {
            let rows: Vec<PsRow> = client.processes()?.iter().map(PsRow::from).collect();
            emit(args.json, json!({ "technique": "agent", "processes": rows }), || output::ps_table(&rows), &[])
        }
        Command::Lsmod => {
            let rows: Vec<ModRow> = client.modules()?.iter().map(ModRow::from).collect();
            emit(args.json, json!({ "technique": "agent", "modules": rows }), || output::lsmod_table(&rows), &[])
        }
        Command::Info => {
            let version = String::from_utf8_lossy(&client.read_file("/proc/version", 4096)?).trim_end().to_owned();
            let release = client.release().to_owned();
            let doc = json!({ "technique": "agent", "release": release, "banner": version });
            emit(args.json, doc, || format!("release        {release}\nbanner         {version}\n"), &[])
        }
        Command::Dump { .. } => unreachable!("dump is handled before the agent"),
    }
}

/// Writes guest memory to `out`: a snapshot technique copies it (halt-snap unless
/// live-snap is asked for); other techniques are read inside one halted pass.
fn dump(target: &Target, technique: Technique, format: Format, out: &std::path::Path) -> anyhow::Result<()> {
    let snap_technique = match technique {
        Technique::LiveSnap => Technique::LiveSnap,
        Technique::Agent => bail!("the agent cannot dump memory; choose halt-snap or live-snap"),
        _ => Technique::HaltSnap,
    };
    let access = target.open(snap_technique)?;
    let snap = access.snapshot()?;
    let stats = snap.write(out, format).with_context(|| format!("writing {}", out.display()))?;
    let cost = access.last_snapshot();
    eprintln!(
        "vmscope: wrote {} ({} format, {} MiB of data){}",
        out.display(),
        format.name(),
        stats.data_bytes >> 20,
        cost.map(|c| format!("; guest paused {:.1} ms", c.downtime.as_secs_f64() * 1e3)).unwrap_or_default()
    );
    Ok(())
}
