//! `watch`: a pass every 1/HZ seconds, by any technique, printing what changed in
//! the guest as it happens — processes started and exited, modules loaded and
//! unloaded — until interrupted, `--count` passes or `--duration` seconds, then a
//! summary of what it cost. What changed is `vmscope_consistency::watch`'s to tell;
//! this module schedules passes and prints.

mod cost;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use vmscope_consistency::watch::{Event, Views, Watcher};
use vmscope_linux::{Hints, Kernel, ModuleList, ProcessList};
use vmscope_mem::{Gva, MemoryMap, SliceMem};
use vmscope_technique::{Access, Guest, Options, Technique, stop};

use cost::Span;

/// How often, and for how long, to watch.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Passes per second.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    hz: f64,
    /// Stop after this many passes.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = positive)]
    duration: Option<f64>,
    /// Print what the passes cost every second (passes, deadlines missed, time per
    /// pass, host CPU).
    #[arg(long)]
    stats: bool,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// Why a watch ended without an error.
enum End {
    Count,
    Duration,
    Signal(i32),
}

/// Where the views of a pass come from.
enum Source<'a> {
    /// Guest memory, through a kernel attached once.
    Memory(Box<Kernel<SliceMem<Vec<u8>>>>),
    /// The guest agent.
    Agent(&'a Access<'a>),
}

impl Source<'_> {
    fn views(&self, access: &Access<'_>) -> anyhow::Result<Views> {
        match self {
            Source::Memory(kernel) => Ok(access.pass(|mem| {
                let k = kernel.rebind(mem);
                Views { processes: Some(k.processes()), modules: Some(k.modules()) }
            })?),
            Source::Agent(a) => {
                let mut client = a.agent().expect("the agent technique opens a client");
                let processes = client.processes()?.iter().map(crate::agent::process).collect();
                let modules = client.modules()?.iter().map(crate::agent::module).collect();
                Ok(Views {
                    processes: Some(ProcessList { processes, anomalies: Vec::new() }),
                    modules: Some(ModuleList { modules, anomalies: Vec::new() }),
                })
            }
        }
    }
}

/// Watches `guest` with `technique` until told to stop; prints events and a summary.
pub fn run(
    guest: &Guest,
    technique: Option<Technique>,
    opts: &Options,
    w: &WatchArgs,
    json: bool,
    limits: vmscope_linux::Limits,
) -> anyhow::Result<()> {
    if guest.dump().is_some() {
        anyhow::bail!("`watch` follows a live guest; a dump does not change (use `ps`, `lsmod` on it)");
    }
    let access = guest.access(technique, opts)?;
    let name = access.technique().map_or("dump", Technique::name);
    let source = if access.agent().is_some() {
        Source::Agent(&access)
    } else {
        let hints = guest
            .registers()
            .map_or_else(Hints::none, |r| Hints::from_registers(r.cr3, r.cr4).with_lstar(Gva::new(r.lstar)));
        Source::Memory(Box::new(access.pass(|mem| {
            crate::attach(mem, hints, limits).map(|k| k.rebind(SliceMem::new(Vec::new(), MemoryMap::flat(0))))
        })??))
    };
    let mut out = std::io::stdout().lock();
    let period = Duration::from_secs_f64(1.0 / w.hz);
    let (mut total, mut second) = (Span::new(), Span::new());
    let mut watcher = Watcher::default();
    let start = Instant::now();
    let mut next = start;
    let end = loop {
        if let Some(sig) = stop::requested() {
            break Ok(End::Signal(sig));
        }
        if w.count.is_some_and(|n| total.passes() >= n) {
            break Ok(End::Count);
        }
        if w.duration.is_some_and(|d| start.elapsed().as_secs_f64() >= d) {
            break Ok(End::Duration);
        }
        if !sleep_until(next) {
            continue; // a signal: said at the top
        }
        let t = Instant::now();
        let views = match source.views(&access) {
            Ok(v) => v,
            // A halted pass cut short by a signal (its guest resumed): a clean end.
            Err(_) if stop::requested().is_some() => continue,
            Err(e) => break Err(e),
        };
        let update = watcher.update(views);
        let took = t.elapsed();
        total.pass(took, update.set_aside);
        second.pass(took, update.set_aside);
        let at = t.duration_since(start).as_secs_f64();
        for e in &update.events {
            print_event(&mut out, json, at, e)?;
        }
        // Slot i is [next, next + period): its pass must end inside it. A pass that
        // ends later misses its deadline, and so does every slot it ran over; the
        // pass of the slot it ended in runs at once.
        next += period;
        let now = Instant::now();
        if now > next {
            let over = ((now - next).as_secs_f64() / period.as_secs_f64()).floor();
            total.missed(1 + over as u64);
            second.missed(1 + over as u64);
            next += period.mul_f64(over);
        }
        if w.stats && second.elapsed() >= Duration::from_secs(1) {
            let f = second.figures();
            if json {
                writeln!(out, "{}", json!({ "t": at, "stats": f }))?;
            } else {
                writeln!(out, "{at:>10.3} stats   {}", f.text())?;
            }
            out.flush()?;
            second = Span::new();
        }
    };
    let why = match &end {
        Ok(End::Count) => "after --count passes".to_owned(),
        Ok(End::Duration) => "after --duration".to_owned(),
        Ok(End::Signal(s)) => format!("on signal {s}"),
        Err(e) => format!("on an error: {e:#}"),
    };
    let f = total.figures();
    if json {
        let doc = json!({ "summary": { "technique": name, "hz": w.hz, "ended": why, "figures": f } });
        writeln!(out, "{doc}")?;
    } else {
        writeln!(out, "watch ({name}, {} Hz) ended {why}: {}", w.hz, f.text())?;
    }
    out.flush()?;
    end.map(drop).context("watching the guest")
}

/// Sleeps until `t`, in pieces, so that a signal is seen within 50 ms; whether `t`
/// was reached (false: a stop was requested).
fn sleep_until(t: Instant) -> bool {
    loop {
        if stop::requested().is_some() {
            return false;
        }
        let left = t.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn print_event(out: &mut impl Write, json: bool, at: f64, e: &Event) -> anyhow::Result<()> {
    if json {
        let mut doc = serde_json::to_value(e)?;
        doc["t"] = json!(at);
        writeln!(out, "{doc}")?;
    } else {
        let what = match e {
            Event::ProcessStart { pid, ppid, uid, comm } => {
                format!("start   pid {pid} ppid {ppid} uid {uid} comm {comm}")
            }
            Event::ProcessExit { pid, ppid, comm } => format!("exit    pid {pid} ppid {ppid} comm {comm}"),
            Event::ModuleLoad { name, size } => format!("load    module {name} size {size}"),
            Event::ModuleUnload { name } => format!("unload  module {name}"),
        };
        writeln!(out, "{at:>10.3} {what}")?;
    }
    out.flush()?;
    Ok(())
}
