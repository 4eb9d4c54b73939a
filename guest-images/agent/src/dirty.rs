//! `vmscope-workload dirty MB_PER_S SIZE_MB [SECONDS]`: a memory workload with a set
//! dirty rate, for the snapshot experiment (a live snapshot's pause grows with the
//! pages the guest writes while it copies).
//!
//! Allocates SIZE_MB, writes every page of it once (so that much guest RAM is
//! touched), says `dirty: touched N MiB` on stderr, then writes one byte per 4 KiB
//! page, cycling through the buffer, at MB_PER_S (MB_PER_S × 256 pages a second;
//! 0 = only touch, then idle). Pacing is by an absolute schedule on CLOCK_MONOTONIC
//! (page k is due at start + k / rate), written in batches each millisecond, so time
//! spent writing does not lower the rate; a backlog over one second (the guest was
//! starved) is dropped and reported as `behind`. Every second a line on stderr tells
//! the achieved rate; at the end a summary `dirty: N pages in S s = R MB/s`. Runs for
//! SECONDS or until SIGTERM, SIGINT or SIGHUP.

use crate::pace::{NS, install_stop_handlers, now_ns, sleep_until, stop_requested};
use crate::workload::{Error, usage};

const PAGE: usize = 4096;
/// Pages per MB (MiB) written.
const PAGES_PER_MB: u64 = 256;
/// A backlog longer than this is dropped, not made up.
const MAX_BACKLOG_NS: u64 = NS;
/// Batches are this far apart.
const TICK_NS: u64 = 1_000_000;

/// `dirty MB_PER_S SIZE_MB [SECONDS]` (the arguments after `dirty`).
pub fn run(args: &[String]) -> Result<(), Error> {
    let (rate, size, seconds) = match args {
        [r, s] => (r, s, None),
        [r, s, t] => (r, s, Some(t)),
        _ => return Err(usage()),
    };
    let (Ok(mb_per_s), Ok(size_mb)) = (rate.parse::<u64>(), size.parse::<u64>()) else { return Err(usage()) };
    if size_mb == 0 || size_mb > 1 << 20 || mb_per_s > 1 << 20 {
        return Err(usage());
    }
    let duration = match seconds.map(|s| s.parse::<f64>()) {
        None => None,
        Some(Ok(x)) if x.is_finite() && x > 0.0 && x < 1e9 => Some((x * NS as f64) as u64),
        Some(_) => return Err(usage()),
    };
    install_stop_handlers();
    let pages = (size_mb * PAGES_PER_MB) as usize;
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(pages * PAGE).map_err(|e| Error::Failed(format!("allocating {size_mb} MiB: {e}")))?;
    // Zeroed allocations come from untouched pages: the fill below is what touches them.
    buf.resize(pages * PAGE, 0);
    let t0 = now_ns();
    for page in buf.chunks_mut(PAGE) {
        page.fill(0x5a);
    }
    eprintln!("dirty: touched {size_mb} MiB in {:.2} s", (now_ns() - t0) as f64 / NS as f64);
    drive(&mut buf, mb_per_s * PAGES_PER_MB, duration);
    Ok(())
}

/// Writes one byte per page at `pages_per_s` (0: idle) until stopped or `duration_ns`.
fn drive(buf: &mut [u8], pages_per_s: u64, duration_ns: Option<u64>) {
    let pages = buf.len() / PAGE;
    let start = now_ns();
    let end = duration_ns.map(|d| start + d);
    let (mut written, mut behind, mut next_page, mut stamp) = (0u64, 0u64, 0usize, 0u8);
    let (mut next_report, mut last_t, mut last_written) = (start + NS, start, 0u64);
    loop {
        let now = now_ns();
        if stop_requested() || end.is_some_and(|e| now >= e) {
            break;
        }
        if now >= next_report {
            let secs = (now - last_t) as f64 / NS as f64;
            let lag = if behind > 0 { format!(", {behind} pages behind") } else { String::new() };
            eprintln!(
                "dirty: t={}s {} pages = {:.2} MB/s (target {} MB/s){lag}",
                (now - start) / NS,
                written - last_written,
                (written - last_written) as f64 / PAGES_PER_MB as f64 / secs,
                pages_per_s / PAGES_PER_MB
            );
            (last_t, last_written) = (now, written);
            while next_report <= now {
                next_report += NS;
            }
        }
        let due = (u128::from(now - start) * u128::from(pages_per_s) / u128::from(NS)) as u64;
        if due > written + pages_per_s * MAX_BACKLOG_NS / NS {
            behind += due - written;
            written = due;
        }
        while written < due {
            stamp = stamp.wrapping_add(1);
            // Volatile: the write is the point of this workload and must not be elided.
            let p = &mut buf[next_page * PAGE];
            // SAFETY: `p` comes from a valid, exclusive reference into `buf`.
            unsafe { std::ptr::write_volatile(p, stamp) };
            next_page = (next_page + 1) % pages;
            written += 1;
        }
        sleep_until((now + TICK_NS).min(next_report).min(end.unwrap_or(u64::MAX)));
    }
    let secs = (now_ns() - start) as f64 / NS as f64;
    eprintln!(
        "dirty: {written} pages in {secs:.2} s = {:.2} MB/s (target {} MB/s, {behind} pages dropped)",
        (written - behind) as f64 / PAGES_PER_MB as f64 / secs.max(1e-9),
        pages_per_s / PAGES_PER_MB
    );
}
