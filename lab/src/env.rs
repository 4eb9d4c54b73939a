//! The exact environment of a run, written beside its results.

use std::process::Command;

use serde::Serialize;

/// What a reader needs to judge or repeat a run.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub date_utc: String,
    pub commit: String,
    pub host_kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: u64,
    pub hardware_virtualization: bool,
    pub accelerator: String,
    pub hypervisor: String,
    pub qemu_version: String,
    pub guest_kernels: Vec<String>,
    /// `--seed`: what anything random in the experiments starts from.
    pub seed: u64,
    /// The lab's command line as given (run.json has it as a list).
    pub command_line: String,
}

impl Environment {
    pub fn capture(accelerator: &str, hypervisor: &str, guest_kernels: Vec<String>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Self {
            date_utc: output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            commit: output("git", &["rev-parse", "--short=12", "HEAD"]),
            host_kernel: output("uname", &["-sr"]),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: mem_kib >> 20,
            hardware_virtualization: hw,
            accelerator: accelerator.into(),
            hypervisor: hypervisor.into(),
            qemu_version: output("qemu-system-x86_64", &["--version"]).lines().next().unwrap_or("").to_owned(),
            guest_kernels,
            seed: 1,
            command_line: String::new(),
        }
    }

    /// A markdown table of the environment.
    pub fn markdown(&self) -> String {
        let rows = [
            ("date (UTC)", self.date_utc.clone()),
            ("commit", self.commit.clone()),
            ("host", format!("{}, {} × {}, {} GiB", self.host_kernel, self.cpus, self.cpu_model, self.memory_gib)),
            (
                "hardware virtualization",
                if self.hardware_virtualization { "yes (vmx/svm)".into() } else { "no".into() },
            ),
            ("hypervisor", self.hypervisor.clone()),
            ("accelerator", self.accelerator.clone()),
            ("QEMU", self.qemu_version.clone()),
            ("guest kernels", self.guest_kernels.join(", ")),
            ("seed", self.seed.to_string()),
            ("command line", format!("`{}`", self.command_line)),
        ];
        let mut s = String::from("| | |\n| --- | --- |\n");
        for (k, v) in rows {
            s.push_str(&format!("| {k} | {v} |\n"));
        }
        s
    }
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
