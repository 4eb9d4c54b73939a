//! The experiments, by name.

pub mod consistency;
pub mod frequency;
mod frequency_load;
pub mod impact;
pub mod pause;
pub mod scale;
pub mod snapshot;

use std::time::Duration;

use indicatif::ProgressBar;

use crate::report::Report;

/// Which hypervisor runs the guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HypervisorKind {
    /// Debian kernels under QEMU (KVM with hardware virtualization, else TCG).
    Qemu,
    /// The test kernel under vmscope's built-in KVM VMM.
    Builtin,
}

/// What every experiment gets.
#[derive(Debug)]
pub struct Ctx {
    pub hypervisor: HypervisorKind,
    pub quick: bool,
    /// One short configuration of each experiment (CI checks that it measures).
    pub smoke: bool,
    /// Pin QEMU and the introspector to different cores (`impact`).
    pub pin: bool,
    /// Guest kernels to run on (QEMU).
    pub kernels: Vec<String>,
    pub images: vmscope_testbed::GuestImages,
    pub report: Report,
    /// Techniques to measure (empty: all).
    pub techniques: Vec<vmscope_technique::Technique>,
    #[allow(dead_code, reason = "no experiment draws random numbers yet; the seed is recorded")]
    /// `--seed`: the start of anything random an experiment does (recorded in the
    /// environment table).
    pub seed: u64,
    /// (this experiment's number, experiments in the run), for progress bars.
    pub stage: (usize, usize),
}

impl Ctx {
    /// Whether technique `t` is to be measured.
    pub fn wants(&self, t: vmscope_technique::Technique) -> bool {
        self.techniques.is_empty() || self.techniques.contains(&t)
    }

    /// How long to measure one configuration. The full run's 3 s is sized so that
    /// every experiment fits in the hour on 2 cores.
    pub fn budget(&self) -> Duration {
        if self.smoke {
            Duration::from_millis(300)
        } else if self.quick {
            Duration::from_millis(1500)
        } else {
            Duration::from_secs(3)
        }
    }

    /// A progress bar over `len` configurations of this experiment, prefixed with
    /// its place in the run, with the time spent and an estimate of the time left.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let pb = ProgressBar::new(len);
        let (i, n) = self.stage;
        let template = format!(
            "{{spinner}} [{i}/{n}] {{msg:48}} [{{bar:24}}] {{pos}}/{{len}} {{elapsed_precise}} elapsed, eta {{eta}}"
        );
        pb.set_style(
            indicatif::ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> "),
        );
        pb.set_message(what.to_owned());
        pb
    }

    /// Configurations in an experiment's sweep (churn levels, sizes...): the middle
    /// one of `quick` under `--smoke`, `quick` under `--quick`, else `full`.
    pub fn levels<'a, T>(&self, full: &'a [T], quick: &'a [T]) -> &'a [T] {
        if self.smoke {
            let mid = quick.len() / 2;
            &quick[mid..(mid + 1).min(quick.len())]
        } else if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Every experiment: (name, what it measures, runner).
pub type Runner = fn(&mut Ctx) -> anyhow::Result<()>;

pub const ALL: &[(&str, &str, Runner)] = &[
    ("frequency", "monitoring frequency and host CPU cost per pass, per technique", frequency::run),
    ("consistency", "torn views, intrinsic and extrinsic inconsistency per technique and churn rate", consistency::run),
    ("pause", "pause + resume latency on 1 and 2 vCPUs; halt-map against halt-read", pause::run),
    ("snapshot", "snapshot pause, total time, bytes copied and host memory per technique vs guest RAM", snapshot::run),
    ("scale", "pass time per technique vs tasks (100 to 10,000) and vs guest RAM (256 MiB to 8 GiB)", scale::run),
    ("impact", "slowdown of the study's workloads per technique and monitoring frequency", impact::run),
];
