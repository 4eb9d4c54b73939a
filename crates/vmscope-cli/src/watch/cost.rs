//! What a watch costs: passes, missed deadlines, time per pass (mean, p99) and the
//! host CPU this process used — over the whole watch and per `--stats` interval.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Counters over some span of a watch.
#[derive(Debug)]
pub struct Span {
    started: Instant,
    cpu_at_start: Option<Duration>,
    passes: u64,
    missed: u64,
    set_aside: u64,
    /// Wall time per pass, µs.
    micros: Histogram<u64>,
}

/// One span's figures, as printed.
#[derive(Debug, Serialize)]
pub struct Figures {
    /// Seconds the span lasted.
    pub seconds: f64,
    pub passes: u64,
    /// Deadlines missed: slots (1/HZ s each) whose pass did not end inside them.
    pub missed_deadlines: u64,
    /// Passes set aside for a broken walk (no events from them).
    pub set_aside: u64,
    pub pass_mean_us: f64,
    pub pass_p99_us: u64,
    pub pass_max_us: u64,
    /// Host CPU of this process (user + system) per pass, µs.
    pub cpu_per_pass_us: Option<f64>,
    /// Host CPU of this process as a share of one core, %.
    pub cpu_percent: Option<f64>,
}

impl Span {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            cpu_at_start: cpu_time(),
            passes: 0,
            missed: 0,
            set_aside: 0,
            // 1 µs to an hour, 3 significant figures (a pass longer is counted as an hour).
            micros: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds and precision"),
        }
    }

    pub fn pass(&mut self, took: Duration, set_aside: bool) {
        self.passes += 1;
        self.set_aside += u64::from(set_aside);
        self.micros.saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn passes(&self) -> u64 {
        self.passes
    }

    pub fn missed(&mut self, n: u64) {
        self.missed += n;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn figures(&self) -> Figures {
        let seconds = self.started.elapsed().as_secs_f64();
        let cpu = cpu_time().zip(self.cpu_at_start).map(|(now, then)| now.saturating_sub(then).as_secs_f64());
        let per_pass = |x: f64| (self.passes > 0).then(|| x * 1e6 / self.passes as f64);
        Figures {
            seconds,
            passes: self.passes,
            missed_deadlines: self.missed,
            set_aside: self.set_aside,
            pass_mean_us: self.micros.mean(),
            pass_p99_us: self.micros.value_at_quantile(0.99),
            pass_max_us: self.micros.max(),
            cpu_per_pass_us: cpu.and_then(per_pass),
            cpu_percent: cpu.filter(|_| seconds > 0.0).map(|c| 100.0 * c / seconds),
        }
    }
}

impl Figures {
    /// One line: passes, deadlines, pass time and CPU.
    pub fn text(&self) -> String {
        let cpu = match (self.cpu_per_pass_us, self.cpu_percent) {
            (Some(p), Some(c)) => format!("; host CPU {p:.0} µs per pass ({c:.1}% of a core)"),
            _ => String::new(),
        };
        format!(
            "{} passes in {:.1} s, {} deadlines missed, {} set aside; per pass {:.0} µs mean, {} µs p99, {} µs max{cpu}",
            self.passes,
            self.seconds,
            self.missed_deadlines,
            self.set_aside,
            self.pass_mean_us,
            self.pass_p99_us,
            self.pass_max_us
        )
    }
}

/// CPU time (user + system) of this process so far, from /proc/self/stat (clock
/// ticks of 10 ms: fine over the seconds a span lasts).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on:
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ').skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
