//! `vmscope-lab`: the study's experiments on real guests, with a report, CSV per
//! experiment, SVG charts and the exact environment written to
//! `lab/results/<run>/`. Run it through `cargo xtask lab`.

mod env;
mod experiments;
mod guests;
mod measure;
mod plot;
mod qemu_runs;
mod report;
mod table;

use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;

use experiments::{Ctx, HypervisorKind};
use vmscope_testbed::GuestImages;

/// The vmscope laboratory.
#[derive(Debug, Parser)]
#[command(about, long_about = None)]
struct Args {
    /// Run only these experiments (repeatable); default: all.
    #[arg(long = "experiment", value_name = "NAME")]
    experiments: Vec<String>,
    /// Short measurements and the smallest sizes: about 7 minutes in all on 2 cores.
    #[arg(long)]
    quick: bool,
    /// One short configuration of each experiment, to check that it measures (CI).
    #[arg(long)]
    smoke: bool,
    /// Do not pin QEMU and the introspector to different cores in the `impact`
    /// experiment (pinned by default where the host has two or more).
    #[arg(long)]
    no_pin: bool,
    /// Guests under QEMU (Debian kernels), or the test kernel under the built-in VMM.
    #[arg(long, value_enum, default_value_t = HypervisorKind::Qemu)]
    hypervisor: HypervisorKind,
    /// Guest kernels to use under QEMU (repeatable): 6.1, 6.12.
    #[arg(long = "kernel", value_name = "ID")]
    kernels: Vec<String>,
    /// Where results go (default: lab/results/TIME-COMMIT).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Guest images (default: $VMSCOPE_IMAGES, else target/guest-images above the
    /// current directory).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Measure only these techniques (repeatable); default: all.
    #[arg(long = "technique", value_name = "NAME")]
    techniques: Vec<vmscope_technique::Technique>,
    /// Seed for anything random in the experiments (recorded in the report, so that
    /// `cargo xtask lab --rerun` repeats it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// List the experiments and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = Args::parse();
    if args.list {
        for (name, what, _) in experiments::ALL {
            println!("{name:12} {what}");
        }
        return Ok(());
    }
    let chosen: Vec<_> = if args.experiments.is_empty() {
        experiments::ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for name in &args.experiments {
            match experiments::ALL.iter().find(|e| e.0 == name) {
                Some(e) => v.push(*e),
                None => bail!(
                    "unknown experiment `{name}`; there are: {}",
                    experiments::ALL.iter().map(|e| e.0).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        v
    };
    let root = workspace_root();
    let images = match &args.images {
        Some(dir) => GuestImages::open(dir)?,
        None => GuestImages::locate()?,
    };
    let kernels = if args.kernels.is_empty() { vec!["6.1".to_owned(), "6.12".to_owned()] } else { args.kernels };
    let (hv_name, accel) = match args.hypervisor {
        HypervisorKind::Qemu => ("QEMU", vmscope_testbed::Accel::detect().name()),
        HypervisorKind::Builtin => ("vmscope-vmm (built-in)", "kvm"),
    };
    let guest_kernels = match args.hypervisor {
        HypervisorKind::Builtin => vec!["testkernel".to_owned()],
        HypervisorKind::Qemu => images
            .kernels
            .iter()
            .filter(|k| kernels.contains(&k.id))
            .map(|k| format!("{} ({})", k.release, k.version))
            .collect(),
    };
    let mut env = env::Environment::capture(accel, hv_name, guest_kernels);
    env.seed = args.seed;
    env.command_line =
        std::iter::once("vmscope-lab".to_owned()).chain(argv.iter().cloned()).collect::<Vec<_>>().join(" ");
    let dir = args.out.clone().unwrap_or_else(|| report::run_dir(&root, &env));
    let report = report::Report::new(dir.clone(), env)?;
    report::RunArgs { args: argv, experiments: chosen.iter().map(|e| e.0.to_owned()).collect() }.write(&dir)?;
    let mut ctx = Ctx {
        hypervisor: args.hypervisor,
        quick: args.quick || args.smoke,
        smoke: args.smoke,
        pin: !args.no_pin,
        kernels,
        images,
        report,
        techniques: args.techniques,
        seed: args.seed,
        stage: (0, 0),
    };
    let mut failed = Vec::new();
    let n = chosen.len();
    let started = std::time::Instant::now();
    for (i, (name, _, run)) in chosen.into_iter().enumerate() {
        ctx.stage = (i + 1, n);
        eprintln!("lab: [{}/{n}] {name} ({:.0} s into the run)", i + 1, started.elapsed().as_secs_f64());
        if let Err(e) = run(&mut ctx) {
            eprintln!("lab: {name} failed: {e:#}");
            failed.push(name);
        }
    }
    ctx.report.write()?;
    eprintln!("lab: done in {:.0} s", started.elapsed().as_secs_f64());
    println!("{}", dir.join("report.md").display());
    if !failed.is_empty() {
        bail!("experiments failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The workspace root: the ancestor of the current directory with a `lab/` and a
/// `Cargo.toml`, else the current directory.
fn workspace_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors().find(|d| d.join("lab/Cargo.toml").exists()).map(PathBuf::from).unwrap_or(cwd)
}
