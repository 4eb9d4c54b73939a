//! Timing passes: wall clock and the introspector's own CPU time.

use std::time::{Duration, Instant};

/// CPU time (user + system) of this whole process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Results of running a pass repeatedly.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    pub passes: u64,
    pub failed: u64,
    pub wall: Duration,
    pub cpu: Duration,
    /// What the last successful pass found (tasks, list nodes...).
    pub items: usize,
    /// Syscall techniques: pages fetched from the hypervisor per pass (each one
    /// system call or part of one), which is where their time goes.
    pub pages_fetched: Option<f64>,
    /// Oddities the successful passes reported (anomalies of a walk, broken lists).
    pub anomalies: u64,
    /// The first failed pass's error, with its causes.
    pub first_error: Option<String>,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.passes as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The first error on one line, short enough for a table cell ("-" if none).
    pub fn error_cell(&self) -> String {
        self.first_error.as_deref().map_or_else(|| "-".into(), error_cell)
    }

    pub fn cpu_us_per_pass(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.passes.max(1) as f64)
    }
}

/// Runs `pass` for about `budget` (at least `min_passes` times, at most `max_passes`),
/// calling `tick` after each pass.
pub fn run_for(
    budget: Duration,
    min_passes: u64,
    max_passes: u64,
    mut pass: impl FnMut() -> anyhow::Result<usize>,
    mut tick: impl FnMut(),
) -> Rate {
    let mut r = Rate::default();
    let (t0, c0) = (Instant::now(), cpu_time());
    while (t0.elapsed() < budget || r.passes + r.failed < min_passes) && r.passes + r.failed < max_passes {
        match pass() {
            Ok(n) => {
                r.passes += 1;
                r.items = n;
            }
            Err(e) => {
                r.failed += 1;
                r.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        tick();
    }
    r.wall = t0.elapsed();
    r.cpu = cpu_time().saturating_sub(c0);
    r
}

/// An error message on one line, at most 120 characters, without table separators.
pub fn error_cell(e: &str) -> String {
    let one: String = e.chars().map(|c| if matches!(c, '|' | '\n' | '\r' | ',') { ' ' } else { c }).collect();
    let mut s: String = one.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 120 {
        s = s.chars().take(119).collect::<String>() + "…";
    }
    s
}
