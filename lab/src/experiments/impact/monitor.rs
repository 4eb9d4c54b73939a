//! Monitoring a guest at a set rate while its workload runs, and what it costs on the
//! host: the introspector's CPU time and QEMU's.

use std::time::{Duration, Instant};

use crate::measure::cpu_time;

/// How often the introspector runs a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Frequency {
    /// Passes per second, on an absolute schedule (a slow pass is not made up for).
    Hz(f64),
    /// Back to back.
    Max,
}

impl Frequency {
    pub fn label(self) -> String {
        match self {
            Frequency::Hz(hz) => format!("{hz} Hz"),
            Frequency::Max => "max".into(),
        }
    }
}

/// What monitoring for a while did.
#[derive(Debug, Clone, Default)]
pub struct Monitored {
    pub passes: u64,
    pub failed: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// The introspector's CPU time (user + system) meanwhile.
    pub cpu: Duration,
    pub wall: Duration,
}

/// Runs `pass` at `freq` until `until`.
pub fn monitor(freq: Frequency, until: Instant, mut pass: impl FnMut() -> anyhow::Result<()>) -> Monitored {
    let (t0, c0) = (Instant::now(), cpu_time());
    let mut m = Monitored::default();
    let mut next = t0;
    while Instant::now() < until {
        if let Err(e) = pass() {
            m.failed += 1;
            m.first_error.get_or_insert_with(|| format!("{e:#}"));
        } else {
            m.passes += 1;
        }
        if let Frequency::Hz(hz) = freq {
            next += Duration::from_secs_f64(1.0 / hz);
            let now = Instant::now();
            if next > now {
                std::thread::sleep((next - now).min(until.saturating_duration_since(now)));
            } else {
                next = now; // behind: go on from here rather than in a burst
            }
        }
    }
    m.wall = t0.elapsed();
    m.cpu = cpu_time().saturating_sub(c0);
    m
}

/// CPU time (user + system) process `pid` has used, from /proc/PID/stat.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map(|r| r.1).ok_or_else(|| anyhow::anyhow!("no ')' in /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5); utime and stime are fields 14 and 15.
    let ticks =
        |i: usize| -> anyhow::Result<u64> { Ok(f.get(i - 3).ok_or_else(|| anyhow::anyhow!("short stat"))?.parse()?) };
    // SAFETY: sysconf reads no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64((ticks(14)? + ticks(15)?) as f64 / hz))
}

/// Pins every thread of process `pid` to `cpu`, and this thread (the introspector)
/// to the other CPUs, so that the guest's vCPUs and the introspector do not share a
/// core. Returns false where the host has a single CPU.
pub fn pin_apart(pid: u32, cpu: usize) -> anyhow::Result<bool> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        return Ok(false);
    }
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: i32 = t?.file_name().to_string_lossy().parse()?;
        set_affinity(tid, &[cpu])?;
    }
    let others: Vec<usize> = (0..cpus).filter(|c| *c != cpu).collect();
    set_affinity(0, &others)?;
    Ok(true)
}

/// Lets this thread run on every CPU again.
pub fn unpin_self() -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    set_affinity(0, &(0..cpus).collect::<Vec<_>>())
}

fn set_affinity(tid: i32, cpus: &[usize]) -> anyhow::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes bit `c` of `set`, which holds CPU_SETSIZE bits; `c` is
        // below the number of online CPUs.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: sched_setaffinity reads `set` (size given) for thread `tid` (0: this one).
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    anyhow::ensure!(rc == 0, "sched_setaffinity({tid}): {}", std::io::Error::last_os_error());
    Ok(())
}

/// Mean and the half-width of its 95% confidence interval (Student's t) of `xs`.
pub fn mean_ci95(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // t(0.975, n-1) for small n; 1.96 beyond.
    const T: [f64; 10] = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23];
    let t = T.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (var / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_monitor_keeps_its_rate_and_counts_failures() {
        let until = Instant::now() + Duration::from_millis(300);
        let mut i = 0;
        let m = monitor(Frequency::Hz(50.0), until, || {
            i += 1;
            if i % 5 == 0 { anyhow::bail!("every fifth fails") } else { Ok(()) }
        });
        assert!((13..=17).contains(&(m.passes + m.failed)), "{m:?}");
        assert_eq!(m.first_error.as_deref(), Some("every fifth fails"));
    }

    #[test]
    fn confidence_interval() {
        let (m, h) = mean_ci95(&[10.0, 12.0, 14.0]);
        assert!((m - 12.0).abs() < 1e-9);
        assert!((h - 4.30 * (4.0f64 / 3.0).sqrt()).abs() < 1e-6, "{h}");
        assert!(mean_ci95(&[1.0]).1.is_nan());
    }

    #[test]
    fn this_process_uses_cpu() {
        let t = process_cpu(std::process::id()).unwrap();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(process_cpu(std::process::id()).unwrap() > t);
    }
}
